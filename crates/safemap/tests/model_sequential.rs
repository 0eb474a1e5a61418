//! Random single-threaded operation sequences against a sequential model.
//!
//! Two maps ("a" and "b") share one journal, so one revision counter and one
//! sequence of audit ids. Each has the deny rule "sevens" (values divisible by
//! 7 may not be removed). proptest generates sequences of up to 60 steps:
//! `get`, `insert`, `insert_if_absent`, `put` with `Expect::{Any, Absent,
//! Revision}`, `replace_if`, `remove` (also with an empty reason), `remove_if`
//! with the current, a stale or a made-up revision, `refresh`, `retain`,
//! `plan_remove` then `execute` (right and wrong counts, twice, on the other
//! map, unknown ids), `restore` of any audit id (puts, deletes, restores, the
//! other map's, ids not yet written) and `restore_plan`.
//!
//! The model is a `BTreeMap` per map plus a `Vec` journal; it models revisions
//! (`revision`, `create_revision`, `version`), one record per successful write
//! and none for a refused one (with every field but the time), plans, restore
//! and the counters of `stats()`. After every step the result is compared,
//! then the whole state: a `snapshot()` of each map, every journal record,
//! `current_revision`, `len` and `stats`. At the end of a case, a watcher of
//! each map from revision 1 must replay exactly that map's records.
//!
//! CI: 1000 cases; `SAFEMAP_PROOF_LONG=1`: 50 000 cases.

#![allow(clippy::unwrap_used, clippy::needless_range_loop)]

mod common;
#[path = "model_sequential/model.rs"]
mod model;
#[path = "model_sequential/steps.rs"]
mod steps;

use model::{MEntry, MPlan, MRecord, Model};
use proptest::prelude::*;
use safemap::{
    AuditId, AuditQuery, DeleteError, Entry, ExecuteError, Expect, Journal, Op, PlanId, Reason,
    RestoreError, Revision, SafeMap, Selector, Written,
};

use steps::{ExpectPick, RevPick, Step, step};

const RULE: &str = "sevens";
const NAMES: [&str; 2] = ["a", "b"];

fn vetoed(value: u32) -> bool {
    value.is_multiple_of(7)
}

// ---------------------------------------------------------------- the system under test

type Map = SafeMap<u8, u32>;

struct System {
    journal: Journal<u8, u32>,
    maps: [Map; 2],
    /// The real id of each model plan.
    plan_ids: Vec<PlanId>,
}

impl System {
    fn new() -> Self {
        let journal = Journal::builder().record_puts(true).build();
        let build = |name: &str| {
            SafeMap::builder()
                .name(name)
                .journal(journal.clone())
                .deny_delete(RULE, |_k, v: &u32| vetoed(*v))
                .build()
        };
        System {
            maps: [build(NAMES[0]), build(NAMES[1])],
            journal,
            plan_ids: Vec::new(),
        }
    }
}

fn reason(given: bool) -> Reason {
    if given {
        Reason::new("proof")
    } else {
        Reason::new("")
    }
}

fn written(w: &Written) -> (u64, u64, u64, Option<u64>, u64) {
    (
        w.revision().get(),
        w.create_revision().get(),
        w.version(),
        w.previous_revision().map(Revision::get),
        w.audit_id().unwrap().get(),
    )
}

