//! Analysis of an original file without writing anything: per dtype and per field, the empirical entropy
//! and the order-0 limit, beside the size tenzip's coder actually reaches.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use tenzip_codec::{entropy, Layout};
use tenzip_container::SegmentKind;

use crate::file::map;
use crate::{CompressOptions, Error, ErrorKind, Plan};

/// What [`analyze`] found.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// `"safetensors"`, `"gguf"` or `"generic"`.
    pub format: &'static str,
    /// The file's length.
    pub file_len: u64,
    /// The length of the `.tzp` file tenzip would write, container framing included.
    pub compressed_len: u64,
    /// Per dtype and layout, largest first.
    pub dtypes: Vec<DtypeStats>,
    /// Per dtype, layout, split and stream.
    pub fields: Vec<FieldStats>,
    /// Every tensor, in file order.
    pub tensors: Vec<TensorStats>,
    /// Per float dtype: how many values have each exponent.
    pub exponents: Vec<ExponentHistogram>,
}

/// One dtype's tensors, totalled.
#[derive(Debug, Clone)]
pub struct DtypeStats {
    /// The dtype as the file names it.
    pub dtype: String,
    /// The layout that codes it.
    pub layout: String,
    /// Tensors of it.
    pub tensors: usize,
    /// Bytes of them.
    pub bytes: u64,
    /// Bytes tenzip stores for them.
    pub stored_bytes: u64,
    /// The order-0 limit: for each tensor, the smaller of its layout's splits at the per-tensor entropy of each
    /// stream, in bytes (code tables not counted).
    pub limit_bytes: f64,
}

/// One stream of one split of a layout, over every tensor of a dtype.
#[derive(Debug, Clone)]
pub struct FieldStats {
    /// The dtype.
    pub dtype: String,
    /// The layout.
    pub layout: String,
    /// The split (`"fields"`, `"codes"`, ...).
    pub split: &'static str,
    /// What the stream holds (`"exponent"`).
    pub stream: String,
    /// Symbols (bytes) in the stream.
    pub symbols: u64,
    /// Entropy of the stream pooled over all tensors, bits per symbol.
    pub entropy_bits: f64,
    /// Sum over tensors of each tensor's symbols times its own entropy, in bytes: the order-0 limit of a
    /// coder with one table per tensor.
    pub limit_bytes: f64,
}

/// One tensor.
#[derive(Debug, Clone)]
pub struct TensorStats {
    /// Its name.
    pub name: String,
    /// Its dtype.
    pub dtype: String,
    /// Its bytes.
    pub bytes: u64,
    /// The bytes tenzip stores for it.
    pub stored_bytes: u64,
}

/// Exponent counts of one float dtype: `counts[e]` values have biased exponent `e`.
#[derive(Debug, Clone)]
pub struct ExponentHistogram {
    /// The dtype.
    pub dtype: String,
    /// Counts by exponent.
    pub counts: Vec<u64>,
}

/// Analyses the file at `path` (see [`analyze`]).
pub fn analyze_file(path: &Path, options: &CompressOptions) -> Result<Analysis, Error> {
    let file = map(path)?;
    analyze(&file, options).map_err(|kind| Error::new(path, kind))
}

/// Compresses `file` to nowhere and measures its fields: what tenzip reaches beside what an order-0 coder
/// could.
pub fn analyze(file: &[u8], options: &CompressOptions) -> Result<Analysis, ErrorKind> {
    let plan = Plan::new(file, options.generic)?;
    let (counted, manifest) = crate::compress(file, &plan, options, ByteCounter(0))?;
    let mut fields: BTreeMap<(String, String, usize, usize), Field> = BTreeMap::new();
    let mut dtypes: BTreeMap<(String, String), DtypeStats> = BTreeMap::new();
    let mut exponents: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut tensors = Vec::new();
    for (planned, segment) in plan.segments.iter().zip(&manifest.segments) {
        let Some(tensor) = &planned.tensor else {
            continue;
        };
        let bytes = &file[planned.range.start as usize..planned.range.end as usize];
        let layout = planned.layout;
        let mut tensor_limit = f64::INFINITY;
        for split_index in 0..layout.split_count() {
            // Per-channel layouts skip the repeated-rows marker's number.
            let Some(split) = layout.split(split_index) else {
                continue;
            };
            let histograms = stream_histograms(layout, split_index, bytes, options.chunk_size);
            let mut split_limit = 0.0;
            for (stream, histogram) in histograms.iter().enumerate() {
                let key = (
                    tensor.dtype.clone(),
                    layout.name().into_owned(),
                    split_index,
                    stream,
                );
                let field = fields.entry(key).or_insert_with(|| Field {
                    split: split.name(),
                    stream: split.stream_name(stream),
                    pooled: [0; 256],
                    limit_bytes: 0.0,
                });
                let limit = entropy_bytes(histogram);
                field.limit_bytes += limit;
                split_limit += limit;
                for (sum, count) in field.pooled.iter_mut().zip(histogram) {
                    *sum += count;
                }
            }
            tensor_limit = tensor_limit.min(split_limit);
        }
        let stats = dtypes
            .entry((tensor.dtype.clone(), layout.name().into_owned()))
            .or_insert_with(|| DtypeStats {
                dtype: tensor.dtype.clone(),
                layout: layout.name().into_owned(),
                tensors: 0,
                bytes: 0,
                stored_bytes: 0,
                limit_bytes: 0.0,
            });
        stats.tensors += 1;
        stats.bytes += segment.len;
        stats.stored_bytes += segment.stored_len();
        stats.limit_bytes += if tensor_limit.is_finite() {
            tensor_limit
        } else {
            0.0
        };
        if let Some(exponent) = ExponentField::of(&tensor.dtype) {
            let counts = exponents
                .entry(tensor.dtype.clone())
                .or_insert_with(|| vec![0; 1 << exponent.bits]);
            exponent.count(bytes, counts);
        }
        debug_assert_eq!(segment.kind, SegmentKind::Tensor);
        tensors.push(TensorStats {
            name: tensor.name.clone(),
            dtype: tensor.dtype.clone(),
            bytes: segment.len,
            stored_bytes: segment.stored_len(),
        });
    }
    let mut dtypes: Vec<DtypeStats> = dtypes.into_values().collect();
    dtypes.sort_by_key(|stats| std::cmp::Reverse(stats.bytes));
    Ok(Analysis {
        format: plan.format.name(),
        file_len: file.len() as u64,
        compressed_len: counted.0,
        dtypes,
        fields: fields
            .into_iter()
            .map(|((dtype, layout, _, _), field)| FieldStats {
                dtype,
                layout,
                split: field.split,
                symbols: field.pooled.iter().sum(),
                entropy_bits: entropy_bytes(&field.pooled) * 8.0
                    / field.pooled.iter().sum::<u64>().max(1) as f64,
                stream: field.stream,
                limit_bytes: field.limit_bytes,
            })
            .collect(),
        tensors,
        exponents: exponents
            .into_iter()
            .map(|(dtype, counts)| ExponentHistogram { dtype, counts })
            .collect(),
    })
}

