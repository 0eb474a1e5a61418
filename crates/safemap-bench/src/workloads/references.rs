//! Reference cost (references.md, "Cost"): what a declared reference costs
//! the maps around it. Four maps of `u64 → u64` (value = the key it refers
//! to), one thread, `ops` keys each:
//!
//! * `plain`: a map of its own, no references (what `SafeMap::builder()` gives);
//! * `bystander`: a map without references on a journal shared with maps that
//!   have them (it must not pay for them);
//! * `referred-to`: the target of a `restrict` reference, its keys not referred
//!   to (a removal must look up the referrer index and find nobody);
//! * `referring`: the map that declares the reference (a put checks its
//!   target and indexes it; a removal unindexes it).
//!
//! Each op (`put` of fresh keys in order, `get` of every key and `remove` of
//! every key in a scattered order) is timed over all keys; nanoseconds per op
//! are the median over `repeats` rounds, each on freshly built maps, the
//! variants taking turns within a round.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use safemap::{Expect, Journal, OnDelete, Reason, SafeMap};
use serde::{Deserialize, Serialize};

use crate::peers::Hasher;
use crate::progress::Progress;
use crate::stats::median;

/// Parameters of the references workload.
#[derive(Debug, Clone)]
pub struct Config {
    /// Keys per map.
    pub ops: u64,
    /// Rounds per figure (the median is reported).
    pub repeats: usize,
}

/// One JSON line of the references workload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// Always `references`.
    pub workload: String,
    /// `plain`, `bystander`, `referred-to` or `referring`.
    pub variant: String,
    /// `put`, `get` or `remove`.
    pub op: String,
    /// Operations per round.
    pub ops: u64,
    /// Nanoseconds per operation (median of the rounds).
    pub ns_per_op: f64,
}

/// The variants in report order, with what each is in words.
pub const VARIANTS: [(&str, &str); 4] = [
    ("plain", "a map of its own, no references"),
    (
        "bystander",
        "no references, on a journal shared with maps that have them",
    ),
    (
        "referred-to",
        "the target of a `restrict` reference (its keys not referred to)",
    ),
    (
        "referring",
        "declares the reference: each value is a key of `referred-to`",
    ),
];

/// The operations in report order.
pub const OPS: [&str; 3] = ["put", "get", "remove"];

type Map = SafeMap<u64, u64, Hasher>;

/// The four maps of one round, empty.
struct Maps {
    plain: Map,
    bystander: Arc<Map>,
    referred_to: Arc<Map>,
    referring: Arc<Map>,
}

impl Maps {
    fn build() -> Result<Maps, String> {
        let shared = Journal::new();
        let named = |name: &str| {
            SafeMap::builder()
                .hasher(Hasher::default())
                .name(name)
                .journal(shared.clone())
        };
        let err = |e: safemap::BuildError| format!("references: {e}");
        Ok(Maps {
            plain: SafeMap::builder().hasher(Hasher::default()).build(),
            bystander: named("bystander").build_shared().map_err(err)?,
            referred_to: named("referred-to").build_shared().map_err(err)?,
            referring: named("referring")
                .references("target", "referred-to", OnDelete::Restrict, |v: &u64| {
                    Some(*v)
                })
                .build_shared()
                .map_err(err)?,
        })
    }

    fn get(&self, variant: &str) -> &Map {
        match variant {
            "plain" => &self.plain,
            "bystander" => &self.bystander,
            "referred-to" => &self.referred_to,
            _ => &self.referring,
        }
    }
}

