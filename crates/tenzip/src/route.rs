//! The router: recognises the input format and cuts the file into segments, each with a codec layout.

use std::collections::HashMap;
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
    /// Why it got that layout, for `inspect`: "MXFP4 codes, scales in `x_scales`".
    pub route: String,
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
            route: "safetensors header, kept verbatim".to_owned(),
        }];
        let routes = route_tensors(&header.tensors);
        segments.extend(
            header
                .tensors
                .into_iter()
                .zip(routes)
                .map(|(tensor, (layout, route))| PlannedSegment {
                    kind: SegmentKind::Tensor,
                    range: tensor.range.clone(),
                    layout,
                    route,
                    tensor: Some(tensor),
                }),
        );
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
            route: "generic: the whole file as bytes".to_owned(),
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

/// The layout for each tensor, and why. Mostly the dtype decides; packed FP4 hides in `U8` tensors and is
/// recognised by the names and shapes of the checkpoint conventions that store it:
/// - MXFP4 as gpt-oss stores it: `P_blocks` `U8 [..., n/32, 16]` (two E2M1 codes a byte, low nibble first)
///   beside `P_scales` `U8 [..., n/32]` (E8M0 exponents, one per 32 values);
/// - NVFP4 as compressed-tensors stores it: `P.weight_packed` `U8 [rows, cols/2]` beside
///   `P.weight_scale` `F8_E4M3 [rows, cols/16]`.
///
/// A `U8` tensor that matches neither stays a plain byte stream.
pub fn route_tensors(tensors: &[TensorEntry]) -> Vec<(Layout, String)> {
    let by_name: HashMap<&str, &TensorEntry> = tensors
        .iter()
        .map(|tensor| (tensor.name.as_str(), tensor))
        .collect();
    let mut routes: Vec<(Layout, String)> = tensors
        .iter()
        .map(|tensor| {
            let layout = layout_for(tensor.dtype, tensor.byte_len());
            let route = match (layout, tensor.dtype) {
                (Layout::Bytes, Dtype::U8) => "U8, not recognisably packed FP4".to_owned(),
                (Layout::Bytes, dtype) => format!("dtype {}, no field layout", dtype.name()),
                (_, dtype) => format!("dtype {}", dtype.name()),
            };
            (layout, route)
        })
        .collect();
    for (index, tensor) in tensors.iter().enumerate() {
        if tensor.dtype != Dtype::U8 {
            continue;
        }
        if let Some(scales) = mxfp4_scales(tensor, &by_name) {
            routes[index] = (
                Layout::F4E2M1,
                format!("MXFP4 codes, E8M0 scales in {}", scales.name),
            );
            if let Some(scales_index) = tensors.iter().position(|t| t.name == scales.name) {
                routes[scales_index].1 = format!("MXFP4 E8M0 scales of {}", tensor.name);
            }
        } else if let Some(scales) = nvfp4_scales(tensor, &by_name) {
            routes[index] = (
                Layout::F4E2M1,
                format!("NVFP4 codes, F8_E4M3 scales in {}", scales.name),
            );
        }
    }
    routes
}

/// The E8M0 scales beside `blocks` if it is an MXFP4 code tensor: `P_blocks [..., g, 16]` with
/// `P_scales [..., g]` of `U8` or `F8_E8M0`.
fn mxfp4_scales<'a>(
    blocks: &TensorEntry,
    by_name: &HashMap<&str, &'a TensorEntry>,
) -> Option<&'a TensorEntry> {
    let prefix = blocks.name.strip_suffix("blocks")?;
    let scales = by_name.get(format!("{prefix}scales").as_str())?;
    let (&last, outer) = blocks.shape.split_last()?;
    let paired = matches!(scales.dtype, Dtype::U8 | Dtype::F8E8M0)
        && last == 16
        && scales.shape == outer
        && prefix.ends_with(['_', '.']);
    paired.then_some(*scales)
}

/// The F8_E4M3 scales beside `packed` if it is an NVFP4 code tensor: `P.weight_packed` with
/// `P.weight_scale` holding one scale per 16 values, that is per 8 packed bytes.
fn nvfp4_scales<'a>(
    packed: &TensorEntry,
    by_name: &HashMap<&str, &'a TensorEntry>,
) -> Option<&'a TensorEntry> {
    let prefix = packed.name.strip_suffix("weight_packed")?;
    let scales = by_name.get(format!("{prefix}weight_scale").as_str())?;
    let paired = scales.dtype == Dtype::F8E4M3
        && scales
            .element_count()
            .and_then(|count| count.checked_mul(8))
            == packed.element_count();
    paired.then_some(*scales)
}