/// A field being accumulated.
struct Field {
    split: &'static str,
    stream: String,
    pooled: [u64; 256],
    limit_bytes: f64,
}

/// Histograms of each stream of split `split_index` over `bytes`, split chunk by chunk as the engine does.
fn stream_histograms(
    layout: Layout,
    split_index: usize,
    bytes: &[u8],
    chunk_size: usize,
) -> Vec<[u64; 256]> {
    let split = layout.split(split_index).expect("index below split_count");
    let step = layout.chunk_len(chunk_size, tenzip_container::MAX_CHUNK_LEN as usize);
    let mut histograms = vec![[0u64; 256]; split.stream_count()];
    let mut streams = vec![Vec::new(); split.stream_count()];
    let mut scratch = Vec::new();
    for chunk in bytes.chunks(step) {
        split.split(chunk, &mut streams, &mut scratch);
        for (histogram, stream) in histograms.iter_mut().zip(&streams) {
            for (sum, count) in histogram.iter_mut().zip(entropy::histogram(stream)) {
                *sum += u64::from(count);
            }
        }
    }
    histograms
}

/// Order-0 entropy of a histogram, in bytes.
fn entropy_bytes(histogram: &[u64; 256]) -> f64 {
    let total = histogram.iter().sum::<u64>() as f64;
    histogram
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| count as f64 * (total / count as f64).log2())
        .sum::<f64>()
        / 8.0
}

/// Where the exponent sits in a float dtype's little-endian values.
struct ExponentField {
    value_size: usize,
    shift: u32,
    bits: u32,
}

impl ExponentField {
    fn of(dtype: &str) -> Option<ExponentField> {
        let (value_size, shift, bits) = match dtype {
            "F32" => (4, 23, 8),
            "F16" => (2, 10, 5),
            "BF16" => (2, 7, 8),
            "F8_E4M3" | "F8_E4M3FNUZ" => (1, 3, 4),
            "F8_E5M2" | "F8_E5M2FNUZ" => (1, 2, 5),
            _ => return None,
        };
        Some(ExponentField {
            value_size,
            shift,
            bits,
        })
    }

    fn count(&self, bytes: &[u8], counts: &mut [u64]) {
        let mask = (1u32 << self.bits) - 1;
        for value in bytes.chunks_exact(self.value_size) {
            let mut word = [0u8; 4];
            word[..self.value_size].copy_from_slice(value);
            counts[((u32::from_le_bytes(word) >> self.shift) & mask) as usize] += 1;
        }
    }
}

/// A writer that keeps nothing but the count.
struct ByteCounter(u64);

impl Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_limits_of_a_bf16_tensor() {
        // 1000 BF16 values: exponent 126 or 127 alternating, mantissa 0..100 cycling.
        let values: Vec<u8> = (0..1000u32)
            .flat_map(|i| ((126 + i % 2) << 7 | (i % 100)).to_le_bytes()[..2].to_vec())
            .collect();
        let header = br#"{"w":{"dtype":"BF16","shape":[1000],"data_offsets":[0,2000]}}"#;
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header);
        file.extend_from_slice(&values);
        let analysis = analyze(&file, &CompressOptions::default()).unwrap();
        assert_eq!(analysis.format, "safetensors");
        let exponent = &analysis.fields[0];
        assert_eq!(
            (exponent.stream.as_str(), exponent.symbols),
            ("bits 14..7", 1000)
        );
        assert!((exponent.entropy_bits - 1.0).abs() < 1e-9);
        assert!((analysis.fields[1].entropy_bits - 100f64.log2()).abs() < 1e-9);
        let bf16 = &analysis.dtypes[0];
        assert!((bf16.limit_bytes - 1000.0 * (1.0 + 100f64.log2()) / 8.0).abs() < 1e-6);
        assert!(bf16.stored_bytes as f64 >= bf16.limit_bytes);
        assert_eq!(analysis.exponents[0].counts[126], 500);
        assert!(analysis.compressed_len < file.len() as u64);
    }
}
