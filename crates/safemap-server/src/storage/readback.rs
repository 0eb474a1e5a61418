//! The tables read back at start, after the log was folded into them: only
//! what start-up needs, bounded by the journal's capacity and the delete
//! breakers' windows, never by the retention (STORAGE.md, "Recovery at
//! start").
//!
//! Each part of [`Recovered`] comes from one source, an invariant each:
//! - **counters** (`last_revision`, `last_audit_id`): `meta`, which every
//!   fold transaction raises to at least every row it writes (`write_meta`
//!   keeps the higher value), so no row needs to be read for them (the rows
//!   that are read only confirm them);
//! - **entries, tokens, plans**: their tables, whole (the live state; plans
//!   not yet forgotten);
//! - **the journal's records**: the newest `journal_capacity` rows of `audit`
//!   within retention, read by a reverse range on the id. Audit ids are
//!   contiguous and `at_ms` does not decrease with the id, so these are the
//!   records the journal would have kept; every older row stays in redb,
//!   where audit pages and restores read it (`history`);
//! - **breaker windows**: the same reverse scan, continued only while a row
//!   can still be inside a breaker's window and some breaker is not full
//!   ([`BreakerScan`]);
//! - **maps with history**: `audit_maps` (map → time of its newest record),
//!   so a map whose only trace is an old audit row is still created (its
//!   deletes can be restored) without reading its rows;
//! - **executed plans**: a plan row not marked executed, whose deletes are in
//!   `audit` (a crash between its deletes and its executed row), is found
//!   through `plan_audit`, one range per such plan, not by reading records.

use std::collections::HashSet;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};

use super::breakers::BreakerScan;
use super::codec::{self, StoredEntry, StoredPlan, StoredRecord, StoredToken};
use super::tables::{AUDIT, AUDIT_MAPS, ENTRIES, META, PLAN_AUDIT, PLANS, TOKENS};
use super::{Recovered, StorageError, now_ms, se};

/// What bounds the read of history at start.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    /// Newest audit records read for the journal (`server.journal_capacity`).
    pub journal_capacity: usize,
    /// The delete breakers: (map, max deletes, window).
    pub breakers: Vec<(String, usize, Duration)>,
}

/// Reads the tables back (after the log was folded into them).
pub(crate) fn read_tables(
    db: &Database,
    retention: Duration,
    bounds: &Bounds,
) -> Result<Recovered, StorageError> {
    let mut rec = Recovered::default();
    let txn = db.begin_read().map_err(se("reading"))?;
    let now = now_ms();
    if let Some(meta) = open(&txn, META)? {
        let get = |k: &str| -> Result<u64, StorageError> {
            Ok(meta
                .get(k)
                .map_err(se("reading meta"))?
                .map_or(0, |v| v.value()))
        };
        rec.last_revision = get("last_revision")?;
        rec.last_audit_id = get("last_audit_id")?;
    }
    if let Some(t) = open(&txn, ENTRIES)? {
        for row in t.iter().map_err(se("reading entries"))? {
            let (k, v) = row.map_err(se("reading entries"))?;
            let (map, key) = k.value();
            match codec::decode::<StoredEntry>(v.value()) {
                Ok(e) => {
                    rec.last_revision = rec.last_revision.max(e.revision);
                    rec.entries.push((map.to_string(), key.to_string(), e));
                }
                Err(why) => {
                    rec.skipped_rows += 1;
                    tracing::error!(map, key, %why, "skipping an unreadable entry row");
                }
            }
        }
    }
    if let Some(t) = open(&txn, AUDIT)? {
        let cutoff = now.saturating_sub(retention.as_millis() as u64);
        let mut breakers = BreakerScan::new(&bounds.breakers, now);
        newest_records(&t, cutoff, bounds.journal_capacity, &mut breakers, &mut rec)?;
        rec.breaker_deletes = breakers.into_seeds();
    }
    if let Some(t) = open(&txn, AUDIT_MAPS)? {
        let cutoff = now.saturating_sub(retention.as_millis() as u64);
        for row in t.iter().map_err(se("reading audit_maps"))? {
            let (k, v) = row.map_err(se("reading audit_maps"))?;
            if v.value() >= cutoff {
                rec.audit_maps.push(k.value().to_string());
            }
        }
    }
    if let Some(t) = open(&txn, TOKENS)? {
        for row in t.iter().map_err(se("reading tokens"))? {
            let (k, v) = row.map_err(se("reading tokens"))?;
            match codec::decode::<StoredToken>(v.value()) {
                Ok(tok) => rec.tokens.push(tok),
                Err(why) => {
                    rec.skipped_rows += 1;
                    tracing::error!(name = k.value(), %why, "skipping an unreadable token row");
                }
            }
        }
    }
    if let Some(t) = open(&txn, PLANS)? {
        for row in t.iter().map_err(se("reading plans"))? {
            let (k, v) = row.map_err(se("reading plans"))?;
            match codec::decode::<StoredPlan>(v.value()) {
                Ok(p) if p.forgotten_at(now) => {}
                Ok(p) => rec.plans.push(p),
                Err(why) => {
                    rec.skipped_rows += 1;
                    tracing::error!(plan_id = k.value(), %why, "skipping an unreadable plan row");
                }
            }
        }
    }
    rec.executed_plans = executed_plans(&txn, &rec.plans)?;
    Ok(rec)
}

