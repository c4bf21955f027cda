//! The router: recognises the input format and cuts the file into segments, each with a codec layout.

use std::collections::HashMap;
use std::ops::Range;

use tenzip_codec::{blocks, Layout};
use tenzip_container::SegmentKind;
use tenzip_types::{Dtype, GgmlType, TensorEntry};

use crate::ErrorKind;

/// The format of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A safetensors file.
    Safetensors,
    /// A GGUF file (llama.cpp).
    Gguf,
    /// Any file, stored as opaque bytes.
    Generic,
}

impl Format {
    /// The name recorded in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Gguf => "gguf",
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
    pub tensor: Option<PlannedTensor>,
    /// Byte range in the input.
    pub range: Range<u64>,
    /// The layout that codes it.
    pub layout: Layout,
    /// Why it got that layout, for `inspect`: "MXFP4 codes, scales in `x_scales`".
    pub route: String,
}

/// A tensor's metadata as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTensor {
    /// The name, as the source file has it.
    pub name: String,
    /// The type in the source format's spelling: `"BF16"` (safetensors), `"Q4_K"` (GGUF).
    pub dtype: String,
    /// The shape as the source file lists it (safetensors: outermost first; GGUF: innermost first).
    pub shape: Vec<u64>,
}

impl PlannedTensor {
    fn from_safetensors(tensor: TensorEntry) -> PlannedTensor {
        PlannedTensor {
            name: tensor.name,
            dtype: tensor.dtype.name().to_owned(),
            shape: tensor.shape,
        }
    }
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
        if tenzip_gguf::is_gguf(file) {
            return Plan::gguf(file);
        }
        if file.starts_with(&tenzip_container::MAGIC) {
            return Err(ErrorKind::AlreadyTzp);
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
                    tensor: Some(PlannedTensor::from_safetensors(tensor)),
                }),
        );
        Ok(Plan {
            format: Format::Safetensors,
            segments: keep_channels_where_they_pay(segments, file),
        })
    }

    fn generic(len: u64) -> Plan {
        Plan {
            format: Format::Generic,
            segments: vec![bytes_segment(0..len, "generic: the whole file as bytes")],
        }
    }

    /// A GGUF file: the header with its metadata and padding verbatim, then the tensors in file order, with
    /// any bytes between or after them as plain byte segments.
    fn gguf(file: &[u8]) -> Result<Plan, ErrorKind> {
        let header = match tenzip_gguf::Header::parse(file) {
            Ok(header) => header,
            Err(error) if error.rule == tenzip_gguf::Rule::BigEndian => {
                let route = "big-endian GGUF: stored as bytes (no field layouts for it yet)";
                return Ok(Plan {
                    format: Format::Gguf,
                    segments: vec![bytes_segment(0..file.len() as u64, route)],
                });
            }
            Err(error) => return Err(error.into()),
        };
        let mut segments = vec![PlannedSegment {
            kind: SegmentKind::Header,
            tensor: None,
            range: 0..header.data_start,
            layout: Layout::Bytes,
            route: format!(
                "GGUF v{} header, metadata and padding, kept verbatim",
                header.version
            ),
        }];
        let mut tensors = header.tensors;
        tensors.sort_by_key(|tensor| tensor.range.start);
        let mut end = header.data_start;
        for tensor in tensors {
            if tensor.range.start > end {
                segments.push(bytes_segment(end..tensor.range.start, "padding"));
            }
            end = tensor.range.end;
            let (layout, route) =
                unsplit_if_tiny(ggml_layout(&tensor), tensor.range.end - tensor.range.start);
            segments.push(PlannedSegment {
                kind: SegmentKind::Tensor,
                range: tensor.range,
                layout,
                route,
                tensor: Some(PlannedTensor {
                    dtype: tensor.ggml_type.map_or_else(
                        || format!("type {}", tensor.type_id),
                        |t| t.name().to_owned(),
                    ),
                    name: tensor.name,
                    shape: tensor.shape,
                }),
            });
        }
        if (file.len() as u64) > end {
            segments.push(bytes_segment(end..file.len() as u64, "trailing bytes"));
        }
        Ok(Plan {
            format: Format::Gguf,
            segments: keep_channels_where_they_pay(segments, file),
        })
    }
}

