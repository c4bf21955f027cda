use thiserror::Error;

/// Why a coded chunk could not be decoded. Every variant means the input is corrupt (or was not written by
/// this codec); the decoder never panics and never writes past the output it was given.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The payload ended before a field that must be there.
    #[error("coded chunk is truncated: {what} needs {needed} bytes, {available} are left")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes left in the payload.
        available: usize,
    },
    /// A stream block names a coding mode this version does not know.
    #[error("unknown stream coding mode {0}")]
    UnknownMode(u8),
    /// A Huffman code-length table is not a valid prefix code.
    #[error("invalid Huffman table: {0}")]
    InvalidTable(&'static str),
    /// A coded stream did not decode to exactly the bytes it was written from.
    #[error("coded stream is corrupt: it should end after {expected_bytes} bytes, decoding consumed {consumed_bits} bits")]
    StreamLength {
        /// The stream's stored length in bytes.
        expected_bytes: usize,
        /// Bits the decoder consumed to produce the expected number of symbols.
        consumed_bits: u64,
    },
    /// A tANS- or rANS-coded stream did not decode cleanly.
    #[error("ANS stream is corrupt: {0}")]
    AnsStream(&'static str),
    /// A DEFLATE block did not inflate to exactly the stream's length.
    #[error("DEFLATE stream is corrupt: {0}")]
    Inflate(String),
    /// A stored-raw block's length differs from the field length it must restore.
    #[error("stored block holds {got} bytes, should hold {expected}")]
    RawLength {
        /// Bytes in the block.
        got: usize,
        /// Bytes the field needs.
        expected: usize,
    },
    /// The chunk's length is not a whole number of values of its layout.
    #[error("chunk of {len} bytes does not hold whole values of {value_size} bytes")]
    ValueAlignment {
        /// The chunk's length.
        len: usize,
        /// Bytes per value of the layout.
        value_size: usize,
    },
    /// A repeated row names a distinct row the chunk does not have.
    #[error("row reference {index} points past the {rows} distinct rows of the chunk")]
    RowReference {
        /// The reference.
        index: usize,
        /// Distinct rows in the chunk.
        rows: usize,
    },
    /// A chunk of repeated rows states more distinct rows than it has rows.
    #[error("chunk of {rows} rows claims {distinct} distinct rows")]
    DistinctRows {
        /// The stated distinct row count.
        distinct: usize,
        /// The chunk's rows.
        rows: usize,
    },
    /// A parts block whose part count does not divide the stream.
    #[error("stream of {len} bytes cannot be cut into {parts} equal parts")]
    Parts {
        /// The stored part count.
        parts: usize,
        /// The stream's length.
        len: usize,
    },
    /// A packed block whose symbol width is not 1 to 7 bits.
    #[error("packed symbols of {0} bits: the width must be 1 to 7")]
    PackedWidth(u32),
    /// A clusters block whose cluster count or assignment of parts is impossible.
    #[error("{clusters} clusters of {parts} parts: a cluster count above the parts or 256, a part in no cluster, or a cluster with no part")]
    Clusters {
        /// The stored cluster count.
        clusters: usize,
        /// The stored part count.
        parts: usize,
    },
    /// A parts, grouped or clusters block inside another: their blocks code plain streams only.
    #[error("{} block inside a parts, grouped or clusters block", .0.name())]
    NestedBlock(crate::entropy::Mode),
    /// A grouped block where the stream has no context to group by.
    #[error("grouped block in a stream that has no context stream")]
    UnexpectedGrouping,
    /// A chunk names a split its layout does not have.
    #[error("chunk names split {index}, which layout {layout} does not have")]
    UnknownSplit {
        /// The chunk's layout.
        layout: crate::Layout,
        /// The split index the chunk names.
        index: u8,
    },
    /// Bytes were left over after the last stream of a chunk.
    #[error("{0} unexpected bytes after the last stream of the chunk")]
    TrailingBytes(usize),
}
