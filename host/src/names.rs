//! Validation of the names that become journal keys: service names and entity ids.

/// The longest service name accepted.
pub const MAX_SERVICE_NAME: usize = 64;
/// The longest entity id accepted, in bytes.
pub const MAX_ENTITY_ID: usize = 256;

/// Checks a service name: 1 to 64 ASCII letters, digits, `-`, `_` or `.`,
/// starting with a letter or digit.
pub fn validate_service_name(name: &str) -> Result<(), String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_SERVICE_NAME {
        return Err(format!("a service name must be 1 to {MAX_SERVICE_NAME} characters long"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.chars().all(valid_char) {
        return Err(format!(
            "invalid service name {name:?}: use ASCII letters, digits, '-', '_' and '.', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks an entity id: 1 to 256 bytes of UTF-8 with no control characters and no `/`.
pub fn validate_entity_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ENTITY_ID {
        return Err(format!("an entity id must be 1 to {MAX_ENTITY_ID} bytes long"));
    }
    if id.chars().any(|c| c.is_control() || c == '/') {
        return Err(format!("invalid entity id {id:?}: control characters and '/' are not allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        for ok in ["shopping-cart", "counter", "a", "v1.cart_2", &"x".repeat(64)] {
            assert!(validate_service_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-cart", ".hidden", "a/b", "a b", "ünicode", &"x".repeat(65), "..", "a\0"] {
            assert!(validate_service_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn entity_ids() {
        for ok in ["foo", "user@example.com", "..", "a b", "日本", &"x".repeat(256)] {
            assert!(validate_entity_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a\0b", "line\nbreak", &"x".repeat(257)] {
            assert!(validate_entity_id(bad).is_err(), "{bad:?}");
        }
    }
}
