//! Which hosts a service may reach: its allow-list, granted at deploy time
//! (`?allow_http=`) and capped by the server's (`--allow-http-max`).
//!
//! An entry names a host and, optionally, a port:
//!
//! - `api.example.com`, or `*.example.com` for its subdomains, or `*` for
//!   any host;
//! - `10.0.0.5`, `[::1]`, or an address range `10.0.0.0/8`, `[fd00::/8]`;
//! - then `:8443` for that port, `:*` for any; without a port only the
//!   scheme's default (80 for `http`, 443 for `https`).
//!
//! A request passes when an entry matches its host and port. Then every
//! address its host resolves to is checked: loopback, private, link-local
//! and other addresses that are not on the public internet are reached
//! only when an entry names them explicitly (the address, or a range
//! holding it), so a name cannot resolve its way into the host's own
//! network (DNS rebinding), and `*` means the public internet.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::addresses::{canonical, is_public};

/// The most entries an allow-list may have.
pub const MAX_ENTRIES: usize = 64;

/// Which hosts and ports a service may send HTTP requests to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

/// Why an allow-list entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    /// An entry could not be read.
    #[error(
        "{entry:?} is not a host pattern: {reason} (write a host such as api.example.com, *.example.com, 10.0.0.0/8 or 127.0.0.1:9000)"
    )]
    Invalid {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// More entries than [`MAX_ENTRIES`].
    #[error("an allow-list holds at most {MAX_ENTRIES} hosts")]
    TooMany,
    /// An entry the server's cap does not cover.
    #[error("{0:?} is beyond what this server lets a service reach (--allow-http-max)")]
    BeyondCap(String),
}

/// One entry: a host pattern and a port pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Any host.
    Any,
    /// This name, lowercase.
    Name(String),
    /// Any name ending in `.` and this suffix.
    Subdomains(String),
    /// This address.
    Address(IpAddr),
    /// Any address in this range.
    Range(IpAddr, u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    /// The scheme's default port.
    Default,
    /// This port.
    Port(u16),
    /// Any port.
    Any,
}

/// Where a request goes, as the allow-list sees it.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// The host as the URL names it: a name, lowercase without a trailing
    /// dot, or an address (IPv6 without brackets).
    pub host: &'a str,
    /// The port, the scheme's default when the URL names none.
    pub port: u16,
    /// Whether `port` is its scheme's default.
    pub default_port: bool,
}

impl AllowList {
    /// Reads a comma-separated list; blank items are skipped.
    pub fn parse(list: &str) -> Result<Self, AllowListError> {
        Self::from_entries(list.split(',').map(str::trim).filter(|item| !item.is_empty()))
    }

    /// Reads one entry per item.
    pub fn from_entries<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, AllowListError> {
        let mut entries = Vec::new();
        for item in items {
            let entry = Entry::parse(item)?;
            if !entries.contains(&entry) {
                entries.push(entry);
            }
            if entries.len() > MAX_ENTRIES {
                return Err(AllowListError::TooMany);
            }
        }
        Ok(Self { entries })
    }

    /// Whether the list allows nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries as written back, in order: what is stored and shown.
    pub fn entries(&self) -> Vec<String> {
        self.entries.iter().map(Entry::to_string).collect()
    }

    /// Whether an entry matches the destination's host and port.
    pub fn allows(&self, to: &Destination<'_>) -> bool {
        self.entries.iter().any(|entry| entry.port.matches(to) && entry.host.matches_host(to.host))
    }

    /// Whether the destination may be reached at `address`, one of the
    /// addresses its host resolved to: any public address, or one an
    /// entry with a matching port names explicitly.
    pub fn allows_address(&self, to: &Destination<'_>, address: IpAddr) -> bool {
        let address = canonical(address);
        is_public(address)
            || self.entries.iter().any(|entry| entry.port.matches(to) && entry.host.names_address(address))
    }

    /// Refuses the first entry of `self` that no entry of `cap` covers.
    pub fn check_within(&self, cap: &AllowList) -> Result<(), AllowListError> {
        match self.split_by(cap).1.into_iter().next() {
            Some(beyond) => Err(AllowListError::BeyondCap(beyond)),
            None => Ok(()),
        }
    }

