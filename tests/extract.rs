//! Reading single tensors back: `Archive::read_tensor` and `tenzip extract`.

use tenzip::{Archive, CompressOptions, ErrorKind};
use tenzip_safetensors::Header;

use crate::util::{compress_bytes, fixtures, scratch_with, tenzip};

/// Compresses `fixture` into a temporary folder; returns the folder, the original bytes and the .tzp path.
fn packed(fixture: &std::path::Path) -> (tempfile::TempDir, Vec<u8>, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(fixture).unwrap();
    let options = CompressOptions {
        chunk_size: 4096,
        ..CompressOptions::default()
    };
    let path = dir.path().join("packed.tzp");
    std::fs::write(&path, compress_bytes(&original, &options)).unwrap();
    (dir, original, path)
}

#[test]
fn every_tensor_of_every_fixture_reads_back_exactly() {
    for fixture in fixtures() {
        let (_dir, original, path) = packed(&fixture);
        let header = Header::parse(&original).unwrap();
        let archive = Archive::open(&path).unwrap();
        let names: Vec<&str> = archive.tensor_names().collect();
        let expected: Vec<&str> = header.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, expected, "{fixture:?}");
        for tensor in &header.tensors {
            let bytes = archive.read_tensor(&tensor.name).unwrap();
            assert!(
                bytes == original[tensor.range.start as usize..tensor.range.end as usize],
                "{}",
                tensor.name
            );
        }
    }
}

#[test]
fn a_damaged_tensor_fails_alone() {
    let fixture = crate::util::fixtures_dir().join("minilm-slice.bf16.safetensors");
    let (_dir, original, path) = packed(&fixture);
    let archive = Archive::open(&path).unwrap();
    let victim = archive
        .tensor("encoder.layer.0.attention.self.query.weight")
        .unwrap()
        .clone();
    drop(archive);
    let mut bytes = std::fs::read(&path).unwrap();
    let chunk = &victim.chunks[victim.chunks.len() / 2];
    bytes[chunk.offset as usize + chunk.stored as usize / 2] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let archive = Archive::open(&path).unwrap();
    let err = archive
        .read_tensor("encoder.layer.0.attention.self.query.weight")
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Codec { .. } | ErrorKind::Checksum(_)),
        "{err}"
    );
    let header = Header::parse(&original).unwrap();
    let bias = header
        .tensors
        .iter()
        .find(|t| t.name == "encoder.layer.0.attention.self.query.bias")
        .unwrap();
    assert!(
        archive.read_tensor(&bias.name).unwrap()
            == original[bias.range.start as usize..bias.range.end as usize]
    );
    assert!(matches!(
        archive.read_tensor("nope").unwrap_err().kind(),
        ErrorKind::NoSuchTensor(_)
    ));
}

#[test]
fn extract_writes_raw_tensors_and_safetensors_subsets() {
    let (dir, name) = scratch_with("minilm-slice.f16.safetensors");
    let original = std::fs::read(dir.path().join(&name)).unwrap();
    let header = Header::parse(&original).unwrap();
    assert!(tenzip(dir.path(), &["compress", "-q", &name])
        .status
        .success());
    let packed = format!("{name}.tzp");
    let wanted = [
        "encoder.layer.0.output.LayerNorm.weight",
        "embeddings.position_ids",
    ];

    let out = tenzip(
        dir.path(),
        &["extract", &packed, wanted[0], wanted[1], "-o", "raw"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let subset = tenzip(
        dir.path(),
        &[
            "extract",
            &packed,
            wanted[0],
            wanted[1],
            // Named twice, written once: a safetensors file's names are unique.
            wanted[0],
            "--safetensors",
            "part.safetensors",
        ],
    );
    assert!(
        subset.status.success(),
        "{}",
        String::from_utf8_lossy(&subset.stderr)
    );
    let part = std::fs::read(dir.path().join("part.safetensors")).unwrap();
    let part_header = Header::parse(&part).unwrap();
    assert_eq!(part_header.tensors.len(), wanted.len());
    for (index, wanted) in wanted.iter().enumerate() {
        let tensor = header.tensors.iter().find(|t| t.name == *wanted).unwrap();
        let expected = &original[tensor.range.start as usize..tensor.range.end as usize];
        assert_eq!(
            std::fs::read(dir.path().join("raw").join(wanted)).unwrap(),
            expected
        );
        let extracted = &part_header.tensors[index];
        assert_eq!(
            (&extracted.name, extracted.dtype, &extracted.shape),
            (&tensor.name, tensor.dtype, &tensor.shape)
        );
        assert_eq!(
            &part[extracted.range.start as usize..extracted.range.end as usize],
            expected
        );
    }

    let again = tenzip(dir.path(), &["extract", &packed, wanted[0], "-o", "raw"]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "existing files are kept without -f"
    );
    let missing = tenzip(dir.path(), &["extract", &packed, "no.such.tensor"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no tensor named"));
}
