//! One error enum per operation; each names exactly what went wrong. Errors are
//! values: no operation of this crate panics on a refused write.

use std::time::Duration;

use crate::ids::Revision;
use crate::reason::{MAX_REASON_LEN, ReasonProblem};

/// Why a conditional put was refused. Nothing was written.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// The key's current revision is not the expected one (`None`: the key is absent).
    #[error("revision mismatch: the key is at revision {}", show(*current))]
    RevisionMismatch {
        /// The key's current revision, `None` when absent.
        current: Option<Revision>,
    },
    /// The key was expected to be absent but exists.
    #[error("the key already exists at revision {current}")]
    AlreadyExists {
        /// The key's current revision.
        current: Revision,
    },
    /// The value refers, through `reference`, to a key that does not exist in
    /// map `map` (the key is what the reference's extractor returns for the value).
    #[error("reference {reference:?} names a key that does not exist in map {map:?}")]
    ReferenceMissing {
        /// The name of the reference.
        reference: String,
        /// The map it refers to.
        map: String,
    },
}

/// Why a removal was refused. Nothing was removed and nothing journaled.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeleteError {
    /// The key is absent.
    #[error("no such key")]
    NotFound,
    /// A deny rule matched the current value.
    #[error("removal vetoed by rule {rule:?}")]
    Vetoed {
        /// The name of the rule.
        rule: String,
    },
    /// The key's current revision is not the expected one (`None`: absent).
    #[error("revision mismatch: the key is at revision {}", show(*current))]
    RevisionMismatch {
        /// The key's current revision, `None` when absent.
        current: Option<Revision>,
    },
    /// Other keys refer to this one (whatever their references' `on_delete`:
    /// a cascade happens only through a plan). `map` and `reference` name the
    /// first referrer in (map, key, reference) order; the whole list is
    /// [`SafeMap::referrers`](crate::SafeMap::referrers).
    #[error("the key is referred to by {count} key(s), first through {map:?}.{reference:?}")]
    Referenced {
        /// How many referrers.
        count: usize,
        /// The first referrer's map.
        map: String,
        /// The first referrer's reference.
        reference: String,
    },
    /// The delete breaker is open: too many removals in its window.
    #[error("delete breaker open; retry after {retry_after:?}")]
    BreakerOpen {
        /// When the window has room again.
        retry_after: Duration,
    },
    /// The reason text is empty.
    #[error("a removal needs a reason")]
    ReasonRequired,
    /// The reason text is longer than [`MAX_REASON_LEN`] characters.
    #[error("the reason is longer than {MAX_REASON_LEN} characters")]
    ReasonTooLong,
}

/// Why a plan execution was refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecuteError {
    /// No plan with this id was made by this map.
    #[error("no such plan")]
    NotFound,
    /// The plan expired or was already executed.
    #[error("the plan expired or was already executed")]
    Gone,
    /// The confirmation does not match the plan's count; the plan is still usable.
    #[error("confirm count {got} does not match the plan's count {expected}")]
    ConfirmCountMismatch {
        /// The plan's count.
        expected: usize,
        /// The count given.
        got: usize,
    },
    /// The reason text is empty; the plan is still usable.
    #[error("an execution needs a reason")]
    ReasonRequired,
    /// The reason text is too long; the plan is still usable.
    #[error("the reason is longer than {MAX_REASON_LEN} characters")]
    ReasonTooLong,
}

/// Why a restore was refused. Nothing was written.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// No such audit record (or plan) for this map.
    #[error("no such audit record or plan")]
    NotFound,
    /// The record is older than the map's retention, or was evicted from the journal.
    #[error("the record is past its retention")]
    RetentionExpired,
    /// The record is not a removal.
    #[error("only removals can be restored")]
    NotADelete,
    /// The map keeps no journal.
    #[error("the map keeps no journal")]
    JournalDisabled,
    /// The reason text is empty.
    #[error("a restore needs a reason")]
    ReasonRequired,
    /// The reason text is too long.
    #[error("the reason is longer than {MAX_REASON_LEN} characters")]
    ReasonTooLong,
}

/// Why a checked refresh was refused. Nothing was written.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// Entry number `entry` (0-based, in input order) refers through
    /// `reference` to a key that neither exists in map `map` nor is written
    /// by the same batch.
    #[error(
        "entry {entry}: reference {reference:?} names a key that does not exist in map {map:?}"
    )]
    ReferenceMissing {
        /// The entry's index in the batch.
        entry: usize,
        /// The name of the reference.
        reference: String,
        /// The map it refers to.
        map: String,
    },
}

/// Why a map could not be built with references.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// Two references of the map have the same name.
    #[error("duplicate reference name {name:?}")]
    DuplicateReference {
        /// The name.
        name: String,
    },
    /// Another live map of the journal has this name.
    #[error("a map named {name:?} is already registered on this journal")]
    DuplicateMap {
        /// The name.
        name: String,
    },
    /// A map that takes part in references needs a name (set with `Builder::name`).
    #[error("a map with references needs a name")]
    Unnamed,
}

/// Why a watch cannot deliver (more) events.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// Events the watcher needs were evicted from the journal; start again from
    /// `oldest` or later (after re-reading the state).
    #[error("events before revision {oldest} are no longer held")]
    Compacted {
        /// The oldest revision still held.
        oldest: Revision,
    },
    /// The map keeps no journal, so there is nothing to watch.
    #[error("the map keeps no journal")]
    JournalDisabled,
}

fn show(revision: Option<Revision>) -> String {
    revision.map_or_else(|| "none (absent)".to_owned(), |r| r.to_string())
}

impl From<ReasonProblem> for DeleteError {
    fn from(problem: ReasonProblem) -> Self {
        match problem {
            ReasonProblem::Missing => DeleteError::ReasonRequired,
            ReasonProblem::TooLong => DeleteError::ReasonTooLong,
        }
    }
}

impl From<ReasonProblem> for ExecuteError {
    fn from(problem: ReasonProblem) -> Self {
        match problem {
            ReasonProblem::Missing => ExecuteError::ReasonRequired,
            ReasonProblem::TooLong => ExecuteError::ReasonTooLong,
        }
    }
}

impl From<ReasonProblem> for RestoreError {
    fn from(problem: ReasonProblem) -> Self {
        match problem {
            ReasonProblem::Missing => RestoreError::ReasonRequired,
            ReasonProblem::TooLong => RestoreError::ReasonTooLong,
        }
    }
}
