//! The frame of one log record, and the scan that reads a segment back.
//!
//! ```text
//! offset 0  u32 LE  body length n (9 ..= MAX_BODY)
//! offset 4  u32 LE  CRC-32 (IEEE) of the n body bytes
//! offset 8  body:   u64 LE lsn, u8 kind, n - 9 bytes of payload (JSON)
//! ```
//!
//! Invariant relied on by recovery: every record of a segment has the lsn of
//! the one before it plus one, so a record that decodes at the wrong place
//! (a stale or shifted frame) is never taken for the next one.

/// Bytes before the body: length and checksum.
pub const HEADER: usize = 8;
/// Bytes of the body before the payload: lsn and kind.
pub const BODY_PREFIX: usize = 9;
/// Largest body accepted when reading: a longer length field is damage.
pub const MAX_BODY: usize = 256 * 1024 * 1024;

/// One record read back from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Byte offset of the frame in the segment.
    pub offset: usize,
    /// Log sequence number.
    pub lsn: u64,
    /// What the payload is (see `wal::Kind`).
    pub kind: u8,
    /// The payload.
    pub payload: &'a [u8],
}

/// How the scan of a segment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every byte belongs to a good record.
    Clean,
    /// From `offset` to the end the bytes are not a good record, and no good
    /// record follows: an interrupted write (torn tail). Nothing after
    /// `offset` was ever acknowledged, since a write is acknowledged only once
    /// it and everything before it are on disk.
    Torn {
        /// Where the good records end.
        offset: usize,
        /// What was wrong with the bytes at `offset`.
        reason: String,
    },
    /// A bad record at `offset` is followed by a good one (at `next_good`):
    /// damage in the middle of the log, which recovery must not skip.
    Corrupt {
        /// Where the bad record starts.
        offset: usize,
        /// What was wrong with it.
        reason: String,
        /// Offset of the good record found after it.
        next_good: usize,
    },
}

/// The records of a segment, in order, and how the scan ended.
#[derive(Debug)]
pub struct Scan<'a> {
    /// Good records, each with the lsn of the one before plus one.
    pub frames: Vec<Frame<'a>>,
    /// Clean end, torn tail or damage in the middle.
    pub end: End,
}

/// Appends the frame of one record to `out`.
pub fn encode(lsn: u64, kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    let n = BODY_PREFIX + payload.len();
    let start = out.len();
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The record at `at`, if a whole one with a matching checksum and the lsn
/// `want` (when given) is there; else why not.
fn frame_at(b: &[u8], at: usize, want: Option<u64>) -> Result<Frame<'_>, String> {
    let rest = b.len() - at;
    if rest < HEADER {
        return Err(format!("{rest} bytes, less than a record header"));
    }
    let n = u32_at(b, at) as usize;
    if !(BODY_PREFIX..=MAX_BODY).contains(&n) {
        return Err(format!("record length {n} is out of range"));
    }
    if rest - HEADER < n {
        return Err(format!(
            "record of {n} bytes runs past the end of the file ({} bytes left)",
            rest - HEADER
        ));
    }
    let body = &b[at + HEADER..at + HEADER + n];
    if crc32fast::hash(body) != u32_at(b, at + 4) {
        return Err("checksum mismatch".into());
    }
    let lsn = u64_at(body, 0);
    if let Some(w) = want
        && lsn != w
    {
        return Err(format!("record has lsn {lsn} where {w} was expected"));
    }
    Ok(Frame {
        offset: at,
        lsn,
        kind: body[8],
        payload: &body[BODY_PREFIX..],
    })
}

/// Reads the records of `bytes` (a segment without its magic), starting at
/// `base` (the offset of `bytes` in the file, for reporting) with lsn `first`.
///
/// After a bad record, every later offset is tried for a good record with a
/// later lsn (at most `2^32` later): finding one means damage in the middle
/// ([`End::Corrupt`]), finding none a torn tail ([`End::Torn`]).
pub fn scan(bytes: &[u8], base: usize, first: u64) -> Scan<'_> {
    let mut frames = Vec::new();
    let mut at = 0;
    let mut want = first;
    while at < bytes.len() {
        match frame_at(bytes, at, Some(want)) {
            Ok(f) => {
                at += HEADER + BODY_PREFIX + f.payload.len();
                want += 1;
                frames.push(f);
            }
            Err(reason) => {
                let end = match next_good(bytes, at + 1, want) {
                    Some(next) => End::Corrupt {
                        offset: base + at,
                        reason,
                        next_good: base + next,
                    },
                    None => End::Torn {
                        offset: base + at,
                        reason,
                    },
                };
                for f in &mut frames {
                    f.offset += base;
                }
                return Scan { frames, end };
            }
        }
    }
    for f in &mut frames {
        f.offset += base;
    }
    Scan {
        frames,
        end: End::Clean,
    }
}

