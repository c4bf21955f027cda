//! Damaged containers: every truncation and random byte flips end in an error, never in a panic and never
//! in wrong bytes handed back.

use tenzip::CompressOptions;
use tenzip_safetensors::{serialize, Padding, TensorData};
use tenzip_types::Dtype;

use crate::util::{compress_bytes, decompress_bytes, decompress_into_bytes, fixtures_dir};

/// A small container with every layout and coding mode in it: the edge-case fixture in 4 KiB chunks.
fn container() -> (Vec<u8>, Vec<u8>) {
    let original = std::fs::read(fixtures_dir().join("edge-cases.safetensors")).unwrap();
    let options = CompressOptions {
        chunk_size: 4096,
        ..CompressOptions::default()
    };
    let packed = compress_bytes(&original, &options);
    (original, packed)
}

#[test]
fn every_truncation_is_an_error() {
    let (_, packed) = container();
    // Every length near both ends, and a sample in between.
    let lengths =
        (0..packed.len()).filter(|&len| len < 256 || len + 256 > packed.len() || len % 97 == 0);
    for len in lengths {
        assert!(
            decompress_bytes(&packed[..len], 1).is_err(),
            "truncated to {len} of {} bytes",
            packed.len()
        );
    }
}

#[test]
fn random_byte_flips_never_yield_wrong_bytes() {
    let (original, packed) = container();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut errors, mut harmless) = (0, 0);
    for _ in 0..10_000 {
        let mut damaged = packed.clone();
        let at = next() as usize % damaged.len();
        damaged[at] ^= (next() % 255 + 1) as u8;
        // Both restore paths must agree; a flip can only go unnoticed where it changes nothing that is read,
        // and then the output is exact.
        match (
            decompress_bytes(&damaged, 1),
            decompress_into_bytes(&damaged, 2),
        ) {
            (Err(_), Err(_)) => errors += 1,
            (Ok(streamed), Ok(in_place)) => {
                assert!(
                    streamed == original && in_place == original,
                    "flip at byte {at} gave wrong output"
                );
                harmless += 1;
            }
            (streamed, in_place) => {
                panic!("flip at byte {at}: paths disagree: {streamed:?} vs {in_place:?}")
            }
        }
    }
    eprintln!("10000 single-byte flips: {errors} errors, {harmless} without effect");
    assert!(errors > 9_000, "{errors} errors");
}

/// One BF16 tensor of 1 MiB of weight-like values (a sum of uniforms, scaled as trained weights are): its
/// exponent stream is long enough to be coded with rANS, in pairs of exponents, which the fixtures are too
/// small for.
fn rans_container() -> (Vec<u8>, Vec<u8>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let values: Vec<u8> = (0..1 << 19)
        .flat_map(|_| {
            let gaussian = uniform() + uniform() + uniform() + uniform() - 2.0;
            (((gaussian * 0.03).to_bits() >> 16) as u16).to_le_bytes()
        })
        .collect();
    let tensor = TensorData {
        name: "weight",
        dtype: Dtype::BF16,
        shape: &[1024, 512],
        bytes: &values,
    };
    let original = serialize(&[tensor], None, Padding::Align8);
    let packed = compress_bytes(&original, &CompressOptions::default());
    (original, packed)
}

#[test]
fn rans_blocks_restore_exactly_and_damage_to_them_is_an_error() {
    let (original, packed) = rans_container();
    let container = tenzip::Container::open(&packed).unwrap();
    let tensor = &container.manifest().segments[1];
    let chunk = &tensor.chunks[0];
    let coding =
        tenzip_codec::chunk_coding(tensor.layout.parse().unwrap(), container.payload(chunk))
            .unwrap();
    assert_eq!(coding.modes[0], tenzip_codec::entropy::Mode::RansPairs);
    assert_eq!(decompress_bytes(&packed, 1).unwrap(), original);
    assert_eq!(decompress_into_bytes(&packed, 2).unwrap(), original);
    // Flips spread over the payload (the rANS block comes first, after the split byte): every one an error.
    let payload = chunk.offset as usize..(chunk.offset + chunk.stored) as usize;
    for at in payload.step_by(997) {
        let mut damaged = packed.clone();
        damaged[at] ^= 0x10;
        assert!(decompress_bytes(&damaged, 1).is_err(), "flip at byte {at}");
        assert!(
            decompress_into_bytes(&damaged, 2).is_err(),
            "flip at byte {at}"
        );
    }
}
