//! The redb checkpoint: table definitions, and how log entries are folded
//! into them. Shared by the checkpointer thread and by recovery, so a record
//! is folded the same way whether it arrives live or from the log at start.

use std::collections::HashMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::codec::{self, StoredEntry, StoredOp};
use super::wal::Entry;

pub(crate) const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("entries");
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
pub(crate) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const PLANS: TableDefinition<&str, &[u8]> = TableDefinition::new("plans");
/// Index of the audit rows of each delete plan: (plan id, audit id) → ().
/// Invariant: it has a row exactly for each `audit` row whose record carries
/// a `plan_id` (written, pruned and, for a format-4 file, built at start in
/// the same transactions), so a plan's records are found without a scan.
pub(crate) const PLAN_AUDIT: TableDefinition<(&str, u64), ()> = TableDefinition::new("plan_audit");
/// The maps named in `audit`: map → `at_ms` of its newest record.
/// Invariant: every map with an `audit` row within retention has a row here
/// whose time is at least that record's (written in the same transactions as
/// the rows; a file of format 5 or older gets it built at start), so recovery
/// creates every map whose history is within retention without reading that
/// history. The prune pass removes a row once its time is past retention
/// (any rows of the map that its cap left in `audit` are past it too); until
/// then a row may outlive its map's audit rows, and recovery skips it.
pub(crate) const AUDIT_MAPS: TableDefinition<&str, u64> = TableDefinition::new("audit_maps");

/// A log entry with its lsn and its encoded payload (which is also the row
/// of the `audit`, `tokens` or `plans` table, so it is encoded once).
#[derive(Debug)]
pub struct Logged {
    /// Log sequence number.
    pub lsn: u64,
    /// The entry.
    pub entry: Entry,
    /// Its JSON payload.
    pub payload: Vec<u8>,
}

/// The counters that `meta` keeps; each only ever grows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta {
    /// Highest revision handed out (or skipped) so far.
    pub last_revision: u64,
    /// Highest audit id written.
    pub last_audit_id: u64,
    /// Highest lsn folded into the tables.
    pub checkpoint_lsn: u64,
}

/// Folds `logged` into the tables of `txn`, in lsn order, and returns the
/// counters they reach (never below `meta`).
pub(crate) fn fold(
    txn: &WriteTransaction,
    logged: &[Logged],
    mut meta: Meta,
) -> Result<Meta, redb::Error> {
    let mut audit = txn.open_table(AUDIT)?;
    let mut entries = txn.open_table(ENTRIES)?;
    let mut tokens = txn.open_table(TOKENS)?;
    let mut plans = txn.open_table(PLANS)?;
    let mut plan_audit = txn.open_table(PLAN_AUDIT)?;
    let mut newest: HashMap<&str, u64> = HashMap::new();
    for l in logged {
        match &l.entry {
            Entry::Record(r) => {
                audit.insert(r.id, l.payload.as_slice())?;
                let t = newest.entry(r.map.as_str()).or_default();
                *t = (*t).max(r.at_ms);
                if let Some(plan) = &r.plan_id {
                    plan_audit.insert((plan.as_str(), r.id), ())?;
                }
                match r.op {
                    StoredOp::Put | StoredOp::Restore => {
                        let e = StoredEntry {
                            value: r.value.clone().unwrap_or(serde_json::Value::Null),
                            revision: r.revision,
                            create_revision: r.create_revision,
                            version: r.version,
                        };
                        entries.insert(
                            (r.map.as_str(), r.key.as_str()),
                            codec::encode(&e).as_slice(),
                        )?;
                    }
                    StoredOp::Delete => {
                        entries.remove((r.map.as_str(), r.key.as_str()))?;
                    }
                }
                meta.last_revision = meta.last_revision.max(r.revision);
                meta.last_audit_id = meta.last_audit_id.max(r.id);
            }
            Entry::TokenPut(t) => {
                tokens.insert(t.name.as_str(), l.payload.as_slice())?;
            }
            Entry::TokenRemove(name) => {
                tokens.remove(name.as_str())?;
            }
            Entry::Plan(p) => {
                plans.insert(p.id.as_str(), l.payload.as_slice())?;
            }
        }
        meta.checkpoint_lsn = meta.checkpoint_lsn.max(l.lsn);
    }
    note_maps(txn, newest)?;
    Ok(meta)
}

/// Raises the `audit_maps` row of each map in `newest` to its time.
fn note_maps(txn: &WriteTransaction, newest: HashMap<&str, u64>) -> Result<(), redb::Error> {
    let mut maps = txn.open_table(AUDIT_MAPS)?;
    for (map, at_ms) in newest {
        let prev = maps.get(map)?.map(|v| v.value());
        if prev.is_none_or(|p| at_ms > p) {
            maps.insert(map, at_ms)?;
        }
    }
    Ok(())
}

/// Builds `audit_maps` from the `audit` table (a file of format 5 or older
/// has none; one pass over it, once); returns the maps found. Unreadable
/// audit rows are left for recovery to report.
pub(crate) fn build_audit_maps(txn: &WriteTransaction) -> Result<usize, redb::Error> {
    let mut newest: HashMap<String, u64> = HashMap::new();
    {
        let audit = txn.open_table(AUDIT)?;
        for row in audit.iter()? {
            let (_, v) = row?;
            if let Ok(head) = codec::decode::<codec::RecordHead<'_>>(v.value()) {
                let t = newest.entry(head.map.into_owned()).or_default();
                *t = (*t).max(head.at_ms);
            }
        }
    }
    let n = newest.len();
    note_maps(txn, newest.iter().map(|(m, t)| (m.as_str(), *t)).collect())?;
    Ok(n)
}

/// Writes `meta` (each counter kept at its stored value if that is higher),
/// the shutdown flag and the format version.
pub(crate) fn write_meta(txn: &WriteTransaction, m: &Meta, clean: bool) -> Result<(), redb::Error> {
    let mut meta = txn.open_table(META)?;
    for (name, v) in [
        ("last_revision", m.last_revision),
        ("last_audit_id", m.last_audit_id),
        ("checkpoint_lsn", m.checkpoint_lsn),
    ] {
        let prev = meta.get(name)?.map_or(0, |v| v.value());
        meta.insert(name, v.max(prev))?;
    }
    meta.insert("clean_shutdown", u64::from(clean))?;
    meta.insert("format", codec::FORMAT_VERSION)?;
    Ok(())
}

/// Builds the `plan_audit` index from the `audit` table (a file of format 4
/// or older has none); returns the rows indexed. Unreadable audit rows are
/// left for recovery to report.
pub(crate) fn build_plan_index(txn: &WriteTransaction) -> Result<usize, redb::Error> {
    let audit = txn.open_table(AUDIT)?;
    let mut index = txn.open_table(PLAN_AUDIT)?;
    let mut n = 0;
    for row in audit.iter()? {
        let (k, v) = row?;
        if let Ok(head) = codec::decode::<codec::RecordHead<'_>>(v.value())
            && let Some(plan) = head.plan_id
        {
            index.insert((&*plan, k.value()), ())?;
            n += 1;
        }
    }
    Ok(n)
}
