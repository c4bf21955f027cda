//! tenzip: lossless compression for neural-network checkpoints.
//!
//! The pieces, in the order data flows through them:
//! - a format reader ([`tenzip_safetensors`]) turns the file's header into tensor entries;
//! - the router ([`Plan`]) cuts the file into segments (header, tensors) and picks a codec
//!   [`Layout`](tenzip_codec::Layout) for each from its dtype;
//! - the engine cuts segments into chunks and codes them in parallel with [`tenzip_codec`];
//! - the container writer ([`tenzip_container`]) lays out payloads and the manifest.
//!
//! Decompression walks the same path backwards and checks every chunk's checksum (every byte of the file
//! lies in exactly one chunk) before the output gets its final name. [`decompress_into`] restores into memory, decoding
//! every chunk in parallel straight into place. [`Archive`] reads single tensors back, decoding only their
//! chunks.
//!
//! ```no_run
//! use std::path::Path;
//! use tenzip::{compress_file, decompress_file, CompressOptions, DecompressOptions};
//!
//! let input = Path::new("model.safetensors");
//! compress_file(input, Path::new("model.safetensors.tzp"), &CompressOptions::default())?;
//! decompress_file(Path::new("model.safetensors.tzp"), Path::new("restored.safetensors"), &DecompressOptions::default())?;
//! # Ok::<(), tenzip::Error>(())
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod analyze;
mod archive;
mod engine;
mod error;
mod file;
pub mod kv;
mod mapped;
mod progress;
mod route;
mod source;

pub use analyze::{
    analyze, analyze_file, Analysis, DtypeStats, ExponentHistogram, FieldStats, TensorStats,
};
pub use archive::Archive;
pub use engine::{compress, decompress, decompress_into, CompressOptions, DecompressOptions};
pub use error::{Error, ErrorKind};
pub use file::{
    compress_file, decompress_file, inspect_file, remove_partial_outputs, verify_file,
    write_file_atomically, Inspection, Summary,
};
pub use progress::Progress;
pub use route::{layout_for, route_tensors, Format, Plan, PlannedSegment, PlannedTensor};
pub use source::Source;
pub use tenzip_codec::Preference;
pub use tenzip_container::{Container, Manifest, Segment, SegmentKind};
