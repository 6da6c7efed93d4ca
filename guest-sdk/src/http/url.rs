//! The parts of an `http` or `https` URL a request needs (scheme,
//! authority, path and query), read from text and resolved against another
//! URL as RFC 3986 says, for a redirect's `Location`.

use std::fmt;

/// An absolute `http` or `https` URL, without user information or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    /// Whether the scheme is `https`.
    https: bool,
    /// The host, lowercased, with its port if the URL names one.
    authority: String,
    /// The path, from its leading `/`, then the query if any.
    path_and_query: String,
}

impl Url {
    /// Reads `text`, an absolute `http` or `https` URL; the fragment, if
    /// any, is dropped (it is never sent), and bytes outside ASCII are
    /// percent-encoded.
    ///
    /// # Errors
    ///
    /// Why `text` is not such a URL.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = without_fragment(text.trim());
        let Some((scheme, rest)) = split_scheme(text) else {
            return Err("it has no scheme (http:// or https://)".to_owned());
        };
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(format!("its scheme is {scheme:?}; only http and https are supported")),
        };
        let Some(rest) = rest.strip_prefix("//") else {
            return Err("it has no host (write http://host/path)".to_owned());
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(end);
        let authority = checked_authority(authority)?;
        let path_and_query = match path_and_query {
            "" => "/".to_owned(),
            query if query.starts_with('?') => format!("/{}", encoded(query)?),
            path => encoded(path)?,
        };
        Ok(Self { https, authority, path_and_query })
    }

    /// The URL `reference` (a redirect's `Location`) names, read against
    /// this one: an absolute URL, `//host/path`, `/path`, `?query` or a
    /// path relative to this URL's.
    ///
    /// # Errors
    ///
    /// Why the result is no `http` or `https` URL.
    pub(crate) fn join(&self, reference: &str) -> Result<Self, String> {
        let reference = without_fragment(reference.trim());
        if split_scheme(reference).is_some() {
            return Self::parse(reference);
        }
        if reference.starts_with("//") {
            return Self::parse(&format!("{}:{reference}", self.scheme()));
        }
        let path = self.path_and_query.split_once('?').map_or(self.path_and_query.as_str(), |(path, _)| path);
        let joined = if reference.is_empty() {
            self.path_and_query.clone()
        } else if reference.starts_with('?') {
            format!("{path}{reference}")
        } else {
            let (reference_path, reference_query) = match reference.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (reference, None),
            };
            let merged = if reference_path.starts_with('/') {
                reference_path.to_owned()
            } else {
                let directory = &path[..path.rfind('/').map_or(0, |slash| slash + 1)];
                format!("{directory}{reference_path}")
            };
            let mut resolved = remove_dot_segments(&merged);
            if !resolved.starts_with('/') {
                resolved.insert(0, '/');
            }
            match reference_query {
                Some(query) => format!("{resolved}?{query}"),
                None => resolved,
            }
        };
        Ok(Self { https: self.https, authority: self.authority.clone(), path_and_query: encoded(&joined)? })
    }

    /// `http` or `https`.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// Whether the scheme is `https`.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn is_https(&self) -> bool {
        self.https
    }

    /// The host, lowercased, with its port if the URL names one.
    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    /// The path and the query, as the request line has them.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// Whether `other` has the same scheme and authority (the same origin).
    pub(crate) fn same_origin(&self, other: &Self) -> bool {
        self.https == other.https && self.authority == other.authority
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), self.authority, self.path_and_query)
    }
}

/// `text` up to its `#`, if any.
fn without_fragment(text: &str) -> &str {
    text.split_once('#').map_or(text, |(before, _)| before)
}

