//! The limits of one etcd transaction in cluster mode, derived from the
//! operator's setting `[store] max_txn_ops` (`--etcd-max-txn-ops`), which
//! must equal (or stay below) etcd's own `--max-txn-ops`.
//!
//! etcd refuses a transaction whose compare list, success list or failure
//! list holds more than `--max-txn-ops` entries ("etcdserver: too many
//! operations in txn request"), and a request over `--max-request-bytes`.
//! Nothing in etcd's API reports either value, so the server takes the
//! operator's word for the first ([`TxnLimits`]) and keeps a fixed bound for
//! the second ([`MAX_TXN_BYTES`], under etcd's default). A setting higher than
//! etcd's makes such transactions fail as a whole: nothing commits, and the
//! server answers 503 `etcd_limit_mismatch` naming both settings.
//!
//! # The invariant
//!
//! A plan's execution is ONE transaction:
//!
//! - compares: the plan key, one per planned key, one per map that refers
//!   into a map the plan deletes from (at most [`REFERRING_MAP_COMPARES`]);
//! - success: one delete per planned key, one audit batch, the tombstone.
//!
//! So `plan_keys + TXN_OPS_RESERVED <= max_txn_ops`, with
//! `TXN_OPS_RESERVED = 1 + REFERRING_MAP_COMPARES` (>= the 2 puts of the
//! success list). A plan's audit records get ids `revision * 1000 + index`,
//! so `plan_keys <= AUDIT_IDS_PER_REVISION` too, which bounds the setting
//! from above ([`MAX_MAX_TXN_OPS`]). A refresh of a map with references puts
//! each entry under a compare of its own and usually one target compare, so
//! it holds half a plan's keys. A single-key write compares its entry and
//! one key per reference target (put, restore) or per referring map and the
//! breaker slot (delete); one that needs more than `max_txn_ops` compares is
//! refused before sending (413 `too_large_for_etcd`, unit "compares"), so
//! `etcd_limit_mismatch` only ever means etcd's limit is below the setting.

/// etcd's `--max-txn-ops` default, and the default of `[store] max_txn_ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;
/// Compares kept for maps that refer into a plan's maps. Only a plan whose
/// maps have more referring maps can exceed `max_txn_ops` compares; it is
/// then refused at execution (413 `plan_too_large`, unit "compares").
pub const REFERRING_MAP_COMPARES: usize = 27;
/// Operations of a plan's execution besides one per planned key: the plan
/// key's compare and the referring maps' compares (the success list's audit
/// batch and tombstone fit within it).
pub const TXN_OPS_RESERVED: usize = 1 + REFERRING_MAP_COMPARES;
/// Audit ids per etcd revision: the record at index `i` of the transaction
/// committed at revision `R` has id `R * AUDIT_IDS_PER_REVISION + i`.
pub const AUDIT_IDS_PER_REVISION: u64 = 1000;
/// Smallest accepted `max_txn_ops` (a plan then holds 4 keys).
pub const MIN_MAX_TXN_OPS: usize = 32;
/// Largest accepted `max_txn_ops`: a plan's records must stay within the
/// audit ids of one revision.
pub const MAX_MAX_TXN_OPS: usize = AUDIT_IDS_PER_REVISION as usize + TXN_OPS_RESERVED;
/// Largest transaction the server sends, in bytes: etcd refuses requests over
/// its `--max-request-bytes` (1.5 MiB by default), less room for keys and
/// framing. Fixed: raising `--max-txn-ops` does not raise it (a plan of many
/// large values is refused at creation, 413 `plan_too_large`, unit "bytes").
pub const MAX_TXN_BYTES: usize = 1_400_000;

const _: () = assert!(DEFAULT_MAX_TXN_OPS - TXN_OPS_RESERVED == 100);
const _: () = assert!(MIN_MAX_TXN_OPS > TXN_OPS_RESERVED);
const _: () = assert!(MAX_MAX_TXN_OPS - TXN_OPS_RESERVED <= AUDIT_IDS_PER_REVISION as usize);

