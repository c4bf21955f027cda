//! A strict reader for GGUF headers (versions 2 and 3, little-endian).
//!
//! A GGUF file is a header (magic, version, counts, key-value metadata, tensor infos), padding to the
//! alignment, then tensor data at offsets relative to the end of the header. [`Header::parse`] walks the whole
//! header, checking every count and length against the bytes that are left before it allocates anything,
//! and reports where it stopped. It never re-serializes: tenzip keeps the header, padding and any trailing
//! bytes verbatim, so restores are byte-exact however the file was written.
//!
//! The crates on crates.io were evaluated and not used: `gguf-rs-lib` refuses version 2 files, tensor names
//! over 64 bytes, non-UTF-8 strings and unknown tensor types, and its writer reorders keys and drops padding;
//! the others compute wrong sizes for newer types.
//!
//! ```
//! let mut file = b"GGUF".to_vec();
//! file.extend_from_slice(&3u32.to_le_bytes()); // version
//! file.extend_from_slice(&1u64.to_le_bytes()); // tensors
//! file.extend_from_slice(&0u64.to_le_bytes()); // metadata entries
//! file.extend_from_slice(&1u64.to_le_bytes()); // name length
//! file.extend_from_slice(b"w");
//! file.extend_from_slice(&1u32.to_le_bytes()); // dimensions
//! file.extend_from_slice(&2u64.to_le_bytes()); // 2 values
//! file.extend_from_slice(&0u32.to_le_bytes()); // F32
//! file.extend_from_slice(&0u64.to_le_bytes()); // data offset
//! file.resize(64, 0); // padding to the default 32-byte alignment
//! file.extend_from_slice(&[0; 8]); // the tensor's data
//!
//! let header = tenzip_gguf::Header::parse(&file)?;
//! assert_eq!(header.data_start, 64);
//! assert_eq!(header.tensors[0].range, 64..72);
//! # Ok::<(), tenzip_gguf::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod header;

pub use error::{Error, Rule};
pub use header::{Header, Tensor, DEFAULT_ALIGNMENT, MAX_DIMS, MAX_NESTING};

/// The four bytes every GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";

/// Whether `file` starts like a GGUF file.
pub fn is_gguf(file: &[u8]) -> bool {
    file.starts_with(MAGIC)
}
