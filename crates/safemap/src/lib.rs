//! A concurrent map for services in which removing a key never stalls readers,
//! never takes the wrong entry, and is never silent or final by accident.
//!
//! # Contents
//!
//! * [A first look](#a-first-look)
//! * [Consistency](#consistency)
//! * [Deleting safely](#deleting-safely)
//! * [References between maps](#references-between-maps)
//! * [Refreshing without a miss window](#refreshing-without-a-miss-window)
//! * [Observability](#observability)
//! * [Limits](#limits)
//!
//! # A first look
//!
//! ```
//! use safemap::{DeleteError, Reason, SafeMap};
//!
//! let map: SafeMap<String, u32> = SafeMap::new();
//! let rev = map.insert("o-1".into(), 10).unwrap().revision();      // every write has a revision
//! let entry = map.get("o-1").unwrap();                     // lock-free read
//! assert_eq!((*entry.value(), entry.revision(), entry.version()), (10, rev, 1));
//!
//! let newer = map.replace_if("o-1".into(), rev, 11).unwrap(); // compare-and-swap on revisions
//! assert_eq!(
//!     map.remove_if("o-1", rev, Reason::new("stale")),     // an old revision never matches
//!     Err(DeleteError::RevisionMismatch { current: Some(newer.revision()) })
//! );
//! let removed = map.remove("o-1", Reason::new("customer asked")).unwrap();
//! assert_eq!(*removed.value(), 11);
//! map.restore(removed.audit_id().unwrap(), Reason::new("undo")).unwrap();
//! assert!(map.contains_key("o-1"));
//! ```
//!
//! # Consistency
//!
//! * **Reads** ([`SafeMap::get`], [`Pinned::get`]) are lock-free and
//!   linearizable: they never wait for a writer, a resize, a bulk removal or an
//!   iteration, and they see an entry's value together with the revision that
//!   wrote it.
//! * **Writes** (puts, removals, restores, plan executions) to the same key
//!   are serialised by that key's lock; writes to different keys run in
//!   parallel. Holding its key's lock a write checks its condition (expected
//!   revision, absence, deny rules, breaker), then claims the next revision
//!   from the map's [`Journal`] (with its audit record, in one short critical
//!   section), then publishes the new entry. So conditional writes are truly
//!   atomic: exactly those whose condition held at their linearization point
//!   succeed, and deny rules judge exactly the value that is removed.
//! * **Revisions** come from one counter per journal (shared by every map
//!   attached to it); two writes to one key take revisions in the order they
//!   take effect, and audit ids increase with revisions. A write with revision
//!   r happens-before any read that returns revision r.
//!   [`SafeMap::current_revision`] is the *published* revision: every write up
//!   to it is visible, none is in flight below it, and a write that returned
//!   is covered by it.
//! * **The journal** always records removals and restores (with the removed
//!   value, for restore); puts are recorded while a watcher is registered, when
//!   a sink is attached, or with [`Builder::record_puts`]. A watch from a
//!   revision whose put went unrecorded answers `Compacted`, as etcd does.
//! * **Iteration** ([`Pinned::iter`]) is weakly consistent: an entry present for
//!   the whole iteration is yielded exactly once; one inserted or removed during
//!   it may or may not be. Inserting and removing while iterating, on the same
//!   thread or others, is allowed and never deadlocks or panics.
//! * **Snapshots** ([`SafeMap::snapshot`]) are a consistent copy at one
//!   revision; they cost O(n), wait for writes in flight, and hold up writers
//!   (not readers) while copying.
//! * **Watchers** ([`SafeMap::watch`]) receive a map's writes in revision
//!   order with no gap and no duplicate; a write's event is delivered only
//!   after the write is visible to readers (its revision is published).
//!
//! # Deleting safely
//!
//! The story this crate answers: one unchecked batch deleted 327 archived
//! orders, and the only record of what was lost was in the logs. Here:
//!
//! ```
//! use std::time::Duration;
//! use safemap::{DeleteError, Reason, SafeMap, Selector};
//!
//! #[derive(Clone, Debug, PartialEq)]
//! enum Status { Open, Archived }
//!
//! let orders: SafeMap<String, Status> = SafeMap::builder()
//!     .name("orders")
//!     .deny_delete("archived", |_key, status| *status == Status::Archived)
//!     .delete_breaker(100, Duration::from_secs(60))
//!     .build();
//! for i in 0..327 { let _ = orders.insert(format!("o-{i:03}"), Status::Archived); }
//! for i in 327..400 { let _ = orders.insert(format!("o-{i:03}"), Status::Open); }
//!
//! // A single removal needs a reason and passes the deny rules.
//! assert_eq!(
//!     orders.remove("o-000", Reason::new("cleanup")),
//!     Err(DeleteError::Vetoed { rule: "archived".into() })
//! );
//!
//! // A bulk removal is planned first: a dry run that removes nothing.
//! let plan = orders.plan_remove(Selector::all().prefix("o-"));
//! assert_eq!(plan.count(), 73);              // the open orders
//! assert_eq!(plan.vetoed().len(), 327);      // the archived ones are listed, not counted
//!
//! // Execution must confirm the count it was shown; a wrong count changes nothing.
//! assert!(orders.execute(plan.id(), 400, Reason::new("nightly cleanup")).is_err());
//! let report = orders.execute(plan.id(), 73, Reason::new("nightly cleanup")).unwrap();
//! assert_eq!(report.deleted, 73);
//!
//! // Every removal is journaled with its previous value, and can be undone.
//! let undo = orders.restore_plan(plan.id(), Reason::new("that was a mistake")).unwrap();
//! assert_eq!(undo.restored.len(), 73);
//! assert_eq!(orders.len(), 400);
//! ```
//!
//! Single-key removals also pass the **delete breaker** (at most N per sliding
//! window; past it, [`DeleteError::BreakerOpen`] with a retry time). Planned
//! removals skip the breaker: the confirmed count is the deliberate act.
//!
//! # References between maps
//!
//! Maps that share a [`Journal`] may refer to each other: a value names a key
//! of another map (or of its own) through a reference declared on the builder
//! with an extractor `Fn(&V) -> Option<K>`. A put whose target is missing is
//! refused, a key that something refers to cannot be removed alone, and a
//! cascade happens only through a plan whose whole tree is shown first:
//!
//! ```
//! use safemap::{DeleteError, Journal, OnDelete, Reason, SafeMap, Selector};
//!
//! // A value: (the order it belongs to, if any; archived?)
//! type Row = (Option<String>, bool);
//! let journal: Journal<String, Row> = Journal::new();
//! let map = |name: &str| SafeMap::builder().name(name).journal(journal.clone());
//! let orders = map("orders").build_shared().unwrap();
//! let items = map("order_items")
//!     .references("order", "orders", OnDelete::Cascade, |r: &Row| r.0.clone())
//!     .build_shared().unwrap();
//! let shipments = map("shipments")          // restrict is the default
//!     .references("order", "orders", OnDelete::Restrict, |r: &Row| r.0.clone())
//!     .build_shared().unwrap();
//! for o in ["o-1", "o-2"] {
//!     let _ = orders.insert(o.into(), (None, true));
//!     let _ = items.insert(format!("{o}/i"), (Some(o.into()), false));
//! }
//! let _ = shipments.insert("s-2".into(), (Some("o-2".into()), false));
//!
//! assert!(matches!(orders.remove("o-1", "cleanup"), Err(DeleteError::Referenced { .. })));
//! let plan = orders.plan_remove_cascade(Selector::all().filter(|_, r: &Row| r.1));
//! assert_eq!(plan.tree_counts()["order_items"], 1);  // o-1's item goes with it
//! assert_eq!(plan.blocked()[0].key, "o-2");          // held by its shipment
//! assert_eq!((plan.count(), plan.depth()), (2, 2));
//! let report = orders.execute(plan.id(), plan.count(), Reason::new("purge")).unwrap();
//! assert_eq!(report.deleted, 2);
//! let undo = orders.restore_plan(plan.id(), Reason::new("undo")).unwrap();
//! assert_eq!(undo.restored.len() + undo.other_maps.len(), 2);
//! ```
//!
//! A put that adds a reference and a removal of its target never both
//! succeed, under any interleaving (see `tests/shuttle_refs.rs`): the
//! referrer index is changed only under the target key's lock. Writes to a
//! map that declares references are serialised per journal (they take one
//! references lock, then their keys' locks in a fixed order); writes to other
//! maps and all reads pay nothing.
//!
//! # Refreshing without a miss window
//!
//! Refreshing a cache by removing stale keys and inserting them again makes
//! readers miss in between. [`SafeMap::refresh`] upserts in place: a key being
//! refreshed is never observably absent.
//!
//! # Observability
//!
//! [`SafeMap::stats`] reports hits, misses, puts and removal outcomes; reads
//! are counted in per-thread shards so that counting costs no shared cache
//! line. Every write path opens a `tracing` span (`safemap.put`,
//! `safemap.remove`, …) with the map, key, revision and outcome.
//!
//! # Limits
//!
//! * Writes to one key are serialised by its lock (one of 256 stripes per map,
//!   so unrelated keys occasionally share one); all writes of a journal pass
//!   through its sequencer twice, for a few instructions each. A refresh,
//!   `retain` or plan execution is one write per entry: other writers never
//!   wait for the whole batch.
//! * By default puts are not recorded unless watched: a watch from a revision
//!   written while nobody watched answers `Compacted`
//!   (see [`Builder::record_puts`]).
//! * The journal keeps at most [`journal::DEFAULT_CAPACITY`] records and
//!   [`journal::DEFAULT_RETENTION`] of history by default; older records are
//!   evicted (and counted), after which restore answers `RetentionExpired` and
//!   watchers that still needed them get `Compacted`.
//! * Removed entries' memory is reclaimed once no reader holds them (a reader
//!   that keeps a [`Pinned`] view alive delays that; views are meant to be
//!   short). The bucket array itself shrinks only when the engine next resizes
//!   (papaya halves a table at most 1/8 full when an insert triggers a resize);
//!   there is no explicit `shrink_to_fit` (except with the cargo feature
//!   `sharded-table`, whose engine shrinks on its own and on request).
//! * Writes to maps that declare references are serialised per journal (the
//!   references lock). [`SafeMap::refresh`] checks each entry on its own (an
//!   entry whose target is missing is left out); [`SafeMap::refresh_checked`]
//!   checks the batch as a whole and writes all of it or nothing.
//! * Plans live in memory; a plan executes at most once. Used and expired plans
//!   answer `Gone` for a day, `NotFound` after.