/// The first offset from `from` holding a good record with an lsn in
/// `want ..= want + 2^32`.
fn next_good(b: &[u8], from: usize, want: u64) -> Option<usize> {
    (from..b.len().saturating_sub(HEADER + BODY_PREFIX - 1)).find(|&at| {
        // Cheap filters first (length, lsn range), the checksum last.
        let n = u32_at(b, at) as usize;
        if !(BODY_PREFIX..=MAX_BODY).contains(&n) || b.len() - at - HEADER < n {
            return false;
        }
        let lsn = u64_at(b, at + HEADER);
        (want..=want.saturating_add(1 << 32)).contains(&lsn) && frame_at(b, at, None).is_ok()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn log(payloads: &[&[u8]], first: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            encode(first + i as u64, 1, p, &mut out);
        }
        out
    }

    #[test]
    fn a_whole_log_reads_back_in_order() {
        let b = log(&[b"{\"a\":1}", b"", b"[2]"], 7);
        let s = scan(&b, 8, 7);
        assert_eq!(s.end, End::Clean);
        let got: Vec<_> = s.frames.iter().map(|f| (f.lsn, f.payload)).collect();
        assert_eq!(
            got,
            vec![(7, &b"{\"a\":1}"[..]), (8, &b""[..]), (9, &b"[2]"[..])]
        );
        assert_eq!(s.frames[0].offset, 8);
    }

    #[test]
    fn a_flipped_byte_in_the_last_record_is_a_torn_tail() {
        let mut b = log(&[b"one", b"two", b"three"], 1);
        let last = b.len() - 2;
        b[last] ^= 0x40;
        let s = scan(&b, 0, 1);
        assert_eq!(s.frames.len(), 2);
        assert!(matches!(s.end, End::Torn { ref reason, .. } if reason == "checksum mismatch"));
    }

    #[test]
    fn a_zero_filled_tail_is_a_torn_tail() {
        // After a power loss a file may end in zeros its size already covered.
        let mut b = log(&[b"one", b"two"], 1);
        let good = b.len();
        b.extend_from_slice(&[0; 300]);
        let s = scan(&b, 0, 1);
        assert_eq!(s.frames.len(), 2);
        assert!(matches!(s.end, End::Torn { offset, .. } if offset == good));
    }

    #[test]
    fn a_flipped_byte_in_the_middle_is_corruption() {
        let mut b = log(&[b"one", b"two", b"three"], 1);
        let second = HEADER + BODY_PREFIX + 3;
        b[second + HEADER + BODY_PREFIX] ^= 1;
        let s = scan(&b, 0, 1);
        assert_eq!(s.frames.len(), 1);
        assert_eq!(
            s.end,
            End::Corrupt {
                offset: second,
                reason: "checksum mismatch".into(),
                next_good: 2 * second,
            }
        );
    }

    #[test]
    fn a_damaged_length_in_the_middle_is_still_corruption() {
        let mut b = log(&[b"one", b"two", b"three"], 1);
        b[0] = 0xff;
        assert!(matches!(scan(&b, 0, 1).end, End::Corrupt { offset: 0, .. }));
    }

    #[test]
    fn a_record_out_of_sequence_is_not_taken() {
        let b = log(&[b"one", b"two"], 5);
        let s = scan(&b, 0, 4);
        assert!(s.frames.is_empty());
        // The records that follow are good but do not continue the sequence
        // expected here: they are reported, never silently dropped.
        assert!(matches!(s.end, End::Corrupt { .. } | End::Torn { .. }));
    }

    proptest! {
        #[test]
        fn every_cut_keeps_the_whole_records_before_it(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let b = log(&refs, 1);
            let cut = cut.index(b.len() + 1);
            let s = scan(&b[..cut], 0, 1);
            let mut whole = 0;
            let mut end = 0;
            for p in &payloads {
                if end + HEADER + BODY_PREFIX + p.len() > cut { break; }
                end += HEADER + BODY_PREFIX + p.len();
                whole += 1;
            }
            prop_assert_eq!(s.frames.len(), whole);
            if cut == end {
                prop_assert_eq!(s.end, End::Clean);
            } else {
                let torn_at = matches!(s.end, End::Torn { offset, .. } if offset == end);
                prop_assert!(torn_at, "{:?}", s.end);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300), first in any::<u64>()) {
            let _ = scan(&bytes, 0, first);
        }
    }
}
