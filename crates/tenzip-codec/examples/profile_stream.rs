//! Decodes one synthetic exponent stream many times, for `perf record`: `cargo run --release --example
//! profile_stream -p tenzip-codec [ROUNDS]`.

use std::time::Instant;

use tenzip_codec::entropy::{decode_block, encode_block};
use tenzip_codec::Preference;

fn main() {
    let mut state = 7u64;
    let symbols: Vec<u8> = (0..1 << 20)
        .map(|_| {
            let mut sum = 0.0f32;
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                sum += (state >> 40) as f32 / (1u64 << 24) as f32;
            }
            ((((sum - 2.0) * 0.03).to_bits() >> 23) & 0xff) as u8
        })
        .collect();
    let mut block = Vec::new();
    encode_block(&symbols, Preference::Size, &mut block);
    println!(
        "mode {} size {} of {}",
        block[0],
        block.len(),
        symbols.len()
    );
    let mut out = vec![0; symbols.len()];
    let started = Instant::now();
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    for _ in 0..rounds {
        decode_block(&block, &mut out).unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{:.0} M symbols/s",
        (rounds * symbols.len()) as f64 / seconds / 1e6
    );
}
