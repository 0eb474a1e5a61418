//! A profiling driver for the write path: the bustle "exchange" mix (10 % get,
//! 40 % insert, 40 % remove, 10 % compare-and-swap update) on a prefilled
//! `u64 → u64` map, on several threads, for `perf stat` / `perf record`.
//!
//! `cargo run --release -p safemap --example write_mix -- VARIANT THREADS OPS`
//! with VARIANT one of `safemap` (default builder), `bare`
//! (`without_journal`), `papaya` (the engine alone). `OPS` is per thread; with
//! `OPS` = 0 only the prefill runs, so `perf stat` of a run minus that of a
//! prefill-only run is the cost of the operations.

use std::hash::BuildHasher;
use std::time::Instant;

use safemap::{Expect, Reason, SafeMap};

type Hasher = foldhash::fast::RandomState;

const KEYS_LOG2: u32 = 20;

trait Map: Sync {
    fn get(&self, k: u64) -> bool;
    fn insert(&self, k: u64) -> bool;
    fn remove(&self, k: u64) -> bool;
    fn update(&self, k: u64) -> bool;
}

impl Map for SafeMap<u64, u64, Hasher> {
    fn get(&self, k: u64) -> bool {
        self.pin().get(&k).is_some()
    }
    fn insert(&self, k: u64) -> bool {
        SafeMap::insert(self, k, k).is_ok_and(|w| w.created())
    }
    fn remove(&self, k: u64) -> bool {
        SafeMap::remove(self, &k, Reason::new("benchmark")).is_ok()
    }
    fn update(&self, k: u64) -> bool {
        let current = self.pin().get(&k).map(|e| (e.revision(), *e.value()));
        match current {
            Some((rev, v)) => self
                .put(k, v.wrapping_add(1), Expect::Revision(rev), &Reason::none())
                .is_ok(),
            None => false,
        }
    }
}

impl Map for papaya::HashMap<u64, u64, Hasher> {
    fn get(&self, k: u64) -> bool {
        self.pin().get(&k).is_some()
    }
    fn insert(&self, k: u64) -> bool {
        self.pin().insert(k, k).is_none()
    }
    fn remove(&self, k: u64) -> bool {
        self.pin().remove(&k).is_some()
    }
    fn update(&self, k: u64) -> bool {
        self.pin().update(k, |v| v.wrapping_add(1)).is_some()
    }
}

fn run(map: &dyn Map, threads: usize, ops: usize) {
    let mask = (1u64 << KEYS_LOG2) - 1;
    let scramble = Hasher::default();
    for k in 0..(1u64 << (KEYS_LOG2 - 1)) {
        map.insert(scramble.hash_one(k) & mask);
    }
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
                for _ in 0..ops {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = (x >> 8) & mask;
                    match x % 10 {
                        0 => drop(map.get(k)),
                        1..=4 => drop(map.insert(k)),
                        5..=8 => drop(map.remove(k)),
                        _ => drop(map.update(k)),
                    }
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    if ops > 0 {
        println!(
            "{:.2} M ops/s ({threads} threads)",
            (threads * ops) as f64 / secs / 1e6
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let variant = args.get(1).map_or("safemap", String::as_str);
    let threads = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(2);
    let ops = args
        .get(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let capacity = 1 << KEYS_LOG2;
    match variant {
        "safemap" => {
            let m = SafeMap::builder()
                .hasher(Hasher::default())
                .capacity(capacity)
                .build();
            run(&m, threads, ops);
        }
        "bare" => {
            let m = SafeMap::builder()
                .hasher(Hasher::default())
                .capacity(capacity)
                .without_journal()
                .build();
            run(&m, threads, ops);
        }
        "papaya" => {
            let m = papaya::HashMap::builder()
                .capacity(capacity)
                .hasher(Hasher::default())
                .build();
            run(&m, threads, ops);
        }
        other => panic!("unknown variant {other}"),
    }
}
