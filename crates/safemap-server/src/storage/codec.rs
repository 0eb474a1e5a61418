//! Encoding of stored rows: entries, audit records and tokens are JSON objects
//! (values are JSON documents already, and JSON keeps the file inspectable with
//! any redb dump tool). Decoding never panics: a row that does not decode is
//! reported and skipped by recovery (see STORAGE.md).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the on-disk format, stored in `meta.format`: 1 was redb alone,
/// 2 adds the write-ahead log (rows unchanged), 3 adds delete plans (the
/// `plans` table and log records of kind 4), 4 adds the tree of a cascading
/// plan to its row (`tree`, absent for other plans), 5 adds the `plan_audit`
/// index (built at the first start on an older file), 6 adds `audit_maps`
/// (the maps named in the audit history, built likewise). A server refuses a
/// database of a newer format rather than ignore what it cannot read.
pub const FORMAT_VERSION: u64 = 6;

/// A live entry, the row of the `entries` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredEntry {
    /// The current value.
    pub value: Value,
    /// Revision of the last write.
    pub revision: u64,
    /// Revision that created the entry.
    pub create_revision: u64,
    /// Writes since creation, starting at 1.
    pub version: u64,
}

/// The operation of an audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredOp {
    /// A put (insert, replace, refresh).
    Put,
    /// A delete (single key or planned).
    Delete,
    /// A restore of a deleted value.
    Restore,
}

/// The fields of an audit row that filters, the prune pass and the breakers'
/// scan at start look at, read without decoding the values (a scan over many
/// rows decodes a row whole only when it matches).
#[derive(Debug, Deserialize)]
pub struct RecordHead<'a> {
    /// Time of the write, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Map name.
    #[serde(borrow)]
    pub map: std::borrow::Cow<'a, str>,
    /// Key.
    #[serde(borrow)]
    pub key: std::borrow::Cow<'a, str>,
    /// Operation.
    pub op: StoredOp,
    /// Delete plan id.
    #[serde(borrow)]
    pub plan_id: Option<std::borrow::Cow<'a, str>>,
}

/// An audit record, the row of the `audit` table (key: audit id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredRecord {
    /// Audit id (also the row key).
    pub id: u64,
    /// Time of the write, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Map name.
    pub map: String,
    /// Key.
    pub key: String,
    /// Operation.
    pub op: StoredOp,
    /// Revision of this write.
    pub revision: u64,
    /// Revision of the entry before this write, if it existed.
    pub previous_revision: Option<u64>,
    /// Create revision of the entry after this write (of the removed entry for deletes).
    pub create_revision: u64,
    /// Version of the entry after this write (of the removed entry for deletes).
    pub version: u64,
    /// Reason given by the client.
    pub reason: Option<String>,
    /// Name of the token that made the request.
    pub actor: Option<String>,
    /// 32-hex trace id.
    pub trace_id: Option<String>,
    /// Delete plan id (16 hex), for planned deletes and plan restores.
    pub plan_id: Option<String>,
    /// New value of a put or restore (absent when None; JSON null is `Some(Null)`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<Value>,
    /// Value a delete removed.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub previous_value: Option<Value>,
}

#[cfg(test)]
impl StoredRecord {
    /// A single-key delete for tests: revision `id`, previous value `id`.
    pub(crate) fn test_delete(
        id: u64,
        at_ms: u64,
        map: &str,
        key: &str,
        plan: Option<&str>,
    ) -> StoredRecord {
        StoredRecord {
            id,
            at_ms,
            map: map.into(),
            key: key.into(),
            op: StoredOp::Delete,
            revision: id,
            previous_revision: Some(id),
            create_revision: id,
            version: 1,
            reason: None,
            actor: None,
            trace_id: None,
            plan_id: plan.map(str::to_string),
            value: None,
            previous_value: Some(serde_json::json!(id)),
        }
    }
}

/// A field that is present decodes as `Some`, even when it is JSON `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A token, the row of the `tokens` table (key: token name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredToken {
    /// Token name (the `actor` of audit records).
    pub name: String,
    /// Roles: `read`, `write`, `delete`, `admin`.
    pub roles: Vec<String>,
    /// SHA-256 of the token, 64 lowercase hex digits. The token itself is never stored.
    pub sha256: String,
}

