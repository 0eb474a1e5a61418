//! Recovery at start: the log's records past the checkpoint are folded into
//! redb, the log is emptied, then the tables are read back.
//!
//! A torn tail (the last records of the last segment cut short or damaged,
//! with no good record after them) is dropped and logged: none of it was
//! acknowledged. Damage anywhere else (a bad record followed by a good one, a
//! gap in the lsns, a sealed segment that ends badly, a record that does not
//! decode) stops the start with an error naming the file and the byte: those
//! records may have been acknowledged, and silently dropping them would lose
//! data.

use std::path::Path;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};

use super::codec::{self, StoredEntry, StoredPlan, StoredRecord, StoredToken};
use super::tables::{self, AUDIT, ENTRIES, Logged, META, Meta, PLANS, TOKENS};
use super::wal::{self, Entry, frame};
use super::{Recovered, StorageError, now_ms, se};

/// What `meta` said before the log was replayed.
pub(crate) struct StoredMeta {
    pub meta: Meta,
    pub clean_shutdown: bool,
    /// `meta.format` (0: a new database, or one older than the field).
    pub format: u64,
}

/// Reads `meta` (all zero in a new database). A newer format is an error.
pub(crate) fn read_meta(db: &Database) -> Result<StoredMeta, StorageError> {
    let txn = db.begin_read().map_err(se("reading"))?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Ok(StoredMeta {
                meta: Meta::default(),
                clean_shutdown: true,
                format: 0,
            });
        }
        Err(e) => return Err(se("opening meta")(e)),
    };
    let get = |k: &str| -> Result<Option<u64>, StorageError> {
        Ok(meta.get(k).map_err(se("reading meta"))?.map(|v| v.value()))
    };
    let format = get("format")?.unwrap_or(0);
    if format > codec::FORMAT_VERSION {
        return Err(StorageError(format!(
            "the database was written by a newer safemap (format {format}, this one reads up to {})",
            codec::FORMAT_VERSION
        )));
    }
    Ok(StoredMeta {
        meta: Meta {
            last_revision: get("last_revision")?.unwrap_or(0),
            last_audit_id: get("last_audit_id")?.unwrap_or(0),
            checkpoint_lsn: get("checkpoint_lsn")?.unwrap_or(0),
        },
        clean_shutdown: get("clean_shutdown")? != Some(0),
        format,
    })
}

/// The records of the log past `checkpoint`, in lsn order, and a description
/// of the torn tail that was dropped, if any.
pub(crate) fn read_log(
    dir: &Path,
    checkpoint: u64,
) -> Result<(Vec<Logged>, Option<String>), StorageError> {
    let segments = wal::list_segments(dir)?;
    let mut out = Vec::new();
    let mut torn = None;
    // The lsn the next record read must have, once one segment was read.
    let mut expect: Option<u64> = None;
    for (i, (first, path)) in segments.iter().enumerate() {
        let last_segment = i + 1 == segments.len();
        // A segment whose successor starts at or below the checkpoint is folded.
        if let Some((next_first, _)) = segments.get(i + 1)
            && *next_first <= checkpoint + 1
        {
            continue;
        }
        let shown = path.display();
        match expect {
            Some(e) if e != *first => {
                return Err(StorageError(format!(
                    "log segment {shown} starts at lsn {first} but the previous one ends at lsn {}: records are missing; refusing to start",
                    e - 1
                )));
            }
            None if *first > checkpoint + 1 => {
                return Err(StorageError(format!(
                    "log segment {shown} starts at lsn {first} but the checkpoint ends at lsn {checkpoint}: records are missing; refusing to start"
                )));
            }
            _ => {}
        }
        let bytes =
            std::fs::read(path).map_err(|e| StorageError(format!("reading {shown}: {e}")))?;
        if bytes.len() < wal::MAGIC.len() && last_segment && wal::MAGIC.starts_with(&bytes) {
            // Created, not yet synced, when the process died: empty.
            expect = Some(*first);
            continue;
        }
        if !bytes.starts_with(wal::MAGIC) {
            return Err(StorageError(format!(
                "{shown} does not start like a safemap log segment; refusing to start"
            )));
        }
        let scan = frame::scan(&bytes[wal::MAGIC.len()..], wal::MAGIC.len(), *first);
        let good = scan.frames.len() as u64;
        let last_good = (first + good).saturating_sub(1);
        for f in scan.frames {
            if f.lsn <= checkpoint {
                continue;
            }
            let entry = Entry::decode(f.kind, f.payload).map_err(|why| {
                StorageError(format!(
                    "log record lsn {} at byte {} of {shown} has a good checksum but does not decode ({why}); refusing to start",
                    f.lsn, f.offset
                ))
            })?;
            out.push(Logged {
                lsn: f.lsn,
                entry,
                payload: f.payload.to_vec(),
            });
        }
        match scan.end {
            frame::End::Clean => {}
            frame::End::Torn { offset, reason } if last_segment => {
                torn = Some(format!(
                    "{shown}: dropped {} bytes from byte {offset} ({reason}); the last good record is lsn {last_good}",
                    bytes.len() - offset
                ));
            }
            frame::End::Torn { offset, reason } => {
                return Err(StorageError(format!(
                    "log segment {shown} is not the last one but ends in a damaged record at byte {offset} ({reason}); refusing to start"
                )));
            }
            frame::End::Corrupt {
                offset,
                reason,
                next_good,
            } => {
                return Err(StorageError(format!(
                    "the log is corrupt: {shown} has a damaged record at byte {offset} ({reason}) followed by good records (from byte {next_good}); refusing to start rather than drop records that may have been acknowledged (last good lsn before it: {last_good}). Restore the data directory from a backup, or move {shown} away to start without its records"
                )));
            }
        }
        expect = Some(first + good);
    }
    Ok((out, torn))
}

