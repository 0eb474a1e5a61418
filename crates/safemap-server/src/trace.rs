//! W3C trace context: every request gets a 32-hex trace id, taken from its
//! `traceparent` header or generated. It lands in the request's log span, in
//! the audit record of any write the request causes, and in the response
//! header `x-trace-id`.
//!
//! An invalid `traceparent` is ignored and a new trace id generated, as the W3C
//! Trace Context recommendation requires of a receiver (it is not a 400).

/// The trace context of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceCtx {
    /// 32 lowercase hex digits, never all zero.
    pub trace_id: String,
    /// The caller's parent span id (16 hex), when a valid `traceparent` came in.
    pub parent_id: Option<String>,
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses a `traceparent` value: `<version 2>-<trace-id 32>-<parent-id 16>-<flags 2>`.
/// Returns (trace id, parent id), or None when it is invalid.
pub fn parse_traceparent(v: &str) -> Option<(String, String)> {
    let v = v.trim();
    let mut parts = v.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    if !is_lower_hex(version, 2) || version == "ff" {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !is_lower_hex(trace, 32) || trace.bytes().all(|b| b == b'0') {
        return None;
    }
    if !is_lower_hex(parent, 16) || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    if !is_lower_hex(flags, 2) {
        return None;
    }
    Some((trace.to_string(), parent.to_string()))
}

/// A fresh random trace id.
pub fn new_trace_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() || b.iter().all(|x| *x == 0) {
        // Fall back to time and a counter: unique enough for log correlation.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = crate::storage::now_ms();
        b[..8].copy_from_slice(&t.to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
    }
    crate::auth::hex(&b)
}

impl TraceCtx {
    /// From an optional `traceparent` header value.
    pub fn from_header(v: Option<&str>) -> TraceCtx {
        match v.and_then(parse_traceparent) {
            Some((trace_id, parent)) => TraceCtx {
                trace_id,
                parent_id: Some(parent),
            },
            None => TraceCtx {
                trace_id: new_trace_id(),
                parent_id: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_and_invalid() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (t, p) = parse_traceparent(ok).expect("valid");
        assert_eq!(t, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p, "00f067aa0ba902b7");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        let c = TraceCtx::from_header(Some("garbage"));
        assert!(is_lower_hex(&c.trace_id, 32));
        assert_ne!(c.trace_id, TraceCtx::from_header(None).trace_id);
    }

    proptest! {
        #[test]
        fn parser_never_panics_and_ids_are_hex(s in ".{0,80}") {
            if let Some((t, p)) = parse_traceparent(&s) {
                prop_assert!(is_lower_hex(&t, 32) && is_lower_hex(&p, 16));
            }
            prop_assert_eq!(TraceCtx::from_header(Some(&s)).trace_id.len(), 32);
        }
    }
}