/// Gives per-channel tensors their flat layout where a sample from their middle shows that neither per-channel
/// tables nor repeated rows would pay: such tensors then get ordinary chunks and no per-chunk trial.
fn keep_channels_where_they_pay(
    mut segments: Vec<PlannedSegment>,
    file: &[u8],
) -> Vec<PlannedSegment> {
    for segment in &mut segments {
        let layout = segment.layout;
        if !matches!(layout, Layout::Channels { .. }) {
            continue;
        }
        let bytes = &file[segment.range.start as usize..segment.range.end as usize];
        let row = layout.value_size();
        let sample_len = bytes.len().min(layout.min_chunk_len()) / row * row;
        let start = (bytes.len() - sample_len) / 2 / row * row;
        if !tenzip_codec::channels_pay(layout, &bytes[start..start + sample_len]) {
            segment.layout = layout.flat();
            segment.route += ": flat, rows and channels do not pay";
        }
    }
    segments
}

fn bytes_segment(range: Range<u64>, route: &str) -> PlannedSegment {
    PlannedSegment {
        kind: SegmentKind::Bytes,
        tensor: None,
        range,
        layout: Layout::Bytes,
        route: route.to_owned(),
    }
}

/// The layout for a GGUF tensor, and why: floats get their field split, quantized blocks one stream per
/// block field, integers and unknown types plain bytes.
fn ggml_layout(tensor: &tenzip_gguf::Tensor) -> (Layout, String) {
    let Some(ggml_type) = tensor.ggml_type else {
        let route = format!("unknown GGML type id {}: bytes", tensor.type_id);
        return (Layout::Bytes, route);
    };
    let layout = match ggml_type {
        GgmlType::F32 => Layout::F32,
        GgmlType::F16 => Layout::F16,
        GgmlType::BF16 => Layout::Bf16,
        GgmlType::Q4_0 => Layout::Blocks(&blocks::Q4_0),
        GgmlType::Q4_1 => Layout::Blocks(&blocks::Q4_1),
        GgmlType::Q5_0 => Layout::Blocks(&blocks::Q5_0),
        GgmlType::Q5_1 => Layout::Blocks(&blocks::Q5_1),
        GgmlType::Q8_0 => Layout::Blocks(&blocks::Q8_0),
        GgmlType::Q8_1 => Layout::Blocks(&blocks::Q8_1),
        GgmlType::Q2_K => Layout::Blocks(&blocks::Q2_K),
        GgmlType::Q3_K => Layout::Blocks(&blocks::Q3_K),
        GgmlType::Q4_K => Layout::Blocks(&blocks::Q4_K),
        GgmlType::Q5_K => Layout::Blocks(&blocks::Q5_K),
        GgmlType::Q6_K => Layout::Blocks(&blocks::Q6_K),
        GgmlType::IQ4_NL => Layout::Blocks(&blocks::IQ4_NL),
        GgmlType::IQ4_XS => Layout::Blocks(&blocks::IQ4_XS),
        GgmlType::IQ2_XXS => Layout::Blocks(&blocks::IQ2_XXS),
        GgmlType::IQ2_XS => Layout::Blocks(&blocks::IQ2_XS),
        GgmlType::IQ2_S => Layout::Blocks(&blocks::IQ2_S),
        GgmlType::IQ3_XXS => Layout::Blocks(&blocks::IQ3_XXS),
        GgmlType::IQ3_S => Layout::Blocks(&blocks::IQ3_S),
        GgmlType::IQ1_S => Layout::Blocks(&blocks::IQ1_S),
        GgmlType::IQ1_M => Layout::Blocks(&blocks::IQ1_M),
        GgmlType::TQ1_0 => Layout::Blocks(&blocks::TQ1_0),
        GgmlType::TQ2_0 => Layout::Blocks(&blocks::TQ2_0),
        GgmlType::MXFP4 => Layout::Blocks(&blocks::MXFP4),
        GgmlType::NVFP4 => Layout::Blocks(&blocks::NVFP4),
        GgmlType::Q1_0 => Layout::Blocks(&blocks::Q1_0),
        _ => Layout::Bytes,
    };
    let route = if layout == Layout::Bytes {
        format!("GGML {ggml_type}, no field layout")
    } else {
        format!("GGML {ggml_type}")
    };
    // GGUF lists dimensions innermost first.
    let outermost_first: Vec<u64> = tensor.shape.iter().rev().copied().collect();
    with_channels((layout, route), &outermost_first)
}

