use std::sync::Arc;

use super::AuditRecord;

/// Receives every audit record as it is appended: the server makes them durable
/// through it, a service may ship them elsewhere.
///
/// `append` is called under the journal's sequencer lock, in id order and
/// without gaps, so it must be quick and must not block: enqueue the record and
/// do the slow work elsewhere. It must not call back into a map of the journal.
pub trait JournalSink<K, V>: Send + Sync {
    /// Takes one record.
    fn append(&self, record: &Arc<AuditRecord<K, V>>);
}