/// Runs one step on both, comparing the answers.
fn apply(sys: &mut System, model: &mut Model, step: &Step) -> Result<(), TestCaseError> {
    match step.clone() {
        Step::Get(m, k) => {
            let got = sys.maps[m].get(&k);
            let want = model.maps[m].get(&k);
            let got = got.map(|e: Entry<u32>| {
                (
                    *e.value(),
                    e.revision().get(),
                    e.create_revision().get(),
                    e.version(),
                )
            });
            let want = want.map(|e| (e.value, e.revision, e.create, e.version));
            prop_assert_eq!(got, want);
            match want {
                Some(_) => model.counts[m].hits += 1,
                None => model.counts[m].misses += 1,
            }
        }
        Step::Insert(m, k, v) => {
            let got = written(&sys.maps[m].insert(k, v).unwrap());
            let want = model.put(m, k, v, Expect::Any, Op::Put, None).unwrap();
            prop_assert_eq!(got, want);
        }
        Step::InsertIfAbsent(m, k, v) => {
            let got = sys.maps[m].insert_if_absent(k, v).map(|w| written(&w));
            let want = model.put(m, k, v, Expect::Absent, Op::Put, None);
            prop_assert_eq!(got, want);
        }
        Step::Put(m, k, v, pick) => {
            let expect = match &pick {
                ExpectPick::Any => Expect::Any,
                ExpectPick::Absent => Expect::Absent,
                ExpectPick::Rev(r) => Expect::Revision(model.resolve(m, k, r)),
            };
            let why = Reason::new("put").with_actor("prop");
            let got = sys.maps[m].put(k, v, expect, &why).map(|w| written(&w));
            let want = model.put(m, k, v, expect, Op::Put, Some("put"));
            prop_assert_eq!(got, want);
        }
        Step::ReplaceIf(m, k, pick, v) => {
            let expected = model.resolve(m, k, &pick);
            let got = sys.maps[m].replace_if(k, expected, v).map(|w| written(&w));
            let want = model.put(m, k, v, Expect::Revision(expected), Op::Put, None);
            prop_assert_eq!(got, want);
        }
        Step::Remove(m, k, given) => {
            let got = sys.maps[m].remove(&k, reason(given)).map(|r| {
                (
                    *r.value(),
                    r.revision().get(),
                    r.previous_revision().get(),
                    r.audit_id().unwrap().get(),
                )
            });
            let want = if given {
                model.remove(m, k, None, "proof", None)
            } else {
                Err(DeleteError::ReasonRequired)
            };
            prop_assert_eq!(got, want);
        }
        Step::RemoveIf(m, k, pick) => {
            let expected = model.resolve(m, k, &pick);
            let got = sys.maps[m].remove_if(&k, expected, "proof").map(|r| {
                (
                    *r.value(),
                    r.revision().get(),
                    r.previous_revision().get(),
                    r.audit_id().unwrap().get(),
                )
            });
            let want = model.remove(m, k, Some(expected), "proof", None);
            prop_assert_eq!(got, want);
        }
        Step::Refresh(m, entries) => {
            let got: Vec<u64> = sys.maps[m]
                .refresh(entries.clone())
                .into_iter()
                .map(Revision::get)
                .collect();
            let want: Vec<u64> = entries
                .iter()
                .map(|(k, v)| model.put(m, *k, *v, Expect::Any, Op::Put, None).unwrap().0)
                .collect();
            prop_assert_eq!(got, want);
        }
        Step::Retain(m, threshold) => {
            let before = model.records.len() as u64;
            let report = sys.maps[m]
                .retain(|_k, v| *v >= threshold, "proof")
                .unwrap();
            // The table's iteration order decides the order of removal (and so
            // the revisions); the model takes that order from the journal and
            // checks that the set is right.
            let after = AuditQuery {
                after: Some(AuditId::new(before)),
                ..AuditQuery::default()
            };
            let order: Vec<u8> = sys.journal.query(&after).iter().map(|r| r.key).collect();
            let doomed: Vec<(u8, MEntry)> = model.maps[m]
                .iter()
                .filter(|(_, e)| e.value < threshold)
                .map(|(k, e)| (*k, *e))
                .collect();
            let mut want_removed: Vec<u8> = doomed
                .iter()
                .filter(|(_, e)| !vetoed(e.value))
                .map(|(k, _)| *k)
                .collect();
            let mut want_vetoed: Vec<(u8, String)> = doomed
                .iter()
                .filter(|(_, e)| vetoed(e.value))
                .map(|(k, _)| (*k, RULE.to_owned()))
                .collect();
            let mut sorted_order = order.clone();
            sorted_order.sort();
            want_removed.sort();
            prop_assert_eq!(&sorted_order, &want_removed);
            for key in &order {
                let expect = Revision::new(model.maps[m][key].revision);
                model.remove(m, *key, Some(expect), "proof", None).unwrap();
            }
            for (key, _) in &want_vetoed {
                let expect = Revision::new(model.maps[m][key].revision);
                prop_assert!(model.remove(m, *key, Some(expect), "proof", None).is_err());
            }
            let mut got_vetoed = report.vetoed.clone();
            got_vetoed.sort();
            want_vetoed.sort();
            prop_assert_eq!(got_vetoed, want_vetoed);
            prop_assert_eq!(report.removed, want_removed.len());
            prop_assert_eq!(report.changed, 0);
            prop_assert!(!report.stopped_by_breaker);
        }
        Step::Plan(m, threshold) => {
            let plan = sys.maps[m].plan_remove(Selector::all().filter(move |_k, v| *v < threshold));
            let keys: Vec<(u8, u64)> = model.maps[m]
                .iter()
                .filter(|(_, e)| e.value < threshold && !vetoed(e.value))
                .map(|(k, e)| (*k, e.revision))
                .collect();
            let vetoed_keys: Vec<(u8, String)> = model.maps[m]
                .iter()
                .filter(|(_, e)| e.value < threshold && vetoed(e.value))
                .map(|(k, _)| (*k, RULE.to_owned()))
                .collect();
            let got_keys: Vec<(u8, u64)> = plan.keys().iter().map(|(k, r)| (*k, r.get())).collect();
            prop_assert_eq!(got_keys, keys.clone());
            prop_assert_eq!(plan.vetoed(), &vetoed_keys[..]);
            prop_assert_eq!(plan.count(), keys.len());
            prop_assert_eq!(plan.at_revision().get(), model.last_revision);
            sys.plan_ids.push(plan.id());
            model.plans.push(MPlan {
                map: m,
                keys,
                used: false,
            });
        }
        Step::Execute(m, pick, offset, given) => {
            let chosen = (!model.plans.is_empty()).then(|| pick % model.plans.len());
            let id = chosen.map_or(PlanId::new(0x5afe), |i| sys.plan_ids[i]);
            let planned = chosen.map_or(0, |i| model.plans[i].keys.len());
            let count = planned.saturating_add_signed(offset as isize);
            let got = sys.maps[m].execute(id, count, reason(given));
            let want: Result<_, ExecuteError> = (|| {
                if !given {
                    return Err(ExecuteError::ReasonRequired);
                }
                let i = chosen
                    .filter(|i| model.plans[*i].map == m)
                    .ok_or(ExecuteError::NotFound)?;
                if model.plans[i].used {
                    return Err(ExecuteError::Gone);
                }
                if count != planned {
                    return Err(ExecuteError::ConfirmCountMismatch {
                        expected: planned,
                        got: count,
                    });
                }
                model.plans[i].used = true;
                let (mut deleted, mut conflicts, mut vetoed_keys, mut ids) =
                    (0, vec![], vec![], vec![]);
                for (key, revision) in model.plans[i].keys.clone() {
                    match model.remove(m, key, Some(Revision::new(revision)), "proof", Some(i)) {
                        Ok((.., id)) => {
                            deleted += 1;
                            ids.push(id);
                        }
                        Err(DeleteError::Vetoed { rule }) => vetoed_keys.push((key, rule)),
                        Err(DeleteError::RevisionMismatch { current }) => {
                            conflicts.push((key, revision, current.map(Revision::get)))
                        }
                        Err(_) => conflicts.push((key, revision, None)),
                    }
                }
                let range = ids.first().map(|f| (*f, *ids.last().unwrap()));
                Ok((deleted, conflicts, vetoed_keys, range))
            })();
            let got = got.map(|r| {
                (
                    r.deleted,
                    r.conflicts
                        .iter()
                        .map(|c| {
                            (
                                c.key,
                                c.planned_revision.get(),
                                c.current_revision.map(Revision::get),
                            )
                        })
                        .collect::<Vec<_>>(),
                    r.vetoed,
                    r.audit_ids.map(|(a, b)| (a.get(), b.get())),
                )
            });
            prop_assert_eq!(got, want);
        }
        Step::Restore(m, pick, given) => {
            let id = 1 + (pick as u64) % (model.records.len() as u64 + 2);
            let why = if given {
                Reason::new("undo")
            } else {
                Reason::new("")
            };
            let got = sys.maps[m].restore(AuditId::new(id), why);
            let want = (|| {
                if !given {
                    return Err(RestoreError::ReasonRequired);
                }
                let record = model
                    .records
                    .get(id as usize - 1)
                    .filter(|r| r.map == m)
                    .ok_or(RestoreError::NotFound)?;
                if record.op != Op::Delete {
                    return Err(RestoreError::NotADelete);
                }
                Ok(model.restore(m, &[id]))
            })();
            let got = got.map(|r| {
                (
                    r.restored
                        .iter()
                        .map(|(k, rev)| (*k, rev.get()))
                        .collect::<Vec<_>>(),
                    r.skipped,
                )
            });
            prop_assert_eq!(got, want);
        }
        Step::RestorePlan(m, pick) => {
            let chosen = (!model.plans.is_empty()).then(|| pick % model.plans.len());
            let id = chosen.map_or(PlanId::new(0x5afe), |i| sys.plan_ids[i]);
            let got = sys.maps[m].restore_plan(id, "undo");
            let want = (|| {
                let ids: Vec<u64> = model
                    .records
                    .iter()
                    .filter(|r| {
                        chosen.is_some() && r.plan == chosen && r.map == m && r.op == Op::Delete
                    })
                    .map(|r| r.id)
                    .collect();
                if ids.is_empty() {
                    let known =
                        chosen.is_some_and(|i| model.plans[i].map == m && model.plans[i].used);
                    return if known {
                        Ok((vec![], vec![]))
                    } else {
                        Err(RestoreError::NotFound)
                    };
                }
                Ok(model.restore(m, &ids))
            })();
            let got = got.map(|r| {
                (
                    r.restored
                        .iter()
                        .map(|(k, rev)| (*k, rev.get()))
                        .collect::<Vec<_>>(),
                    r.skipped,
                )
            });
            prop_assert_eq!(got, want);
        }
    }
    Ok(())
}