/// Times `op` on `variant` in one round; the maps are set up untimed.
fn round(variant: &str, op: &str, n: u64) -> Result<f64, String> {
    let maps = Maps::build()?;
    // `referring` needs its targets; `referred-to` gets them for every variant
    // so that each round's heap starts alike.
    for k in 0..n {
        put(&maps.referred_to, k, k)?;
    }
    let map = maps.get(variant);
    let fill = |map: &Map| -> Result<(), String> {
        if variant != "referred-to" {
            for k in 0..n {
                put(map, k, k)?;
            }
        }
        Ok(())
    };
    let reason = Reason::new("bench");
    let started;
    match op {
        "put" => {
            if variant == "referred-to" {
                // Its keys exist already: time fresh keys above them.
                started = Instant::now();
                for k in n..2 * n {
                    put(map, k, k)?;
                }
            } else {
                started = Instant::now();
                for k in 0..n {
                    put(map, k, k)?;
                }
            }
        }
        "get" => {
            fill(map)?;
            started = Instant::now();
            for i in 0..n {
                black_box(map.get(&scattered(i, n)));
            }
        }
        _ => {
            fill(map)?;
            started = Instant::now();
            for i in 0..n {
                let k = scattered(i, n);
                let removed = map
                    .remove(&k, reason.clone())
                    .map_err(|e| format!("references: {variant} remove {k}: {e}"))?;
                black_box(&removed);
            }
        }
    }
    let elapsed = started.elapsed();
    drop(maps);
    Ok(elapsed.as_nanos() as f64 / n as f64)
}

/// The `i`-th key of a fixed permutation of `0..n`, so that reads and
/// removals do not walk memory in allocation order (which flatters a map
/// filled without other allocations in between): `i -> i * m mod n` with `m`
/// near 0.618 n and coprime with it, so consecutive keys are far apart.
fn scattered(i: u64, n: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let mut m = (n as f64 * 0.618) as u64 + 1;
    while gcd(m, n) != 1 {
        m += 1;
    }
    ((u128::from(i % n) * u128::from(m)) % u128::from(n)) as u64
}

fn put(map: &Map, k: u64, v: u64) -> Result<(), String> {
    map.put(k, v, Expect::Any, &Reason::none())
        .map(drop)
        .map_err(|e| format!("references: put {k}: {e}"))
}

/// Runs every variant and op, calling `emit` per row.
///
/// # Errors
///
/// A map that cannot be built or refuses a write the workload expects to
/// succeed (a defect, not a figure).
pub fn run(
    cfg: &Config,
    progress: &Progress,
    mut emit: impl FnMut(&Row),
) -> Result<Vec<Row>, String> {
    let n = cfg.ops.max(1);
    let rounds = cfg.repeats.max(1);
    let bar = progress.bar("references", (OPS.len() * (rounds + 1)) as u64);
    let mut rows = Vec::new();
    for op in OPS {
        // Rounds alternate the variants (one warm-up round first), so that a
        // machine that slows down during the run slows every variant alike.
        let mut samples = vec![Vec::with_capacity(rounds); VARIANTS.len()];
        for r in 0..=rounds {
            bar.set_message(format!("{op}, round {r}"));
            for (i, (variant, _)) in VARIANTS.iter().enumerate() {
                let ns = round(variant, op, n)?;
                if r > 0 {
                    samples[i].push(ns);
                }
            }
            bar.inc(1);
        }
        for ((variant, _), samples) in VARIANTS.iter().zip(&samples) {
            let row = Row {
                workload: "references".into(),
                variant: (*variant).into(),
                op: op.into(),
                ops: n,
                ns_per_op: median(samples).unwrap_or(0.0),
            };
            emit(&row);
            rows.push(row);
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_and_op_has_a_row() {
        let cfg = Config {
            ops: 200,
            repeats: 1,
        };
        let rows = run(&cfg, &Progress::hidden(), |_| {}).unwrap();
        assert_eq!(rows.len(), VARIANTS.len() * OPS.len());
        assert!(rows.iter().all(|r| r.ns_per_op > 0.0 && r.ops == 200));
    }

    #[test]
    fn the_scattered_order_visits_every_key_once() {
        for n in [1, 7, 2_000, 100_000] {
            let mut seen: Vec<u64> = (0..n).map(|i| scattered(i, n)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_referring_map_really_checks_its_targets() {
        let maps = Maps::build().unwrap();
        assert!(put(&maps.referring, 1, 7).is_err(), "a dangling put passed");
        put(&maps.referred_to, 7, 7).unwrap();
        put(&maps.referring, 1, 7).unwrap();
        assert!(maps.referred_to.remove(&7, Reason::new("x")).is_err());
    }
}
