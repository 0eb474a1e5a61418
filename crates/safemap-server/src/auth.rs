//! Tokens and roles (http-api.md, "Authentication" and "Tokens").
//!
//! A token is `smp_` followed by 64 hex digits (32 bytes from the OS random
//! source). Only its SHA-256 is kept, in memory and on disk; a presented token
//! is hashed and compared against every stored hash with a constant-time
//! comparison (`subtle`). Token lookups scan all tokens, so their number is
//! bounded by [`MAX_TOKENS`].

use std::sync::RwLock;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::storage::StoredToken;

/// Most tokens the server holds.
pub const MAX_TOKENS: usize = 1000;
/// Name of the token created on first start.
pub const ADMIN_TOKEN_NAME: &str = "admin";

/// A role a token can carry. `Admin` implies every other role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// GET entries, lists, audit, watch.
    Read,
    /// PUT, refresh.
    Write,
    /// DELETE, delete plans.
    Delete,
    /// restore, tokens, pprof; implies all.
    Admin,
}

impl Role {
    /// The role's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Delete => "delete",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "read" => Role::Read,
            "write" => Role::Write,
            "delete" => Role::Delete,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    /// Every role, in order.
    pub const ALL: [Role; 4] = [Role::Read, Role::Write, Role::Delete, Role::Admin];
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token name (the audit `actor`).
    pub name: String,
    /// Roles of the token.
    pub roles: Vec<Role>,
}

impl Principal {
    /// Whether the caller has `role` (admin has every role).
    pub fn has(&self, role: Role) -> bool {
        self.roles.iter().any(|r| *r == role || *r == Role::Admin)
    }
}

#[derive(Debug, Clone)]
struct TokenEntry {
    name: String,
    roles: Vec<Role>,
    hash: [u8; 32],
}

/// The in-memory token table (the durable copy lives in storage).
#[derive(Debug, Default)]
pub struct Tokens {
    entries: RwLock<Vec<TokenEntry>>,
}

/// Makes a new random token: `smp_` + 64 hex digits.
pub fn generate_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no OS randomness: {e}"))?;
    Ok(format!("smp_{}", hex(&bytes)))
}

/// SHA-256 of a token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let txt = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(txt, 16).ok()?;
    }
    Some(out)
}

impl Tokens {
    /// Loads stored tokens; rows with a bad hash or unknown role are skipped with an error log.
    pub fn from_stored(stored: &[StoredToken]) -> Tokens {
        let mut v = Vec::new();
        for t in stored {
            let roles: Option<Vec<Role>> = t.roles.iter().map(|r| Role::parse(r)).collect();
            match (unhex32(&t.sha256), roles) {
                (Some(hash), Some(roles)) => v.push(TokenEntry {
                    name: t.name.clone(),
                    roles,
                    hash,
                }),
                _ => tracing::error!(name = %t.name, "skipping a malformed stored token"),
            }
        }
        Tokens {
            entries: RwLock::new(v),
        }
    }

    /// Finds the token, comparing hashes in constant time.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let h = hash_token(token);
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for e in entries.iter() {
            if bool::from(e.hash.ct_eq(&h)) {
                found = Some(Principal {
                    name: e.name.clone(),
                    roles: e.roles.clone(),
                });
            }
        }
        found
    }

    /// Names and roles, sorted by name.
    pub fn list(&self) -> Vec<(String, Vec<Role>)> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = entries
            .iter()
            .map(|e| (e.name.clone(), e.roles.clone()))
            .collect();
        v.sort();
        v
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a token of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.iter().any(|e| e.name == name)
    }

    /// Whether `name` is the only token with the admin role.
    pub fn is_last_admin(&self, name: &str) -> bool {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let admins: Vec<_> = entries
            .iter()
            .filter(|e| e.roles.contains(&Role::Admin))
            .collect();
        admins.len() == 1 && admins[0].name == name
    }

    /// Adds a token (after it was stored durably).
    pub fn insert(&self, stored: &StoredToken) {
        let t = Tokens::from_stored(std::slice::from_ref(stored));
        let new = t.entries.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.name != stored.name);
        entries.extend(new);
    }

    /// Removes a token at once.
    pub fn remove(&self, name: &str) -> bool {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let before = entries.len();
        entries.retain(|e| e.name != name);
        entries.len() != before
    }
}

/// Builds the stored form of a new token.
pub fn stored_token(name: &str, roles: &[Role], token: &str) -> StoredToken {
    StoredToken {
        name: name.to_string(),
        roles: roles.iter().map(|r| r.as_str().to_string()).collect(),
        sha256: hex(&hash_token(token)),
    }
}

/// Parses `Authorization: Bearer <token>`.
pub fn bearer(header: Option<&axum::http::HeaderValue>) -> Option<&str> {
    let v = header?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let t = rest.trim();
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_authenticate_by_hash() {
        let tok = generate_token().unwrap();
        assert_eq!(tok.len(), 4 + 64);
        let t = Tokens::default();
        t.insert(&stored_token("ci", &[Role::Read, Role::Write], &tok));
        let p = t.authenticate(&tok).unwrap();
        assert_eq!(p.name, "ci");
        assert!(p.has(Role::Write) && !p.has(Role::Delete));
        assert!(t.authenticate("smp_wrong").is_none());
        assert!(t.remove("ci"));
        assert!(t.authenticate(&tok).is_none());
    }

    #[test]
    fn admin_implies_all_and_last_admin() {
        let t = Tokens::default();
        t.insert(&stored_token("admin", &[Role::Admin], "x"));
        let p = t.authenticate("x").unwrap();
        assert!(Role::ALL.iter().all(|r| p.has(*r)));
        assert!(t.is_last_admin("admin"));
        t.insert(&stored_token("ops", &[Role::Admin], "y"));
        assert!(!t.is_last_admin("admin"));
    }

    #[test]
    fn bearer_parsing() {
        use axum::http::HeaderValue;
        let h = HeaderValue::from_static("Bearer abc");
        assert_eq!(bearer(Some(&h)), Some("abc"));
        let h = HeaderValue::from_static("Basic abc");
        assert_eq!(bearer(None), None);
        assert_eq!(bearer(Some(&h)), None);
        let h = HeaderValue::from_static("Bearer ");
        assert_eq!(bearer(Some(&h)), None);
    }
}
