//! Recovery at start: the log's records past the checkpoint are folded into
//! redb, the log is emptied, then the tables are read back (`readback`).
//!
//! A torn tail (the last records of the last segment cut short or damaged,
//! with no good record after them) is dropped and logged: none of it was
//! acknowledged. Damage anywhere else (a bad record followed by a good one, a
//! gap in the lsns, a sealed segment that ends badly, a record that does not
//! decode) stops the start with an error naming the file and the byte: those
//! records may have been acknowledged, and silently dropping them would lose
//! data.

use std::path::Path;

use redb::{Database, ReadableDatabase};

use super::codec;
use super::tables::{self, Logged, META, Meta};
use super::wal::{self, Entry, frame};
use super::{StorageError, se};

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
    // the transaction that also sets `meta.format` to the current format (so
    // a crash before it commits builds it again at the next start).
    if format < 5 {
        let n = tables::build_plan_index(&txn).map_err(se("indexing plan records"))?;
        if n > 0 {
            tracing::info!(
                records = n,
                "indexed the audit records of delete plans (format 5)"
            );
        }
    }
    // Format 6 added `audit_maps` (the maps of the audit history): built the
    // same way, after the index and before the log's records are folded
    // (which raise the rows they touch).
    if format < 6 {
        let n = tables::build_audit_maps(&txn).map_err(se("listing the maps of audit records"))?;
        if n > 0 {
            tracing::info!(maps = n, "listed the maps of the audit records (format 6)");
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
