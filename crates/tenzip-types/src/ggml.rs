//! GGML tensor types, as GGUF files number them.

/// A GGML tensor type: plain scalars, or quantized blocks of a fixed number of values and bytes.
///
/// Ids 4, 5 and 31..=33, 36..=38 belonged to types llama.cpp has removed; they and any id past the table
/// are unknown to this version, and readers treat such tensors as opaque bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types)] // the names GGUF files and llama.cpp use
#[non_exhaustive]
pub enum GgmlType {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// 32 values: f16 scale, 16 bytes of 4-bit codes.
    Q4_0,
    /// 32 values: f16 scale and minimum, 16 bytes of 4-bit codes.
    Q4_1,
    /// 32 values: f16 scale, 4 bytes of fifth bits, 16 bytes of 4-bit codes.
    Q5_0,
    /// 32 values: f16 scale and minimum, 4 bytes of fifth bits, 16 bytes of 4-bit codes.
    Q5_1,
    /// 32 values: f16 scale, 32 signed 8-bit codes.
    Q8_0,
    /// 32 values: f16 scale and sum, 32 signed 8-bit codes.
    Q8_1,
    /// 256 values: 16 bytes of 4-bit scales and minima, 64 bytes of 2-bit codes, f16 scale and minimum.
    Q2_K,
    /// 256 values: 32 bytes of high bits, 64 bytes of 2-bit codes, 12 bytes of 6-bit scales, f16 scale.
    Q3_K,
    /// 256 values: f16 scale and minimum, 12 bytes of 6-bit scales and minima, 128 bytes of 4-bit codes.
    Q4_K,
    /// 256 values: f16 scale and minimum, 12 bytes of scales, 32 bytes of fifth bits, 128 bytes of codes.
    Q5_K,
    /// 256 values: 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16 signed 8-bit scales, f16 scale.
    Q6_K,
    /// 256 values: f32 scale, 256 signed 8-bit codes, 16 i16 block sums.
    Q8_K,
    /// Importance-matrix 2-bit, 256 values in 66 bytes.
    IQ2_XXS,
    /// Importance-matrix 2-bit, 256 values in 74 bytes.
    IQ2_XS,
    /// Importance-matrix 3-bit, 256 values in 98 bytes.
    IQ3_XXS,
    /// Importance-matrix 1-bit, 256 values in 50 bytes.
    IQ1_S,
    /// Non-linear 4-bit, 32 values in 18 bytes.
    IQ4_NL,
    /// Importance-matrix 3-bit, 256 values in 110 bytes.
    IQ3_S,
    /// Importance-matrix 2-bit, 256 values in 82 bytes.
    IQ2_S,
    /// Non-linear 4-bit, 256 values in 136 bytes.
    IQ4_XS,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// IEEE double precision.
    F64,
    /// Importance-matrix 1-bit, 256 values in 56 bytes.
    IQ1_M,
    /// bfloat16.
    BF16,
    /// Ternary, 256 values in 54 bytes.
    TQ1_0,
    /// Ternary, 256 values in 66 bytes.
    TQ2_0,
    /// 32 FP4 E2M1 values: one E8M0 scale, 16 bytes of 4-bit codes.
    MXFP4,
    /// 64 FP4 E2M1 values: four unsigned E4M3 scales, 32 bytes of 4-bit codes.
    NVFP4,
    /// 128 one-bit values: f16 scale, 16 bytes of sign bits.
    Q1_0,
}

/// `(type, id, name, values per block, bytes per block)`.
const TABLE: [(GgmlType, u32, &str, u64, u64); 34] = [
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "Q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "Q8_0", 32, 34),
    (GgmlType::Q8_1, 9, "Q8_1", 32, 36),
    (GgmlType::Q2_K, 10, "Q2_K", 256, 84),
    (GgmlType::Q3_K, 11, "Q3_K", 256, 110),
    (GgmlType::Q4_K, 12, "Q4_K", 256, 144),
    (GgmlType::Q5_K, 13, "Q5_K", 256, 176),
    (GgmlType::Q6_K, 14, "Q6_K", 256, 210),
    (GgmlType::Q8_K, 15, "Q8_K", 256, 292),
    (GgmlType::IQ2_XXS, 16, "IQ2_XXS", 256, 66),
    (GgmlType::IQ2_XS, 17, "IQ2_XS", 256, 74),
    (GgmlType::IQ3_XXS, 18, "IQ3_XXS", 256, 98),
    (GgmlType::IQ1_S, 19, "IQ1_S", 256, 50),
    (GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, 21, "IQ3_S", 256, 110),
    (GgmlType::IQ2_S, 22, "IQ2_S", 256, 82),
    (GgmlType::IQ4_XS, 23, "IQ4_XS", 256, 136),
    (GgmlType::I8, 24, "I8", 1, 1),
    (GgmlType::I16, 25, "I16", 1, 2),
    (GgmlType::I32, 26, "I32", 1, 4),
    (GgmlType::I64, 27, "I64", 1, 8),
    (GgmlType::F64, 28, "F64", 1, 8),
    (GgmlType::IQ1_M, 29, "IQ1_M", 256, 56),
    (GgmlType::BF16, 30, "BF16", 1, 2),
    (GgmlType::TQ1_0, 34, "TQ1_0", 256, 54),
    (GgmlType::TQ2_0, 35, "TQ2_0", 256, 66),
    (GgmlType::MXFP4, 39, "MXFP4", 32, 17),
    (GgmlType::NVFP4, 40, "NVFP4", 64, 36),
    (GgmlType::Q1_0, 41, "Q1_0", 128, 18),
];

impl GgmlType {
    /// Every known type, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TABLE.iter().map(|row| row.0)
    }

    fn row(self) -> &'static (GgmlType, u32, &'static str, u64, u64) {
        TABLE
            .iter()
            .find(|row| row.0 == self)
            .expect("every type has a table row")
    }

    /// The type with GGUF id `id`, if this version knows it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|row| row.1 == id).map(|row| row.0)
    }

    /// The type named `name` ("Q4_K"), as [`GgmlType::name`] spells it.
    pub fn parse(name: &str) -> Option<GgmlType> {
        TABLE.iter().find(|row| row.2 == name).map(|row| row.0)
    }

    /// The id GGUF files store.
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// The name llama.cpp uses: "Q4_K", "BF16".
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Values per block (1 for plain scalars).
    pub fn block_values(self) -> u64 {
        self.row().3
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        self.row().4
    }

    /// The byte size of `values` values, or `None` if they are not a whole number of blocks or the size
    /// overflows.
    pub fn byte_len(self, values: u64) -> Option<u64> {
        if !values.is_multiple_of(self.block_values()) {
            return None;
        }
        (values / self.block_values()).checked_mul(self.block_bytes())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for ty in GgmlType::all() {
            assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
            assert_eq!(GgmlType::parse(ty.name()), Some(ty));
        }
        for removed in [4, 5, 31, 32, 33, 36, 37, 38, 42, u32::MAX] {
            assert_eq!(GgmlType::from_id(removed), None);
        }
    }

    #[test]
    fn sizes_follow_blocks() {
        assert_eq!(GgmlType::Q8_0.byte_len(64), Some(68));
        assert_eq!(GgmlType::Q4_K.byte_len(512), Some(288));
        assert_eq!(GgmlType::Q4_K.byte_len(100), None);
        assert_eq!(GgmlType::F32.byte_len(3), Some(12));
        assert_eq!(GgmlType::F64.byte_len(u64::MAX), None);
    }
}
