//! Byte-exact round trips of every fixture, through files and in memory, whatever the chunking and threads.

use tenzip::{compress_file, decompress_file, verify_file, CompressOptions, DecompressOptions};

use crate::util::{compress_bytes, decompress_bytes, decompress_into_bytes, fixtures};

#[test]
fn every_fixture_round_trips_through_files() {
    let dir = tempfile::tempdir().unwrap();
    for fixture in fixtures() {
        let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
        let packed = dir.path().join(format!("{name}.tzp"));
        let restored = dir.path().join(&name);
        compress_file(&fixture, &packed, &CompressOptions::default()).unwrap();
        verify_file(&packed, &DecompressOptions::default()).unwrap();
        decompress_file(&packed, &restored, &DecompressOptions::default()).unwrap();
        assert_eq!(
            std::fs::read(&restored).unwrap(),
            std::fs::read(&fixture).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn containers_written_by_earlier_versions_still_restore() {
    let dir = crate::util::fixtures_dir().join("compat");
    let mut restored_any = false;
    for entry in std::fs::read_dir(&dir).expect("fixtures/compat exists") {
        let packed = entry.unwrap().path();
        if packed.extension().is_none_or(|e| e != "tzp") {
            continue;
        }
        let original = std::fs::read(packed.with_extension("")).unwrap();
        let restored = decompress_bytes(&std::fs::read(&packed).unwrap(), 1).unwrap();
        assert!(restored == original, "{}", packed.display());
        restored_any = true;
    }
    assert!(restored_any, "no containers in {}", dir.display());
}

#[test]
fn parallel_output_equals_serial_output_for_any_chunk_size() {
    for fixture in fixtures() {
        let file = std::fs::read(&fixture).unwrap();
        // Chunks of one or a few bytes only on the small fixtures: the real slices would take millions.
        let chunk_sizes: &[usize] = if file.len() < 100_000 {
            &[1, 7, 1000, 1 << 20]
        } else {
            &[4096, 65_536, 1 << 20]
        };
        for &chunk_size in chunk_sizes {
            let options = |threads| CompressOptions {
                chunk_size,
                threads,
                ..CompressOptions::default()
            };
            let serial = compress_bytes(&file, &options(1));
            for threads in [2, 3, 8] {
                assert!(
                    serial == compress_bytes(&file, &options(threads)),
                    "{fixture:?} chunk {chunk_size} -T{threads}"
                );
            }
            for threads in [1, 4] {
                assert!(
                    decompress_bytes(&serial, threads).unwrap() == file,
                    "{fixture:?} chunk {chunk_size}"
                );
                assert!(
                    decompress_into_bytes(&serial, threads).unwrap() == file,
                    "{fixture:?} chunk {chunk_size}, in place"
                );
            }
        }
    }
}

#[test]
fn float_tensors_use_their_field_split_and_compress() {
    let file =
        std::fs::read(crate::util::fixtures_dir().join("minilm-slice.bf16.safetensors")).unwrap();
    let packed = compress_bytes(&file, &CompressOptions::default());
    let container = tenzip::Container::open(&packed).unwrap();
    let layouts: Vec<&str> = container
        .manifest()
        .segments
        .iter()
        .map(|s| s.layout.as_str())
        .collect();
    assert_eq!(
        layouts,
        [
            "bytes",
            "bf16-split",
            "bytes",
            "bf16-split",
            "bf16-split",
            "bf16-split",
            "bf16-split"
        ]
    );
    assert!(
        packed.len() < file.len() * 70 / 100,
        "BF16 weights shrink to under 70%: {}",
        packed.len()
    );
}

#[test]
fn generic_mode_stores_any_file() {
    let file: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let options = CompressOptions {
        generic: true,
        chunk_size: 10_000,
        ..CompressOptions::default()
    };
    let packed = compress_bytes(&file, &options);
    assert_eq!(decompress_bytes(&packed, 0).unwrap(), file);
    assert_eq!(
        decompress_bytes(&compress_bytes(&[], &options), 0).unwrap(),
        Vec::<u8>::new()
    );
}

#[test]
fn progress_counts_every_original_byte() {
    let fixture = crate::util::fixtures_dir().join("minilm-slice.f32.safetensors");
    let len = std::fs::metadata(&fixture).unwrap().len();
    let dir = tempfile::tempdir().unwrap();
    let packed = dir.path().join("p.tzp");
    let compress = CompressOptions {
        chunk_size: 65_536,
        ..CompressOptions::default()
    };
    compress_file(&fixture, &packed, &compress).unwrap();
    assert_eq!(compress.progress.bytes(), len);
    let restore = DecompressOptions::default();
    verify_file(&packed, &restore).unwrap();
    assert_eq!(restore.progress.bytes(), len);
}
