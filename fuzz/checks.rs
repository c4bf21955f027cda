//! What each fuzz target checks. Shared by the targets in `fuzz_targets/` and by `tests/fuzz.rs`, which replays
//! every input committed under `regressions/<target>/` in the normal test run.
//!
//! Every parser and decoder must return an error on bad input, never panic, hang or allocate without bound;
//! every round trip must give back the input; the output must not depend on chunk size or thread count.

use tenzip::{CompressOptions, Container, DecompressOptions, Plan};
use tenzip_codec::{decode_chunk, encode_chunk, ChannelFloat, Layout, Preference, Scratch};

/// The safetensors header reader on any bytes; what it accepts lies within the file.
pub fn safetensors_header(data: &[u8]) {
    if let Ok(header) = tenzip_safetensors::Header::parse(data) {
        for tensor in &header.tensors {
            assert!(tensor.range.end <= data.len() as u64);
        }
    }
}

/// The GGUF header reader on any bytes; what it accepts lies within the file.
pub fn gguf_header(data: &[u8]) {
    if let Ok(header) = tenzip_gguf::Header::parse(data) {
        assert!(header.data_start <= data.len() as u64);
        for tensor in &header.tensors {
            assert!(tensor.range.start >= header.data_start);
            assert!(tensor.range.end <= data.len() as u64);
        }
    }
}

/// The ANS decoders on any body, for the symbol count its first two bytes give: errors, never a panic; and
/// each of the rANS decoder's vector paths gives what its portable path gives, error for error and byte for
/// byte, putting symbols and joining them with other fields into 16- and 32-bit values and FP8 pairs; the
/// same for the body read as pairs of symbols.
pub fn ans_decode(data: &[u8]) {
    use tenzip_codec::entropy::{rans, tans};
    let [low, high, body @ ..] = data else {
        return;
    };
    let len = usize::from(u16::from_le_bytes([*low, *high]));
    let _ = tans::decode(body, &mut vec![0; len]);
    let field = |seed: usize| -> Vec<u8> { (0..len).map(|i| (i * seed + 13) as u8).collect() };
    let rest = [field(167), field(89), field(251)];
    // The body as rANS in either width (`Some`), and as a pair body (`None`).
    for lanes in rans::Lanes::ALL.map(Some).into_iter().chain([None]) {
        // Symbols; 16-bit values; 32-bit values; FP8 pairs (never paired), an odd number of codes where
        // `len` is odd.
        for (kind, value_len) in [len, 2 * len, 4 * len, 2 * len - len % 2]
            .into_iter()
            .enumerate()
            .take(if lanes.is_some() { 4 } else { 3 })
        {
            let decode = |path| {
                let mut out = vec![0; value_len];
                let values = &mut out;
                let output = match kind {
                    0 => rans::Output::Symbols(values),
                    1 => rans::Output::Fields16 {
                        low: &rest[0],
                        values,
                    },
                    2 => rans::Output::Fields32 {
                        rest: [&rest[0], &rest[1], &rest[2]],
                        values,
                    },
                    _ => rans::Output::Fp8Pairs {
                        sign_mantissas: &rest[0],
                        values,
                    },
                };
                let result = match lanes {
                    Some(lanes) => rans::decode_on(path, body, lanes, output),
                    None => rans::pairs::decode_on(path, body, output),
                };
                (result, out)
            };
            let expected = decode(rans::Path::Portable);
            for path in rans::Path::available() {
                assert!(decode(path) == expected, "{path:?} differs (output {kind})");
            }
        }
    }
}

/// Any bytes as a stream block of every mode, for the symbol count its first three bytes give (up to 16 M,
/// enough for a clusters block): an error or exactly that many symbols, never a panic.
pub fn block_decode(data: &[u8]) {
    let [a, b, c, block @ ..] = data else {
        return;
    };
    let len = u32::from_le_bytes([*a, *b, *c, 0]) as usize;
    if let Ok(used) = tenzip_codec::entropy::decode_block(block, &mut vec![0; len]) {
        assert!(used <= block.len());
    }
}

/// The rANS encoders on any symbols with at least two distinct values, at a table size the selector picks:
/// every vector encoder writes the same body as the portable one, in both widths, and it decodes back to the symbols.
/// The symbols repeated to the length pairs need are coded in pairs where they qualify, and decode back too.
pub fn ans_encode(data: &[u8]) {
    use tenzip_codec::entropy::{histogram, rans, tans};
    let Some((&selector, symbols)) = data.split_first() else {
        return;
    };
    let counts = histogram(symbols);
    let distinct = counts.iter().filter(|&&count| count > 0).count();
    let log = 5 + u32::from(selector) % 8;
    if distinct < 2 || distinct > 1 << log {
        return;
    }
    let frequencies = tans::Frequencies::normalize(&counts, log);
    for lanes in rans::Lanes::ALL {
        let mut portable = Vec::new();
        rans::encode_on(
            rans::Path::Portable,
            symbols,
            &frequencies,
            lanes,
            &mut portable,
        );
        for path in rans::Path::available() {
            let mut body = Vec::new();
            rans::encode_on(path, symbols, &frequencies, lanes, &mut body);
            assert_eq!(body, portable);
        }
        let mut out = vec![0; symbols.len()];
        let output = rans::Output::Symbols(&mut out);
        assert_eq!(rans::decode(&portable, lanes, output), Ok(()));
        assert_eq!(out, symbols);
    }
    // An odd length where the selector's low bit is set.
    let len = rans::pairs::MIN_SYMBOLS + usize::from(selector & 1);
    let repeated: Vec<u8> = symbols.iter().copied().cycle().take(len).collect();
    let mut body = Vec::new();
    if rans::pairs::encode_within(&repeated, &histogram(&repeated), usize::MAX, &mut body) {
        let mut out = vec![0; repeated.len()];
        let output = rans::Output::Symbols(&mut out);
        assert_eq!(rans::pairs::decode(&body, output), Ok(()));
        assert!(out == repeated, "pairs round trip");
    }
}

