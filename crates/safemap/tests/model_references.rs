//! Random single-threaded sequences of writes to three maps that refer to
//! each other, against a sequential model of references.
//!
//! `parents` is referred to by `children` (cascade) and by `holds`
//! (restrict); child 3 may not be removed (deny rule "three"). Steps: puts to any map (referring to any parent key or none),
//! single removals, cascading and plain plans of any set of parents executed
//! right away or after one more step, and the restore of an executed plan.
//! The model is a `BTreeMap` per map; after every step the outcome (ok, or
//! which refusal) is compared, then every map's contents, and every parent's
//! `referrers` against the referrers the model derives from the values.
//!
//! CI: 500 cases; `SAFEMAP_PROOF_LONG=1`: 20 000 cases.

#![allow(clippy::unwrap_used, clippy::needless_range_loop)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use safemap::{
    BlockedWhy, DeleteError, Expect, Journal, OnDelete, PutError, Reason, SafeMap, Selector,
};

type Map = SafeMap<u8, Option<u8>>;

/// parents, children, holds.
const MAPS: [&str; 3] = ["parents", "children", "holds"];
const KEYS: u8 = 5;

#[derive(Clone, Debug)]
enum Step {
    Put(usize, u8, Option<u8>),
    Remove(usize, u8),
    Plan {
        roots: Vec<u8>,
        cascade: bool,
        meanwhile: Option<Box<Step>>,
    },
    RestoreLast,
}

fn simple() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize, 0..KEYS, proptest::option::of(0..KEYS))
            .prop_map(|(m, k, r)| Step::Put(m, k, r)),
        2 => (0..3usize, 0..KEYS).prop_map(|(m, k)| Step::Remove(m, k)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => simple(),
        2 => (
            proptest::collection::vec(0..KEYS, 1..4),
            any::<bool>(),
            proptest::option::of(simple())
        )
            .prop_map(|(roots, cascade, m)| Step::Plan {
                roots,
                cascade,
                meanwhile: m.map(Box::new),
            }),
        1 => Just(Step::RestoreLast),
    ]
}

/// The maps; a value is the parent key it refers to (parents' values are `None`).
struct System {
    maps: [Arc<Map>; 3],
    last_plan: Option<safemap::PlanId>,
}

fn system() -> System {
    let journal = Journal::new();
    let parents = SafeMap::builder()
        .name(MAPS[0])
        .journal(journal.clone())
        .build_shared()
        .unwrap();
    let children = SafeMap::builder()
        .name(MAPS[1])
        .journal(journal.clone())
        .deny_delete("three", |k: &u8, _| *k == 3)
        .references("parent", MAPS[0], OnDelete::Cascade, |v: &Option<u8>| *v)
        .build_shared()
        .unwrap();
    let holds = SafeMap::builder()
        .name(MAPS[2])
        .journal(journal)
        .references("parent", MAPS[0], OnDelete::Restrict, |v: &Option<u8>| *v)
        .build_shared()
        .unwrap();
    System {
        maps: [parents, children, holds],
        last_plan: None,
    }
}

#[derive(Default, Clone)]
struct Model {
    /// Each key's value and the serial of the write that wrote it (a write of
    /// an equal value is still a change, as its revision says).
    maps: [BTreeMap<u8, (Option<u8>, u64)>; 3],
    serial: u64,
    /// The last executed plan's removals: (map, key, value).
    last_plan: Option<Vec<(usize, u8, Option<u8>)>>,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Ok,
    Missing,
    Referenced(usize),
    NotFound,
    Vetoed,
    Other,
}

impl Model {
    fn referrers(&self, parent: u8) -> Vec<(usize, u8)> {
        (1..3)
            .flat_map(|m| {
                self.maps[m]
                    .iter()
                    .filter(move |(_, v)| v.0 == Some(parent))
                    .map(move |(k, _)| (m, *k))
            })
            .collect()
    }

    fn put(&mut self, m: usize, key: u8, value: Option<u8>) -> Outcome {
        // Parents refer to nothing; children and holds need their parent.
        let value = if m == 0 { None } else { value };
        if let Some(p) = value
            && !self.maps[0].contains_key(&p)
        {
            return Outcome::Missing;
        }
        self.serial += 1;
        self.maps[m].insert(key, (value, self.serial));
        Outcome::Ok
    }

    fn remove(&mut self, m: usize, key: u8) -> Outcome {
        if !self.maps[m].contains_key(&key) {
            return Outcome::NotFound;
        }
        if m == 1 && key == 3 {
            return Outcome::Vetoed;
        }
        if m == 0 && !self.referrers(key).is_empty() {
            return Outcome::Referenced(self.referrers(key).len());
        }
        self.maps[m].remove(&key);
        Outcome::Ok
    }

    /// The planned keys of each root (in key order), and the blocked roots.
    fn plan(&self, roots: &[u8], cascade: bool) -> (Vec<(usize, u8)>, BTreeMap<u8, BlockedWhy>) {
        let roots: BTreeSet<u8> = roots
            .iter()
            .copied()
            .filter(|r| self.maps[0].contains_key(r))
            .collect();
        let (mut planned, mut blocked) = (Vec::new(), BTreeMap::new());
        for root in roots {
            let referrers = self.referrers(root);
            let why = if !cascade {
                (!referrers.is_empty()).then_some(BlockedWhy::Referenced)
            } else if referrers.contains(&(1, 3)) {
                Some(BlockedWhy::Vetoed {
                    rule: "three".into(),
                })
            } else if referrers.iter().any(|(m, _)| *m == 2) {
                Some(BlockedWhy::Restricted {
                    reference: "parent".into(),
                })
            } else {
                None
            };
            match why {
                None => {
                    planned.push((0, root));
                    planned.extend(referrers);
                }
                Some(why) => {
                    blocked.insert(root, why);
                }
            }
        }
        (planned, blocked)
    }
}

