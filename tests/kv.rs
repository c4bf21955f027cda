//! Real K/V caches (`fixtures/kv/`, cut by `cargo xtask kv-capture` from SmolLM2-135M-Instruct run on the GPL-3
//! text): files and single pages restore byte for byte; layer 0, whose rows repeat per token, stores repeats
//! once.

use tenzip::kv::{KvDtype, KvPages};
use tenzip::CompressOptions;
use tenzip_safetensors::Header;

use crate::util::{compress_bytes, decompress_bytes, fixtures_dir};

const FIXTURES: [(&str, KvDtype); 2] = [
    ("kv-small.bf16.safetensors", KvDtype::Bf16),
    ("kv-small.fp8-e4m3.safetensors", KvDtype::F8E4M3),
];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join("kv").join(name)).unwrap()
}

#[test]
fn captured_caches_round_trip_as_files() {
    for (name, _) in FIXTURES {
        let file = fixture(name);
        let packed = compress_bytes(&file, &CompressOptions::default());
        assert_eq!(decompress_bytes(&packed, 2).unwrap(), file, "{name}");
        assert!(
            packed.len() < file.len() * 9 / 10,
            "{name}: {}",
            packed.len()
        );
        let container = tenzip::Container::open(&packed).unwrap();
        let key = container
            .manifest()
            .segments
            .iter()
            .find(|s| s.name.as_deref() == Some("layers.15.key"))
            .unwrap();
        assert!(
            key.route.as_deref().unwrap().contains("192 channels"),
            "{:?}",
            key.route
        );
    }
}

#[test]
fn repeated_rows_of_layer_zero_are_stored_once() {
    let file = fixture("kv-small.bf16.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let packed = dir.path().join("kv.tzp");
    std::fs::write(&packed, compress_bytes(&file, &CompressOptions::default())).unwrap();
    let inspection = tenzip::inspect_file(&packed).unwrap();
    let (segment, codings) = inspection
        .manifest
        .segments
        .iter()
        .zip(&inspection.codings)
        .find(|(s, _)| s.name.as_deref() == Some("layers.0.value"))
        .unwrap();
    assert!(
        codings.keys().all(|coding| coding.starts_with("rows+")),
        "{codings:?}"
    );
    assert!(
        segment.stored_len() * 2 < segment.len,
        "{}",
        segment.stored_len()
    );
}

#[test]
fn every_page_round_trips_in_memory() {
    for (name, dtype) in FIXTURES {
        let file = fixture(name);
        let header = Header::parse(&file).unwrap();
        let mut pages = KvPages::new(dtype, 3, 64);
        let (mut packed, mut restored) = (Vec::new(), Vec::new());
        for tensor in header.tensors.iter().filter(|t| t.shape.len() == 3) {
            let bytes = &file[tensor.range.start as usize..tensor.range.end as usize];
            let page_len = bytes.len() / tensor.shape[0] as usize * 16;
            for page in bytes.chunks(page_len) {
                pages.compress(page, &mut packed);
                restored.resize(page.len(), 0);
                pages.decompress(&packed, &mut restored).unwrap();
                assert_eq!(restored, page, "{name} {}", tensor.name);
            }
        }
    }
}