/// Reads the tables back (after the log was folded into them).
pub(crate) fn read_tables(db: &Database, retention: Duration) -> Result<Recovered, StorageError> {
    let mut rec = Recovered::default();
    let txn = db.begin_read().map_err(se("reading"))?;
    let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
    let mut max_rev = 0u64;
    let mut max_id = 0u64;
    if let Some(meta) = open(&txn, META)? {
        let get = |k: &str| -> Result<u64, StorageError> {
            Ok(meta
                .get(k)
                .map_err(se("reading meta"))?
                .map_or(0, |v| v.value()))
        };
        max_rev = get("last_revision")?;
        max_id = get("last_audit_id")?;
    }
    if let Some(t) = open(&txn, ENTRIES)? {
        for row in t.iter().map_err(se("reading entries"))? {
            let (k, v) = row.map_err(se("reading entries"))?;
            let (map, key) = k.value();
            match codec::decode::<StoredEntry>(v.value()) {
                Ok(e) => {
                    max_rev = max_rev.max(e.revision);
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
        for row in t.iter().map_err(se("reading audit"))? {
            let (k, v) = row.map_err(se("reading audit"))?;
            let id = k.value();
            max_id = max_id.max(id);
            match codec::decode::<StoredRecord>(v.value()) {
                Ok(r) => {
                    max_rev = max_rev.max(r.revision);
                    if r.at_ms >= cutoff {
                        rec.records.push(r);
                    }
                }
                Err(why) => {
                    rec.skipped_rows += 1;
                    tracing::error!(id, %why, "skipping an unreadable audit row");
                }
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
        let now = now_ms();
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
    rec.last_revision = max_rev;
    rec.last_audit_id = max_id;
    Ok(rec)
}

/// The table, or None when it was never created.
fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    def: redb::TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StorageError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(StorageError(format!("opening table {}: {e}", def.name()))),
    }
}

/// Folds `logged` into redb in one transaction, moves the revision counter
/// `skip` ahead (when anything was ever written), and writes `meta` with the
/// shutdown flag cleared (the database is in use from here on).
pub(crate) fn fold_and_mark_in_use(
    db: &Database,
    logged: &[Logged],
    meta: Meta,
    skip: u64,
    format: u64,
) -> Result<Meta, StorageError> {
    let txn = db.begin_write().map_err(se("starting"))?;
    // Format 5 added the plan index: a file written before gets it now, in
    // the transaction that also sets `meta.format` to 5.
    if format < 5 {
        let n = tables::build_plan_index(&txn).map_err(se("indexing plan records"))?;
        if n > 0 {
            tracing::info!(
                records = n,
                "indexed the audit records of delete plans (format 5)"
            );
        }
    }
    let mut meta = tables::fold(&txn, logged, meta).map_err(se("folding the log"))?;
    if meta.last_revision > 0 {
        meta.last_revision += skip;
    }
    tables::write_meta(&txn, &meta, false).map_err(se("writing meta"))?;
    txn.commit().map_err(se("committing"))?;
    Ok(meta)
}