/// The container reader and the whole restore on any bytes: errors, never a panic.
pub fn container_decode(data: &[u8]) {
    if let Ok(container) = Container::open(data) {
        let options = DecompressOptions {
            threads: 1,
            ..DecompressOptions::default()
        };
        let _ = tenzip::decompress(&container, &options, std::io::sink());
    }
}

/// Any bytes through any layout come back unchanged; any bytes as a coded chunk decode or fail cleanly.
pub fn codec_round_trip(data: &[u8]) {
    let Some((&selector, values)) = data.split_first() else {
        return;
    };
    // Per-channel layouts too: 3 channels, and 64 (rows long enough to be checked for repeats).
    let per_channel = [3, 64]
        .into_iter()
        .flat_map(|channels| ChannelFloat::ALL.map(|float| Layout::Channels { float, channels }));
    let layouts: Vec<Layout> = Layout::all().chain(per_channel).collect();
    let layout = layouts[usize::from(selector) % layouts.len()];
    // Either preference: they choose different coders, and both must round-trip.
    let preference = if selector >= 128 {
        Preference::Speed
    } else {
        Preference::Size
    };
    let values = &values[..values.len() / layout.value_size() * layout.value_size()];
    let (mut scratch, mut payload) = (Scratch::default(), Vec::new());
    encode_chunk(layout, values, preference, &mut scratch, &mut payload);
    let mut restored = vec![0; values.len()];
    decode_chunk(layout, &payload, &mut restored, &mut scratch).expect("own output decodes");
    assert_eq!(restored, values);
    let _ = decode_chunk(layout, values, &mut restored, &mut scratch);
}

/// The first two bytes pick a chunk size, the rest is the file (parsed if it is a safetensors or GGUF file,
/// otherwise stored generically): one thread and two give the same container, which restores the file.
pub fn chunking_independence(data: &[u8]) {
    let [low, high, file @ ..] = data else {
        return;
    };
    let chunk_size = usize::from(u16::from_le_bytes([*low, *high])).max(1);
    let generic = Plan::new(file, false).is_err();
    let compressed = |threads| {
        let options = CompressOptions {
            chunk_size,
            threads,
            generic,
            ..CompressOptions::default()
        };
        let plan = Plan::new(file, generic).expect("plans");
        tenzip::compress(file, &plan, &options, Vec::new())
            .expect("compresses")
            .0
    };
    let serial = compressed(1);
    assert!(
        serial == compressed(2),
        "output depends on the thread count"
    );
    let container = Container::open(&serial).expect("own output opens");
    let options = DecompressOptions {
        threads: 2,
        ..DecompressOptions::default()
    };
    let restored = tenzip::decompress(&container, &options, Vec::new()).expect("restores");
    assert!(restored == file);
}

/// K/V pages: the first byte picks a dtype and shape; the rest, split at its middle, is read as sequence
/// tables and as a page (errors, never a panic), then a round trip through tables learned from it.
pub fn kv_pages(data: &[u8]) {
    use tenzip::kv::{KvDtype, KvPages};
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let dtype = [KvDtype::Bf16, KvDtype::F16, KvDtype::F8E4M3][usize::from(pick % 3)];
    let (heads, head_dim) = (
        usize::from(pick >> 2 & 3) + 1,
        2 * (usize::from(pick >> 4) + 1),
    );
    let element = if dtype == KvDtype::F8E4M3 { 1 } else { 2 };
    let token = heads * head_dim * element;
    let (tables, page) = rest.split_at(rest.len() / 2);
    let mut pages = KvPages::new(dtype, heads, head_dim);
    let mut out = vec![0; page.len() / token * token];
    let _ = pages.read_tables(tables);
    let _ = pages.decompress(page, &mut out);
    let whole = &rest[..rest.len() / token * token];
    if whole.is_empty() {
        return;
    }
    let mut writer = KvPages::new(dtype, heads, head_dim);
    let first_half = &whole[..whole.len() / token / 2 * token];
    writer.learn(if first_half.is_empty() {
        whole
    } else {
        first_half
    });
    let mut stored = Vec::new();
    writer.write_tables(&mut stored);
    let mut reader = KvPages::new(dtype, heads, head_dim);
    reader.read_tables(&stored).expect("own tables read back");
    let mut packed = Vec::new();
    writer.compress(whole, &mut packed);
    let mut restored = vec![0; whole.len()];
    reader
        .decompress(&packed, &mut restored)
        .expect("own page decodes");
    assert_eq!(restored, whole);
}