/// The names of the setting, for messages.
pub const SETTING: &str = "[store] max_txn_ops (--etcd-max-txn-ops, SAFEMAP_ETCD_MAX_TXN_OPS)";

/// The limits derived from `max_txn_ops`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnLimits {
    max_txn_ops: usize,
}

impl Default for TxnLimits {
    fn default() -> Self {
        TxnLimits {
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
        }
    }
}

impl TxnLimits {
    /// Checks `max_txn_ops` against [`MIN_MAX_TXN_OPS`] and [`MAX_MAX_TXN_OPS`].
    pub fn new(max_txn_ops: i64) -> Result<TxnLimits, String> {
        match usize::try_from(max_txn_ops) {
            Ok(n) if (MIN_MAX_TXN_OPS..=MAX_MAX_TXN_OPS).contains(&n) => {
                Ok(TxnLimits { max_txn_ops: n })
            }
            _ => Err(format!(
                "max_txn_ops must be between {MIN_MAX_TXN_OPS} and {MAX_MAX_TXN_OPS} (set it to etcd's --max-txn-ops, default {DEFAULT_MAX_TXN_OPS}; a plan holds max_txn_ops - {TXN_OPS_RESERVED} keys and at most {AUDIT_IDS_PER_REVISION}), got {max_txn_ops}"
            )),
        }
    }

    /// The setting: most operations in each list of one transaction.
    pub fn max_txn_ops(&self) -> usize {
        self.max_txn_ops
    }

    /// Most compares of one transaction.
    pub fn compares(&self) -> usize {
        self.max_txn_ops
    }

    /// Most keys of a delete plan (its whole tree): `max_txn_ops - TXN_OPS_RESERVED`.
    pub fn plan_keys(&self) -> usize {
        self.max_txn_ops - TXN_OPS_RESERVED
    }

    /// Most entries of a refresh of a map that declares references.
    pub fn referring_refresh(&self) -> usize {
        self.plan_keys() / 2
    }

    /// The `details` of an answer about this limit: `fields` (limit, size,
    /// unit, as the answer has them) and the setting with etcd's flag.
    pub fn details(&self, fields: serde_json::Value) -> serde_json::Value {
        let mut details = serde_json::json!({
            "setting": "max_txn_ops",
            "max_txn_ops": self.max_txn_ops,
            "etcd_flag": "--max-txn-ops",
        });
        if let (Some(all), serde_json::Value::Object(fields)) = (details.as_object_mut(), fields) {
            all.extend(fields);
        }
        details
    }

    /// What to raise, for a 413's message: etcd's flag and safemap's setting.
    pub fn raise_hint(&self) -> String {
        format!(
            "to allow more, raise etcd's --max-txn-ops on every member and set {SETTING} to the same value (now {}; a plan holds max_txn_ops - {TXN_OPS_RESERVED} keys)",
            self.max_txn_ops
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits_follow_the_setting() {
        let d = TxnLimits::default();
        assert_eq!(
            (d.plan_keys(), d.referring_refresh(), d.compares()),
            (100, 50, 128)
        );
        let l = TxnLimits::new(512).unwrap();
        assert_eq!((l.plan_keys(), l.referring_refresh()), (484, 242));
        let top = TxnLimits::new(MAX_MAX_TXN_OPS as i64).unwrap();
        assert_eq!(top.plan_keys(), AUDIT_IDS_PER_REVISION as usize);
        assert_eq!(TxnLimits::new(32).unwrap().plan_keys(), 4);
        for bad in [-1, 0, 31, MAX_MAX_TXN_OPS as i64 + 1, i64::MAX] {
            let e = TxnLimits::new(bad).unwrap_err();
            assert!(e.contains("between 32 and 1028"), "{e}");
            assert!(e.contains(&bad.to_string()), "{e}");
        }
    }
}
