//! Recovery at start: storage is opened (which folds its log), then maps,
//! the journal's window, delete breakers, delete plans and tokens are rebuilt
//! from what it read back (STORAGE.md, "Recovery at start").

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use safemap::{AuditId, Journal, JournalSink, Revision};
use serde_json::Value;

use super::persist::{StorageSink, from_stored};
use super::plans::load_plans;
use super::{Shared, Store};
use crate::auth::Tokens;
use crate::config::Config;
use crate::storage::{Bounds, Options as StorageOptions, Recovered, Storage, StorageError};

impl Shared {
    /// Opens storage in `data_dir`, recovers maps, journal, breakers and tokens.
    pub fn open(
        data_dir: &Path,
        config: Config,
        loopback: bool,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Shared, StorageError> {
        let retention = config.max_retention();
        let options = StorageOptions {
            cache_bytes: config.server.storage_cache_bytes,
            checkpoint_interval: config.server.checkpoint_interval,
            recovery: recovery_bounds(&config),
            ..StorageOptions::default()
        };
        let (storage, rec) = Storage::open_with(data_dir, retention, options)?;
        log_recovery(&rec, &storage);
        let rows_read = rec.audit_rows_read;
        let Recovered {
            entries,
            records,
            tokens,
            plans,
            breaker_deletes,
            executed_plans,
            audit_maps,
            last_revision,
            last_audit_id,
            skipped_revisions: skip,
            ..
        } = rec;
        // Writes in flight at a crash were visible to readers (GET, list) for a
        // moment before they were durable. So that no client ever sees one
        // revision number stand for two different writes, storage has moved the
        // counter (`last_revision`) over every revision such a write could have had.
        if skip > 0 {
            tracing::warn!(
                from = last_revision - skip + 1,
                to = last_revision,
                "skipping revisions after an unclean shutdown (writes in flight at the crash may have been read)"
            );
        }
        let sink = Arc::new(StorageSink(storage.sender()));
        let newest_loaded = records.last().map(|r| r.id);
        let builder = Journal::builder()
            .retention(retention)
            .capacity(config.server.journal_capacity)
            .sink(sink as Arc<dyn JournalSink<String, Value>>);
        // The journal ignores loaded records at or below its start, so start it just
        // below the first record held, unless the newest records are not held at all.
        let (journal, history_floor) = match (records.first(), newest_loaded) {
            (Some(first), Some(newest)) if newest == last_audit_id => (
                builder
                    .start_after(
                        Revision::new(if skip > 0 {
                            last_revision
                        } else {
                            first.revision.saturating_sub(1)
                        }),
                        AuditId::new(first.id.saturating_sub(1)),
                    )
                    .build(),
                if first.id <= 1 { 0 } else { first.revision },
            ),
            _ => {
                if let Some(newest) = newest_loaded {
                    // Not expected (ids are written in order, and meta with them):
                    // the journal then holds none of the loaded records in memory,
                    // though storage still has them. Said loudly so it is diagnosable.
                    tracing::error!(
                        newest_loaded = newest,
                        last_audit_id,
                        "the newest audit record read back is not the newest id stored; audit history before this start is not served from memory"
                    );
                }
                (
                    builder
                        .start_after(Revision::new(last_revision), AuditId::new(last_audit_id))
                        .build(),
                    if last_revision == 0 {
                        0
                    } else {
                        last_revision + 1
                    },
                )
            }
        };
        let mut map_names: BTreeSet<String> = config.maps.keys().cloned().collect();
        map_names.extend(entries.iter().map(|(m, _, _)| m.clone()));
        // Invariant: `audit_maps` names every map with a record within
        // retention, the records loaded here included.
        map_names.extend(audit_maps);
        map_names.extend(records.iter().map(|r| r.map.clone()));
        map_names.extend(plans.iter().map(|p| p.map.clone()));
        let loaded = journal.load(records.into_iter().map(from_stored));
        if journal.current_revision().get() < last_revision {
            tracing::warn!(
                journal = journal.current_revision().get(),
                stored = last_revision,
                "journal revision below the stored counter"
            );
        }
        let shared = Shared {
            config,
            journal,
            maps: RwLock::new(HashMap::new()),
            store: Store::Local(storage),
            tokens: Tokens::from_stored(&tokens),
            token_admin: tokio::sync::Mutex::new(()),
            loopback,
            shutdown,
            profiling: AtomicBool::new(false),
            data_dir: data_dir.to_path_buf(),
            history_floor,
        };
        {
            let mut maps = shared.maps.write().unwrap_or_else(|e| e.into_inner());
            // Every map is built (and registered on the journal) before any
            // entry is loaded: loading an entry indexes its references in the
            // maps it refers to, so the referrer index is rebuilt from the
            // recovered entries (STORAGE.md, "References").
            for name in &map_names {
                let map = shared.build_map(name).map_err(StorageError)?;
                maps.insert(name.clone(), map);
            }
            let n_entries = entries.len();
            for (map, key, e) in entries {
                if let Some(m) = maps.get(&map) {
                    m.load_entry(
                        key,
                        e.value,
                        Revision::new(e.revision),
                        Revision::new(e.create_revision),
                        e.version,
                    );
                }
            }
            // Invariant: storage read each breaker's deletes from the newest
            // audit rows back to its window's start (at most its
            // `max_deletes`), whatever the journal holds.
            for (map, times) in breaker_deletes {
                if let Some(m) = maps.get(&map) {
                    m.seed_breaker(
                        times
                            .into_iter()
                            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
                    );
                }
            }
            let pending_plans = load_plans(&maps, plans, &executed_plans);
            tracing::info!(
                maps = maps.len(),
                entries = n_entries,
                pending_plans,
                audit_records = loaded,
                audit_rows_read = rows_read,
                revision = shared.journal.current_revision().get(),
                "storage recovered"
            );
        }
        Ok(shared)
    }
}

/// What storage reads of the audit history at start: the journal's capacity
/// and each configured map's delete breaker (a map without configuration has
/// none).
fn recovery_bounds(config: &Config) -> Bounds {
    Bounds {
        journal_capacity: config.server.journal_capacity,
        breakers: config
            .maps
            .iter()
            .filter_map(|(name, p)| p.breaker.map(|(max, window)| (name.clone(), max, window)))
            .collect(),
    }
}

fn log_recovery(rec: &Recovered, storage: &Storage) {
    let path = storage.path().display().to_string();
    if rec.fresh {
        tracing::info!(%path, "created a new database");
        return;
    }
    if rec.unclean || rec.repaired {
        tracing::warn!(
            %path,
            repaired = rec.repaired,
            last_revision = rec.last_revision,
            last_audit_id = rec.last_audit_id,
            log_records_replayed = rec.log_records_replayed,
            "recovering after an unclean shutdown: every record in the write-ahead log is kept (a torn tail, never acknowledged, is dropped)"
        );
    }
    if rec.skipped_rows > 0 {
        tracing::error!(
            rows = rec.skipped_rows,
            "skipped unreadable rows during recovery"
        );
    }
}
