//! Quantized block formats (GGML's): which bytes of a block are which field, so that each field becomes a
//! stream of its own. A block's f16 scales go through the half-precision field split; packed codes,
//! sub-block scales and high-bit planes are byte streams, each with its own statistics.
//!
//! Offsets follow llama.cpp's `ggml-common.h` block structs; `tests` checks that the fields of every format
//! tile its block exactly.

/// What a field of a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// One little-endian f16 scale, split as [`Layout::F16`](crate::Layout::F16) splits: two streams, the
    /// second coded given the first.
    F16,
    /// Bytes coded as one stream: packed codes, packed sub-block scales, high-bit planes.
    Bytes,
}

/// One field of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Field {
    /// Byte offset in the block.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
    /// How it is coded.
    pub kind: FieldKind,
}

impl Field {
    /// Streams the field is coded as.
    pub(crate) fn stream_count(self) -> usize {
        match self.kind {
            FieldKind::F16 => 2,
            FieldKind::Bytes => 1,
        }
    }

    /// Bytes each of the field's streams takes per block.
    pub(crate) fn stream_len(self) -> usize {
        match self.kind {
            FieldKind::F16 => 1,
            FieldKind::Bytes => self.len,
        }
    }
}

/// The fields of one quantized block format.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BlockFormat {
    /// The layout name written into manifests: `"gguf-q8_0"`.
    pub name: &'static str,
    /// Bytes per block.
    pub size: usize,
    /// The fields, covering the block exactly.
    pub fields: &'static [Field],
}

impl BlockFormat {
    /// Streams a chunk of these blocks is split into.
    pub(crate) fn stream_count(&self) -> usize {
        self.fields.iter().map(|field| field.stream_count()).sum()
    }

    /// The stream that stream number `stream` is coded given, if any: the low byte of an f16 scale is
    /// coded given its high byte.
    pub(crate) fn context_of(&self, stream: usize) -> Option<usize> {
        let mut first = 0;
        for field in self.fields {
            if field.kind == FieldKind::F16 && stream == first + 1 {
                return Some(first);
            }
            first += field.stream_count();
        }
        None
    }

    /// What stream number `stream` holds: `"scale@0 high"`, `"bytes@2..34"`.
    pub(crate) fn stream_name(&self, stream: usize) -> String {
        let mut first = 0;
        for field in self.fields {
            let (start, end) = (field.offset, field.offset + field.len);
            match field.kind {
                FieldKind::F16 if stream == first => return format!("scale@{start} high"),
                FieldKind::F16 if stream == first + 1 => return format!("scale@{start} low"),
                FieldKind::Bytes if stream == first => return format!("bytes@{start}..{end}"),
                _ => first += field.stream_count(),
            }
        }
        format!("stream {stream}")
    }

    /// Bytes per block in stream number `stream`.
    pub(crate) fn stream_len(&self, stream: usize) -> usize {
        self.fields
            .iter()
            .flat_map(|field| std::iter::repeat_n(field.stream_len(), field.stream_count()))
            .nth(stream)
            .expect("stream index within the format's streams")
    }
}

const fn f16(offset: usize) -> Field {
    Field {
        offset,
        len: 2,
        kind: FieldKind::F16,
    }
}

const fn bytes(offset: usize, len: usize) -> Field {
    Field {
        offset,
        len,
        kind: FieldKind::Bytes,
    }
}

