//! FP8 and packed FP4 checkpoints: every code survives, and the router finds MXFP4 and NVFP4 codes hiding
//! in `U8` tensors.

use tenzip::CompressOptions;
use tenzip_safetensors::{serialize, Padding, TensorData};
use tenzip_types::Dtype;

use crate::util::{assert_round_trip, compress_bytes};

/// Weight-like FP8 E4M3 codes: mostly small magnitudes around a few exponents, every one of the 256 codes
/// (NaN 0x7f/0xff and both zeros included) at least once.
fn fp8_codes(count: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut codes: Vec<u8> = (0..=u8::MAX).collect();
    codes.extend((0..count).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let sign = (state >> 40) as u8 & 0x80;
        let exponent = 4 + (state % 5) as u8;
        sign | exponent << 3 | (state >> 20) as u8 & 0x07
    }));
    codes
}

/// A checkpoint in the shapes real ones use: an FP8 weight with its scale, MXFP4 blocks and scales as
/// gpt-oss stores them, NVFP4 as compressed-tensors stores it (with an odd number of values a row, so the
/// last nibble of each row is padding), and a `U8` tensor that is not FP4.
fn low_precision_file() -> Vec<u8> {
    let fp8 = fp8_codes(20_000);
    let scale = 0.25f32.to_le_bytes();
    let blocks: Vec<u8> = fp8_codes(4 * 8 * 16 - 256)
        .iter()
        .map(|code| code.rotate_left(3))
        .collect();
    let block_scales: Vec<u8> = (0..4 * 8).map(|i| 120 + (i % 5) as u8).collect();
    let packed: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(73)).collect();
    let packed_scales: Vec<u8> = (0..8).map(|i| 0x30 + i as u8).collect();
    let tokens: Vec<u8> = (0..1000u32).map(|i| (i % 7) as u8).collect();
    let fp8_shape = [fp8.len() as u64];
    let tensor = |name, dtype, shape, bytes| TensorData {
        name,
        dtype,
        shape,
        bytes,
    };
    let tensors = [
        tensor("layer.weight", Dtype::F8E4M3, &fp8_shape, &fp8[..]),
        tensor("layer.weight_scale", Dtype::F32, &[1], &scale),
        tensor("mlp.experts_blocks", Dtype::U8, &[4, 8, 16], &blocks),
        tensor("mlp.experts_scales", Dtype::U8, &[4, 8], &block_scales),
        tensor("proj.weight_packed", Dtype::U8, &[8, 8], &packed),
        tensor("proj.weight_scale", Dtype::F8E4M3, &[8, 1], &packed_scales),
        tensor("tokens", Dtype::U8, &[1000], &tokens),
    ];
    serialize(&tensors, None, Padding::Align8)
}

fn layouts_and_routes(container: &[u8]) -> Vec<(String, String, String)> {
    let container = tenzip::Container::open(container).unwrap();
    container
        .manifest()
        .segments
        .iter()
        .skip(1)
        .map(|s| {
            (
                s.name.clone().unwrap(),
                s.layout.clone(),
                s.route.clone().unwrap(),
            )
        })
        .collect()
}

#[test]
fn packed_fp4_is_recognised_by_names_and_shapes() {
    let packed = compress_bytes(&low_precision_file(), &CompressOptions::default());
    let routes = layouts_and_routes(&packed);
    let layout_of = |name: &str| {
        let (_, layout, route) = routes.iter().find(|(n, ..)| n == name).unwrap();
        (layout.as_str(), route.as_str())
    };
    assert_eq!(layout_of("layer.weight").0, "f8-e4m3");
    assert_eq!(
        layout_of("layer.weight_scale"),
        ("bytes", "dtype F32, 4 bytes: too small to split")
    );
    assert_eq!(
        layout_of("mlp.experts_blocks"),
        ("f4-e2m1", "MXFP4 codes, E8M0 scales in mlp.experts_scales")
    );
    assert_eq!(
        layout_of("mlp.experts_scales"),
        ("bytes", "MXFP4 E8M0 scales of mlp.experts_blocks")
    );
    assert_eq!(
        layout_of("proj.weight_packed"),
        (
            "f4-e2m1",
            "NVFP4 codes, F8_E4M3 scales in proj.weight_scale"
        )
    );
    assert_eq!(
        layout_of("tokens"),
        ("bytes", "U8, not recognisably packed FP4")
    );
}

#[test]
fn every_code_round_trips_at_every_chunk_size() {
    let file = low_precision_file();
    // Small chunks take the field split, large ones the whole codes: both are exercised.
    for chunk_size in [1, 7, 64, 256, 4096, 1 << 20] {
        for threads in [1, 2] {
            assert_round_trip(&file, chunk_size, threads, "low-precision file");
        }
    }
}

#[test]
fn fp8_weights_compress_to_their_entropy() {
    let packed = compress_bytes(&low_precision_file(), &CompressOptions::default());
    let container = tenzip::Container::open(&packed).unwrap();
    let weight = &container.manifest().segments[1];
    assert_eq!(weight.name.as_deref(), Some("layer.weight"));
    let codes = fp8_codes(20_000);
    let mut counts = [0u32; 256];
    for &code in &codes {
        counts[usize::from(code)] += 1;
    }
    let entropy_bytes: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| f64::from(c) * (codes.len() as f64 / f64::from(c)).log2() / 8.0)
        .sum();
    // Within 1% of the order-0 limit, tables and framing included.
    assert!(
        (weight.stored_len() as f64) < entropy_bytes * 1.01,
        "{} bytes for {entropy_bytes:.0} bytes of entropy",
        weight.stored_len()
    );
}
