//! The sequential model of one key of a `SafeMap<u32, u32>`, as a
//! [`Spec`](super::linearizability::Spec) for the linearizability checker.
//!
//! A map is P-compositional (Herlihy & Wing: linearizability is local), so a
//! history of a whole map is linearizable iff each key's sub-history is.
//! Multi-key operations (`refresh`) are split into one operation per key with
//! the same interval, which every linearizable execution also satisfies.
//!
//! The model checks the values *and* the revision bookkeeping: a write's
//! revision exceeds every earlier revision of the key (also across a removal),
//! `create_revision` and `version` follow etcd's rules, and conditional writes
//! and removals succeed exactly when their condition holds.

use safemap::{DeleteError, Entry, Expect, PutError, Removed, Revision, Written};

use super::linearizability::Spec;

/// The deny rule the concurrent tests install: values ending in 9 are vetoed.
pub fn vetoed(value: u32) -> bool {
    value % 10 == 9
}

/// The name of that rule.
pub const RULE: &str = "nines";

/// A present entry, as the model holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cell {
    /// The value.
    pub value: u32,
    /// The revision of the last write.
    pub revision: u64,
    /// The revision that created it.
    pub create: u64,
    /// Writes since creation.
    pub version: u64,
}

/// One key's state: the entry if present, and the highest revision the key
/// has seen (which survives removal: no later write may go below it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyState {
    /// The entry, `None` when absent.
    pub cell: Option<Cell>,
    /// The revision of the key's last write, its removal included.
    pub floor: u64,
}

/// One operation on one key, with the response the map gave.
#[derive(Clone, Debug)]
pub enum KeyOp {
    /// `get`.
    Get(Option<Entry<u32>>),
    /// `put` (and so `insert`, `insert_if_absent`, `replace_if`).
    Put {
        /// The value written.
        value: u32,
        /// The condition.
        expect: Expect,
        /// The answer.
        result: Result<Written, PutError>,
    },
    /// One key of a `refresh`: an unconditional upsert at this revision.
    Upsert {
        /// The value written.
        value: u32,
        /// The revision `refresh` returned for it.
        revision: Revision,
    },
    /// `remove` (`expect: None`) or `remove_if`.
    Remove {
        /// The expected revision of `remove_if`.
        expect: Option<Revision>,
        /// The answer.
        result: Result<Removed<u32>, DeleteError>,
    },
}

impl KeyOp {
    /// The revision of a successful write, if this is one.
    pub fn written_revision(&self) -> Option<Revision> {
        match self {
            KeyOp::Put { result: Ok(w), .. } => Some(w.revision()),
            KeyOp::Upsert { revision, .. } => Some(*revision),
            KeyOp::Remove { result: Ok(r), .. } => Some(r.revision()),
            _ => None,
        }
    }
}

/// The per-key sequential specification.
pub struct KeySpec;

fn put_cell(state: &KeyState, value: u32, revision: u64) -> Option<KeyState> {
    if revision <= state.floor {
        return None;
    }
    let (create, version) = match state.cell {
        Some(c) => (c.create, c.version + 1),
        None => (revision, 1),
    };
    Some(KeyState {
        cell: Some(Cell {
            value,
            revision,
            create,
            version,
        }),
        floor: revision,
    })
}

impl Spec for KeySpec {
    type State = KeyState;
    type Op = KeyOp;

    fn step(state: &KeyState, op: &KeyOp) -> Option<KeyState> {
        let current = state.cell.map(|c| Revision::new(c.revision));
        match op {
            KeyOp::Get(seen) => {
                let expected = state
                    .cell
                    .map(|c| (c.value, c.revision, c.create, c.version));
                let got = seen.as_ref().map(|e| {
                    (
                        *e.value(),
                        e.revision().get(),
                        e.create_revision().get(),
                        e.version(),
                    )
                });
                (expected == got).then_some(*state)
            }
            KeyOp::Put {
                value,
                expect,
                result,
            } => {
                let holds = match expect {
                    Expect::Any => true,
                    Expect::Absent => current.is_none(),
                    Expect::Revision(r) => current == Some(*r),
                };
                match (holds, result) {
                    (true, Ok(w)) => {
                        let next = put_cell(state, *value, w.revision().get())?;
                        let cell = next.cell?;
                        let consistent = w.previous_revision() == current
                            && w.create_revision().get() == cell.create
                            && w.version() == cell.version;
                        consistent.then_some(next)
                    }
                    (false, Err(PutError::AlreadyExists { current: c })) => {
                        (matches!(expect, Expect::Absent) && current == Some(*c)).then_some(*state)
                    }
                    (false, Err(PutError::RevisionMismatch { current: c })) => {
                        (matches!(expect, Expect::Revision(_)) && current == *c).then_some(*state)
                    }
                    _ => None,
                }
            }
            KeyOp::Upsert { value, revision } => put_cell(state, *value, revision.get()),
            KeyOp::Remove { expect, result } => {
                let expected_err = match state.cell {
                    None => Some(DeleteError::NotFound),
                    Some(c) if expect.is_some_and(|r| r.get() != c.revision) => {
                        Some(DeleteError::RevisionMismatch { current })
                    }
                    Some(c) if vetoed(c.value) => Some(DeleteError::Vetoed { rule: RULE.into() }),
                    Some(_) => None,
                };
                match (expected_err, result) {
                    (Some(want), Err(got)) => (want == *got).then_some(*state),
                    (None, Ok(removed)) => {
                        let cell = state.cell?;
                        let rev = removed.revision().get();
                        let consistent = *removed.value() == cell.value
                            && removed.previous_revision().get() == cell.revision
                            && rev > state.floor;
                        consistent.then_some(KeyState {
                            cell: None,
                            floor: rev,
                        })
                    }
                    _ => None,
                }
            }
        }
    }
}
