//! Micro-benchmarks of the coder alone: `cargo bench -p tenzip-codec`.
//!
//! Inputs are synthetic and deterministic: BF16 weight-like values (a sum of uniforms, so roughly Gaussian,
//! scaled like a weight matrix), their exponent stream alone, and uniform random bytes. Throughput counts
//! input bytes (original values for chunks, symbols for streams).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tenzip_codec::entropy::{decode_block, encode_block, histogram, huffman, rans, tans};
use tenzip_codec::{decode_chunk, encode_chunk, Layout, Preference, Scratch};

const CHUNK: usize = 1 << 20;

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

fn bf16_weights(bytes: usize) -> Vec<u8> {
    let mut next = xorshift(7);
    (0..bytes / 2)
        .flat_map(|_| {
            let gaussian: f32 = (0..4)
                .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32)
                .sum::<f32>()
                - 2.0;
            let bits = (gaussian * 0.03).to_bits();
            ((bits >> 16) as u16).to_le_bytes()
        })
        .collect()
}

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let weights = bf16_weights(2 * CHUNK);
    let exponents: Vec<u8> = weights
        .chunks_exact(2)
        .map(|v| (u16::from_le_bytes([v[0], v[1]]) >> 7) as u8)
        .collect();
    let mut next = xorshift(11);
    let uniform: Vec<u8> = (0..CHUNK).map(|_| next() as u8).collect();
    vec![("exponents", exponents), ("uniform", uniform)]
}

fn streams(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream");
    for (name, symbols) in inputs() {
        group.throughput(Throughput::Bytes(symbols.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("histogram", name),
            &symbols,
            |b, symbols| b.iter(|| histogram(symbols)),
        );
        let mut block = Vec::new();
        group.bench_with_input(BenchmarkId::new("encode", name), &symbols, |b, symbols| {
            b.iter(|| {
                block.clear();
                encode_block(symbols, Preference::Size, &mut block);
            })
        });
        let mut out = vec![0; symbols.len()];
        group.bench_with_input(BenchmarkId::new("decode", name), &block, |b, block| {
            b.iter(|| decode_block(block, &mut out).unwrap())
        });
    }
    group.finish();
}

/// Appends a coded body of the benchmark's stream.
type Encoder<'a> = &'a dyn Fn(&mut Vec<u8>);
/// Decodes a body into the stream's symbols.
type Decoder<'a> = &'a dyn Fn(&[u8], &mut [u8]) -> Result<(), tenzip_codec::Error>;

/// Each coder on the exponent stream, whether or not `encode_block` would pick it.
fn coders(c: &mut Criterion) {
    let mut group = c.benchmark_group("coder");
    let (_, exponents) = inputs().swap_remove(0);
    group.throughput(Throughput::Bytes(exponents.len() as u64));
    let counts = histogram(&exponents);
    let code = huffman::Code::from_histogram(&counts);
    let frequencies = tans::Frequencies::for_histogram(&counts);
    let (narrow, wide) = (rans::Lanes::Narrow, rans::Lanes::Wide);
    let encoders: [(&str, Encoder); 5] = [
        ("huffman", &|body| code.encode(&exponents, body)),
        ("tans", &|body| tans::encode(&exponents, &frequencies, body)),
        ("rans", &|body| {
            rans::encode(&exponents, &frequencies, narrow, body)
        }),
        ("rans-wide", &|body| {
            rans::encode(&exponents, &frequencies, wide, body)
        }),
        ("rans-pairs", &|body| {
            assert!(rans::pairs::encode_within(
                &exponents,
                &counts,
                usize::MAX,
                body
            ))
        }),
    ];
    let decoders: [Decoder; 5] = [
        &huffman::decode,
        &tans::decode,
        &|body, out| rans::decode(body, narrow, rans::Output::Symbols(out)),
        &|body, out| rans::decode(body, wide, rans::Output::Symbols(out)),
        &|body, out| rans::pairs::decode(body, rans::Output::Symbols(out)),
    ];
    for ((name, encode), decode) in encoders.into_iter().zip(decoders) {
        let mut body = Vec::new();
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| {
                body.clear();
                encode(&mut body);
            })
        });
        // The body once more, outside any benchmark, in case a filter skipped the encoding one.
        body.clear();
        encode(&mut body);
        let mut out = vec![0; exponents.len()];
        decode(&body, &mut out).unwrap();
        assert_eq!(out, exponents, "{name} round-trips");
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| decode(&body, &mut out).unwrap())
        });
    }
    group.finish();
}

fn chunks(c: &mut Criterion) {
    let mut group = c.benchmark_group("bf16_chunk");
    let values = bf16_weights(CHUNK);
    group.throughput(Throughput::Bytes(values.len() as u64));
    let (mut scratch, mut payload) = (Scratch::default(), Vec::new());
    group.bench_function("encode", |b| {
        b.iter(|| {
            encode_chunk(
                Layout::Bf16,
                &values,
                Preference::Size,
                &mut scratch,
                &mut payload,
            )
        })
    });
    let mut out = vec![0; values.len()];
    group.bench_function("decode", |b| {
        b.iter(|| decode_chunk(Layout::Bf16, &payload, &mut out, &mut scratch).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = streams, coders, chunks
}
criterion_main!(benches);
