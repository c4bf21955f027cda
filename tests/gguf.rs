//! GGUF files written by llama.cpp's own Python writer (`fixtures/gguf/`, from `cargo xtask
//! gen-gguf-fixtures`): every tensor type it writes, versions 2 and 3, a non-default alignment, unicode names
//! and metadata of every value type. Each restores byte for byte, and each type gets its layout.

use std::path::PathBuf;

use tenzip::CompressOptions;
use tenzip_gguf::Header;
use tenzip_types::GgmlType;

use crate::util::{assert_round_trip, compress_bytes, fixtures_dir};

fn gguf_fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = fixtures_dir().join("gguf").join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
fn every_fixture_round_trips_at_any_chunk_size() {
    for name in ["all-types.gguf", "v2-align128.gguf", "big-endian.gguf"] {
        let file = gguf_fixture(name);
        for (chunk_size, threads) in [(1 << 20, 1), (1000, 2), (17, 2)] {
            assert_round_trip(&file, chunk_size, threads, name);
        }
    }
}

#[test]
fn the_reader_sees_what_the_writer_wrote() {
    let v3 = Header::parse(&gguf_fixture("all-types.gguf")).unwrap();
    assert_eq!((v3.version, v3.alignment), (3, 32));
    let v2 = Header::parse(&gguf_fixture("v2-align128.gguf")).unwrap();
    assert_eq!((v2.version, v2.alignment), (2, 128));
    assert_eq!(v2.data_start % 128, 0);
    assert!(v2
        .tensors
        .iter()
        .all(|t| (t.range.start - v2.data_start).is_multiple_of(128)));
    // Every type the writer knows, plus the unicode-named tensor.
    let types: std::collections::BTreeSet<GgmlType> =
        v3.tensors.iter().filter_map(|t| t.ggml_type).collect();
    assert_eq!(types.len(), GgmlType::all().count(), "{types:?}");
    assert!(v3.tensors.iter().any(|t| t.name == "blk.0.ünïcödé.权重"));
}

#[test]
fn each_type_is_routed_to_its_layout() {
    let packed = compress_bytes(&gguf_fixture("all-types.gguf"), &CompressOptions::default());
    let container = tenzip::Container::open(&packed).unwrap();
    let manifest = container.manifest();
    assert_eq!(manifest.source.format, "gguf");
    let layout_of = |dtype: &str| {
        manifest
            .segments
            .iter()
            .find(|s| s.dtype.as_deref() == Some(dtype))
            .map(|s| s.layout.as_str())
            .unwrap()
    };
    assert_eq!(layout_of("F32"), "f32-split");
    assert!(
        layout_of("BF16").starts_with("bf16-"),
        "{}",
        layout_of("BF16")
    );
    assert_eq!(layout_of("Q8_0"), "gguf-q8_0");
    assert_eq!(layout_of("Q4_K"), "gguf-q4_k");
    assert_eq!(layout_of("MXFP4"), "gguf-mxfp4");
    assert_eq!(layout_of("I32"), "bytes");
    // Padding between tensors is kept as byte segments.
    assert!(manifest
        .segments
        .iter()
        .any(|s| s.route.as_deref() == Some("padding")));
}

#[test]
fn big_endian_files_are_stored_as_bytes_and_say_why() {
    let packed = compress_bytes(
        &gguf_fixture("big-endian.gguf"),
        &CompressOptions::default(),
    );
    let container = tenzip::Container::open(&packed).unwrap();
    let segments = &container.manifest().segments;
    assert_eq!(segments.len(), 1);
    assert!(segments[0]
        .route
        .as_deref()
        .unwrap()
        .starts_with("big-endian GGUF"));
}

#[test]
fn a_damaged_header_is_an_error_naming_the_offset() {
    let mut file = gguf_fixture("all-types.gguf");
    // The first tensor count byte: now far more tensors than the file can hold.
    file[15] = 0x7f;
    let error = tenzip::Plan::new(&file, false).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("invalid GGUF file: at byte 8: tensor count"),
        "{message}"
    );
}