    /// The entries of `self` that `cap` covers, and those it does not, as
    /// written.
    pub fn split_by(&self, cap: &AllowList) -> (AllowList, Vec<String>) {
        let (within, beyond): (Vec<Entry>, Vec<Entry>) =
            self.entries.iter().cloned().partition(|entry| cap.entries.iter().any(|limit| limit.covers(entry)));
        (AllowList { entries: within }, beyond.iter().map(Entry::to_string).collect())
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entries().join(","))
    }
}

impl Entry {
    fn parse(text: &str) -> Result<Self, AllowListError> {
        let invalid = |reason| AllowListError::Invalid { entry: text.to_owned(), reason };
        if text.contains("://") {
            return Err(invalid("name the host without a scheme"));
        }
        if text.contains(['/', '?', '#', '@']) && !looks_like_range(text) {
            return Err(invalid("name the host alone, without a path, query or user"));
        }
        let (host, port) = split_port(text).map_err(invalid)?;
        let port = match port {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => PortPattern::Port(port),
                _ => return Err(invalid("the port must be a number from 1 to 65535, or *")),
            },
        };
        Ok(Self { host: HostPattern::parse(host).map_err(invalid)?, port })
    }

    /// Whether everything `other` allows, `self` allows too.
    fn covers(&self, other: &Entry) -> bool {
        let port = match (self.port, other.port) {
            (PortPattern::Any, _) => true,
            (mine, theirs) => mine == theirs,
        };
        port && self.host.covers(&other.host)
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v6 = matches!(self.host, HostPattern::Address(IpAddr::V6(_)) | HostPattern::Range(IpAddr::V6(_), _));
        match (&self.host, v6, self.port) {
            (host, true, PortPattern::Default) => write!(f, "[{host}]"),
            (host, true, port) => write!(f, "[{host}]:{port}"),
            (host, false, PortPattern::Default) => write!(f, "{host}"),
            (host, false, port) => write!(f, "{host}:{port}"),
        }
    }
}

impl fmt::Display for PortPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortPattern::Default => Ok(()),
            PortPattern::Port(port) => write!(f, "{port}"),
            PortPattern::Any => f.write_str("*"),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Any => f.write_str("*"),
            HostPattern::Name(name) => f.write_str(name),
            HostPattern::Subdomains(suffix) => write!(f, "*.{suffix}"),
            HostPattern::Address(address) => write!(f, "{address}"),
            HostPattern::Range(base, bits) => write!(f, "{base}/{bits}"),
        }
    }
}

impl PortPattern {
    fn matches(self, to: &Destination<'_>) -> bool {
        match self {
            PortPattern::Default => to.default_port,
            PortPattern::Port(port) => port == to.port,
            PortPattern::Any => true,
        }
    }
}

