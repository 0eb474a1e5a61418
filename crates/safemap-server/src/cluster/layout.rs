//! Where things live under the prefix (STORAGE.md, "The etcd store"):
//!
//! | key | value |
//! |---|---|
//! | `<prefix>maps/<M>/keys/<K percent-encoded>` | the entry's JSON value, verbatim |
//! | `<prefix>audit/<32 hex digits, random>` | an audit record (JSON); its id is the key's `mod_revision` |
//! | `<prefix>tokens/<name>` | a token: name, roles, SHA-256 of the secret (JSON) |
//! | `<prefix>meta/bootstrap` | set in the transaction that created the admin token |
//! | `<prefix>meta/policies` | the `[maps]` policies every server must run (JSON) |
//! | `<prefix>breaker/<M>/<i>` | slot `i` of map M's delete breaker: the time (ms) of the delete that took it |
//! | `<prefix>plans/<plan id>` | a delete plan (`{"plan": <the local plans row>, "created_by", "executed_by"?}`): pending with its pinned keys, or executed (a tombstone) |

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::names::is_valid_name;

/// What a URL path segment leaves unencoded: RFC 3986's unreserved characters.
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A key under the prefix, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// An entry (map, key).
    Entry(String, String),
    /// An audit record.
    Audit,
    /// A token, by name.
    Token(String),
    /// A delete plan, by id (as written: 16 hex digits when it is ours).
    Plan(String),
    /// Bookkeeping (`meta/...`) or anything this version does not know.
    Other,
}

/// The keys of one prefix.
#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// The layout under `prefix` (ends with `/`, checked by the configuration).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of entry (map, key).
    pub fn entry(&self, map: &str, key: &str) -> String {
        format!(
            "{}maps/{map}/keys/{}",
            self.prefix,
            utf8_percent_encode(key, KEY_SET)
        )
    }

    /// A fresh audit key (128 random bits: unique without coordination).
    pub fn new_audit(&self) -> Result<String, String> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for an audit key: {e}"))?;
        Ok(format!("{}audit/{}", self.prefix, crate::auth::hex(&bytes)))
    }

    /// The key of token `name`.
    pub fn token(&self, name: &str) -> String {
        format!("{}tokens/{name}", self.prefix)
    }

    /// The key of delete plan `id`.
    pub fn plan(&self, id: &str) -> String {
        format!("{}plans/{id}", self.prefix)
    }

    /// The prefix of every delete plan.
    pub fn plans(&self) -> String {
        format!("{}plans/", self.prefix)
    }

    /// The prefix of map `map`'s entries.
    pub fn entries(&self, map: &str) -> String {
        format!("{}maps/{map}/keys/", self.prefix)
    }

    /// The prefix of map `map`'s breaker slots.
    pub fn breaker(&self, map: &str) -> String {
        format!("{}breaker/{map}/", self.prefix)
    }

    /// The key holding the `[maps]` policies every server must run.
    pub fn policies(&self) -> String {
        format!("{}meta/policies", self.prefix)
    }

    /// The key set when the admin token is created.
    pub fn bootstrap(&self) -> String {
        format!("{}meta/bootstrap", self.prefix)
    }

    /// What a key under the prefix is (`None`: not under the prefix, or not
    /// one of ours: a map name that is not valid, a key that does not decode).
    pub fn slot(&self, raw: &[u8]) -> Option<Slot> {
        let s = std::str::from_utf8(raw).ok()?;
        let rest = s.strip_prefix(&self.prefix)?;
        if let Some(m) = rest.strip_prefix("maps/") {
            let (map, key) = m.split_once("/keys/")?;
            if !is_valid_name(map) {
                return None;
            }
            let key = percent_decode_str(key).decode_utf8().ok()?.into_owned();
            if key.is_empty() {
                return None;
            }
            return Some(Slot::Entry(map.to_string(), key));
        }
        if rest.starts_with("audit/") {
            return Some(Slot::Audit);
        }
        if let Some(id) = rest.strip_prefix("plans/") {
            return Some(Slot::Plan(id.to_string()));
        }
        if let Some(name) = rest.strip_prefix("tokens/") {
            return Some(Slot::Token(name.to_string()));
        }
        Some(Slot::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_round_trip_through_percent_encoding() {
        let l = Layout::new("/safemap/");
        let k = l.entry("orders", "a b/c%d~é");
        assert_eq!(k, "/safemap/maps/orders/keys/a%20b%2Fc%25d~%C3%A9");
        assert_eq!(
            l.slot(k.as_bytes()),
            Some(Slot::Entry("orders".into(), "a b/c%d~é".into()))
        );
        assert_eq!(l.slot(b"/other/maps/orders/keys/a"), None);
        assert_eq!(l.slot(b"/safemap/maps/Bad!/keys/a"), None);
        assert_eq!(
            l.slot(b"/safemap/tokens/ci"),
            Some(Slot::Token("ci".into()))
        );
        assert_eq!(l.slot(l.new_audit().unwrap().as_bytes()), Some(Slot::Audit));
        assert_eq!(
            l.slot(l.plan("00ff00ff00ff00ff").as_bytes()),
            Some(Slot::Plan("00ff00ff00ff00ff".into()))
        );
    }
}
