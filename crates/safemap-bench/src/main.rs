//! `safemap-bench`: see the crate documentation and `--help`.

#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = safemap_bench::cli::Cli::parse();
    if let Err(e) = safemap_bench::cli::run(cli) {
        eprintln!("safemap-bench: {e}");
        std::process::exit(1);
    }
}
