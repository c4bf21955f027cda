//! Turning the paths on the command line into the files a command works on: files as given, folders
//! walked for the files the command takes.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// What a command takes from a folder.
#[derive(Debug, Clone, Copy)]
pub enum Wanted {
    /// `compress`: safetensors and GGUF files, and with `all` every other file too (stored generically).
    Originals { all: bool },
    /// `decompress`, `verify`: `.tzp` files.
    Containers,
}

/// A file to work on.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: PathBuf,
    /// Store as opaque bytes: a non-tensor file taken from a folder with `--all`.
    pub generic: bool,
}

/// Expands `paths`: files are taken as given, folders are walked (into subfolders with `recursive`) for the
/// files `wanted`. Symlinks to files are followed (the Hugging Face cache links `snapshots/` into `blobs/`);
/// symlinks to folders are not walked into, so a link cycle cannot loop. Returns the files in a stable order
/// and how many files in folders were left alone that `compress --all` would take.
pub fn expand(
    paths: &[PathBuf],
    wanted: Wanted,
    recursive: bool,
) -> anyhow::Result<(Vec<Input>, usize)> {
    let mut inputs = Vec::new();
    let mut skipped = 0;
    for path in paths {
        if path.is_dir() {
            walk(path, wanted, recursive, &mut inputs, &mut skipped)?;
        } else {
            inputs.push(Input {
                path: path.clone(),
                generic: false,
            });
        }
    }
    Ok((inputs, skipped))
}

fn walk(
    dir: &Path,
    wanted: Wanted,
    recursive: bool,
    inputs: &mut Vec<Input>,
    skipped: &mut usize,
) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read folder {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read folder {}", dir.display()))?;
    entries.sort();
    for path in entries {
        let is_link = path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        if path.is_dir() {
            if recursive && !is_link {
                walk(&path, wanted, recursive, inputs, skipped)?;
            }
            continue;
        }
        if !path.is_file() || is_temporary(&path) {
            continue;
        }
        match classify(&path, wanted) {
            Some(generic) => inputs.push(Input { path, generic }),
            // Files that `--all` would take are worth a mention. Outputs of an earlier run are not news, nor
            // are the originals and other files beside the `.tzp` files being restored.
            None if matches!(wanted, Wanted::Originals { all: false }) && !is_container(&path) => {
                *skipped += 1
            }
            None => {}
        }
    }
    Ok(())
}

/// Whether a file found in a folder is taken, and if so whether it is stored generically.
fn classify(path: &Path, wanted: Wanted) -> Option<bool> {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match wanted {
        Wanted::Containers => is_container(path).then_some(false),
        Wanted::Originals { .. } if is_container(path) => None,
        Wanted::Originals { .. }
            if matches!(extension.as_deref(), Some("safetensors" | "gguf")) =>
        {
            Some(false)
        }
        Wanted::Originals { all } => all.then_some(true),
    }
}

fn is_container(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tzp"))
}

/// A temporary output of a tenzip run (`.name.XXXX.partial`), which is never an input.
fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .map(|name| name.to_string_lossy())
        .is_some_and(|name| name.starts_with('.') && name.ends_with(".partial"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_give_the_files_each_command_takes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        for name in [
            "a.safetensors",
            "b.GGUF",
            "config.json",
            "c.safetensors.tzp",
            ".x.1234.partial",
            "sub/d.safetensors",
        ] {
            std::fs::write(root.join(name), b"").unwrap();
        }
        let names = |inputs: Vec<Input>| -> Vec<(String, bool)> {
            inputs
                .into_iter()
                .map(|input| {
                    let name = input.path.strip_prefix(root).unwrap().display().to_string();
                    (name, input.generic)
                })
                .collect()
        };
        let folder = [root.to_path_buf()];
        let (found, skipped) = expand(&folder, Wanted::Originals { all: false }, false).unwrap();
        assert_eq!(
            names(found),
            [("a.safetensors".into(), false), ("b.GGUF".into(), false)]
        );
        assert_eq!(skipped, 1, "config.json");
        let (found, _) = expand(&folder, Wanted::Originals { all: true }, true).unwrap();
        assert_eq!(
            names(found),
            [
                ("a.safetensors".into(), false),
                ("b.GGUF".into(), false),
                ("config.json".into(), true),
                ("sub/d.safetensors".into(), false)
            ]
        );
        let (found, skipped) = expand(&folder, Wanted::Containers, false).unwrap();
        assert_eq!(names(found), [("c.safetensors.tzp".into(), false)]);
        assert_eq!(skipped, 0, "no --all to suggest when restoring");
    }
}
