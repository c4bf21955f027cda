use thiserror::Error;

/// A GGUF header that cannot be read, and the byte offset where reading stopped.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("at byte {offset}: {rule}")]
pub struct Error {
    /// Offset into the file where the problem was found.
    pub offset: u64,
    /// The rule the file breaks.
    pub rule: Rule,
}

/// A rule of the GGUF format that a file breaks. Each rule has its own variant.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file (no GGUF magic)")]
    Magic,
    /// A version this reader does not read (1 is the pre-2023 format with 32-bit counts).
    #[error("GGUF version {0} is not supported (versions 2 and 3 are)")]
    Version(u32),
    /// The file is big-endian; its header can be read only byte-swapped.
    #[error("big-endian GGUF file")]
    BigEndian,
    /// The file ends inside the header.
    #[error("file ends inside the header: {what} needs {needed} bytes, {available} are left")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes left.
        available: u64,
    },
    /// A count claims more entries than the rest of the file could hold.
    #[error("{what} count {count} cannot fit in the {available} bytes left")]
    CountTooLarge {
        /// What is counted.
        what: &'static str,
        /// The stored count.
        count: u64,
        /// Bytes left.
        available: u64,
    },
    /// A metadata value has a type id the format does not define.
    #[error("metadata value type {0} is unknown")]
    ValueType(u32),
    /// Arrays nest deeper than [`MAX_NESTING`](crate::MAX_NESTING).
    #[error("metadata arrays nest more than {0} deep")]
    NestingTooDeep(usize),
    /// `general.alignment` is not a non-zero power of two stored as a `u32`.
    #[error("general.alignment must be a u32 power of two, found {0}")]
    Alignment(String),
    /// A tensor has more dimensions than [`MAX_DIMS`](crate::MAX_DIMS).
    #[error("tensor {name:?} has {dims} dimensions, more than {max}")]
    TooManyDims {
        /// The tensor's name.
        name: String,
        /// Its dimension count.
        dims: u32,
        /// The limit.
        max: usize,
    },
    /// A tensor's shape is not a whole number of blocks of its type, or its size overflows.
    #[error("tensor {name:?}: shape {shape:?} is not a whole number of {ggml_type} blocks")]
    Shape {
        /// The tensor's name.
        name: String,
        /// Its shape, innermost dimension first.
        shape: Vec<u64>,
        /// Its type's name.
        ggml_type: String,
    },
    /// A tensor's data offset is not a multiple of the alignment.
    #[error(
        "tensor {name:?}: data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    Misaligned {
        /// The tensor's name.
        name: String,
        /// Its offset, relative to the start of the data.
        offset: u64,
        /// The alignment.
        alignment: u64,
    },
    /// A tensor's data runs past the end of the file.
    #[error("tensor {name:?}: data {start}..{end} runs past the end of the file ({len} bytes)")]
    DataPastEnd {
        /// The tensor's name.
        name: String,
        /// Absolute start.
        start: u64,
        /// Absolute end.
        end: u64,
        /// The file's length.
        len: u64,
    },
    /// Two tensors' data overlap.
    #[error("tensors {first:?} and {second:?} overlap")]
    Overlap {
        /// The tensor that starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
    },
    /// Two tensors share a name.
    #[error("tensor name {0:?} appears twice")]
    DuplicateName(String),
}