/// Q4_0: `d`, 16 bytes of 4-bit codes.
pub const Q4_0: BlockFormat = BlockFormat {
    name: "gguf-q4_0",
    size: 18,
    fields: &[f16(0), bytes(2, 16)],
};
/// Q4_1: `d`, `m`, 16 bytes of 4-bit codes.
pub const Q4_1: BlockFormat = BlockFormat {
    name: "gguf-q4_1",
    size: 20,
    fields: &[f16(0), f16(2), bytes(4, 16)],
};
/// Q5_0: `d`, 4 bytes of fifth bits, 16 bytes of 4-bit codes.
pub const Q5_0: BlockFormat = BlockFormat {
    name: "gguf-q5_0",
    size: 22,
    fields: &[f16(0), bytes(2, 4), bytes(6, 16)],
};
/// Q5_1: `d`, `m`, 4 bytes of fifth bits, 16 bytes of 4-bit codes.
pub const Q5_1: BlockFormat = BlockFormat {
    name: "gguf-q5_1",
    size: 24,
    fields: &[f16(0), f16(2), bytes(4, 4), bytes(8, 16)],
};
/// Q8_0: `d`, 32 signed 8-bit codes.
pub const Q8_0: BlockFormat = BlockFormat {
    name: "gguf-q8_0",
    size: 34,
    fields: &[f16(0), bytes(2, 32)],
};
/// Q8_1: `d`, `s`, 32 signed 8-bit codes.
pub const Q8_1: BlockFormat = BlockFormat {
    name: "gguf-q8_1",
    size: 36,
    fields: &[f16(0), f16(2), bytes(4, 32)],
};
/// Q2_K: 16 bytes of 4-bit scales and minima, 64 bytes of 2-bit codes, `d`, `dmin`.
pub const Q2_K: BlockFormat = BlockFormat {
    name: "gguf-q2_k",
    size: 84,
    fields: &[bytes(0, 16), bytes(16, 64), f16(80), f16(82)],
};
/// Q3_K: 32 bytes of high bits, 64 bytes of 2-bit codes, 12 bytes of 6-bit scales, `d`.
pub const Q3_K: BlockFormat = BlockFormat {
    name: "gguf-q3_k",
    size: 110,
    fields: &[bytes(0, 32), bytes(32, 64), bytes(96, 12), f16(108)],
};
/// Q4_K: `d`, `dmin`, 12 bytes of 6-bit scales and minima, 128 bytes of 4-bit codes.
pub const Q4_K: BlockFormat = BlockFormat {
    name: "gguf-q4_k",
    size: 144,
    fields: &[f16(0), f16(2), bytes(4, 12), bytes(16, 128)],
};
/// Q5_K: `d`, `dmin`, 12 bytes of scales and minima, 32 bytes of fifth bits, 128 bytes of 4-bit codes.
pub const Q5_K: BlockFormat = BlockFormat {
    name: "gguf-q5_k",
    size: 176,
    fields: &[f16(0), f16(2), bytes(4, 12), bytes(16, 32), bytes(48, 128)],
};
/// Q6_K: 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16 signed 8-bit scales, `d`.
pub const Q6_K: BlockFormat = BlockFormat {
    name: "gguf-q6_k",
    size: 210,
    fields: &[bytes(0, 128), bytes(128, 64), bytes(192, 16), f16(208)],
};
/// IQ4_NL: `d`, 16 bytes of 4-bit non-linear codes.
pub const IQ4_NL: BlockFormat = BlockFormat {
    name: "gguf-iq4_nl",
    size: 18,
    fields: &[f16(0), bytes(2, 16)],
};
/// IQ4_XS: `d`, 2 bytes of high scale bits, 4 bytes of low scale bits, 128 bytes of codes.
pub const IQ4_XS: BlockFormat = BlockFormat {
    name: "gguf-iq4_xs",
    size: 136,
    fields: &[f16(0), bytes(2, 2), bytes(4, 4), bytes(8, 128)],
};
/// IQ2_XXS: `d`, 64 bytes of grid indices, signs and scales.
pub const IQ2_XXS: BlockFormat = BlockFormat {
    name: "gguf-iq2_xxs",
    size: 66,
    fields: &[f16(0), bytes(2, 64)],
};
/// IQ2_XS: `d`, 64 bytes of grid indices and signs, 8 bytes of scales.
pub const IQ2_XS: BlockFormat = BlockFormat {
    name: "gguf-iq2_xs",
    size: 74,
    fields: &[f16(0), bytes(2, 64), bytes(66, 8)],
};
/// IQ2_S: `d`, 64 bytes of grid indices and signs, 8 bytes of high bits, 8 bytes of scales.
pub const IQ2_S: BlockFormat = BlockFormat {
    name: "gguf-iq2_s",
    size: 82,
    fields: &[f16(0), bytes(2, 64), bytes(66, 8), bytes(74, 8)],
};
/// IQ3_XXS: `d`, 96 bytes of grid indices, signs and scales.
pub const IQ3_XXS: BlockFormat = BlockFormat {
    name: "gguf-iq3_xxs",
    size: 98,
    fields: &[f16(0), bytes(2, 96)],
};
/// IQ3_S: `d`, 64 bytes of grid indices, 8 of high bits, 32 of signs, 4 of scales.
pub const IQ3_S: BlockFormat = BlockFormat {
    name: "gguf-iq3_s",
    size: 110,
    fields: &[
        f16(0),
        bytes(2, 64),
        bytes(66, 8),
        bytes(74, 32),
        bytes(106, 4),
    ],
};
/// IQ1_S: `d`, 32 bytes of grid indices, 16 bytes of high bits and scales.
pub const IQ1_S: BlockFormat = BlockFormat {
    name: "gguf-iq1_s",
    size: 50,
    fields: &[f16(0), bytes(2, 32), bytes(34, 16)],
};
/// IQ1_M: 32 bytes of grid indices, 16 bytes of high bits, 8 bytes of scales (the f16 scale is spread over
/// their top bits).
pub const IQ1_M: BlockFormat = BlockFormat {
    name: "gguf-iq1_m",
    size: 56,
    fields: &[bytes(0, 32), bytes(32, 16), bytes(48, 8)],
};
/// TQ1_0: 48 bytes of base-3 codes, 4 bytes more, `d`.
pub const TQ1_0: BlockFormat = BlockFormat {
    name: "gguf-tq1_0",
    size: 54,
    fields: &[bytes(0, 48), bytes(48, 4), f16(52)],
};
/// TQ2_0: 64 bytes of 2-bit codes, `d`.
pub const TQ2_0: BlockFormat = BlockFormat {
    name: "gguf-tq2_0",
    size: 66,
    fields: &[bytes(0, 64), f16(64)],
};
/// MXFP4: one E8M0 scale, 16 bytes of FP4 E2M1 codes.
pub const MXFP4: BlockFormat = BlockFormat {
    name: "gguf-mxfp4",
    size: 17,
    fields: &[bytes(0, 1), bytes(1, 16)],
};

