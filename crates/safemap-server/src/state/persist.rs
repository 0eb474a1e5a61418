//! Persistence of records: the journal sink that hands every audit record to
//! the storage writer, and the conversions between journal and stored records.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use safemap::{AuditId, AuditRecord, JournalSink, Op, PlanId, Revision};
use serde_json::Value;

use super::Record;
use crate::storage::{Msg, Persist, StoredOp, StoredRecord};

/// The journal's sink: forwards each record to the storage writer.
pub(crate) struct StorageSink(pub std::sync::mpsc::Sender<Msg>);

struct RecordRef(Arc<Record>);

impl Persist for RecordRef {
    fn to_stored(&self) -> StoredRecord {
        to_stored(&self.0)
    }
}

impl JournalSink<String, Value> for StorageSink {
    fn append(&self, record: &Arc<Record>) {
        // Only enqueue: this runs under the library's write lock.
        let _ = self
            .0
            .send(Msg::Record(Box::new(RecordRef(Arc::clone(record)))));
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The stored form of a journal record.
pub fn to_stored(r: &Record) -> StoredRecord {
    StoredRecord {
        id: r.id.get(),
        at_ms: ms(r.at),
        map: r.map.to_string(),
        key: r.key.clone(),
        op: match r.op {
            Op::Put => StoredOp::Put,
            Op::Delete => StoredOp::Delete,
            Op::Restore => StoredOp::Restore,
        },
        revision: r.revision.get(),
        previous_revision: r.previous_revision.map(Revision::get),
        create_revision: r.create_revision.get(),
        version: r.version,
        reason: r.reason.clone(),
        actor: r.actor.clone(),
        trace_id: r.trace_id.clone(),
        plan_id: r.plan_id.map(|p| p.to_string()),
        value: r.value.clone(),
        previous_value: r.previous_value.clone(),
    }
}

/// The journal form of a stored record.
pub fn from_stored(r: StoredRecord) -> Record {
    AuditRecord {
        id: AuditId::new(r.id),
        at: UNIX_EPOCH + Duration::from_millis(r.at_ms),
        map: Arc::from(r.map.as_str()),
        key: r.key,
        op: match r.op {
            StoredOp::Put => Op::Put,
            StoredOp::Delete => Op::Delete,
            StoredOp::Restore => Op::Restore,
        },
        revision: Revision::new(r.revision),
        previous_revision: r.previous_revision.map(Revision::new),
        create_revision: Revision::new(r.create_revision),
        version: r.version,
        reason: r.reason,
        actor: r.actor,
        trace_id: r.trace_id,
        plan_id: r.plan_id.and_then(|p| p.parse::<PlanId>().ok()),
        value: r.value,
        previous_value: r.previous_value,
    }
}
