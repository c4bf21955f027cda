//! `cargo xtask <task>`: project chores that are code, not shell scripts.
//!
//! - `gen-fixtures [--check]`: writes `fixtures/` (or checks it is up to date).
//! - `bench [FILES...]`: ratio and speed of tenzip beside zstd and ZipNN on the corpus.

mod bench;
mod fixtures;

use std::path::{Path, PathBuf};

use anyhow::bail;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    match task.as_deref() {
        Some("gen-fixtures") => fixtures::run(&rest),
        Some("bench") => bench::run(&rest),
        _ => bail!("usage: cargo xtask <gen-fixtures [--check] | bench [--runs N] [FILES...]>"),
    }
}

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the root")
        .to_owned()
}

/// Where `../shared/corpus/fetch.sh` puts the corpus (the same default as the script).
fn corpus_dir() -> PathBuf {
    match std::env::var_os("TENZIP_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tenzip-corpus")
        }
    }
}