impl HostPattern {
    fn parse(host: &str) -> Result<Self, &'static str> {
        if host == "*" {
            return Ok(HostPattern::Any);
        }
        if let Some((base, bits)) = host.split_once('/') {
            let base: IpAddr = base.parse().map_err(|_| "a range is an address, a slash and a prefix length")?;
            let max = if base.is_ipv4() { 32 } else { 128 };
            let bits: u8 = bits.parse().ok().filter(|bits| *bits <= max).ok_or("the prefix length is too long")?;
            // An IPv4 range written as IPv6 (`::ffff:10.0.0.0/104`) is that
            // IPv4 range (`10.0.0.0/8`).
            let (base, bits) = match (base, canonical(base)) {
                (IpAddr::V6(_), IpAddr::V4(v4)) if bits >= 96 => (IpAddr::V4(v4), bits - 96),
                (IpAddr::V6(_), IpAddr::V4(_)) => return Err("an IPv4-mapped range needs a prefix of at least 96"),
                (_, base) => (base, bits),
            };
            return Ok(HostPattern::Range(network(base, bits), bits));
        }
        if let Ok(address) = host.parse::<IpAddr>() {
            return Ok(HostPattern::Address(canonical(address)));
        }
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, name) = match name.strip_prefix("*.") {
            Some(suffix) => (true, suffix.to_owned()),
            None => (false, name),
        };
        if !is_dns_name(&name) {
            return Err("a host name is letters, digits, hyphens and dots, up to 253 characters");
        }
        Ok(if wildcard { HostPattern::Subdomains(name) } else { HostPattern::Name(name) })
    }

    /// Whether the pattern matches a URL's host (a name or an address).
    fn matches_host(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Name(name) => name == host,
            HostPattern::Subdomains(suffix) => is_subdomain(host, suffix),
            HostPattern::Address(_) | HostPattern::Range(..) => {
                host.parse::<IpAddr>().is_ok_and(|address| self.names_address(canonical(address)))
            }
        }
    }

    /// Whether the pattern names `address` explicitly.
    fn names_address(&self, address: IpAddr) -> bool {
        match *self {
            HostPattern::Address(listed) => listed == address,
            HostPattern::Range(base, bits) => same_family(base, address) && network(address, bits) == base,
            _ => false,
        }
    }

    /// Whether every host `other` matches, `self` matches too.
    fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            // `*` is the public internet: it covers no address off it, and
            // no range (which may reach off it); only an entry naming them
            // does.
            (HostPattern::Any, HostPattern::Address(address)) => is_public(*address),
            (HostPattern::Any, HostPattern::Range(..)) => false,
            (HostPattern::Any, _) => true,
            (HostPattern::Name(mine), HostPattern::Name(theirs)) => mine == theirs,
            (HostPattern::Subdomains(suffix), HostPattern::Name(name)) => is_subdomain(name, suffix),
            (HostPattern::Subdomains(suffix), HostPattern::Subdomains(theirs)) => {
                suffix == theirs || is_subdomain(theirs, suffix)
            }
            (HostPattern::Address(mine), HostPattern::Address(theirs)) => mine == theirs,
            (HostPattern::Range(..), HostPattern::Address(address)) => self.names_address(*address),
            (HostPattern::Range(base, bits), HostPattern::Range(theirs, their_bits)) => {
                their_bits >= bits && same_family(*base, *theirs) && network(*theirs, *bits) == *base
            }
            _ => false,
        }
    }
}

/// Splits `host:port`, `[v6]:port`, `[v6]` or a bare host (a bare IPv6
/// address has no port).
fn split_port(text: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("a bracketed IPv6 address needs its closing ]")?;
        return match after {
            "" => Ok((host, None)),
            _ => after.strip_prefix(':').map(|port| (host, Some(port))).ok_or("only :port may follow ]"),
        };
    }
    if text.matches(':').count() > 1 {
        return Ok((text, None));
    }
    Ok(match text.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    })
}

fn looks_like_range(text: &str) -> bool {
    let host = text.trim_start_matches('[');
    host.split_once('/').is_some_and(|(base, _)| base.parse::<IpAddr>().is_ok())
}

