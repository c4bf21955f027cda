//! `cargo xtask <task>`: project chores that are code, not shell scripts.
//!
//! - `gen-fixtures [--check]`: writes `fixtures/` (or checks it is up to date).
//! - `gen-gguf-fixtures`: writes `fixtures/gguf/` with the reference GGUF writer (Python `gguf`).
//! - `bench [FILES...]`: ratio and speed of tenzip beside zstd and ZipNN on the corpus.
//! - `bounded-memory [--size GIB]`: peak memory and speed of the CLI on a file far larger than its buffers.
//! - `kv-capture [--out DIR]`: real K/V caches of a small language model; `bench --kv [DIR]` measures them.

mod bench;
mod bounded;
mod fixtures;
mod kv;
mod python;

use std::path::{Path, PathBuf};

use anyhow::bail;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    match task.as_deref() {
        Some("gen-fixtures") => fixtures::run(&rest),
        Some("gen-gguf-fixtures") => gguf_fixtures(),
        Some("bench") => bench::run(&rest),
        Some("bounded-memory") => bounded::run(&rest),
        Some("kv-capture") => kv::capture(&rest),
        _ => bail!(
            "usage: cargo xtask <gen-fixtures [--check] | gen-gguf-fixtures | bench [--runs N] [FILES...] | \
             bounded-memory [--size GIB] [--dir DIR] | kv-capture [--out DIR] | bench --kv [DIR]>"
        ),
    }
}

/// Writes `fixtures/gguf/` with llama.cpp's own Python writer, so the GGUF tests read files that the
/// reference implementation wrote. Not run in CI (it needs PyPI); the output is deterministic.
fn gguf_fixtures() -> anyhow::Result<()> {
    let python = python::venv("gguf-venv", &["gguf==0.19.0", "numpy"])?;
    let status = std::process::Command::new(python)
        .arg(root().join("xtask/gguf/make_fixtures.py"))
        .arg(root().join("fixtures/gguf"))
        .status()?;
    if !status.success() {
        bail!("make_fixtures.py failed");
    }
    Ok(())
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