#![warn(missing_docs)]
// The workspace denies `unsafe`; the engine's table alone allows it (argued
// there, with loom tests and valgrind runs).
#![deny(unsafe_code)]

#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

mod engine;
mod entry;
mod error;
mod guard;
mod ids;
pub mod journal;
mod map;
mod plan;
mod reason;
mod refs;
mod stats;
mod sync;
mod watch;

pub use entry::{Entry, EntryRef, Removed, Written};
pub use error::{
    BuildError, DeleteError, ExecuteError, PutError, RefreshError, RestoreError, WatchError,
};
pub use guard::BreakerState;
pub use ids::{AuditId, ParsePlanIdError, PlanId, Revision};
pub use journal::{AuditQuery, AuditRecord, HeldRecords, Journal, JournalBuilder, JournalSink, Op};
pub use map::{
    Builder, DEFAULT_PLAN_TTL, Expect, MapRestored, Pinned, RestoreReport, RetainReport, SafeMap,
    Skip, Snapshot,
};
pub use plan::{
    Blocked, BlockedWhy, ChangeKind, Changed, Conflict, ExecuteReport, Plan, Selector, TreeNode,
};
pub use reason::{MAX_REASON_LEN, Reason};
pub use refs::{OnDelete, Referrer};
pub use stats::{DeleteCounts, Stats};
pub use watch::{Event, Watcher};