/// The scheme of `text` and what follows its `:`, if it starts with one.
fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// `authority` lowercased, or why it is no host with an optional port.
fn checked_authority(authority: &str) -> Result<String, String> {
    if authority.is_empty() {
        return Err("it has no host".to_owned());
    }
    if authority.contains('@') {
        return Err("it holds credentials (user@host): send them in a header instead".to_owned());
    }
    if let Some(bad) = authority.chars().find(|c| !(c.is_ascii_alphanumeric() || "-._~:[]%".contains(*c))) {
        return Err(format!("its host holds {bad:?}"));
    }
    let host_end = if authority.starts_with('[') {
        authority.find(']').map(|end| end + 1).ok_or_else(|| "its IPv6 address has no closing ]".to_owned())?
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let (host, port) = authority.split_at(host_end);
    if host.is_empty() || host == "[]" {
        return Err("it has no host".to_owned());
    }
    if let Some(port) = port.strip_prefix(':') {
        if port.parse::<u16>().is_err() {
            return Err(format!("its port {port:?} is no number from 0 to 65535"));
        }
    } else if !port.is_empty() {
        return Err(format!("{port:?} follows its host"));
    }
    Ok(authority.to_ascii_lowercase())
}

/// `text` with every byte outside printable ASCII percent-encoded, or why
/// it cannot be sent (whitespace or a control character).
fn encoded(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_whitespace() || c.is_ascii_control() {
            return Err(format!("its path holds {c:?}: percent-encode it"));
        }
        if c.is_ascii() {
            out.push(c);
        } else {
            for byte in c.encode_utf8(&mut [0; 4]).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    Ok(out)
}

/// `path` without its `.` and `..` segments (RFC 3986, 5.2.4).
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut output = String::with_capacity(path.len());
    let pop = |output: &mut String| output.truncate(output.rfind('/').unwrap_or(0));
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../").or_else(|| input.strip_prefix("./")) {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            pop(&mut output);
        } else if input == "/.." {
            input = "/";
            pop(&mut output);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |slash| slash + start);
            output.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|reason| panic!("{text}: {reason}"))
    }

    #[test]
    fn reads_http_and_https_urls() {
        let plain = url("HTTP://Example.COM:8080/a/b?x=1#frag");
        assert_eq!(
            (plain.scheme(), plain.authority(), plain.path_and_query()),
            ("http", "example.com:8080", "/a/b?x=1")
        );
        assert_eq!(plain.to_string(), "http://example.com:8080/a/b?x=1");
        assert_eq!(url("https://h").to_string(), "https://h/");
        assert_eq!(url("https://h?q=1").to_string(), "https://h/?q=1");
        assert_eq!(url("http://[::1]:9100/x").authority(), "[::1]:9100");
        assert_eq!(url("http://h/caf\u{e9}").path_and_query(), "/caf%C3%A9");
        assert!(url("https://h").is_https() && !url("http://h").is_https());
    }

    #[test]
    fn refuses_what_is_no_http_url() {
        for (text, reason) in [
            ("example.com/x", "no scheme"),
            ("ftp://h/x", "only http and https"),
            ("http:/h", "no host"),
            ("http:///x", "no host"),
            ("http://u:p@h/", "credentials"),
            ("http://h:99999/", "port"),
            ("http://h:x/", "port"),
            ("http://h/a b", "percent-encode"),
            ("http://h h/", "host holds"),
        ] {
            let error = Url::parse(text).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn resolves_references_as_rfc_3986_does() {
        let base = url("http://a/b/c/d;p?q");
        for (reference, expected) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("g/../h", "http://a/b/c/h"),
            ("https://other:8443/x", "https://other:8443/x"),
        ] {
            assert_eq!(base.join(reference).map(|u| u.to_string()), Ok(expected.to_owned()), "{reference}");
        }
        assert!(base.join("mailto:x@y").unwrap_err().contains("only http and https"));
    }

    #[test]
    fn origins_compare_scheme_and_authority() {
        assert!(url("http://h:1/a").same_origin(&url("http://H:1/b?c")));
        assert!(!url("http://h/").same_origin(&url("https://h/")));
        assert!(!url("http://h/").same_origin(&url("http://h:81/")));
    }
}
