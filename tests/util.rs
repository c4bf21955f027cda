//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tenzip::{CompressOptions, Container, DecompressOptions, Plan};

/// The repository's `fixtures/` folder.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every `.safetensors` fixture.
pub fn fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/ exists")
        .map(|entry| entry.expect("readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "fixtures/ is missing files: run `cargo xtask gen-fixtures`"
    );
    files
}

/// Compresses `file` in memory and returns the container bytes.
pub fn compress_bytes(file: &[u8], options: &CompressOptions) -> Vec<u8> {
    let plan = Plan::new(file, options.generic).expect("valid input");
    tenzip::compress(file, &plan, options, Vec::new())
        .expect("compresses")
        .0
}

/// Compresses `file` with `chunk_size` and `threads` and checks that it restores exactly; returns the
/// container.
pub fn assert_round_trip(file: &[u8], chunk_size: usize, threads: usize, what: &str) -> Vec<u8> {
    let options = CompressOptions {
        chunk_size,
        threads,
        ..CompressOptions::default()
    };
    let packed = compress_bytes(file, &options);
    assert!(
        decompress_bytes(&packed, threads).unwrap() == file,
        "{what}: chunks of {chunk_size}, {threads} threads"
    );
    packed
}

/// Restores a container in memory.
pub fn decompress_bytes(container: &[u8], threads: usize) -> Result<Vec<u8>, tenzip::ErrorKind> {
    let container = Container::open(container)?;
    tenzip::decompress(
        &container,
        &DecompressOptions {
            threads,
            ..DecompressOptions::default()
        },
        Vec::new(),
    )
}

/// Restores a container in memory with the parallel, in-place path.
pub fn decompress_into_bytes(
    container: &[u8],
    threads: usize,
) -> Result<Vec<u8>, tenzip::ErrorKind> {
    let container = Container::open(container)?;
    let mut out = vec![0; container.manifest().source.len as usize];
    let options = DecompressOptions {
        threads,
        ..DecompressOptions::default()
    };
    tenzip::decompress_into(&container, &options, &mut out)?;
    Ok(out)
}

/// Runs the `tenzip` binary in `dir`.
pub fn tenzip(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenzip"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("tenzip runs")
}

/// The standard error of a run, for assertion messages.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A scratch folder holding a copy of one fixture; returns the folder and the copy's file name.
pub fn scratch_with(fixture: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(fixtures_dir().join(fixture), dir.path().join(fixture)).expect("copy fixture");
    (dir, fixture.to_owned())
}

/// Names in `dir`, sorted, to check that no stray or partial files were left.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