/// A delete plan, the row of the `plans` table (key: its id), so that a plan
/// outlives a restart until it expires.
///
/// A pending plan holds its keys; an executed one holds none, and its
/// `expires_at_ms` is the moment it was executed. Either answers `plan_gone`
/// once past `expires_at_ms`, and its row is forgotten [`PLAN_ROW_KEPT_MS`]
/// later (then the plan is unknown: 404).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredPlan {
    /// Plan id, 16 lowercase hex digits (also the row key).
    pub id: String,
    /// Map the plan deletes from.
    pub map: String,
    /// Each planned key with the revision it is pinned at, in key order.
    pub keys: Vec<(String, u64)>,
    /// Until when the plan can be executed, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// Executed (used up): `keys` is empty.
    pub executed: bool,
    /// A cascading plan's whole tree, parents before children, each root's
    /// subtree contiguous (then `keys` holds the roots); absent (empty) for a
    /// plain plan and once executed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tree: Vec<StoredNode>,
}

/// One planned key of a cascading plan's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredNode {
    /// Its map.
    pub map: String,
    /// The key.
    pub key: String,
    /// The revision it is pinned at.
    pub revision: u64,
    /// The planned key it refers to, `(map, key)`; absent for a root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<(String, String)>,
    /// 1 for a root, its parent's depth + 1 otherwise.
    pub depth: u64,
}

/// How long a plan's row is kept past `expires_at_ms`: as long as the library
/// remembers a used or expired plan (answering `plan_gone`, not `not_found`).
pub const PLAN_ROW_KEPT_MS: u64 = 24 * 3600 * 1000;

impl StoredPlan {
    /// Whether the row may be forgotten at `now_ms`.
    pub fn forgotten_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms.saturating_add(PLAN_ROW_KEPT_MS) < now_ms
    }
}

/// Encodes a row.
pub fn encode<T: Serialize>(row: &T) -> Vec<u8> {
    // Serialising these plain structs (strings, integers, JSON values) cannot fail.
    serde_json::to_vec(row).unwrap_or_default()
}

/// Decodes a row; the error says why it is unreadable.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    prop_compose! {
        fn arb_record()(id in any::<u64>(), at_ms in any::<u64>(), key in ".{1,16}",
                        op in prop_oneof![Just(StoredOp::Put), Just(StoredOp::Delete), Just(StoredOp::Restore)],
                        revision in any::<u64>(), prev in proptest::option::of(any::<u64>()),
                        reason in proptest::option::of(".{0,20}"), value in proptest::option::of(arb_json()),
                        previous_value in proptest::option::of(arb_json())) -> StoredRecord {
            StoredRecord { id, at_ms, map: "m".into(), key, op, revision, previous_revision: prev,
                create_revision: 1, version: 1, reason, actor: Some("admin".into()),
                trace_id: None, plan_id: None, value, previous_value }
        }
    }

    proptest! {
        #[test]
        fn plans_round_trip(keys in prop::collection::vec((".{1,16}", any::<u64>()), 0..8),
                            expires_at_ms in any::<u64>(), executed in any::<bool>()) {
            let tree = keys.iter().enumerate().map(|(i, (k, r))| StoredNode {
                map: "m".into(), key: k.clone(), revision: *r,
                parent: (i > 0).then(|| ("m".to_string(), keys[0].0.clone())),
                depth: if i == 0 { 1 } else { 2 },
            }).collect();
            let p = StoredPlan { id: "00ff00ff00ff00ff".into(), map: "m".into(), keys,
                                 expires_at_ms, executed, tree };
            let back: StoredPlan = decode(&encode(&p)).unwrap();
            prop_assert_eq!(back, p);
        }

        #[test]
        fn records_round_trip(r in arb_record()) {
            let back: StoredRecord = decode(&encode(&r)).unwrap();
            prop_assert_eq!(back, r);
        }

        #[test]
        fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<StoredRecord>(&bytes);
            let _ = decode::<StoredEntry>(&bytes);
            let _ = decode::<StoredToken>(&bytes);
            let _ = decode::<StoredPlan>(&bytes);
        }

        #[test]
        fn truncated_rows_are_errors(r in arb_record(), cut in 1usize..64) {
            let bytes = encode(&r);
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(decode::<StoredRecord>(&bytes[..bytes.len() - cut]).is_err());
        }
    }
}
