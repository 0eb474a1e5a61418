//! What the map stores per key, and what reads and writes hand back.

use crate::ids::{AuditId, Revision};

/// The stored form of an entry: a value with its place in the map's history.
///
/// Invariant: a `Versioned` is immutable once published in the table; a write
/// replaces it whole, so a reader always sees a value together with the
/// revision that wrote it.
#[derive(Debug)]
pub(crate) struct Versioned<V> {
    pub(crate) value: V,
    pub(crate) revision: Revision,
    pub(crate) create_revision: Revision,
    pub(crate) version: u64,
}

/// An entry read from the map: a copy of the value plus its revisions.
///
/// * `revision` — the revision of the last write to this key;
/// * `create_revision` — the revision that created the key (since its last removal);
/// * `version` — the number of writes since creation, starting at 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<V> {
    value: V,
    revision: Revision,
    create_revision: Revision,
    version: u64,
}

impl<V> Entry<V> {
    pub(crate) fn from_versioned(stored: &Versioned<V>) -> Self
    where
        V: Clone,
    {
        Entry {
            value: stored.value.clone(),
            revision: stored.revision,
            create_revision: stored.create_revision,
            version: stored.version,
        }
    }

    /// The value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// The value, owned.
    pub fn into_value(self) -> V {
        self.value
    }

    /// The revision of the last write to this key.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The revision that created this key.
    pub fn create_revision(&self) -> Revision {
        self.create_revision
    }

    /// Writes since creation, starting at 1.
    pub fn version(&self) -> u64 {
        self.version
    }
}

/// An entry borrowed from a [`Pinned`](crate::Pinned) view: no copy, valid while
/// the view lives.
#[derive(Debug)]
pub struct EntryRef<'g, K, V> {
    pub(crate) key: &'g K,
    pub(crate) stored: &'g Versioned<V>,
}

impl<K, V> Clone for EntryRef<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for EntryRef<'_, K, V> {}

impl<'g, K, V> EntryRef<'g, K, V> {
    /// The key.
    pub fn key(&self) -> &'g K {
        self.key
    }

    /// The value.
    pub fn value(&self) -> &'g V {
        &self.stored.value
    }

    /// The revision of the last write to this key.
    pub fn revision(&self) -> Revision {
        self.stored.revision
    }

    /// The revision that created this key.
    pub fn create_revision(&self) -> Revision {
        self.stored.create_revision
    }

    /// Writes since creation, starting at 1.
    pub fn version(&self) -> u64 {
        self.stored.version
    }

    /// An owned copy.
    pub fn to_entry(&self) -> Entry<V>
    where
        V: Clone,
    {
        Entry::from_versioned(self.stored)
    }
}

/// The outcome of a successful put.
#[must_use = "a write result tells which revision was written"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    pub(crate) revision: Revision,
    pub(crate) create_revision: Revision,
    pub(crate) version: u64,
    pub(crate) previous_revision: Option<Revision>,
    pub(crate) audit_id: Option<AuditId>,
}

impl Written {
    /// The revision of this write.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The revision that created the key.
    pub fn create_revision(&self) -> Revision {
        self.create_revision
    }

    /// Writes since creation, starting at 1.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether this write created the key.
    pub fn created(&self) -> bool {
        self.previous_revision.is_none()
    }

    /// The revision the key had before, if it existed.
    pub fn previous_revision(&self) -> Option<Revision> {
        self.previous_revision
    }

    /// The audit record of this write (`None` when the journal is off).
    pub fn audit_id(&self) -> Option<AuditId> {
        self.audit_id
    }
}

/// The outcome of a successful removal: the value that was removed.
#[must_use = "a removal result tells what was removed"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed<V> {
    pub(crate) value: V,
    pub(crate) revision: Revision,
    pub(crate) previous_revision: Revision,
    pub(crate) audit_id: Option<AuditId>,
}

impl<V> Removed<V> {
    /// The value that was removed.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// The value that was removed, owned.
    pub fn into_value(self) -> V {
        self.value
    }

    /// The revision of the removal itself.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The revision of the entry that was removed.
    pub fn previous_revision(&self) -> Revision {
        self.previous_revision
    }

    /// The audit record of the removal (`None` when the journal is off).
    pub fn audit_id(&self) -> Option<AuditId> {
        self.audit_id
    }
}
