//! Validation of names and keys, shared by the HTTP layer, the config file and storage.
//!
//! Limits (http-api.md, "Conventions"):
//! - map and token names match `[a-z0-9][a-z0-9_-]{0,63}`;
//! - keys are 1 to [`MAX_KEY_BYTES`] bytes of UTF-8.

/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest map or token name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Whether `name` is a valid map (or token) name: `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME_BYTES {
        return false;
    }
    let first_ok = b[0].is_ascii_lowercase() || b[0].is_ascii_digit();
    first_ok
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Checks a key (already percent-decoded); the error text says what is wrong.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("key is empty (keys are 1 to 1024 bytes of UTF-8)".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "key is {} bytes long; the limit is {MAX_KEY_BYTES} bytes",
            key.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "orders", "0", "a-b_c", &"a".repeat(64)] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "_a", "a.b", "a/b", "ä", &"a".repeat(65)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn keys() {
        assert!(check_key("a/b c").is_ok());
        assert!(check_key(&"k".repeat(1024)).is_ok());
        assert!(check_key(&"k".repeat(1025)).is_err());
        assert!(check_key("").is_err());
    }
}