/// Compares the whole observable state.
fn compare(sys: &System, model: &Model) -> Result<(), TestCaseError> {
    for m in 0..2 {
        let map = &sys.maps[m];
        let snapshot = map.snapshot();
        prop_assert_eq!(snapshot.revision().get(), model.last_revision);
        let mut got: Vec<(u8, MEntry)> = snapshot
            .iter()
            .map(|(k, e)| {
                (
                    *k,
                    MEntry {
                        value: *e.value(),
                        revision: e.revision().get(),
                        create: e.create_revision().get(),
                        version: e.version(),
                    },
                )
            })
            .collect();
        got.sort_by_key(|(k, _)| *k);
        let want: Vec<(u8, MEntry)> = model.maps[m].iter().map(|(k, e)| (*k, *e)).collect();
        prop_assert_eq!(got, want, "map {}", NAMES[m]);
        prop_assert_eq!(map.len(), model.maps[m].len());
        prop_assert_eq!(map.current_revision().get(), model.last_revision);
        let stats = map.stats();
        let c = &model.counts[m];
        let got = (
            stats.entries,
            stats.hits,
            stats.misses,
            stats.puts,
            stats.deletes.deleted,
            stats.deletes.vetoed,
            stats.deletes.mismatch,
            stats.deletes.not_found,
            stats.journal_len,
        );
        let want = (
            model.maps[m].len(),
            c.hits,
            c.misses,
            c.puts,
            c.deleted,
            c.vetoed,
            c.mismatch,
            c.not_found,
            model.records.len(),
        );
        prop_assert_eq!(got, want, "stats of map {}", NAMES[m]);
        prop_assert_eq!(stats.vetoes_by_rule, vec![(RULE.to_owned(), c.vetoed)]);
    }
    let records = sys.journal.query(&AuditQuery::default());
    prop_assert_eq!(records.len(), model.records.len());
    prop_assert_eq!(
        sys.journal.last_audit_id().get(),
        model.records.len() as u64
    );
    for (got, want) in records.iter().zip(&model.records) {
        let got = MRecord {
            id: got.id.get(),
            map: NAMES.iter().position(|n| **n == *got.map).unwrap(),
            key: got.key,
            op: got.op,
            revision: got.revision.get(),
            previous_revision: got.previous_revision.map(Revision::get),
            create_revision: got.create_revision.get(),
            version: got.version,
            reason: got.reason.clone(),
            plan: got
                .plan_id
                .map(|p| sys.plan_ids.iter().position(|q| *q == p).unwrap()),
            value: got.value,
            previous_value: got.previous_value,
        };
        prop_assert_eq!(&got, want);
    }
    Ok(())
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut sys = System::new();
    let mut model = Model::default();
    for (i, step) in steps.iter().enumerate() {
        apply(&mut sys, &mut model, step)
            .map_err(|e| TestCaseError::fail(format!("step {i} {step:?}: {e}")))?;
        compare(&sys, &model)
            .map_err(|e| TestCaseError::fail(format!("after step {i} {step:?}: {e}")))?;
    }
    // A watcher from the first revision replays each map's records exactly.
    for m in 0..2 {
        let mut watcher = sys.maps[m].watch(Some(Revision::new(1))).unwrap();
        let mut seen = Vec::new();
        while let Some(event) = watcher.try_next().unwrap() {
            seen.push(event.id.get());
        }
        let want: Vec<u64> = model
            .records
            .iter()
            .filter(|r| r.map == m)
            .map(|r| r.id)
            .collect();
        prop_assert_eq!(seen, want, "watch of map {}", NAMES[m]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::scaled(1000, 50_000) as u32,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_sequences_match_the_model(steps in prop::collection::vec(step(), 1..60)) {
        run(&steps)?;
    }
}

/// A fixed sequence through the paths random cases reach only sometimes: a
/// plan executed after some planned keys changed, and restores that find the
/// key recreated.
#[test]
fn a_plan_with_changed_keys_and_restores_of_recreated_keys_match_the_model() {
    let steps = vec![
        Step::Insert(0, 1, 1),
        Step::Insert(0, 2, 2),
        Step::Insert(0, 3, 14),
        Step::Insert(0, 4, 3),
        Step::Plan(0, 20),
        Step::Insert(0, 2, 5),
        Step::RemoveIf(0, 4, RevPick::Current),
        Step::Execute(0, 0, 1, true),
        Step::Execute(0, 0, 0, true),
        Step::Execute(0, 0, 0, true),
        Step::Execute(1, 0, 0, true),
        Step::Insert(0, 1, 9),
        Step::RestorePlan(0, 0),
        Step::Restore(0, 6, true),
        Step::Restore(1, 6, true),
        Step::Restore(0, 0, true),
        Step::Restore(0, 6, false),
    ];
    run(&steps).unwrap();
}