/// Reads `audit` newest first: the newest `capacity` rows within retention
/// (from `cutoff` on) into `rec.records` (oldest first), then on only as far
/// as `breakers` needs. Every row examined is counted in the bound, readable
/// or not; an unreadable one is skipped, logged and counted.
fn newest_records(
    audit: &redb::ReadOnlyTable<u64, &[u8]>,
    cutoff: u64,
    capacity: usize,
    breakers: &mut BreakerScan,
    rec: &mut Recovered,
) -> Result<(), StorageError> {
    let mut examined = 0usize;
    let mut journal_full = capacity == 0;
    for row in audit.iter().map_err(se("reading audit"))?.rev() {
        if journal_full && breakers.satisfied() {
            break;
        }
        let (k, v) = row.map_err(se("reading audit"))?;
        let id = k.value();
        rec.last_audit_id = rec.last_audit_id.max(id);
        examined += 1;
        let at_ms = if journal_full {
            match codec::decode::<codec::RecordHead<'_>>(v.value()) {
                Ok(h) => {
                    breakers.offer(&h.map, h.op, h.plan_id.is_some(), h.at_ms);
                    h.at_ms
                }
                Err(why) => {
                    rec.skipped_rows += 1;
                    tracing::error!(id, %why, "skipping an unreadable audit row");
                    continue;
                }
            }
        } else {
            match codec::decode::<StoredRecord>(v.value()) {
                Ok(r) => {
                    let at_ms = r.at_ms;
                    breakers.offer(&r.map, r.op, r.plan_id.is_some(), at_ms);
                    rec.last_revision = rec.last_revision.max(r.revision);
                    if at_ms >= cutoff {
                        rec.records.push(r);
                    } else {
                        // Older rows are older still: past retention.
                        journal_full = true;
                    }
                    at_ms
                }
                Err(why) => {
                    rec.skipped_rows += 1;
                    tracing::error!(id, %why, "skipping an unreadable audit row");
                    journal_full = journal_full || examined >= capacity;
                    continue;
                }
            }
        };
        journal_full = journal_full || examined >= capacity;
        if journal_full && breakers.done(at_ms) {
            break;
        }
    }
    rec.records.reverse();
    rec.audit_rows_read = examined;
    Ok(())
}

/// The ids of the plans in `plans` not marked executed whose deletes are in
/// `audit` (`plan_audit` has a row for each audit row of a plan).
fn executed_plans(
    txn: &redb::ReadTransaction,
    plans: &[StoredPlan],
) -> Result<HashSet<String>, StorageError> {
    let mut executed = HashSet::new();
    let Some(index) = open(txn, PLAN_AUDIT)? else {
        return Ok(executed);
    };
    for p in plans.iter().filter(|p| !p.executed) {
        let id = p.id.as_str();
        let mut rows = index
            .range((id, 0u64)..=(id, u64::MAX))
            .map_err(se("reading plan_audit"))?;
        if rows
            .next()
            .transpose()
            .map_err(se("reading plan_audit"))?
            .is_some()
        {
            executed.insert(p.id.clone());
        }
    }
    Ok(executed)
}

/// The table, or None when it was never created.
pub(crate) fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    def: redb::TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StorageError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(StorageError(format!("opening table {}: {e}", def.name()))),
    }
}
