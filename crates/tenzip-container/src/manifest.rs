//! The manifest: what the original file was and where every coded chunk of it lies.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest chunk, in original bytes, a reader accepts. Decoding allocates one chunk per worker, so this
/// caps the memory a hostile manifest can make a reader take.
pub const MAX_CHUNK_LEN: u64 = 64 << 20;

/// The JSON document at the end of a `.tzp` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Container format version; equals [`FORMAT_VERSION`](crate::FORMAT_VERSION).
    pub format_version: u32,
    /// The tool that wrote the file, e.g. `"tenzip 0.1.0"`. Informational.
    pub writer: String,
    /// The original file.
    pub source: Source,
    /// The chunk size the writer used, in original bytes. Informational: each chunk records its own length.
    pub chunk_size: u64,
    /// The original file, cut into consecutive segments that cover it exactly, in order.
    pub segments: Vec<Segment>,
}

impl Manifest {
    /// A manifest for the current format version.
    pub fn new(source: Source, chunk_size: u64, segments: Vec<Segment>) -> Manifest {
        Manifest {
            format_version: crate::FORMAT_VERSION,
            writer: concat!("tenzip ", env!("CARGO_PKG_VERSION")).to_owned(),
            source,
            chunk_size,
            segments,
        }
    }
}

/// What the original file was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `"safetensors"`, or `"generic"` for a file stored as opaque bytes.
    pub format: String,
    /// Length in bytes.
    pub len: u64,
}

/// What a segment of the original file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentKind {
    /// A format's header, kept byte for byte.
    Header,
    /// One tensor's data.
    Tensor,
    /// Bytes with no further structure (a whole file stored generically, padding, trailing bytes).
    Bytes,
}

/// A consecutive byte range of the original file and the chunks that code it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// What the bytes are.
    pub kind: SegmentKind,
    /// Tensor name, for tensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tensor dtype as the source format names it, for tensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Tensor shape, for tensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<u64>>,
    /// Offset in the original file.
    pub offset: u64,
    /// Length in the original file.
    pub len: u64,
    /// The codec layout that split the bytes into streams, e.g. `"bf16-split"`.
    pub layout: String,
    /// Why the writer chose that layout, e.g. `"MXFP4 codes, E8M0 scales in x_scales"`. Informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The coded chunks, in order; their lengths add up to `len`.
    pub chunks: Vec<Chunk>,
}

impl Segment {
    /// A segment with no tensor metadata and no route; callers fill those in afterwards.
    pub fn new(
        kind: SegmentKind,
        range: std::ops::Range<u64>,
        layout: &str,
        chunks: Vec<Chunk>,
    ) -> Segment {
        Segment {
            kind,
            name: None,
            dtype: None,
            shape: None,
            offset: range.start,
            len: range.end - range.start,
            layout: layout.to_owned(),
            route: None,
            chunks,
        }
    }

    /// Bytes the segment's chunks take in the container.
    pub fn stored_len(&self) -> u64 {
        self.chunks.iter().map(|chunk| chunk.stored).sum()
    }
}

/// One independently decodable piece of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Offset of the coded payload in the container.
    pub offset: u64,
    /// Length of the coded payload.
    pub stored: u64,
    /// Length of the original bytes it decodes to.
    pub len: u64,
    /// Checksum of the original bytes.
    pub xxh3: Checksum,
}

/// An XXH3-64 checksum, written in JSON as 16 lowercase hex digits (JSON numbers above 2^53 do not survive
/// every JSON reader).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Checksum(pub u64);

impl Checksum {
    /// The checksum of `bytes`.
    pub fn of(bytes: &[u8]) -> Checksum {
        Checksum(twox_hash::XxHash3_64::oneshot(bytes))
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for Checksum {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Checksum {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(deserializer)?;
        if hex.len() != 16 {
            return Err(serde::de::Error::custom("checksum must be 16 hex digits"));
        }
        u64::from_str_radix(&hex, 16)
            .map(Checksum)
            .map_err(serde::de::Error::custom)
    }
}
