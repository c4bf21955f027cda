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

#[test]
fn pages_coded_with_the_sequence_tables_round_trip() {
    for (name, dtype) in FIXTURES {
        let file = fixture(name);
        let header = Header::parse(&file).unwrap();
        for tensor in header.tensors.iter().filter(|t| t.name.ends_with(".key")) {
            let bytes = &file[tensor.range.start as usize..tensor.range.end as usize];
            let token_len = bytes.len() / tensor.shape[0] as usize;
            let mut own = KvPages::new(dtype, 3, 64);
            let mut writer = KvPages::new(dtype, 3, 64);
            writer.learn(&bytes[..bytes.len() / 2]);
            let mut tables = Vec::new();
            writer.write_tables(&mut tables);
            let mut reader = KvPages::new(dtype, 3, 64);
            assert_eq!(reader.read_tables(&tables).unwrap(), tables.len());
            let (mut packed, mut restored) = (Vec::new(), Vec::new());
            for page in bytes.chunks(token_len * 16) {
                writer.compress(page, &mut packed);
                restored.resize(page.len(), 0);
                reader.decompress(&packed, &mut restored).unwrap();
                assert_eq!(restored, page, "{name} {}", tensor.name);
            }
            // Tables of another shape are refused, and so is a page coded with tables nobody read.
            assert!(KvPages::new(dtype, 2, 64).read_tables(&tables).is_err());
            writer.compress(&bytes[..token_len * 16], &mut packed);
            assert!(own
                .decompress(&packed, &mut restored[..token_len * 16])
                .is_err());
        }
    }
}

#[test]
fn a_page_the_tables_cannot_code_gets_its_own() {
    let mut pages = KvPages::new(KvDtype::F8E4M3, 1, 8);
    pages.learn(&[0x38; 64]);
    // 0xff (NaN) never occurred in the sample or anywhere in its field.
    let page = [0x38, 0x38, 0xff, 0x38, 0x38, 0x38, 0x38, 0x38];
    let mut packed = Vec::new();
    pages.compress(&page, &mut packed);
    assert_eq!(packed.last(), Some(&0), "coded with its own tables");
    let mut restored = [0; 8];
    pages.decompress(&packed, &mut restored).unwrap();
    assert_eq!(restored, page);
    // Garbage never panics.
    for last in 0..=255u8 {
        let _ = pages.decompress(&[1, 2, 3, last], &mut restored);
    }
    assert!(pages.decompress(&[], &mut restored).is_err());
}
