//! The sequential model: a `BTreeMap` per map, a `Vec` journal, plans and
//! counters, with the library's documented semantics written out plainly.

use std::collections::BTreeMap;

use safemap::{DeleteError, Expect, Op, PutError, Revision, Skip};

use super::steps::RevPick;
use super::{RULE, vetoed};

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MEntry {
    pub(crate) value: u32,
    pub(crate) revision: u64,
    pub(crate) create: u64,
    pub(crate) version: u64,
}

/// A journal record as the model expects it (every field but `at`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MRecord {
    pub(crate) id: u64,
    pub(crate) map: usize,
    pub(crate) key: u8,
    pub(crate) op: Op,
    pub(crate) revision: u64,
    pub(crate) previous_revision: Option<u64>,
    pub(crate) create_revision: u64,
    pub(crate) version: u64,
    pub(crate) reason: Option<String>,
    pub(crate) plan: Option<usize>,
    pub(crate) value: Option<u32>,
    pub(crate) previous_value: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct MCounts {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) puts: u64,
    pub(crate) deleted: u64,
    pub(crate) vetoed: u64,
    pub(crate) mismatch: u64,
    pub(crate) not_found: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct MPlan {
    pub(crate) map: usize,
    pub(crate) keys: Vec<(u8, u64)>,
    pub(crate) used: bool,
}

#[derive(Default)]
pub(crate) struct Model {
    pub(crate) maps: [BTreeMap<u8, MEntry>; 2],
    pub(crate) counts: [MCounts; 2],
    pub(crate) last_revision: u64,
    pub(crate) records: Vec<MRecord>,
    pub(crate) plans: Vec<MPlan>,
    /// Every revision handed out, for stale picks.
    pub(crate) revisions: Vec<u64>,
}

/// What a model restore answered: (restored, skipped).
pub(crate) type MRestored = (Vec<(u8, u64)>, Vec<(u8, Skip)>);

/// What a model removal answered.
pub(crate) type MRemoved = Result<(u32, u64, u64, u64), DeleteError>;

impl Model {
    pub(crate) fn resolve(&self, m: usize, key: u8, pick: &RevPick) -> Revision {
        Revision::new(match pick {
            RevPick::Current => self.maps[m].get(&key).map_or(0, |e| e.revision),
            RevPick::Stale(i) if !self.revisions.is_empty() => {
                self.revisions[i % self.revisions.len()]
            }
            RevPick::Stale(_) => 0,
            RevPick::Raw(r) => *r,
        })
    }

    pub(crate) fn next_revision(&mut self) -> u64 {
        self.last_revision += 1;
        self.revisions.push(self.last_revision);
        self.last_revision
    }

    pub(crate) fn append(&mut self, mut record: MRecord) -> u64 {
        record.id = self.records.len() as u64 + 1;
        self.records.push(record);
        self.records.len() as u64
    }

    /// A put; `Ok((revision, create, version, previous, audit id))`.
    pub(crate) fn put(
        &mut self,
        m: usize,
        key: u8,
        value: u32,
        expect: Expect,
        op: Op,
        reason: Option<&str>,
    ) -> Result<(u64, u64, u64, Option<u64>, u64), PutError> {
        let current = self.maps[m].get(&key).copied();
        let current_rev = current.map(|c| Revision::new(c.revision));
        match expect {
            Expect::Absent if current.is_some() => {
                return Err(PutError::AlreadyExists {
                    current: current_rev.unwrap(),
                });
            }
            Expect::Revision(r) if current_rev != Some(r) => {
                return Err(PutError::RevisionMismatch {
                    current: current_rev,
                });
            }
            _ => {}
        }
        let revision = self.next_revision();
        let (create, version) = current.map_or((revision, 1), |c| (c.create, c.version + 1));
        self.maps[m].insert(
            key,
            MEntry {
                value,
                revision,
                create,
                version,
            },
        );
        let id = self.append(MRecord {
            id: 0,
            map: m,
            key,
            op,
            revision,
            previous_revision: current.map(|c| c.revision),
            create_revision: create,
            version,
            reason: reason.map(str::to_owned),
            plan: None,
            value: Some(value),
            previous_value: None,
        });
        self.counts[m].puts += 1;
        Ok((revision, create, version, current.map(|c| c.revision), id))
    }

    /// A removal under the lock (reason already checked); `Ok((value, revision, previous, id))`.
    pub(crate) fn remove(
        &mut self,
        m: usize,
        key: u8,
        expect: Option<Revision>,
        reason: &str,
        plan: Option<usize>,
    ) -> MRemoved {
        let counts = &mut self.counts[m];
        let Some(current) = self.maps[m].get(&key).copied() else {
            counts.not_found += 1;
            return Err(DeleteError::NotFound);
        };
        if expect.is_some_and(|r| r.get() != current.revision) {
            counts.mismatch += 1;
            return Err(DeleteError::RevisionMismatch {
                current: Some(Revision::new(current.revision)),
            });
        }
        if vetoed(current.value) {
            counts.vetoed += 1;
            return Err(DeleteError::Vetoed { rule: RULE.into() });
        }
        counts.deleted += 1;
        let revision = self.next_revision();
        self.maps[m].remove(&key);
        let id = self.append(MRecord {
            id: 0,
            map: m,
            key,
            op: Op::Delete,
            revision,
            previous_revision: Some(current.revision),
            create_revision: current.create,
            version: current.version,
            reason: Some(reason.to_owned()),
            plan,
            value: None,
            previous_value: Some(current.value),
        });
        Ok((current.value, revision, current.revision, id))
    }

    /// Restores the given delete records in order: (restored, skipped).
    pub(crate) fn restore(&mut self, m: usize, ids: &[u64]) -> MRestored {
        let (mut restored, mut skipped) = (Vec::new(), Vec::new());
        for id in ids {
            let record = self.records[*id as usize - 1].clone();
            let value = record.previous_value.unwrap();
            match self.put(
                m,
                record.key,
                value,
                Expect::Absent,
                Op::Restore,
                Some("undo"),
            ) {
                Ok((revision, ..)) => restored.push((record.key, revision)),
                Err(_) => skipped.push((record.key, Skip::Recreated)),
            }
        }
        (restored, skipped)
    }
}
