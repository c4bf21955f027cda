//! Replays every input committed under `fuzz/regressions/<target>/` (crashes found by fuzzing, and seeds)
//! through the same checks the fuzz targets run, so a fixed crash stays fixed without nightly Rust.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        eprintln!("replaying {}", path.display());
        check(&data);
    }
}

#[test]
fn safetensors_header() {
    replay("safetensors_header", checks::safetensors_header);
}

#[test]
fn gguf_header() {
    replay("gguf_header", checks::gguf_header);
}

#[test]
fn block_decode() {
    replay("block_decode", checks::block_decode);
}

#[test]
fn ans_decode() {
    replay("ans_decode", checks::ans_decode);
}

#[test]
fn ans_encode() {
    replay("ans_encode", checks::ans_encode);
}

#[test]
fn container_decode() {
    replay("container_decode", checks::container_decode);
}

#[test]
fn codec_round_trip() {
    replay("codec_round_trip", checks::codec_round_trip);
}

#[test]
fn chunking_independence() {
    replay("chunking_independence", checks::chunking_independence);
}

#[test]
fn kv_pages() {
    replay("kv_pages", checks::kv_pages);
}