/// NVFP4: four unsigned E4M3 scales (one per 16 values), 32 bytes of FP4 E2M1 codes.
pub const NVFP4: BlockFormat = BlockFormat {
    name: "gguf-nvfp4",
    size: 36,
    fields: &[bytes(0, 4), bytes(4, 32)],
};
/// Q1_0: `d`, 16 bytes of one-bit codes.
pub const Q1_0: BlockFormat = BlockFormat {
    name: "gguf-q1_0",
    size: 18,
    fields: &[f16(0), bytes(2, 16)],
};

/// Every block format.
pub const ALL: [&BlockFormat; 25] = [
    &Q4_0, &Q4_1, &Q5_0, &Q5_1, &Q8_0, &Q8_1, &Q2_K, &Q3_K, &Q4_K, &Q5_K, &Q6_K, &IQ4_NL, &IQ4_XS,
    &IQ2_XXS, &IQ2_XS, &IQ2_S, &IQ3_XXS, &IQ3_S, &IQ1_S, &IQ1_M, &TQ1_0, &TQ2_0, &MXFP4, &NVFP4,
    &Q1_0,
];

/// Splits whole blocks into one stream per field (two per f16 field), in field order.
pub(crate) fn split(format: &BlockFormat, values: &[u8], streams: &mut [Vec<u8>]) {
    for (index, block) in values.chunks_exact(format.size).enumerate() {
        let mut stream = 0;
        for field in format.fields {
            let bytes = &block[field.offset..field.offset + field.len];
            match field.kind {
                FieldKind::F16 => {
                    let bits = u16::from_le_bytes([bytes[0], bytes[1]]);
                    streams[stream][index] = (bits >> 7) as u8;
                    streams[stream + 1][index] = ((bits >> 8) as u8 & 0x80) | (bits as u8 & 0x7f);
                }
                FieldKind::Bytes => {
                    let len = field.len;
                    streams[stream][index * len..(index + 1) * len].copy_from_slice(bytes);
                }
            }
            stream += field.stream_count();
        }
    }
}

/// Inverse of [`split`].
pub(crate) fn merge(format: &BlockFormat, streams: &[&[u8]], out: &mut [u8]) {
    for (index, block) in out.chunks_exact_mut(format.size).enumerate() {
        let mut stream = 0;
        for field in format.fields {
            let bytes = &mut block[field.offset..field.offset + field.len];
            match field.kind {
                FieldKind::F16 => {
                    let (high, low) = (streams[stream][index], streams[stream + 1][index]);
                    let bits = (u16::from(low & 0x80) << 8)
                        | (u16::from(high) << 7)
                        | u16::from(low & 0x7f);
                    bytes.copy_from_slice(&bits.to_le_bytes());
                }
                FieldKind::Bytes => {
                    let len = field.len;
                    bytes.copy_from_slice(&streams[stream][index * len..(index + 1) * len]);
                }
            }
            stream += field.stream_count();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_tile_every_block_exactly() {
        for format in ALL {
            let mut next = 0;
            for field in format.fields {
                assert_eq!(
                    field.offset, next,
                    "{} field at {}",
                    format.name, field.offset
                );
                next += field.len;
            }
            assert_eq!(next, format.size, "{}", format.name);
        }
    }
}
