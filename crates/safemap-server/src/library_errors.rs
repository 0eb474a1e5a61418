//! Library errors → HTTP status and code, in one place, with the errors for
//! what a request names but the server does not hold (map, key, plan).
//!
//! Each library error maps to exactly one code of http-api.md. Variants the
//! server cannot meet (a journal-less map: every server map has the shared
//! journal; a missing reason: the `X-Reason` extractor refused it first) still
//! map to their code, so a future library change cannot turn into a 500.

use axum::http::StatusCode;
use safemap::{
    DeleteError, ExecuteError, PutError, Referrer, RefreshError, RestoreError, Revision, WatchError,
};
use serde_json::json;

use crate::error::ApiError;
use crate::extract::MAX_REASON_CHARS;

/// 404 `not_found`: the map does not exist.
pub fn no_map(map: &str) -> ApiError {
    ApiError::not_found(format!("no map {map:?}")).with_details(json!({"map": map}))
}

/// 404 `not_found`: the key does not exist (or its map does not).
pub fn no_key(map: &str, key: &str) -> ApiError {
    ApiError::not_found(format!("no key {key:?} in map {map:?}"))
        .with_details(json!({"map": map, "key": key}))
}

/// 404 `not_found`: no such delete plan.
pub fn no_plan(plan: &str) -> ApiError {
    ApiError::not_found(format!("no delete plan {plan:?}")).with_details(json!({"plan_id": plan}))
}

/// 400 `reason_required`.
pub fn reason_required() -> ApiError {
    ApiError::bad_request(
        "reason_required",
        "this operation needs a non-empty X-Reason (or X-Reason-Encoded) header",
    )
    .with_details(json!({"header": "X-Reason"}))
}

/// 400 `reason_too_long`.
pub fn reason_too_long() -> ApiError {
    ApiError::bad_request(
        "reason_too_long",
        format!("the reason is longer than {MAX_REASON_CHARS} characters"),
    )
    .with_details(json!({"max_chars": MAX_REASON_CHARS}))
}

/// 412 `revision_mismatch`: `If-Match` names another revision.
pub fn revision_mismatch(current: Option<Revision>) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "revision_mismatch",
        match current {
            Some(r) => format!("If-Match does not match: the key is at revision {r}"),
            None => "If-Match does not match: the key does not exist".to_string(),
        },
    )
    .with_details(json!({"current_revision": current.map(Revision::get)}))
}

/// 412 `already_exists`: `If-None-Match: *` but the key exists.
pub fn already_exists(current: Revision) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "already_exists",
        format!("If-None-Match: * but the key exists at revision {current}"),
    )
    .with_details(json!({"current_revision": current.get()}))
}

/// 410 `compacted`: events before `oldest` are no longer held for watching.
/// A watch replays only what is held in memory (the newest
/// `server.journal_capacity` records); older writes stay in the audit
/// journal on disk for the retention, listed by `GET /v1/audit`, but a watch
/// does not replay them (README, "Limits, named").
pub fn compacted(oldest: u64) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "compacted",
        format!(
            "a watch replays only the newest server.journal_capacity records, held in memory; revision {oldest} is the oldest it can start from (older writes are listed by GET /v1/audit within retention); read the current state and watch from revision {oldest} or later"
        ),
    )
    .with_details(json!({"oldest_revision": oldest}))
}

/// 409 `reference_missing`: a value refers through `reference` to `key`,
/// which map `map` does not hold (`entry`: the refresh entry that does).
pub fn reference_missing(reference: &str, map: &str, key: &str, entry: Option<&str>) -> ApiError {
    let mut details = json!({"reference": reference, "map": map, "key": key});
    let mut message =
        format!("reference {reference:?} names key {key:?}, which map {map:?} does not hold");
    if let Some(entry) = entry {
        details["entry"] = json!(entry);
        message = format!("entry {entry:?}: {message}; nothing was written");
    }
    ApiError::new(StatusCode::CONFLICT, "reference_missing", message).with_details(details)
}

/// 400 `invalid_reference`: a reference's pointer holds a string that cannot
/// be a key (empty, or over 1024 bytes).
pub fn invalid_reference(reference: &str, problem: &str, entry: Option<&str>) -> ApiError {
    let mut details = json!({"reference": reference});
    if let Some(entry) = entry {
        details["entry"] = json!(entry);
    }
    ApiError::bad_request(
        "invalid_reference",
        format!("reference {reference:?} holds a string that cannot be a key: {problem}"),
    )
    .with_details(details)
}

/// A conditional put that did not hold. `target` names the key a reference
/// of the value points at (the library names the reference, the server the key).
pub fn put_error(e: PutError, target: impl Fn(&str) -> Option<String>) -> ApiError {
    match e {
        PutError::RevisionMismatch { current } => revision_mismatch(current),
        PutError::AlreadyExists { current } => already_exists(current),
        PutError::ReferenceMissing { reference, map } => {
            let key = target(&reference).unwrap_or_default();
            reference_missing(&reference, &map, &key, None)
        }
        other => ApiError::internal(other.to_string()),
    }
}

