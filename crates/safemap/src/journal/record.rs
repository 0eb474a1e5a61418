use std::sync::Arc;
use std::time::SystemTime;

use crate::ids::{AuditId, PlanId, Revision};

/// What kind of write an audit record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// An insert, replace or refresh.
    Put,
    /// A removal (single-key, planned, or by `retain`).
    Delete,
    /// A removed value written back by `restore`.
    Restore,
}

impl Op {
    /// `"put"`, `"delete"` or `"restore"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Delete => "delete",
            Op::Restore => "restore",
        }
    }

    /// Parses [`Op::as_str`]'s output back.
    pub fn parse(text: &str) -> Option<Op> {
        match text {
            "put" => Some(Op::Put),
            "delete" => Some(Op::Delete),
            "restore" => Some(Op::Restore),
            _ => None,
        }
    }
}

/// One successful write, as the journal keeps it.
///
/// Every successful write has exactly one record; refused writes have none.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord<K, V> {
    /// Increasing in append order.
    pub id: AuditId,
    /// When the write was made.
    pub at: SystemTime,
    /// The name of the map written to.
    pub map: Arc<str>,
    /// The key written.
    pub key: K,
    /// What the write did.
    pub op: Op,
    /// The revision of this write.
    pub revision: Revision,
    /// The key's revision before this write (`None` when it was absent).
    pub previous_revision: Option<Revision>,
    /// The key's create revision after a put or restore; for a delete, the
    /// create revision of the entry that was removed.
    pub create_revision: Revision,
    /// The key's version after a put or restore; for a delete, the version of
    /// the entry that was removed.
    pub version: u64,
    /// Why (`None` when the write gave no reason).
    pub reason: Option<String>,
    /// Who.
    pub actor: Option<String>,
    /// The trace the write belongs to.
    pub trace_id: Option<String>,
    /// The plan a planned removal belonged to.
    pub plan_id: Option<PlanId>,
    /// The value written by a put or restore.
    pub value: Option<V>,
    /// The value a delete removed (what a restore writes back).
    pub previous_value: Option<V>,
}
