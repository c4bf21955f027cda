//! Model folders: a sharded Hugging Face checkpoint with its small files, the Hugging Face cache layout with
//! symlinks into `blobs/`, and a folder where one file is broken.

use std::path::Path;

use crate::util::{fixtures_dir, listing, stderr, tenzip};

fn copy_fixture(name: &str, to: &Path) {
    std::fs::copy(fixtures_dir().join(name), to).unwrap();
}

/// A sharded model folder: two shards, their index, a config and a tokenizer.
fn model_folder(root: &Path) {
    copy_fixture(
        "minilm-slice.bf16.safetensors",
        &root.join("model-00001-of-00002.safetensors"),
    );
    copy_fixture(
        "minilm-slice.f16.safetensors",
        &root.join("model-00002-of-00002.safetensors"),
    );
    std::fs::write(
        root.join("model.safetensors.index.json"),
        br#"{"metadata":{"total_size":1},"weight_map":{"a":"model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    std::fs::write(root.join("config.json"), br#"{"hidden_size": 384}"#).unwrap();
    std::fs::write(
        root.join("tokenizer.json"),
        "{\"vocab\": [\"a\", \"b\"]}".repeat(50),
    )
    .unwrap();
}

fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    listing(root)
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(root.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

#[test]
fn a_sharded_model_folder_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    model_folder(&model);
    let original = snapshot(&model);

    let out = tenzip(dir.path(), &["compress", "--all", "--rm", "-q", "model"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        listing(&model),
        [
            "config.json.tzp",
            "model-00001-of-00002.safetensors.tzp",
            "model-00002-of-00002.safetensors.tzp",
            "model.safetensors.index.json.tzp",
            "tokenizer.json.tzp"
        ]
    );
    let out = tenzip(dir.path(), &["decompress", "--rm", "-q", "model"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(snapshot(&model), original);

    // Without --all the small files are left as they are.
    let out = tenzip(dir.path(), &["compress", "model"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("left 3 other files"),
        "{}",
        stderr(&out)
    );
    assert_eq!(listing(&model).len(), original.len() + 2);
}

/// The Hugging Face cache: `snapshots/<rev>/` holds symlinks into `blobs/`. Outputs go beside the links, and
/// the shared blob is never written through the link.
#[cfg(unix)]
#[test]
fn symlinked_blobs_are_read_through_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("models--x");
    let blobs = cache.join("blobs");
    let revision = cache.join("snapshots/abc123");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&revision).unwrap();
    copy_fixture("minilm-slice.bf16.safetensors", &blobs.join("e3b0c442"));
    std::os::unix::fs::symlink("../../blobs/e3b0c442", revision.join("model.safetensors")).unwrap();
    let blob = std::fs::read(blobs.join("e3b0c442")).unwrap();

    let out = tenzip(dir.path(), &["compress", "-r", "-q", "models--x/snapshots"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(listing(&blobs), ["e3b0c442"]);
    let packed = revision.join("model.safetensors.tzp");
    assert!(packed.symlink_metadata().unwrap().file_type().is_file());

    // Restoring over the link replaces the link, not the blob.
    let out = tenzip(
        dir.path(),
        &["decompress", "-r", "-f", "-q", "models--x/snapshots"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = revision.join("model.safetensors");
    assert!(restored.symlink_metadata().unwrap().file_type().is_file());
    assert_eq!(std::fs::read(&restored).unwrap(), blob);
    assert_eq!(std::fs::read(blobs.join("e3b0c442")).unwrap(), blob);
}

#[test]
fn one_bad_file_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    copy_fixture("minilm-slice.f32.safetensors", &model.join("a.safetensors"));
    std::fs::write(
        model.join("b.safetensors"),
        b"\x10\0\0\0\0\0\0\0{\"x\": broken}",
    )
    .unwrap();
    copy_fixture("edge-cases.safetensors", &model.join("c.safetensors"));

    let out = tenzip(dir.path(), &["compress", "--json", "model"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"].as_array().unwrap().len(), 2);
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert!(failures[0]["input"]
        .as_str()
        .unwrap()
        .ends_with("b.safetensors"));
    assert_eq!(
        listing(&model),
        [
            "a.safetensors",
            "a.safetensors.tzp",
            "b.safetensors",
            "c.safetensors",
            "c.safetensors.tzp"
        ]
    );
}