/// A checked refresh that was refused: `entries` as given to the library
/// (the error's `entry` indexes them); `target` as for [`put_error`].
pub fn refresh_error<V>(
    e: RefreshError,
    entries: &[(String, V)],
    target: impl Fn(&V, &str) -> Option<String>,
) -> ApiError {
    match e {
        RefreshError::ReferenceMissing {
            entry,
            reference,
            map,
        } => {
            let (entry_key, key) = entries.get(entry).map_or_else(
                || (String::new(), String::new()),
                |(k, v)| (k.clone(), target(v, &reference).unwrap_or_default()),
            );
            reference_missing(&reference, &map, &key, Some(&entry_key))
        }
        other => ApiError::internal(other.to_string()),
    }
}

/// Most referrers a 409 `referenced` lists.
pub const REFERENCED_LISTED: usize = 20;

/// The JSON of a referrer: `{"map","key","reference"}`.
pub fn referrer_json(r: &Referrer<String>) -> serde_json::Value {
    json!({"map": &*r.map, "key": r.key, "reference": &*r.reference})
}

/// A single-key delete that was refused. `referrers` lists the first
/// [`REFERENCED_LISTED`] referrers of the key, in (map, key, reference)
/// order, for a 409 `referenced`.
pub fn delete_error(
    e: DeleteError,
    map: &str,
    key: &str,
    referrers: impl FnOnce() -> Vec<Referrer<String>>,
) -> ApiError {
    match e {
        DeleteError::Referenced { count, .. } => {
            let listed: Vec<_> = referrers()
                .iter()
                .filter(|r| !(&*r.map == map && r.key == key))
                .take(REFERENCED_LISTED)
                .map(referrer_json)
                .collect();
            ApiError::new(
                StatusCode::CONFLICT,
                "referenced",
                format!(
                    "{count} key(s) refer to {key:?} in map {map:?}; delete them first, or plan a cascade (delete-plans with \"cascade\": true)"
                ),
            )
            .with_details(json!({"count": count, "referrers": listed}))
        }
        DeleteError::NotFound => no_key(map, key),
        DeleteError::RevisionMismatch { current } => revision_mismatch(current),
        DeleteError::Vetoed { rule } => ApiError::new(
            StatusCode::CONFLICT,
            "delete_vetoed",
            format!("delete refused by deny rule {rule:?}"),
        )
        .with_details(json!({"rule": rule})),
        DeleteError::BreakerOpen { retry_after } => {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "delete_breaker_open",
                format!("the delete breaker of map {map:?} is open; retry in {secs} s"),
            )
            .with_details(json!({"retry_after_seconds": secs.max(1)}))
            .with_retry_after(secs)
        }
        DeleteError::ReasonRequired => reason_required(),
        DeleteError::ReasonTooLong => reason_too_long(),
        other => ApiError::internal(other.to_string()),
    }
}

/// A plan execution that was refused; `plan` as the client wrote it.
pub fn execute_error(e: ExecuteError, plan: &str, confirmed: usize) -> ApiError {
    match e {
        ExecuteError::NotFound => no_plan(plan),
        ExecuteError::Gone => ApiError::new(
            StatusCode::GONE,
            "plan_gone",
            "the plan expired or was already executed; plan again",
        )
        .with_details(json!({"plan_id": plan})),
        ExecuteError::ConfirmCountMismatch { expected, .. } => ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "confirm_count_mismatch",
            format!("X-Confirm-Count is {confirmed} but the plan deletes {expected} keys"),
        )
        .with_details(json!({"expected": expected, "got": confirmed})),
        ExecuteError::ReasonRequired => reason_required(),
        ExecuteError::ReasonTooLong => reason_too_long(),
        other => ApiError::internal(other.to_string()),
    }
}

/// What a restore named, for its 404.
pub enum Restoring<'a> {
    /// One delete, by audit id.
    AuditId(u64),
    /// Every delete of a plan.
    Plan(&'a str),
}

/// A restore that was refused.
pub fn restore_error(e: RestoreError, what: Restoring<'_>, map: &str) -> ApiError {
    match e {
        RestoreError::NotFound => ApiError::not_found(match what {
            Restoring::AuditId(id) => format!("no delete with audit id {id} in map {map:?}"),
            Restoring::Plan(p) => format!("no deletes of plan {p:?} in map {map:?}"),
        }),
        RestoreError::RetentionExpired => ApiError::new(
            StatusCode::GONE,
            "retention_expired",
            "the deleted value is past the map's retention and can no longer be restored",
        ),
        RestoreError::NotADelete => ApiError::new(
            StatusCode::CONFLICT,
            "not_a_delete",
            "only deletes can be restored; this audit record is a put or restore",
        ),
        RestoreError::ReasonRequired => reason_required(),
        RestoreError::ReasonTooLong => reason_too_long(),
        other => ApiError::internal(other.to_string()),
    }
}

/// A watch that cannot start.
pub fn watch_error(e: WatchError) -> ApiError {
    match e {
        WatchError::Compacted { oldest } => compacted(oldest.get()),
        other => ApiError::internal(other.to_string()),
    }
}
