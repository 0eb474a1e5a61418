//! What a route waits for before it answers: the durable point of each kind
//! of library outcome, so routes say "until this is durable" and never build
//! storage targets themselves.

use safemap::{ExecuteReport, Removed, RestoreReport, Revision, Written};

use super::{Record, Shared};
use crate::error::ApiError;
use crate::storage::Target;

/// A library outcome whose writes must be durable before it is acknowledged.
pub trait DurablePoint {
    /// The last write it made, or None when it wrote nothing.
    fn durable_target(&self) -> Option<Target>;
}

impl DurablePoint for Written {
    fn durable_target(&self) -> Option<Target> {
        Some(match self.audit_id() {
            Some(id) => Target::AuditId(id.get()),
            None => Target::Revision(self.revision().get()),
        })
    }
}

impl<V> DurablePoint for Removed<V> {
    fn durable_target(&self) -> Option<Target> {
        Some(match self.audit_id() {
            Some(id) => Target::AuditId(id.get()),
            None => Target::Revision(self.revision().get()),
        })
    }
}

impl<K> DurablePoint for ExecuteReport<K> {
    fn durable_target(&self) -> Option<Target> {
        self.audit_ids.map(|(_, last)| Target::AuditId(last.get()))
    }
}

impl<K> DurablePoint for RestoreReport<K> {
    fn durable_target(&self) -> Option<Target> {
        // A cascading plan's restore writes to other maps too.
        let others = self.other_maps.iter().filter_map(|m| m.outcome.ok());
        let last = self.restored.iter().map(|(_, r)| *r).chain(others).max()?;
        Some(Target::Revision(last.get()))
    }
}

/// The revisions of a refresh.
impl DurablePoint for [Revision] {
    fn durable_target(&self) -> Option<Target> {
        self.iter().max().map(|r| Target::Revision(r.get()))
    }
}

/// An audit record shown to a reader (audit queries, watch events).
impl DurablePoint for Record {
    fn durable_target(&self) -> Option<Target> {
        Some(Target::AuditId(self.id.get()))
    }
}

impl Shared {
    /// Waits until what `outcome` wrote is durable, or answers 503.
    pub async fn until_durable<P: DurablePoint + ?Sized>(
        &self,
        outcome: &P,
    ) -> Result<(), ApiError> {
        match outcome.durable_target() {
            None => Ok(()),
            Some(target) => match &self.store {
                super::Store::Local(storage) => storage
                    .wait_durable(target)
                    .await
                    .map_err(|_| ApiError::storage_unavailable()),
                // Everything the replica holds was committed by etcd before it
                // was applied, and nothing is written locally in cluster mode.
                #[cfg(feature = "etcd")]
                super::Store::Etcd(_) => Ok(()),
            },
        }
    }
}
