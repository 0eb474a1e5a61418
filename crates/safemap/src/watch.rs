//! A change stream: the journal's records of one map, in revision order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_listener::Listener;

use crate::error::WatchError;
use crate::ids::Revision;
use crate::journal::{AuditRecord, Journal};

/// One change: the audit record of a write (its `value` is set for puts and restores).
pub type Event<K, V> = Arc<AuditRecord<K, V>>;

/// Follows the writes of one map, from a chosen revision, in revision order,
/// with no gaps and no duplicates.
///
/// A watcher reads the journal at its own pace and never slows writers down. If
/// it falls so far behind that records it still needs were evicted, it gets
/// [`WatchError::Compacted`] instead of silently missing them.
///
/// Why there are no gaps: a write appends its record under the journal's write
/// lock, after its revision was drawn and its entry published; records are
/// therefore appended in revision order and a watcher that reads up to id n has
/// seen every write with a smaller revision.
pub struct Watcher<K, V> {
    journal: Journal<K, V>,
    map: Arc<str>,
    next_id: u64,
    min_revision: Revision,
}

impl<K, V> Watcher<K, V> {
    pub(crate) fn start(
        journal: Journal<K, V>,
        map: Arc<str>,
        from: Option<Revision>,
    ) -> Result<Self, WatchError> {
        if !journal.is_recording() {
            return Err(WatchError::JournalDisabled);
        }
        let next_id = journal
            .register_watcher(from)
            .map_err(|oldest| WatchError::Compacted { oldest })?;
        Ok(Watcher {
            journal,
            map,
            next_id,
            min_revision: from.unwrap_or(Revision::ZERO),
        })
    }

    /// The next event if one is ready.
    ///
    /// # Errors
    ///
    /// [`WatchError::Compacted`] when the next event was evicted before it was read.
    pub fn try_next(&mut self) -> Result<Option<Event<K, V>>, WatchError> {
        let (event, next_id) = self
            .journal
            .next_for_map(&self.map, self.next_id, self.min_revision)
            .map_err(|oldest| WatchError::Compacted { oldest })?;
        self.next_id = next_id;
        Ok(event)
    }

    /// The next event, waiting up to `timeout` for one (`Ok(None)` on time-out).
    ///
    /// # Errors
    ///
    /// As [`Watcher::try_next`].
    pub fn next_blocking(&mut self, timeout: Duration) -> Result<Option<Event<K, V>>, WatchError> {
        let deadline = Instant::now() + timeout;
        loop {
            // Listen before looking, so that a write landing in between still wakes us.
            let listener = self.journal.listen();
            if let Some(event) = self.try_next()? {
                return Ok(Some(event));
            }
            if listener.wait_deadline(deadline).is_none() {
                return self.try_next();
            }
        }
    }

    /// The next event, waiting as long as it takes (runtime-agnostic future).
    ///
    /// # Errors
    ///
    /// As [`Watcher::try_next`].
    pub async fn next(&mut self) -> Result<Event<K, V>, WatchError> {
        loop {
            let listener = self.journal.listen();
            if let Some(event) = self.try_next()? {
                return Ok(event);
            }
            listener.await;
        }
    }
}

impl<K, V> Drop for Watcher<K, V> {
    /// Puts stop being recorded for this watcher (others may still need them).
    fn drop(&mut self) {
        self.journal.unregister_watcher();
    }
}