/// The layout for a tensor of `dtype` spanning `byte_len` bytes. Float dtypes get their field split; all else
/// (integers, bools, F64, E8M0 scales, FP6) is coded as plain bytes.
pub fn layout_for(dtype: Dtype, byte_len: u64) -> Layout {
    let layout = match dtype {
        Dtype::BF16 => Layout::Bf16,
        Dtype::F16 => Layout::F16,
        Dtype::F32 => Layout::F32,
        Dtype::F8E4M3 | Dtype::F8E4M3Fnuz => Layout::F8E4M3,
        Dtype::F8E5M2 | Dtype::F8E5M2Fnuz => Layout::F8E5M2,
        Dtype::F4 => Layout::F4E2M1,
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
        assert_eq!(layout_for(Dtype::F8E4M3Fnuz, 8), Layout::F8E4M3);
        assert_eq!(layout_for(Dtype::F8E5M2, 8), Layout::F8E5M2);
        assert_eq!(layout_for(Dtype::F4, 8), Layout::F4E2M1);
        assert_eq!(layout_for(Dtype::F8E8M0, 8), Layout::Bytes);
        assert_eq!(layout_for(Dtype::U8, 8), Layout::Bytes);
    }

    fn entry(name: &str, dtype: Dtype, shape: &[u64]) -> TensorEntry {
        let bytes = tenzip_types::element_count(shape).unwrap() * dtype.bits() / 8;
        TensorEntry {
            name: name.to_owned(),
            dtype,
            shape: shape.to_vec(),
            range: 0..bytes,
        }
    }

    fn layouts(tensors: &[TensorEntry]) -> Vec<Layout> {
        route_tensors(tensors)
            .into_iter()
            .map(|(layout, _)| layout)
            .collect()
    }

    #[test]
    fn packed_fp4_needs_its_scales_beside_it() {
        let mxfp4 = [
            entry("a_blocks", Dtype::U8, &[2, 3, 16]),
            entry("a_scales", Dtype::U8, &[2, 3]),
        ];
        assert_eq!(layouts(&mxfp4), [Layout::F4E2M1, Layout::Bytes]);
        let e8m0_scales = [
            entry("a.blocks", Dtype::U8, &[3, 16]),
            entry("a.scales", Dtype::F8E8M0, &[3]),
        ];
        assert_eq!(layouts(&e8m0_scales)[0], Layout::F4E2M1);
        let wrong_shapes = [
            [
                entry("a_blocks", Dtype::U8, &[2, 3, 15]),
                entry("a_scales", Dtype::U8, &[2, 3]),
            ],
            [
                entry("a_blocks", Dtype::U8, &[2, 3, 16]),
                entry("a_scales", Dtype::U8, &[3, 2]),
            ],
            [
                entry("ablocks", Dtype::U8, &[2, 3, 16]),
                entry("ascales", Dtype::U8, &[2, 3]),
            ],
            [
                entry("a_blocks", Dtype::U8, &[2, 3, 16]),
                entry("a_scales", Dtype::I8, &[2, 3]),
            ],
        ];
        for tensors in wrong_shapes {
            assert_eq!(
                layouts(&tensors),
                [Layout::Bytes, Layout::Bytes],
                "{tensors:?}"
            );
        }

        let nvfp4 = [
            entry("p.weight_packed", Dtype::U8, &[4, 32]),
            entry("p.weight_scale", Dtype::F8E4M3, &[4, 4]),
        ];
        assert_eq!(layouts(&nvfp4), [Layout::F4E2M1, Layout::F8E4M3]);
        let per_tensor_scale = [
            entry("p.weight_packed", Dtype::U8, &[4, 32]),
            entry("p.weight_scale", Dtype::F8E4M3, &[1]),
        ];
        assert_eq!(layouts(&per_tensor_scale)[0], Layout::Bytes);
        assert_eq!(
            layouts(&[entry("p.weight_packed", Dtype::U8, &[4, 32])]),
            [Layout::Bytes]
        );
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
