//! Whole files: map the input, write the output beside its destination under a temporary name, flush and
//! sync it, and only then give it its final name. A failure at any point leaves no partial output behind.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use std::collections::BTreeMap;

use tenzip_codec::chunk_coding;
use tenzip_container::{Container, Manifest, Segment};

use crate::engine::{compress, decompress, describe, segment_layout};
use crate::mapped::Input;
use crate::{CompressOptions, DecompressOptions, Error, ErrorKind, Plan};

/// What an operation did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Bytes read.
    pub input_bytes: u64,
    /// Bytes written (for `verify`, the bytes that were restored and checked).
    pub output_bytes: u64,
    /// Wall-clock time.
    pub seconds: f64,
}

/// A `.tzp` file's manifest and size, for `inspect`.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The manifest.
    pub manifest: Manifest,
    /// The `.tzp` file's length.
    pub container_len: u64,
    /// Per segment: how many chunks used each coding, keyed by split and stream modes
    /// (`"fields tans+raw"`).
    pub codings: Vec<BTreeMap<String, usize>>,
}

/// Compresses `input` into the `.tzp` file `output`.
pub fn compress_file(
    input: &Path,
    output: &Path,
    options: &CompressOptions,
) -> Result<Summary, Error> {
    let started = Instant::now();
    refuse_existing(output, options.overwrite)?;
    let file = map(input)?;
    let plan = Plan::new(&file, options.generic).map_err(|kind| Error::new(input, kind))?;
    let output_bytes = write_atomically(input, output, options.overwrite, |out| {
        compress(&file, &plan, options, out).map(|_| ())
    })?;
    Ok(Summary {
        input_bytes: file.len() as u64,
        output_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Restores the original file from the `.tzp` file `input` into `output`. Every chunk checksum is checked before
/// `output` appears.
pub fn decompress_file(
    input: &Path,
    output: &Path,
    options: &DecompressOptions,
) -> Result<Summary, Error> {
    let started = Instant::now();
    refuse_existing(output, options.overwrite)?;
    let bytes = map(input)?;
    let container = Container::open(&bytes).map_err(|err| Error::new(input, err))?;
    let output_bytes = write_atomically(input, output, options.overwrite, |out| {
        decompress(&container, options, out).map(|_| ())
    })?;
    Ok(Summary {
        input_bytes: bytes.len() as u64,
        output_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Decodes the whole `.tzp` file `input` and checks every checksum, writing nothing.
pub fn verify_file(input: &Path, options: &DecompressOptions) -> Result<Summary, Error> {
    let started = Instant::now();
    let bytes = map(input)?;
    let container = Container::open(&bytes).map_err(|err| Error::new(input, err))?;
    decompress(&container, options, io::sink()).map_err(|kind| Error::new(input, kind))?;
    Ok(Summary {
        input_bytes: bytes.len() as u64,
        output_bytes: container.manifest().source.len,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Reads the manifest of the `.tzp` file `input` (validating its framing, not its payloads).
pub fn inspect_file(input: &Path) -> Result<Inspection, Error> {
    let bytes = map(input)?;
    let container = Container::open(&bytes).map_err(|err| Error::new(input, err))?;
    let codings = container
        .manifest()
        .segments
        .iter()
        .map(|segment| segment_codings(&container, segment))
        .collect::<Result<_, _>>()
        .map_err(|kind| Error::new(input, kind))?;
    Ok(Inspection {
        manifest: container.manifest().clone(),
        container_len: container.len(),
        codings,
    })
}

/// How the chunks of `segment` were coded, counted by coding: "fields tans+raw" => 12 chunks (read from
/// split bytes and block headers, decoding nothing).
fn segment_codings(
    container: &Container<impl AsRef<[u8]>>,
    segment: &Segment,
) -> Result<BTreeMap<String, usize>, ErrorKind> {
    let layout = segment_layout(segment)?;
    let mut counts = BTreeMap::new();
    for (index, chunk) in segment.chunks.iter().enumerate() {
        let coding =
            chunk_coding(layout, container.payload(chunk)).map_err(|cause| ErrorKind::Codec {
                segment: describe(segment),
                chunk: index,
                cause,
            })?;
        let modes: Vec<&str> = coding.modes.iter().map(|mode| mode.name()).collect();
        let rows = if coding.repeated_rows { "rows+" } else { "" };
        let key = format!("{rows}{} {}", coding.split.name(), modes.join("+"));
        *counts.entry(key).or_insert(0) += 1;
    }
    Ok(counts)
}

fn refuse_existing(output: &Path, overwrite: bool) -> Result<(), Error> {
    if !overwrite && output.symlink_metadata().is_ok() {
        return Err(Error::new(output, ErrorKind::OutputExists));
    }
    Ok(())
}

/// Writes through `write` into a temporary file beside `output`, syncs it, then renames it to `output`,
/// which gets `input`'s permissions. Errors from writing name `output`; all others name `input`. Returns
/// the bytes written.
fn write_atomically(
    input: &Path,
    output: &Path,
    overwrite: bool,
    write: impl FnOnce(&mut BufWriter<&File>) -> Result<(), ErrorKind>,
) -> Result<u64, Error> {
    let output_error = |err: io::Error| Error::new(output, err);
    let dir = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = output
        .file_name()
        .map_or_else(|| "tenzip".into(), |name| name.to_string_lossy());
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|err| {
            // tempfile's message ends with the random temporary path (" at path ..."), which the user never
            // asked for; its error type, which holds the OS error apart, is private.
            let message = err.to_string();
            let cause = message.split(" at path ").next().unwrap_or(&message);
            let message = format!("cannot create a file in {}: {cause}", dir.display());
            output_error(io::Error::new(err.kind(), message))
        })?;
    let _registered = PartialOutput::register(temp.path());
    // Temporary files are created private (0600); the output takes the input's permissions, as zstd's do.
    if let Ok(metadata) = std::fs::metadata(input) {
        temp.as_file()
            .set_permissions(metadata.permissions())
            .map_err(output_error)?;
    }
    {
        let mut out = BufWriter::with_capacity(1 << 20, temp.as_file());
        write(&mut out).map_err(|kind| match kind {
            ErrorKind::Io(err) => Error::new(output, err),
            other => Error::new(input, other),
        })?;
        out.flush().map_err(output_error)?;
    }
    temp.as_file().sync_all().map_err(output_error)?;
    let written = temp.as_file().metadata().map_err(output_error)?.len();
    let persisted = if overwrite {
        temp.persist(output)
    } else {
        temp.persist_noclobber(output)
    };
    persisted.map_err(|err| match err.error.kind() {
        io::ErrorKind::AlreadyExists => Error::new(output, ErrorKind::OutputExists),
        _ => Error::new(output, err.error),
    })?;
    Ok(written)
}

/// Outputs being written under their temporary names, for [`remove_partial_outputs`].
static PARTIAL_OUTPUTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A temporary output listed in `PARTIAL_OUTPUTS` for as long as this guard lives.
struct PartialOutput(PathBuf);

impl PartialOutput {
    fn register(path: &Path) -> PartialOutput {
        partial_outputs().push(path.to_owned());
        PartialOutput(path.to_owned())
    }
}

impl Drop for PartialOutput {
    fn drop(&mut self) {
        partial_outputs().retain(|path| *path != self.0);
    }
}

fn partial_outputs() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    // A panic elsewhere while the list was held leaves it usable: it is a plain list of paths.
    PARTIAL_OUTPUTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Deletes every output this process is still writing under a temporary name. For a Ctrl-C or SIGTERM
/// handler that is about to exit: normal failures already delete their temporary files, but a process that
/// exits from a signal handler runs no destructors. Outputs under their final names are never touched.
pub fn remove_partial_outputs() {
    for path in partial_outputs().drain(..) {
        let _ = std::fs::remove_file(path);
    }
}

/// The input's bytes, memory-mapped so that large checkpoints are paged in on demand rather than copied.
pub(crate) fn map(path: &Path) -> Result<Input, Error> {
    Input::open(path).map_err(|err| Error::new(path, err))
}

/// Writes `bytes` to `path` through a temporary file that is synced and then renamed, so that `path` is
/// either absent or complete, with the permissions of `permissions_from`. Refuses to replace an existing
/// file unless `overwrite`.
pub fn write_file_atomically(
    path: &Path,
    bytes: &[u8],
    overwrite: bool,
    permissions_from: &Path,
) -> Result<(), Error> {
    refuse_existing(path, overwrite)?;
    write_atomically(permissions_from, path, overwrite, |out| {
        Ok(out.write_all(bytes)?)
    })?;
    Ok(())
}
