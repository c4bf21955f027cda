use thiserror::Error;

/// A rule of the safetensors format that a file breaks. Each rule has its own variant.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than the 8-byte header length prefix.
    #[error("file is {len} bytes, too short for the 8-byte header length")]
    TooShort {
        /// The file's length.
        len: u64,
    },
    /// The declared header length exceeds [`MAX_HEADER_LEN`](crate::MAX_HEADER_LEN).
    #[error("header length is {len} bytes, more than the {limit}-byte limit")]
    HeaderTooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The declared header runs past the end of the file.
    #[error("header length is {len} bytes but only {available} bytes follow the length prefix")]
    HeaderPastEnd {
        /// The declared length.
        len: u64,
        /// Bytes after the prefix.
        available: u64,
    },
    /// The header does not start with `{`.
    #[error("header does not start with '{{'")]
    HeaderStart,
    /// The header is not UTF-8.
    #[error("header is not valid UTF-8")]
    HeaderNotUtf8,
    /// The header is not a JSON object of tensors, or a tensor entry is malformed.
    /// The JSON error is in the message, not reported as a source, which a printed chain of sources
    /// would repeat.
    #[error("header is not valid JSON for safetensors: {0}")]
    Json(serde_json::Error),
    /// Two entries share a name.
    #[error("tensor name {0:?} appears twice")]
    DuplicateName(String),
    /// `__metadata__` is not an object of strings.
    #[error("__metadata__ must map strings to strings")]
    Metadata,
    /// A tensor's dtype is not one safetensors defines.
    #[error("tensor {name:?} has unknown dtype {dtype:?}")]
    UnknownDtype {
        /// The tensor.
        name: String,
        /// The dtype as written.
        dtype: String,
    },
    /// The element count or byte size overflows 64 bits.
    #[error("tensor {name:?}: shape {shape:?} overflows 64-bit arithmetic")]
    ShapeOverflow {
        /// The tensor.
        name: String,
        /// The shape.
        shape: Vec<u64>,
    },
    /// A sub-byte dtype whose elements do not fill a whole number of bytes.
    #[error("tensor {name:?}: {elements} elements of {bits} bits do not fill whole bytes")]
    PartialByte {
        /// The tensor.
        name: String,
        /// Element count.
        elements: u64,
        /// Bits per element.
        bits: u64,
    },
    /// `data_offsets` end before they begin.
    #[error("tensor {name:?}: data_offsets [{begin}, {end}] end before they begin")]
    OffsetsReversed {
        /// The tensor.
        name: String,
        /// First offset.
        begin: u64,
        /// Second offset.
        end: u64,
    },
    /// The byte range differs from shape times dtype size.
    #[error("tensor {name:?}: shape and dtype give {expected} bytes, data_offsets span {got}")]
    SizeMismatch {
        /// The tensor.
        name: String,
        /// Bytes from shape and dtype.
        expected: u64,
        /// Bytes between the offsets.
        got: u64,
    },
    /// A tensor starts after the previous one ended.
    #[error(
        "tensor {name:?} starts at data offset {begin}, leaving a gap after offset {expected}"
    )]
    Gap {
        /// The tensor.
        name: String,
        /// Where it starts.
        begin: u64,
        /// Where the previous tensor ended.
        expected: u64,
    },
    /// A tensor starts before the previous one ended.
    #[error("tensor {name:?} starts at data offset {begin}, inside {previous:?}, which ends at {expected}")]
    Overlap {
        /// The tensor.
        name: String,
        /// The tensor it overlaps.
        previous: String,
        /// Where it starts.
        begin: u64,
        /// Where the previous tensor ended.
        expected: u64,
    },
    /// The tensors end before or after the end of the file.
    #[error("tensors cover {covered} data bytes but the file holds {available}")]
    DataLength {
        /// Bytes the tensors cover.
        covered: u64,
        /// Bytes after the header.
        available: u64,
    },
}
