//! The `.tzp` container: framing, coded chunk payloads and a JSON [`Manifest`]. See `FORMAT.md` beside this
//! crate for the specification.
//!
//! [`Writer`] streams payloads out as they are produced and writes the manifest last, so compressing never
//! holds the whole output in memory. [`Container::open`] validates framing, the manifest checksum and every
//! offset in the manifest before handing out a single payload: a hostile `.tzp` gets an [`Error`], never a
//! panic or an out-of-bounds read.
//!
//! ```
//! use tenzip_container::{Chunk, Checksum, Container, Manifest, Segment, SegmentKind, Source, Writer};
//!
//! let original = b"hello";
//! let mut writer = Writer::new(Vec::new())?;
//! let offset = writer.append(original)?;
//! let chunk = Chunk { offset, stored: 5, len: 5, xxh3: Checksum::of(original) };
//! let segment = Segment::new(SegmentKind::Bytes, 0..5, "bytes", vec![chunk]);
//! let manifest = Manifest::new(Source { format: "generic".into(), len: 5 }, 5, vec![segment]);
//! let file = writer.finish(&manifest)?;
//!
//! let container = Container::open(&file)?;
//! assert_eq!(container.payload(&container.manifest().segments[0].chunks[0]), b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod manifest;
mod reader;
mod writer;

pub use error::Error;
pub use manifest::{Checksum, Chunk, Manifest, Segment, SegmentKind, Source, MAX_CHUNK_LEN};
pub use reader::{Container, MAX_MANIFEST_LEN};
pub use writer::Writer;

/// First bytes of every `.tzp` file. Like PNG's signature, the high byte and the CR LF / LF pair catch
/// transfers that mangle binary files.
pub const MAGIC: [u8; 8] = *b"\x89TZP\r\n\x1a\n";
/// Last bytes of every complete `.tzp` file.
pub const END_MAGIC: [u8; 8] = *b"TZP-END\n";
/// The container version this crate writes and reads. Version 2 gave tANS blocks a table log of their own
/// (version 1, from development builds only, had a fixed one).
pub const FORMAT_VERSION: u32 = 2;
/// Magic, version, reserved flags.
pub const PREAMBLE_LEN: u64 = 16;
/// Manifest offset, manifest length, manifest checksum, end magic.
pub const FOOTER_LEN: u64 = 32;
