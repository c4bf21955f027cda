//! Round trips of the real-weights corpus (`../shared/corpus/fetch.sh`), when it has been fetched.

use std::path::PathBuf;

use tenzip::CompressOptions;

use crate::util::{compress_bytes, decompress_bytes};

fn corpus_files() -> Option<Vec<PathBuf>> {
    let dir = match std::env::var_os("TENZIP_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/tenzip-corpus"),
    };
    let mut files: Vec<PathBuf> = ["real", "derived"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(dir.join(sub)).ok())
        .flatten()
        .map(|entry| entry.ok().map(|e| e.path()))
        .collect::<Option<_>>()?;
    files.retain(|path| {
        path.extension()
            .is_some_and(|e| e == "safetensors" || e == "gguf")
    });
    files.sort();
    (!files.is_empty()).then_some(files)
}

#[test]
fn every_corpus_file_round_trips() {
    let Some(files) = corpus_files() else {
        eprintln!(
            "skipped: corpus not fetched (run ../shared/corpus/fetch.sh or set TENZIP_CORPUS)"
        );
        return;
    };
    for path in files {
        let file = std::fs::read(&path).unwrap();
        let packed = compress_bytes(&file, &CompressOptions::default());
        assert!(
            decompress_bytes(&packed, 0).unwrap() == file,
            "{path:?} did not round-trip"
        );
        eprintln!(
            "{}: {:.4}",
            path.display(),
            packed.len() as f64 / file.len() as f64
        );
    }
}
