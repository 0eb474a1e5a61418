//! safemap-bench

fn main() {}
