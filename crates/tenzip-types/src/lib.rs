//! The vocabulary shared by tenzip's format readers and its router.
//!
//! A format reader (safetensors, GGUF) turns a file header into a list of [`TensorEntry`]s; the router
//! picks a field layout from each entry's [`Dtype`]. Neither side needs to know the other.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod dtype;
mod ggml;

pub use dtype::Dtype;
pub use ggml::GgmlType;

use std::ops::Range;

/// One tensor as a format reader found it in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// The tensor's name, exactly as stored in the file.
    pub name: String,
    /// The element type.
    pub dtype: Dtype,
    /// The shape, outermost dimension first.
    pub shape: Vec<u64>,
    /// Where the tensor's bytes lie, as absolute offsets into the file.
    pub range: Range<u64>,
}

impl TensorEntry {
    /// The tensor's size in bytes.
    pub fn byte_len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// The number of elements the shape holds, or `None` if the product overflows `u64`.
    pub fn element_count(&self) -> Option<u64> {
        element_count(&self.shape)
    }
}

/// The product of a shape's dimensions (1 for a scalar), or `None` if it overflows `u64`.
pub fn element_count(shape: &[u64]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |product, &dim| product.checked_mul(dim))
}
