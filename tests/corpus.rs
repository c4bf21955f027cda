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
fn every_corpus_file_and_tensor_round_trips() {
    let Some(files) = corpus_files() else {
        eprintln!(
            "skipped: corpus not fetched (run ../shared/corpus/fetch.sh or set TENZIP_CORPUS)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for path in files {
        let file = std::fs::read(&path).unwrap();
        let packed = compress_bytes(&file, &CompressOptions::default());
        assert!(
            decompress_bytes(&packed, 0).unwrap() == file,
            "{path:?} did not round-trip"
        );
        // Every tensor read back alone equals its bytes in the original.
        let packed_path = dir.path().join("packed.tzp");
        std::fs::write(&packed_path, &packed).unwrap();
        let archive = tenzip::Archive::open(&packed_path).unwrap();
        let names: Vec<String> = archive.tensor_names().map(str::to_owned).collect();
        for name in names {
            let segment = archive.tensor(&name).unwrap();
            let range = segment.offset as usize..(segment.offset + segment.len) as usize;
            assert!(
                archive.read_tensor(&name).unwrap() == file[range],
                "{path:?}: tensor {name}"
            );
        }
        eprintln!(
            "{}: {:.4}",
            path.display(),
            packed.len() as f64 / file.len() as f64
        );
    }
}