fn put_value(m: usize, value: Option<u8>) -> Option<u8> {
    if m == 0 { None } else { value }
}

fn run_simple(sys: &System, model: &mut Model, s: &Step) {
    match s {
        Step::Put(m, key, value) => {
            let value = put_value(*m, *value);
            let got = match sys.maps[*m].put(*key, value, Expect::Any, &Reason::none()) {
                Ok(_) => Outcome::Ok,
                Err(PutError::ReferenceMissing { .. }) => Outcome::Missing,
                Err(_) => Outcome::Other,
            };
            assert_eq!(got, model.put(*m, *key, value), "{s:?}");
        }
        Step::Remove(m, key) => {
            let got = match sys.maps[*m].remove(key, "model") {
                Ok(_) => Outcome::Ok,
                Err(DeleteError::Referenced { count, .. }) => Outcome::Referenced(count),
                Err(DeleteError::NotFound) => Outcome::NotFound,
                Err(DeleteError::Vetoed { .. }) => Outcome::Vetoed,
                Err(_) => Outcome::Other,
            };
            assert_eq!(got, model.remove(*m, *key), "{s:?}");
        }
        _ => unreachable!("not a simple step"),
    }
}

fn run(sys: &mut System, model: &mut Model, s: &Step) {
    match s {
        Step::Plan {
            roots,
            cascade,
            meanwhile,
        } => {
            let selector = Selector::all().keys(roots.clone());
            let plan = match cascade {
                true => sys.maps[0].plan_remove_cascade(selector),
                false => sys.maps[0].plan_remove(selector),
            };
            let (planned, blocked) = model.plan(roots, *cascade);
            assert_eq!(plan.count(), planned.len(), "{s:?}");
            let got_blocked: BTreeMap<u8, BlockedWhy> = plan
                .blocked()
                .iter()
                .map(|b| (b.key, b.why.clone()))
                .collect();
            assert_eq!(got_blocked, blocked, "{s:?}");
            for b in plan.blocked() {
                assert_eq!(b.path.len(), 2, "root and the blocking key");
            }
            let before = model.clone();
            if let Some(step) = meanwhile {
                run_simple(sys, model, step);
            }
            let report = sys.maps[0]
                .execute(plan.id(), plan.count(), Reason::new("model"))
                .unwrap();
            // Per root: the whole subtree goes iff nothing of it changed and
            // no referrer appeared since the plan.
            let mut removed = Vec::new();
            let mut start = 0;
            while start < planned.len() {
                let end = planned[start + 1..]
                    .iter()
                    .position(|(m, _)| *m == 0)
                    .map_or(planned.len(), |p| start + 1 + p);
                let subtree = &planned[start..end];
                let root = subtree[0].1;
                let unchanged = subtree
                    .iter()
                    .all(|(m, k)| model.maps[*m].get(k) == before.maps[*m].get(k));
                let referrers: BTreeSet<(usize, u8)> = model.referrers(root).into_iter().collect();
                let planned_refs: BTreeSet<(usize, u8)> = subtree[1..].iter().copied().collect();
                let ok = if *cascade {
                    unchanged && referrers == planned_refs
                } else {
                    unchanged && referrers.is_empty()
                };
                if ok {
                    for (m, k) in subtree.iter().rev() {
                        let (v, _) = model.maps[*m].remove(k).unwrap();
                        removed.push((*m, *k, v));
                    }
                }
                start = end;
            }
            assert_eq!(report.deleted, removed.len(), "{s:?} {report:?}");
            model.last_plan = Some(removed);
            sys.last_plan = Some(plan.id());
        }
        Step::RestoreLast => {
            let (Some(id), Some(removed)) = (sys.last_plan, model.last_plan.take()) else {
                return;
            };
            sys.last_plan = None;
            let _ = sys.maps[0].restore_plan(id, Reason::new("undo"));
            // Parents first, each only if absent; children need their parent.
            for (m, k, v) in removed.iter().rev() {
                let absent = !model.maps[*m].contains_key(k);
                let target_ok = v.is_none_or(|p| model.maps[0].contains_key(&p));
                if absent && target_ok {
                    model.serial += 1;
                    model.maps[*m].insert(*k, (*v, model.serial));
                }
            }
        }
        simple => run_simple(sys, model, simple),
    }
}

fn check(sys: &System, model: &Model) {
    for m in 0..3 {
        let snap = sys.maps[m].snapshot();
        let got: BTreeMap<u8, Option<u8>> = snap.iter().map(|(k, e)| (*k, *e.value())).collect();
        let want: BTreeMap<u8, Option<u8>> = model.maps[m].iter().map(|(k, v)| (*k, v.0)).collect();
        assert_eq!(got, want, "map {}", MAPS[m]);
    }
    for p in 0..KEYS {
        let got: Vec<(usize, u8)> = sys.maps[0]
            .referrers(&p, None, 100)
            .into_iter()
            .map(|r| (MAPS.iter().position(|n| *n == &*r.map).unwrap(), r.key))
            .collect();
        assert_eq!(got, model.referrers(p), "referrers of {p}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::sized(500, 20_000, 5) as u32,
        ..ProptestConfig::default()
    })]

    #[test]
    fn references_match_the_model(steps in proptest::collection::vec(step(), 1..40)) {
        let mut sys = system();
        let mut model = Model::default();
        for s in &steps {
            run(&mut sys, &mut model, s);
            check(&sys, &model);
        }
    }
}
