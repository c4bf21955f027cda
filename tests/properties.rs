//! Property tests: random safetensors files of every float dtype, random chunk sizes and thread counts.

use proptest::prelude::*;
use tenzip::CompressOptions;
use tenzip_safetensors::{serialize, Padding, TensorData};
use tenzip_types::Dtype;

use crate::util::{compress_bytes, decompress_bytes};

const DTYPES: [Dtype; 12] = [
    Dtype::F32,
    Dtype::F16,
    Dtype::BF16,
    Dtype::I64,
    Dtype::U8,
    Dtype::Bool,
    Dtype::F8E4M3,
    Dtype::F8E5M2,
    Dtype::F8E4M3Fnuz,
    Dtype::F8E5M2Fnuz,
    Dtype::F8E8M0,
    Dtype::F4,
];

/// A tensor of a random dtype whose bytes are either uniformly random or weight-like (small exponents).
fn tensor() -> impl Strategy<Value = (Dtype, Vec<u8>)> {
    (0..DTYPES.len(), 0usize..3000, any::<bool>(), any::<u64>()).prop_map(
        |(dtype, count, weight_like, seed)| {
            let dtype = DTYPES[dtype];
            // Bytes per value; packed FP4 is drawn a byte (two values) at a time.
            let size = (dtype.bits() / 8).max(1) as usize;
            let mut state = seed | 1;
            let bytes = (0..count * size)
                .map(|i| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Weight-like: the most significant byte of each value takes few values.
                    if weight_like && i % size == size - 1 {
                        0x3c + (state % 3) as u8
                    } else {
                        state as u8
                    }
                })
                .collect();
            (dtype, bytes)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_files_round_trip(
        tensors in prop::collection::vec(tensor(), 0..6),
        chunk_size in 1usize..20_000,
        threads in 1usize..4,
        padding in 0usize..9,
    ) {
        let names: Vec<String> = (0..tensors.len()).map(|i| format!("t{i}")).collect();
        let shapes: Vec<[u64; 1]> = tensors.iter().map(|(dtype, bytes)| [bytes.len() as u64 * 8 / dtype.bits()]).collect();
        let data: Vec<TensorData> = tensors
            .iter()
            .zip(&names)
            .zip(&shapes)
            .map(|(((dtype, bytes), name), shape)| TensorData { name, dtype: *dtype, shape, bytes })
            .collect();
        let file = serialize(&data, None, Padding::Spaces(padding));
        let serial = compress_bytes(&file, &CompressOptions { chunk_size, threads: 1, ..CompressOptions::default() });
        let parallel = compress_bytes(&file, &CompressOptions { chunk_size, threads, ..CompressOptions::default() });
        prop_assert!(serial == parallel, "output depends on the thread count");
        prop_assert!(decompress_bytes(&serial, threads).unwrap() == file);
    }
}
