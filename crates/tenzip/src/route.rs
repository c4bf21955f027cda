//! The router: recognises the input format and cuts the file into segments, each with a codec layout.

use std::ops::Range;

use tenzip_codec::Layout;
use tenzip_container::SegmentKind;
use tenzip_types::{Dtype, TensorEntry};

use crate::ErrorKind;

/// The format of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A safetensors file.
    Safetensors,
    /// Any file, stored as opaque bytes.
    Generic,
}

impl Format {
    /// The name recorded in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Generic => "generic",
        }
    }
}

/// One consecutive byte range of the input and how to code it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSegment {
    /// What the bytes are.
    pub kind: SegmentKind,
    /// The tensor, for tensor segments.
    pub tensor: Option<TensorEntry>,
    /// Byte range in the input.
    pub range: Range<u64>,
    /// The layout that codes it.
    pub layout: Layout,
}

/// How a whole file will be coded: its format and segments that cover it exactly, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The recognised format.
    pub format: Format,
    /// Segments covering the file in order.
    pub segments: Vec<PlannedSegment>,
}

impl Plan {
    /// Recognises `file` and plans it. With `generic`, any file becomes one opaque byte segment.
    pub fn new(file: &[u8], generic: bool) -> Result<Plan, ErrorKind> {
        if generic {
            return Ok(Plan::generic(file.len() as u64));
        }
        if !looks_like_safetensors(file) {
            return Err(ErrorKind::UnknownFormat);
        }
        let header = tenzip_safetensors::Header::parse(file)?;
        let mut segments = vec![PlannedSegment {
            kind: SegmentKind::Header,
            tensor: None,
            range: 0..header.len,
            layout: Layout::Bytes,
        }];
        segments.extend(header.tensors.into_iter().map(|tensor| PlannedSegment {
            kind: SegmentKind::Tensor,
            range: tensor.range.clone(),
            layout: layout_for(tensor.dtype, tensor.byte_len()),
            tensor: Some(tensor),
        }));
        Ok(Plan {
            format: Format::Safetensors,
            segments,
        })
    }

    fn generic(len: u64) -> Plan {
        let segment = PlannedSegment {
            kind: SegmentKind::Bytes,
            tensor: None,
            range: 0..len,
            layout: Layout::Bytes,
        };
        Plan {
            format: Format::Generic,
            segments: vec![segment],
        }
    }
}

/// A safetensors file starts with a little-endian header length that fits in the file, then `{`.
fn looks_like_safetensors(file: &[u8]) -> bool {
    let Some(prefix) = file.get(..8) else {
        return false;
    };
    let header_len = u64::from_le_bytes(prefix.try_into().expect("8 bytes"));
    header_len >= 2 && file.get(8) == Some(&b'{')
}

/// The layout for a tensor of `dtype` spanning `byte_len` bytes. Float dtypes get their field split; all else
/// (integers, bools, F64, dtypes without a layout yet) is coded as plain bytes.
pub fn layout_for(dtype: Dtype, byte_len: u64) -> Layout {
    let layout = match dtype {
        Dtype::BF16 => Layout::Bf16,
        Dtype::F16 => Layout::F16,
        Dtype::F32 => Layout::F32,
        _ => Layout::Bytes,
    };
    // Validated headers always hold whole values; this guards layouts against any reader that does not.
    if byte_len % layout.value_size() as u64 == 0 {
        layout
    } else {
        Layout::Bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_float_dtypes_to_their_split() {
        assert_eq!(layout_for(Dtype::BF16, 4), Layout::Bf16);
        assert_eq!(layout_for(Dtype::F16, 4), Layout::F16);
        assert_eq!(layout_for(Dtype::F32, 8), Layout::F32);
        assert_eq!(layout_for(Dtype::F32, 6), Layout::Bytes);
        assert_eq!(layout_for(Dtype::I64, 8), Layout::Bytes);
        assert_eq!(layout_for(Dtype::F8E4M3, 8), Layout::Bytes);
    }

    #[test]
    fn unknown_formats_are_refused_unless_generic() {
        assert!(matches!(
            Plan::new(b"GGUF....", false),
            Err(ErrorKind::UnknownFormat)
        ));
        let plan = Plan::new(b"GGUF....", true).unwrap();
        assert_eq!(plan.format, Format::Generic);
        assert_eq!(plan.segments[0].range, 0..8);
    }
}
