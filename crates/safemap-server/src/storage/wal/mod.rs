//! The write-ahead log: the durability point of every write.
//!
//! `<data-dir>/wal/` holds segments named by the lsn of their first record
//! (`00000000000000000001.log`, 20 digits). Each segment starts with the
//! 8-byte magic [`MAGIC`], then frames (see [`frame`]). Lsns grow by one from
//! record to record, across segments too. Segments up to the checkpoint
//! (`meta.checkpoint_lsn` in redb) are folded and may be deleted.

pub mod frame;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::codec::{self, StoredPlan, StoredRecord, StoredToken};
use super::{StorageError, se};

/// First bytes of every segment (format 1 of the log).
pub const MAGIC: &[u8; 8] = b"SMAPWAL1";
/// Directory of the log inside the data directory.
pub const DIR: &str = "wal";
/// A segment is sealed and a new one started once it is this large (default).
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// What a log record holds. The payload is the JSON of the row it becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// Kind 1: an audit record (also the put or removal of its entry).
    Record(StoredRecord),
    /// Kind 2: a token created or replaced.
    TokenPut(StoredToken),
    /// Kind 3: a token revoked (payload: its name as a JSON string).
    TokenRemove(String),
    /// Kind 4: a delete plan created, or executed (the whole row each time).
    Plan(StoredPlan),
}

impl Entry {
    /// The kind byte of the frame.
    pub fn kind(&self) -> u8 {
        match self {
            Entry::Record(_) => 1,
            Entry::TokenPut(_) => 2,
            Entry::TokenRemove(_) => 3,
            Entry::Plan(_) => 4,
        }
    }

    /// The payload of the frame.
    pub fn payload(&self) -> Vec<u8> {
        match self {
            Entry::Record(r) => codec::encode(r),
            Entry::TokenPut(t) => codec::encode(t),
            Entry::TokenRemove(name) => codec::encode(name),
            Entry::Plan(p) => codec::encode(p),
        }
    }

    /// Reads a payload back; the error says why it is unreadable.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Entry, String> {
        match kind {
            1 => codec::decode(payload).map(Entry::Record),
            2 => codec::decode(payload).map(Entry::TokenPut),
            3 => codec::decode(payload).map(Entry::TokenRemove),
            4 => codec::decode(payload).map(Entry::Plan),
            k => Err(format!("unknown record kind {k}")),
        }
    }
}

/// The path of the segment whose first record has lsn `first`.
pub fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

/// The segments in `dir`, as (first lsn, path), in lsn order. Files that are
/// not named like segments are an error: the directory is the log's alone.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(se("listing the log directory"))? {
        let path = e.map_err(se("listing the log directory"))?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                StorageError(format!(
                    "{} is not a log segment; the directory {} holds only the log",
                    path.display(),
                    dir.display()
                ))
            })?;
        out.push((first, path));
    }
    out.sort();
    Ok(out)
}

/// Creates the empty segment starting at lsn `first` (magic written and
/// synced, directory synced) and returns it open for appending.
pub fn create_segment(dir: &Path, first: u64) -> Result<File, StorageError> {
    let path = segment_path(dir, first);
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| StorageError(format!("creating {}: {e}", path.display())))?;
    f.write_all(MAGIC)
        .and_then(|()| f.sync_all())
        .and_then(|()| sync_dir(dir))
        .map_err(|e| StorageError(format!("creating {}: {e}", path.display())))?;
    Ok(f)
}

/// Makes the directory's entries (created or removed files) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn entries_round_trip_through_their_payload() {
        let tok = StoredToken {
            name: "ci".into(),
            roles: vec!["read".into()],
            sha256: "ab".repeat(32),
        };
        let plan = StoredPlan {
            id: "0123456789abcdef".into(),
            map: "orders".into(),
            keys: vec![("o-1".into(), 7)],
            expires_at_ms: 1_764_139_947_446,
            executed: false,
            tree: Vec::new(),
        };
        for e in [
            Entry::TokenPut(tok),
            Entry::TokenRemove("ci".into()),
            Entry::Plan(plan),
        ] {
            assert_eq!(Entry::decode(e.kind(), &e.payload()).unwrap(), e);
        }
        assert!(Entry::decode(9, b"{}").is_err());
    }

    #[test]
    fn strangers_in_the_log_directory_are_refused() {
        let d = tempfile::tempdir().unwrap();
        create_segment(d.path(), 5).unwrap();
        create_segment(d.path(), 1).unwrap();
        let got: Vec<u64> = list_segments(d.path())
            .unwrap()
            .iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(got, vec![1, 5]);
        std::fs::write(d.path().join("notes.txt"), "x").unwrap();
        let e = list_segments(d.path()).unwrap_err();
        assert!(e.0.contains("notes.txt is not a log segment"), "{e}");
    }
}