fn is_subdomain(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() + 1 && name.ends_with(suffix) && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// The first address of the range of `address` with a prefix of `bits`.
fn network(address: IpAddr, bits: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(host: &str, port: u16, default_port: bool) -> Destination<'_> {
        Destination { host, port, default_port }
    }

    #[test]
    fn entries_read_and_write_back() {
        let list = AllowList::parse(
            " api.Example.com, *.example.org:8443,127.0.0.1:9000 , [::1]:*, 10.1.2.3/8, [fd00::1/8], *,, api.example.com",
        )
        .unwrap();
        assert_eq!(
            list.entries(),
            ["api.example.com", "*.example.org:8443", "127.0.0.1:9000", "[::1]:*", "10.0.0.0/8", "[fd00::/8]", "*"]
        );
        assert_eq!(AllowList::parse(&list.to_string()).unwrap(), list, "what is written back reads the same");
        let mapped = AllowList::parse("[::ffff:10.0.0.0/104]:*").unwrap();
        assert_eq!(mapped.entries(), ["10.0.0.0/8:*"], "an IPv4 range written as IPv6");
        assert!(AllowList::parse("[::ffff:10.0.0.0/90]").is_err());
        assert!(AllowList::parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        for bad in [
            "https://api.example.com",
            "api.example.com/path",
            "user@host",
            "host:0",
            "host:99999",
            "host:abc",
            "bad_host!",
            "10.0.0.0/33",
            "[::1",
            "[::1]x",
            "-leading.example.com",
        ] {
            let error = AllowList::parse(bad).unwrap_err();
            assert!(matches!(error, AllowListError::Invalid { .. }), "{bad}: {error}");
        }
        let many: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("h{i}.example.com")).collect();
        assert_eq!(AllowList::parse(&many.join(",")), Err(AllowListError::TooMany));
    }

    #[test]
    fn hosts_and_ports_match() {
        let list = AllowList::parse("api.example.com,*.example.org:8443,127.0.0.1:9000,10.0.0.0/8:*").unwrap();
        assert!(list.allows(&to("api.example.com", 443, true)));
        assert!(list.allows(&to("api.example.com", 80, true)));
        assert!(!list.allows(&to("api.example.com", 8080, false)), "only the default port");
        assert!(!list.allows(&to("evil.api.example.com", 443, true)));
        assert!(list.allows(&to("a.b.example.org", 8443, false)));
        assert!(!list.allows(&to("example.org", 8443, false)), "subdomains only");
        assert!(!list.allows(&to("notexample.org", 8443, false)));
        assert!(list.allows(&to("127.0.0.1", 9000, false)));
        assert!(!list.allows(&to("127.0.0.1", 9001, false)));
        assert!(list.allows(&to("10.9.8.7", 1234, false)));
        assert!(!list.allows(&to("11.0.0.1", 1234, false)));
    }

    #[test]
    fn addresses_off_the_internet_need_naming() {
        let list = AllowList::parse("*:*,localhost:9000,127.0.0.1:9000,10.0.0.0/8:*").unwrap();
        let public = "93.184.215.14".parse().unwrap();
        assert!(list.allows_address(&to("example.com", 443, true), public));
        let loopback = "127.0.0.1".parse().unwrap();
        assert!(list.allows_address(&to("localhost", 9000, false), loopback), "the address is listed");
        assert!(!list.allows_address(&to("localhost", 9001, false), loopback), "for another port only");
        assert!(!list.allows_address(&to("rebound.example.com", 80, true), "192.168.1.1".parse().unwrap()));
        assert!(list.allows_address(&to("internal", 80, true), "10.2.3.4".parse().unwrap()));
        let mapped = "::ffff:127.0.0.1".parse().unwrap();
        assert!(!list.allows_address(&to("x", 9001, false), mapped), "an IPv4-mapped address is IPv4");
        let only_name = AllowList::parse("localhost:9000").unwrap();
        assert!(!only_name.allows_address(&to("localhost", 9000, false), loopback), "a name is not an address");
    }

    #[test]
    fn a_cap_covers_narrower_entries() {
        let cap = AllowList::parse("*.example.com,api.partner.net:*,10.0.0.0/8:*,127.0.0.1:9000").unwrap();
        let within =
            AllowList::parse("a.example.com,*.b.example.com,api.partner.net:8443,10.1.0.0/16:80,127.0.0.1:9000");
        assert_eq!(within.unwrap().check_within(&cap), Ok(()));
        for beyond in
            ["example.com", "a.example.com:8443", "partner.net", "11.0.0.0/8", "0.0.0.0/0:*", "127.0.0.1:9001"]
        {
            let list = AllowList::parse(beyond).unwrap();
            assert!(matches!(list.check_within(&cap), Err(AllowListError::BeyondCap(_))), "{beyond}");
        }
        let (within, beyond) = AllowList::parse("a.example.com,11.0.0.0/8").unwrap().split_by(&cap);
        assert_eq!((within.entries(), beyond), (vec!["a.example.com".to_string()], vec!["11.0.0.0/8".to_string()]));
        let public = AllowList::parse("*:*").unwrap();
        assert_eq!(AllowList::parse("anything.at.all:1,93.184.215.14:443").unwrap().check_within(&public), Ok(()));
        for private in ["10.0.0.0/8", "127.0.0.1:9000", "169.254.169.254", "[::1]:*", "0.0.0.0/0:*"] {
            let list = AllowList::parse(private).unwrap();
            assert!(list.check_within(&public).is_err(), "* is the public internet, not {private}");
        }
    }
}