/// The per-channel variant of a float layout for tensors of rank 2 and more (shape outermost first): a
/// channel is a position in the last dimension, or in the last two for rank 3 and more (`[tokens, heads,
/// head_dim]` K/V caches). Each chunk still chooses: flat, or one exponent table per channel.
fn with_channels((layout, route): (Layout, String), shape: &[u64]) -> (Layout, String) {
    let channels = match shape {
        [_, last] => Some(*last),
        [_, .., second_last, last] => second_last.checked_mul(*last),
        _ => None,
    };
    match channels.and_then(|channels| Some((layout.channels(channels)?, channels))) {
        Some((per_channel, channels)) => (per_channel, format!("{route}, {channels} channels")),
        None => (layout, route),
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
            with_channels((layout, route), &tensor.shape)
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
    for ((layout, route), tensor) in routes.iter_mut().zip(tensors) {
        (*layout, *route) = unsplit_if_tiny((*layout, std::mem::take(route)), tensor.byte_len());
    }
    routes
}

/// Below this many bytes a tensor is one stream: each further stream costs a 5-byte block header, more than
/// splitting a few values can save (a per-tensor F32 scale would take 24 bytes instead of 9).
const MIN_SPLIT_LEN: u64 = 64;

/// `Bytes` for tensors too small to split, the route unchanged otherwise.
fn unsplit_if_tiny((layout, route): (Layout, String), byte_len: u64) -> (Layout, String) {
    if layout != Layout::Bytes && byte_len < MIN_SPLIT_LEN {
        (
            Layout::Bytes,
            format!("{route}, {byte_len} bytes: too small to split"),
        )
    } else {
        (layout, route)
    }
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
    if byte_len.is_multiple_of(layout.value_size() as u64) {
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
            entry("a.blocks", Dtype::U8, &[4, 16]),
            entry("a.scales", Dtype::F8E8M0, &[4]),
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
            entry("p.weight_packed", Dtype::U8, &[16, 64]),
            entry("p.weight_scale", Dtype::F8E4M3, &[16, 8]),
        ];
        assert_eq!(
            layouts(&nvfp4),
            [Layout::F4E2M1, Layout::F8E4M3.channels(8).unwrap()]
        );
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
    fn every_block_format_matches_its_ggml_type() {
        for ggml_type in GgmlType::all() {
            if let Layout::Blocks(format) = ggml_layout_of(ggml_type) {
                assert_eq!(format.size as u64, ggml_type.block_bytes(), "{ggml_type}");
            }
        }
        assert_eq!(
            ggml_layout_of(GgmlType::Q8_0),
            Layout::Blocks(&blocks::Q8_0)
        );
        assert_eq!(ggml_layout_of(GgmlType::I32), Layout::Bytes);
    }

    fn ggml_layout_of(ggml_type: GgmlType) -> Layout {
        let tensor = tenzip_gguf::Tensor {
            name: "t".into(),
            ggml_type: Some(ggml_type),
            type_id: ggml_type.id(),
            shape: vec![256],
            range: 0..0,
        };
        ggml_layout(&tensor).0
    }

    #[test]
    fn floats_of_rank_two_and_more_may_be_coded_per_channel() {
        let tensors = [
            entry("k", Dtype::BF16, &[2048, 3, 64]),
            entry("w", Dtype::F16, &[64, 384]),
            entry("wide", Dtype::BF16, &[4, 4096]),
            entry("v", Dtype::BF16, &[4096]),
            entry("f32", Dtype::F32, &[64, 64]),
        ];
        let routes = route_tensors(&tensors);
        assert_eq!(routes[0].0, Layout::Bf16.channels(192).unwrap());
        assert_eq!(routes[0].1, "dtype BF16, 192 channels");
        assert_eq!(routes[1].0, Layout::F16.channels(384).unwrap());
        assert_eq!(
            routes[2].0,
            Layout::Bf16,
            "more channels than tables pay for"
        );
        assert_eq!(routes[3].0, Layout::Bf16);
        assert_eq!(routes[4].0, Layout::F32);
    }

    #[test]
    fn tiny_tensors_are_not_split() {
        let tensors = [
            entry("scale", Dtype::F32, &[1]),
            entry("bias", Dtype::BF16, &[32]),
        ];
        let routes = route_tensors(&tensors);
        assert_eq!(routes[0].0, Layout::Bytes);
        assert_eq!(routes[0].1, "dtype F32, 4 bytes: too small to split");
        assert_eq!(routes[1].0, Layout::Bf16);
    }

    #[test]
    fn unknown_formats_are_refused_unless_generic() {
        assert!(matches!(
            Plan::new(b"GGML....", false),
            Err(ErrorKind::UnknownFormat)
        ));
        assert!(matches!(
            Plan::new(b"GGUF....", false),
            Err(ErrorKind::Gguf(_))
        ));
        let mut container = tenzip_container::MAGIC.to_vec();
        container.extend_from_slice(&[0; 64]);
        assert!(matches!(
            Plan::new(&container, false),
            Err(ErrorKind::AlreadyTzp)
        ));
        let plan = Plan::new(b"GGUF....", true).unwrap();
        assert_eq!(plan.format, Format::Generic);
        assert_eq!(plan.segments[0].range, 0..8);
    }
}
