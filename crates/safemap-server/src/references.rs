//! The server's side of references (references.md): what a configured
//! reference points at in a JSON value, the 400 for a string that cannot be a
//! key, and the opaque cursors of the referrers and tree pages.
//!
//! Integrity itself (refusing dangling puts and referenced deletes, the
//! referrer index, cascades) is the library's: the server only declares the
//! references when it builds its maps (`state::maps`).

use serde_json::Value;

use crate::config::{Config, Reference};
use crate::error::ApiError;
use crate::library_errors::invalid_reference;
use crate::names::check_key;

impl Config {
    /// The references map `map` declares (none for an unconfigured map).
    pub fn references_of(&self, map: &str) -> &[Reference] {
        self.maps.get(map).map_or(&[], |p| p.references.as_slice())
    }
}

impl Config {
    /// Whether `map` takes part in references: it declares some, or a map
    /// of the file refers to it.
    pub fn has_references(&self, map: &str) -> bool {
        self.maps
            .iter()
            .any(|(name, p)| p.references.iter().any(|r| name == map || r.to == map))
    }
}

/// The key `value` names through the reference called `name`, if it names one.
pub fn target_of(references: &[Reference], value: &Value, name: &str) -> Option<String> {
    let r = references.iter().find(|r| r.name == name)?;
    value.pointer(&r.pointer)?.as_str().map(str::to_owned)
}

/// 400 `invalid_reference` when a reference of `value` holds a string that
/// cannot be a key (empty, or over 1024 bytes). Absent or non-string: it
/// refers to nothing, which is fine. `entry` names the refresh entry.
pub fn check_value(
    references: &[Reference],
    value: &Value,
    entry: Option<&str>,
) -> Result<(), ApiError> {
    for r in references {
        if let Some(Value::String(key)) = value.pointer(&r.pointer) {
            check_key(key).map_err(|problem| invalid_reference(&r.name, &problem, entry))?;
        }
    }
    Ok(())
}

/// 400 `invalid_query`: `after` is not a cursor of the route's shape.
pub fn bad_cursor() -> ApiError {
    ApiError::bad_request(
        "invalid_query",
        "after is not a cursor this route gave (pass back `next` as it came)",
    )
    .with_details(serde_json::json!({"parameter": "after"}))
}

/// An opaque page cursor naming a position by text parts (the referrers
/// route: map, key, reference): each part hex-encoded, joined by `.`. Any
/// string of that shape is a position (bytes that are not UTF-8 are read
/// lossily), so the OpenAPI pattern describes exactly what is accepted.
pub fn encode_cursor(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.bytes().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(".")
}

/// The parts of a cursor from [`encode_cursor`]; 400 `invalid_query` when
/// it is not `n` hex parts joined by `.`.
pub fn decode_cursor(cursor: &str, n: usize) -> Result<Vec<String>, ApiError> {
    let parts: Vec<&str> = cursor.trim().split('.').collect();
    if parts.len() != n {
        return Err(bad_cursor());
    }
    parts
        .into_iter()
        .map(|part| {
            if part.len() % 2 != 0 {
                return None;
            }
            let bytes = (0..part.len())
                .step_by(2)
                .map(|i| {
                    part.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()?;
            Some(String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect::<Option<Vec<String>>>()
        .ok_or_else(bad_cursor)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn cursors_round_trip_and_garbage_is_a_400() {
        let parts = ["order_items", "i/1 ü.x", ""];
        assert_eq!(decode_cursor(&encode_cursor(&parts), 3).unwrap(), parts);
        for bad in ["x", "zz..", "0..", "7b", "éé..", "00.00"] {
            assert_eq!(decode_cursor(bad, 3).unwrap_err().code, "invalid_query");
        }
        assert_eq!(decode_cursor("ff.c3.", 3).unwrap()[0], "\u{fffd}");
    }

    #[test]
    fn values_whose_reference_cannot_be_a_key_are_refused() {
        let refs = vec![Reference {
            name: "order".into(),
            pointer: "/order_id".into(),
            to: "orders".into(),
            on_delete: safemap::OnDelete::Restrict,
        }];
        assert!(check_value(&refs, &json!({"order_id": "o-1"}), None).is_ok());
        assert!(check_value(&refs, &json!({"order_id": 5}), None).is_ok());
        assert!(check_value(&refs, &json!({}), None).is_ok());
        let e = check_value(&refs, &json!({"order_id": ""}), None).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, "invalid_reference"));
        let long = "x".repeat(1025);
        assert!(check_value(&refs, &json!({"order_id": long}), Some("i-1")).is_err());
        assert_eq!(
            target_of(&refs, &json!({"order_id": "o-1"}), "order").as_deref(),
            Some("o-1")
        );
    }
}
