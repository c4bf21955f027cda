//! One chunk: split into field streams, each coded as an [`entropy`] block.

use crate::entropy::{self, rans, Block, Preference};
use crate::rows::{self, RepeatedRows};
use crate::{Error, Layout, Split};
use std::cell::LazyCell;

/// Buffers reused from chunk to chunk: allocating and first-touching fresh stream buffers for every chunk
/// costs as much as coding them. Keep one per thread.
#[derive(Debug, Default)]
pub struct Scratch {
    streams: Vec<Vec<u8>>,
    /// A stream regrouped by its context stream.
    regroup: Vec<u8>,
    /// The streams, and the regrouping buffer, of the samples that choose a chunk's split: apart from the
    /// chunk's own, so that neither set shrinks to the other's lengths and is zero-filled again as it
    /// regrows (3% of per-channel BF16 compression).
    sample_streams: Vec<Vec<u8>>,
    sample_regroup: Vec<u8>,
}

impl Scratch {
    /// `count` stream buffers and the regrouping buffer.
    fn parts(&mut self, count: usize) -> (&mut [Vec<u8>], &mut Vec<u8>) {
        (first(&mut self.streams, count), &mut self.regroup)
    }

    /// `count` stream buffers and the regrouping buffer for a sample.
    fn sample_parts(&mut self, count: usize) -> (&mut [Vec<u8>], &mut Vec<u8>) {
        (
            first(&mut self.sample_streams, count),
            &mut self.sample_regroup,
        )
    }
}

/// The first `count` of `buffers`, added if there are fewer.
fn first(buffers: &mut Vec<Vec<u8>>, count: usize) -> &mut [Vec<u8>] {
    if buffers.len() < count {
        buffers.resize_with(count, Vec::new);
    }
    &mut buffers[..count]
}

/// The first `len` bytes of `buffer`, grown (zero-filling only the new bytes) if it is shorter. For buffers
/// whose every byte the caller overwrites: they never shrink, so chunks of alternating lengths (a tensor's
/// whole chunks and its short last one) do not zero them again and again.
pub(crate) fn room(buffer: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buffer.len() < len {
        buffer.resize(len, 0);
    }
    &mut buffer[..len]
}

/// Codes one chunk of values into `payload` (cleared first): for layouts with several splits, one byte
/// naming the split, then one block per stream of the split, in order. For per-channel layouts whose rows
/// repeat, the byte after the last split's index, the distinct row count (`u32` LE), a block of row
/// references (`u32` LE each), then the distinct rows coded as a chunk of their own. `preference` weighs
/// size against decoding speed where two codes are close; decoders need not know it.
///
/// # Panics
/// If `values.len()` is not a multiple of `layout.value_size()`; callers cut chunks on value boundaries.
pub fn encode_chunk(
    layout: Layout,
    values: &[u8],
    preference: Preference,
    scratch: &mut Scratch,
    payload: &mut Vec<u8>,
) {
    assert_eq!(
        values.len() % layout.value_size(),
        0,
        "{layout} chunks hold whole values"
    );
    payload.clear();
    if let Some(repeated) = RepeatedRows::find(layout, values) {
        payload.push(layout.repeated_rows_marker() as u8);
        let distinct_rows = repeated.distinct.len() / layout.value_size();
        payload.extend_from_slice(&(distinct_rows as u32).to_le_bytes());
        entropy::encode_block_lz(&repeated.references, preference, payload);
        encode_split(layout, &repeated.distinct, preference, scratch, payload);
        return;
    }
    encode_split(layout, values, preference, scratch, payload);
}

/// Appends the split byte (where the layout has a choice) and one block per stream of the best split.
fn encode_split(
    layout: Layout,
    values: &[u8],
    preference: Preference,
    scratch: &mut Scratch,
    payload: &mut Vec<u8>,
) {
    let SplitChoice {
        index: choice,
        histograms,
    } = choose_split(layout, values, preference, scratch);
    if layout.split_count() > 1 {
        payload.push(choice as u8);
    }
    let split = layout
        .split(choice)
        .expect("choose_split picks an existing split");
    let (streams, regroup) = scratch.parts(split.stream_count());
    // A split that keeps the values as they are is coded from them in place, with no copy.
    if !split.is_identity() {
        split.split(values, streams, regroup);
    }
    let stream_at = |index: usize| -> &[u8] {
        if split.is_identity() {
            values
        } else {
            &streams[index]
        }
    };
    for index in 0..split.stream_count() {
        let parts = split.parts(index);
        let stream = stream_at(index);
        match split.context_of(index) {
            _ if parts > 1 && !stream.is_empty() => {
                entropy::encode_block_clustered(stream, parts, preference, payload)
            }
            Some(context) => entropy::encode_block_given(
                stream,
                stream_at(context),
                preference,
                payload,
                regroup,
            ),
            None if split.has_repeats() => entropy::encode_block_lz(stream, preference, payload),
            None => match &histograms {
                Some(histograms) => {
                    entropy::encode_block_counted(stream, &histograms[index], preference, payload)
                }
                None if split.pairable(index) => {
                    entropy::encode_block_pairable(stream, preference, payload)
                }
                None => entropy::encode_block(stream, preference, payload),
            },
        }
    }
}

/// Whether a per-channel layout's payload starts with the repeated-rows marker; returns the rest after it.
fn repeated_rows(layout: Layout, payload: &[u8]) -> Option<&[u8]> {
    match payload.split_first() {
        Some((&marker, rest))
            if matches!(layout, Layout::Channels { .. })
                && usize::from(marker) == layout.repeated_rows_marker() =>
        {
            Some(rest)
        }
        _ => None,
    }
}

/// The distinct row count and the reference block at the front of a repeated-rows payload (after its
/// marker), checked against the chunk's `rows`; returns them and the nested chunk after them.
fn read_repeated_rows(rest: &[u8], rows: usize) -> Result<(usize, Block<'_>, &[u8]), Error> {
    let count = entropy::take(rest, 0, 4, "distinct row count")?;
    let distinct = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
    if distinct > rows || (distinct == 0 && rows > 0) {
        return Err(Error::DistinctRows { distinct, rows });
    }
    let (references, used) = Block::parse(&rest[4..])?;
    Ok((distinct, references, &rest[4 + used..]))
}

/// Whether coding rows is expected to pay on `sample` (whole rows of a per-channel layout): tables per
/// channel, or storing repeated rows once, as a chunk of such rows would choose. Routers use it to give a tensor the flat layout, with its shorter
/// chunks and no per-chunk trial, where the channels would not pay anyway.
pub fn channels_pay(layout: Layout, sample: &[u8]) -> bool {
    if !matches!(layout, Layout::Channels { .. })
        || !sample.len().is_multiple_of(layout.value_size())
    {
        return false;
    }
    // Repeated rows are found only in per-channel layouts, whose values are rows.
    if RepeatedRows::find(layout, sample).is_some() {
        return true;
    }
    let choice = choose_split(layout, sample, Preference::Size, &mut Scratch::default());
    matches!(
        layout.split(choice.index),
        Some(Split::Channels { .. } | Split::Offsets16 { .. })
    )
}

/// The split chosen for a chunk, and its streams' histograms where choosing it counted every value.
struct SplitChoice {
    index: usize,
    histograms: Option<Vec<[u32; 256]>>,
}

/// The split of `layout` expected to code `values` smallest. Each candidate splits a sample of the chunk into
/// the scratch streams and is costed at the order-0 entropy of each stream (of each cluster of parts, for
/// streams coded per channel), scaled up to the whole chunk, plus an estimate of its tables, times the split's
/// [`Split::speed_penalty`]. Bytewise splits are costed from the values' byte histogram instead, with no pass
/// of their own; where every split is bytewise, that histogram counts the whole chunk, which prices the splits
/// exactly and spares the chosen streams' coders counting them again. Splits that trade size for speed
/// ([`Split::is_for_speed`]) are candidates only where speed is preferred, and those that trade speed for
/// size ([`Split::is_for_size`]) only where size is. Only layouts with a choice pay for this.
fn choose_split(
    layout: Layout,
    values: &[u8],
    preference: Preference,
    scratch: &mut Scratch,
) -> SplitChoice {
    let splits = || {
        (0..layout.split_count())
            .filter_map(|index| Some((index, layout.split(index)?)))
            .filter(|(_, split)| match preference {
                Preference::Size => !split.is_for_speed(),
                Preference::Speed => !split.is_for_size(),
            })
    };
    if layout.split_count() == 1 {
        return SplitChoice {
            index: 0,
            histograms: None,
        };
    }
    let all_bytewise = splits().all(|(_, split)| split.is_bytewise());
    let value_size = layout.value_size();
    let sample_values = (SAMPLE_LEN / value_size).max(SAMPLE_MIN_VALUES);
    let sample = if all_bytewise {
        values
    } else {
        &values[..values.len().min(sample_values * value_size)]
    };
    let scale = values.len() as f64 / sample.len().max(1) as f64;
    let mut byte_histogram = None;
    let mut best = (0, f64::INFINITY, None);
    // A split that cannot represent every value of the chunk (the joint BF16 fields) is not a candidate, nor
    // is an alternative to the layout's own split where it gives way to it.
    let own_split = match layout {
        Layout::Channels { float, channels } => Some(Split::Channels { float, channels }),
        _ => None,
    };
    // A pass over the chunk, made only where a per-channel split is a candidate (not with speed preferred).
    let own_split_fits = LazyCell::new(|| own_split.is_none_or(|split| split.fits(values)));
    let rows = values.len() / value_size;
    let candidates = splits().filter(|&(_, split)| match split {
        Split::Channels { .. } if Some(split) == own_split => *own_split_fits,
        Split::Channels { .. } => {
            split.fits(values) && !split.gives_way_in(layout, rows, *own_split_fits)
        }
        // Flat splits represent every value and give way to none.
        _ => true,
    });
    for (index, split) in candidates {
        let (cost, histograms) = if split.is_bytewise() {
            let byte_histogram = byte_histogram.get_or_insert_with(|| entropy::histogram(sample));
            let histograms = bytewise_stream_histograms(split, byte_histogram, scratch);
            let cost = histograms
                .iter()
                .map(|histogram| entropy::estimated_block_len(histogram, scale))
                .sum::<f64>();
            (cost, Some(histograms))
        } else {
            let (streams, transposed) = scratch.sample_parts(split.stream_count());
            split.split(sample, streams, transposed);
            let cost = streams
                .iter()
                .enumerate()
                .filter(|(_, stream)| !stream.is_empty())
                .map(|(stream_index, stream)| match split.parts(stream_index) {
                    1 => entropy::estimated_block_len(&entropy::histogram(stream), scale),
                    parts => entropy::clusters::estimated_len(stream, parts, scale),
                })
                .sum::<f64>();
            (cost, None)
        };
        let cost = cost * split.speed_penalty();
        if cost < best.1 {
            best = (index, cost, histograms);
        }
    }
    SplitChoice {
        index: best.0,
        histograms: best.2.filter(|_| all_bytewise),
    }
}

/// The histogram of each stream of a bytewise `split` of values whose bytes have `byte_histogram`: splitting
/// all 256 byte values tells which symbol each byte gives in each stream.
fn bytewise_stream_histograms(
    split: Split,
    byte_histogram: &[u32; 256],
    scratch: &mut Scratch,
) -> Vec<[u32; 256]> {
    let every_byte: [u8; 256] = std::array::from_fn(|byte| byte as u8);
    let (streams, transposed) = scratch.sample_parts(split.stream_count());
    split.split(&every_byte, streams, transposed);
    streams
        .iter()
        .map(|symbols| {
            let mut histogram = [0; 256];
            for (&symbol, &count) in symbols.iter().zip(byte_histogram) {
                histogram[usize::from(symbol)] += count;
            }
            histogram
        })
        .collect()
}

/// Bytes of a chunk the split estimate looks at (rounded to whole values) ...
const SAMPLE_LEN: usize = 64 << 10;
/// ... but at least this many values (rows, for per-channel layouts, whose tables need enough of them). 256
/// rows chose as 512 did on every chunk of the corpus and of the K/V captures (the same ratios to four
/// decimals), and whisper's files compress 7-11% faster: the estimate had been a quarter of their time.
const SAMPLE_MIN_VALUES: usize = 256;

/// How one coded chunk was coded: its split and the mode of each of its streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkCoding {
    /// The split the chunk used.
    pub split: Split,
    /// The coding mode of each stream, in stream order; after the row references' for repeated rows.
    pub modes: Vec<entropy::Mode>,
    /// Whether the chunk was coded as distinct rows and references to them.
    pub repeated_rows: bool,
}

/// How a coded chunk was coded, read from its split byte and block headers alone.
pub fn chunk_coding(layout: Layout, payload: &[u8]) -> Result<ChunkCoding, Error> {
    if let Some(rest) = repeated_rows(layout, payload) {
        let (_, references, nested) = read_repeated_rows(rest, usize::MAX)?;
        let mut coding = chunk_coding(layout, nested)?;
        coding.modes.insert(0, references.mode());
        coding.repeated_rows = true;
        return Ok(coding);
    }
    let (split, mut rest) = read_split(layout, payload)?;
    let modes = (0..split.stream_count())
        .map(|_| {
            let (block, used) = Block::parse(rest)?;
            rest = &rest[used..];
            Ok(block.mode())
        })
        .collect::<Result<_, Error>>()?;
    Ok(ChunkCoding {
        split,
        modes,
        repeated_rows: false,
    })
}

/// The split a coded chunk names, and the payload after the split byte.
fn read_split(layout: Layout, payload: &[u8]) -> Result<(Split, &[u8]), Error> {
    if layout.split_count() == 1 {
        return Ok((layout.split(0).expect("every layout has a split"), payload));
    }
    let (&index, rest) = payload.split_first().ok_or(Error::Truncated {
        what: "split byte",
        needed: 1,
        available: 0,
    })?;
    let split = layout
        .split(usize::from(index))
        .ok_or(Error::UnknownSplit { layout, index })?;
    Ok((split, rest))
}

/// The most streams any split has.
const MAX_STREAMS: usize = 8;

/// Decodes a chunk written by [`encode_chunk`] into `out`, which must be exactly the chunk's original length.
pub fn decode_chunk(
    layout: Layout,
    payload: &[u8],
    out: &mut [u8],
    scratch: &mut Scratch,
) -> Result<(), Error> {
    if !out.len().is_multiple_of(layout.value_size()) {
        return Err(Error::ValueAlignment {
            len: out.len(),
            value_size: layout.value_size(),
        });
    }
    if let Some(rest) = repeated_rows(layout, payload) {
        let row_len = layout.value_size();
        let rows = out.len() / row_len;
        let (distinct, references, nested) = read_repeated_rows(rest, rows)?;
        let mut reference_bytes = vec![0; rows * 4];
        references.decode_into(&mut reference_bytes)?;
        // The distinct rows are a chunk of their own; it cannot itself hold repeats (the marker is then an
        // unknown split), so this recurses once at most.
        let mut distinct_rows = vec![0; distinct * row_len];
        decode_split(layout, nested, &mut distinct_rows, scratch)?;
        return rows::expand(&reference_bytes, &distinct_rows, row_len, out);
    }
    decode_split(layout, payload, out, scratch)
}

/// Decodes a split byte (where the layout has a choice) and the split's blocks into `out`.
fn decode_split(
    layout: Layout,
    payload: &[u8],
    out: &mut [u8],
    scratch: &mut Scratch,
) -> Result<(), Error> {
    let (split, rest) = read_split(layout, payload)?;
    if split.is_identity() {
        // The one stream is the values: decoded straight into `out`, with no copy.
        let (block, used) = Block::parse(rest)?;
        block.decode_into(out)?;
        return match rest.len() - used {
            0 => Ok(()),
            trailing => Err(Error::TrailingBytes(trailing)),
        };
    }
    if let Split::Offsets16 { .. } = split {
        // The offsets, then the chunk as the flat split codes it (in one pass where it can), less them.
        let (block, used) = Block::parse(rest)?;
        let mut offsets = [0; crate::channels::MAX_CHANNELS as usize];
        let offsets = &mut offsets[..split.stream_len(0, out.len())];
        block.decode_into(offsets)?;
        decode_fields(Split::Fields16, &rest[used..], out, scratch)?;
        crate::channels::add_offsets(offsets, out);
        return Ok(());
    }
    decode_fields(split, rest, out, scratch)
}

/// Decodes the blocks of a split's streams (after its split byte) and merges them into `out`.
fn decode_fields(
    split: Split,
    mut rest: &[u8],
    out: &mut [u8],
    scratch: &mut Scratch,
) -> Result<(), Error> {
    if decode_in_one_pass(split, rest, out)? {
        return Ok(());
    }
    let count = split.stream_count();
    let (buffers, regroup) = scratch.parts(count);
    // Stored streams are merged straight from the payload; only coded ones go through the buffers.
    let mut stored: [Option<&[u8]>; MAX_STREAMS] = [None; MAX_STREAMS];
    for index in 0..count {
        let (block, used) = Block::parse(rest)?;
        rest = &rest[used..];
        let len = split.stream_len(index, out.len());
        if let Block::Raw(bytes) = block {
            if bytes.len() == len {
                stored[index] = Some(bytes);
                continue;
            }
        }
        let (decoded, [buffer, ..]) = buffers.split_at_mut(index) else {
            unreachable!("index < count");
        };
        let buffer = room(buffer, len);
        match split.context_of(index) {
            Some(context) => {
                let context = stored[context]
                    .unwrap_or_else(|| &decoded[context][..split.stream_len(context, out.len())]);
                block.decode_given(context, buffer, regroup)?;
            }
            None => block.decode_into(buffer)?,
        }
    }
    if !rest.is_empty() {
        return Err(Error::TrailingBytes(rest.len()));
    }
    let mut streams: [&[u8]; MAX_STREAMS] = [&[]; MAX_STREAMS];
    for (index, ((stream, stored), buffer)) in streams
        .iter_mut()
        .zip(stored)
        .zip(buffers.iter())
        .enumerate()
    {
        *stream = stored.unwrap_or_else(|| &buffer[..split.stream_len(index, out.len())]);
    }
    split.merge(&streams[..count], out, regroup);
    Ok(())
}

/// Decodes a field split whose first field (the exponents, or the F16 high byte) is rANS-coded, 16-bit
/// floats' exponents also in pairs, and whose other fields are stored, nearly every chunk of a flat BF16, F16
/// or F32 tensor and of FP8 pairs, in one pass: the decoder joins each symbol with the stored fields' bytes as
/// it comes ([`rans::Output`]).
/// `false`, having written nothing, where the chunk is coded otherwise.
fn decode_in_one_pass(split: Split, blocks: &[u8], out: &mut [u8]) -> Result<bool, Error> {
    if !matches!(split, Split::Fields16 | Split::Fields32 | Split::Fp8Pairs) {
        return Ok(false);
    }
    let count = split.stream_count();
    let (first, mut used) = Block::parse(blocks)?;
    let (lanes, body) = match first {
        Block::Rans(lanes, body) => (Some(lanes), body),
        Block::RansPairs(body) if split != Split::Fp8Pairs => (None, body),
        _ => return Ok(false),
    };
    let mut rest: [&[u8]; 3] = [&[]; 3];
    for (index, field) in rest.iter_mut().enumerate().take(count - 1) {
        match Block::parse(&blocks[used..])? {
            (Block::Raw(bytes), len) if bytes.len() == split.stream_len(index + 1, out.len()) => {
                *field = bytes;
                used += len;
            }
            _ => return Ok(false),
        }
    }
    if used < blocks.len() {
        return Err(Error::TrailingBytes(blocks.len() - used));
    }
    let output = match split {
        Split::Fields16 => rans::Output::Fields16 {
            low: rest[0],
            values: out,
        },
        Split::Fp8Pairs => rans::Output::Fp8Pairs {
            sign_mantissas: rest[0],
            values: out,
        },
        _ => rans::Output::Fields32 { rest, values: out },
    };
    match lanes {
        Some(lanes) => rans::decode(body, lanes, output)?,
        None => rans::pairs::decode(body, output)?,
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChannelFloat;
    use proptest::prelude::*;

    /// Codes `values`, checks they decode back, and returns the payload.
    fn round_trip(layout: Layout, values: &[u8]) -> Vec<u8> {
        let (mut scratch, mut payload) = (Scratch::default(), Vec::new());
        encode_chunk(layout, values, Preference::Size, &mut scratch, &mut payload);
        let mut out = vec![0; values.len()];
        decode_chunk(layout, &payload, &mut out, &mut scratch).unwrap();
        assert_eq!(out, values, "{layout}");
        payload
    }

    #[test]
    fn chunks_decode_with_a_fresh_scratch_and_in_alternating_lengths() {
        // BF16 with scattered low bytes: the sign-and-mantissa stream is stored raw and merged from the payload,
        // so a fresh scratch never grows its buffer.
        let values: Vec<u8> = (0..20_000u32)
            .flat_map(|i| {
                [
                    (i.wrapping_mul(2_654_435_761) >> 13) as u8,
                    0x3f + (i % 3) as u8,
                ]
            })
            .collect();
        let mut scratch = Scratch::default();
        for len in [values.len(), 2000, values.len(), 6] {
            let chunk = &values[..len];
            let mut payload = Vec::new();
            encode_chunk(
                Layout::Bf16,
                chunk,
                Preference::Size,
                &mut Scratch::default(),
                &mut payload,
            );
            let mut fresh = vec![0; len];
            decode_chunk(Layout::Bf16, &payload, &mut fresh, &mut Scratch::default()).unwrap();
            assert_eq!(fresh, chunk);
            let mut reused = vec![0; len];
            decode_chunk(Layout::Bf16, &payload, &mut reused, &mut scratch).unwrap();
            assert_eq!(reused, chunk, "{len} bytes after longer chunks");
        }
    }

    #[test]
    fn bf16_weights_compress() {
        // Values clustered around 1.0 and -1.0, like a normalisation weight.
        let values: Vec<u8> = (0..20_000u32)
            .flat_map(|i| {
                (0x3f80u16 ^ ((i % 3) as u16) << 15 | (i.wrapping_mul(2654435761) >> 25) as u16)
                    .to_le_bytes()
            })
            .collect();
        assert!(round_trip(Layout::Bf16, &values).len() < values.len() * 6 / 10);
    }

    #[test]
    fn a_chunk_of_the_wrong_length_is_an_error() {
        let mut scratch = Scratch::default();
        assert_eq!(
            decode_chunk(Layout::F32, &[], &mut [0; 6], &mut scratch),
            Err(Error::ValueAlignment {
                len: 6,
                value_size: 4
            })
        );
        let mut payload = Vec::new();
        encode_chunk(
            Layout::Bytes,
            &[1, 2, 3],
            Preference::Size,
            &mut scratch,
            &mut payload,
        );
        payload.push(0);
        assert_eq!(
            decode_chunk(Layout::Bytes, &payload, &mut [0; 3], &mut scratch),
            Err(Error::TrailingBytes(1))
        );
    }

    #[test]
    fn small_chunks_take_the_split_with_smaller_tables() {
        // 512 FP8 codes, exponent and mantissa independent: the whole code needs a table of about 100
        // symbols, the fields two of 16 and 8, and the entropies are equal.
        let small: Vec<u8> = (0..512usize)
            .map(|i| {
                ([7, 7, 7, 7, 8, 8, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2][i % 16] << 3 | (i / 16 % 8))
                    as u8
            })
            .collect();
        assert_eq!(
            choose_split(
                Layout::F8E4M3,
                &small,
                Preference::Size,
                &mut Scratch::default()
            )
            .index,
            1
        );
        // A large chunk with exponent and mantissa correlated: the whole code is far smaller.
        let large: Vec<u8> = (0..100_000u32)
            .map(|i| [0x38, 0x41, 0xb9, 0xc0][i as usize % 4])
            .collect();
        assert_eq!(
            choose_split(
                Layout::F8E4M3,
                &large,
                Preference::Size,
                &mut Scratch::default()
            )
            .index,
            0
        );
        assert_eq!(
            choose_split(
                Layout::Bf16,
                &large,
                Preference::Size,
                &mut Scratch::default()
            )
            .index,
            0
        );
    }

    #[test]
    fn fp8_pairs_are_taken_only_where_speed_is_preferred() {
        // FP8 weights: exponents around 7, signs and mantissas uniform; an odd count and every code.
        let mut next = crate::entropy::test_symbols::generator(7);
        let values: Vec<u8> = (0..200_001)
            .map(|i| match i % 1000 {
                0 => (i / 1000 % 256) as u8,
                _ => {
                    let random = next() >> 32;
                    let exponent = 7 + (random >> 8) % 3 - (random >> 16) % 3;
                    (random & 0x87 | exponent << 3) as u8
                }
            })
            .collect();
        let coded = |preference| {
            let (mut scratch, mut payload) = (Scratch::default(), Vec::new());
            encode_chunk(
                Layout::F8E4M3,
                &values,
                preference,
                &mut scratch,
                &mut payload,
            );
            let mut out = vec![0; values.len()];
            decode_chunk(Layout::F8E4M3, &payload, &mut out, &mut scratch).unwrap();
            assert!(out == values, "{preference:?}");
            let coding = chunk_coding(Layout::F8E4M3, &payload).unwrap();
            (coding, payload)
        };
        let (size_coding, size_payload) = coded(Preference::Size);
        let (speed_coding, speed_payload) = coded(Preference::Speed);
        let (size_len, speed_len) = (size_payload.len(), speed_payload.len());
        assert_eq!(size_coding.split, Split::Codes);
        assert_eq!(speed_coding.split, Split::Fp8Pairs);
        // The exponent pairs in rANS, the sign-mantissa pairs stored: decoded in one pass.
        assert_eq!(
            speed_coding.modes[1],
            entropy::Mode::Raw,
            "{speed_coding:?}"
        );
        assert!(
            speed_len as f64 <= size_len as f64 * 1.02,
            "{speed_len} vs {size_len}"
        );
        assert_damage_is_noticed(Layout::F8E4M3, &speed_payload, &values);
    }

    #[test]
    fn one_pass_chunks_round_trip_and_damage_is_an_error() {
        // BF16 and F32 weights long enough for rANS exponents (in pairs) beside stored mantissas: decoded in
        // one pass.
        let mut next = crate::entropy::test_symbols::generator(11);
        let mut weight = |exponent_bits: u32| {
            let random = (next() >> 32) as u32;
            let exponent = 120 + (random >> 8) % 4 - (random >> 12) % 4;
            random & !(0xff << exponent_bits) | exponent << exponent_bits
        };
        let bf16: Vec<u8> = (0..300_000)
            .flat_map(|_| (weight(7) as u16).to_le_bytes())
            .collect();
        let f32: Vec<u8> = (0..300_000)
            .flat_map(|_| weight(23).to_le_bytes())
            .collect();
        for (layout, values) in [(Layout::Bf16, bf16), (Layout::F32, f32)] {
            let payload = round_trip(layout, &values);
            let coding = chunk_coding(layout, &payload).unwrap();
            assert!(
                matches!(
                    coding.modes[0],
                    entropy::Mode::Rans | entropy::Mode::RansWide | entropy::Mode::RansPairs
                ) && coding.modes[1..]
                    .iter()
                    .all(|&mode| mode == entropy::Mode::Raw),
                "{coding:?}"
            );
            // BF16 exponents pair; F32 ones, where they gain less, do not.
            assert_eq!(
                coding.modes[0] == entropy::Mode::RansPairs,
                layout == Layout::Bf16,
                "{layout}"
            );
            assert_damage_is_noticed(layout, &payload, &values);
        }
    }

    /// Every cut of `payload` (a chunk of `values`) is an error, and damage in its first third (the rANS
    /// block's table, states or words, where the first stream is one) an error or other values, never a panic.
    fn assert_damage_is_noticed(layout: Layout, payload: &[u8], values: &[u8]) {
        let mut out = vec![0; values.len()];
        let mut scratch = Scratch::default();
        for len in [0, 1, 10, payload.len() / 2, payload.len() - 1] {
            let decoded = decode_chunk(layout, &payload[..len], &mut out, &mut scratch);
            assert!(decoded.is_err(), "{layout} cut to {len}");
        }
        for at in (0..payload.len() / 3).step_by(997) {
            let mut damaged = payload.to_vec();
            damaged[at] ^= 0x5a;
            let decoded = decode_chunk(layout, &damaged, &mut out, &mut scratch);
            assert!(
                decoded.is_err() || out != values,
                "{layout}: damage at {at} unnoticed"
            );
        }
    }

    /// 4096 rows of 16 BF16 channels whose exponents vary in a range of `spread(channel)` from a lowest
    /// of `lowest + 2 * channel`, mantissas pseudo-random.
    fn channel_rows(lowest: u32, spread: impl Fn(u32) -> u32) -> Vec<u8> {
        (0..4096u32 * 16)
            .flat_map(|i| {
                let (row, channel) = (i / 16, i % 16);
                let exponent = lowest + channel * 2 + row.wrapping_mul(40503) % spread(channel);
                ((exponent << 7 | row.wrapping_mul(2654435761) >> 25) as u16).to_le_bytes()
            })
            .collect()
    }

    #[test]
    fn channels_at_their_own_scale_take_offsets() {
        // Each channel's exponents are two values of its own: less their channel's offset, every channel's
        // are the same two, which the flat code, in pairs, codes as small as tables per channel would.
        let layout = Layout::Bf16.channels(16).unwrap();
        let values = channel_rows(90, |_| 2);
        let offsets = Some(Split::Offsets16 {
            channels: 16,
            exponent_shift: 0,
        });
        for preference in [Preference::Size, Preference::Speed] {
            let choice = choose_split(layout, &values, preference, &mut Scratch::default()).index;
            assert_eq!(layout.split(choice), offsets, "{preference:?}");
        }
        let flat = round_trip(Layout::Bf16, &values).len();
        let payload = round_trip(layout, &values);
        assert!(
            payload.len() * 100 < flat * 95,
            "{} vs {flat}",
            payload.len()
        );
        assert_damage_is_noticed(layout, &payload, &values);
        // F16 (exponent 5 bits up in the high byte), with the top mantissa bits alongside.
        let f16 = Layout::F16.channels(16).unwrap();
        let values: Vec<u8> = (0..4096u32 * 16)
            .flat_map(|i| {
                let (row, channel) = (i / 16, i % 16);
                let exponent = 4 + channel + row % 2;
                ((exponent << 10 | row.wrapping_mul(2654435761) >> 22) as u16).to_le_bytes()
            })
            .collect();
        let choice = choose_split(f16, &values, Preference::Speed, &mut Scratch::default()).index;
        assert_eq!(
            f16.split(choice),
            Some(Split::Offsets16 {
                channels: 16,
                exponent_shift: 3
            })
        );
        round_trip(f16, &values);
    }

    #[test]
    fn channels_of_their_own_spread_take_per_channel_tables() {
        // Channels whose exponents spread over 1 to 16 values: no offset lines them up, tables per channel
        // code each at its own entropy.
        let layout = Layout::Bf16.channels(16).unwrap();
        // Exponents 80 to 125 fit one byte with the sign, 106 to 151 do not.
        for (lowest, float) in [(80, ChannelFloat::Bf16Joint), (106, ChannelFloat::Bf16)] {
            let values = channel_rows(lowest, |channel| 1 << (channel % 5));
            let choice =
                choose_split(layout, &values, Preference::Size, &mut Scratch::default()).index;
            assert_eq!(
                layout.split(choice),
                Some(Split::Channels {
                    float,
                    channels: 16
                }),
                "from {lowest}"
            );
            let flat = round_trip(Layout::Bf16, &values).len();
            let per_channel = round_trip(layout, &values).len();
            assert!(per_channel * 100 < flat * 95, "{per_channel} vs {flat}");
            // Where speed is preferred, a flat split, which decodes faster.
            let choice =
                choose_split(layout, &values, Preference::Speed, &mut Scratch::default()).index;
            assert!(
                matches!(
                    layout.split(choice),
                    Some(Split::Fields16 | Split::Offsets16 { .. })
                ),
                "{:?}",
                layout.split(choice)
            );
        }
    }

    #[test]
    fn repeated_rows_are_stored_once() {
        // 600 rows of 64 FP8 channels drawn from 40 distinct rows, like layer 0 of a K/V cache.
        let layout = Layout::F8E4M3.channels(64).unwrap();
        let distinct: Vec<Vec<u8>> = (0..40u32)
            .map(|row| {
                (0..64u32)
                    .map(|c| (row * 131 + c * 29) as u8 % 120)
                    .collect()
            })
            .collect();
        let values: Vec<u8> = (0..600usize)
            .flat_map(|row| distinct[row * 7 % 40].clone())
            .collect();
        let payload = round_trip(layout, &values);
        let stored = payload.len();
        let coding = chunk_coding(layout, &payload).unwrap();
        assert!(coding.repeated_rows, "{coding:?}");
        assert!(stored < 40 * 64 + 600, "{stored} bytes");
        // A reference past the distinct rows is an error, not a panic.
        let mut restored = vec![0; values.len()];
        let mut damaged = payload;
        damaged[1..5].copy_from_slice(&700u32.to_le_bytes());
        let decoded = decode_chunk(layout, &damaged, &mut restored, &mut Scratch::default());
        assert!(decoded.is_err());
    }

    #[test]
    fn malformed_splits_and_blocks_are_errors() {
        let mut scratch = Scratch::default();
        let mut out = [0u8; 8];
        // A split byte past every split (E5M2 has two; repeated rows only exist per channel).
        assert_eq!(
            decode_chunk(
                Layout::F8E5M2,
                &[2, 1, 1, 0, 0, 0, 7],
                &mut out,
                &mut scratch
            ),
            Err(Error::UnknownSplit {
                layout: Layout::F8E5M2,
                index: 2
            })
        );
        // A grouped block where the stream has no context stream.
        assert_eq!(
            decode_chunk(Layout::Bytes, &[5, 0, 0, 0, 0], &mut out, &mut scratch),
            Err(Error::UnexpectedGrouping)
        );
        // A parts block whose part count does not divide the stream, or is zero.
        for parts in [0u32, 3] {
            let mut payload = vec![6, 4, 0, 0, 0];
            payload.extend_from_slice(&parts.to_le_bytes());
            assert_eq!(
                decode_chunk(Layout::Bytes, &payload, &mut out, &mut scratch),
                Err(Error::Parts {
                    parts: parts as usize,
                    len: 8
                })
            );
        }
    }

    #[test]
    fn every_split_fits_the_stream_arrays() {
        let per_channel = ChannelFloat::ALL.map(|float| Layout::Channels { float, channels: 8 });
        for layout in Layout::all().chain(per_channel) {
            for split in (0..layout.split_count()).filter_map(|index| layout.split(index)) {
                assert!(split.stream_count() <= MAX_STREAMS, "{layout}");
            }
        }
    }

    #[test]
    fn block_scales_are_coded_given_their_high_byte() {
        // Q8_0 blocks whose scales take 40 values spread over many exponents: the low byte is nearly
        // determined by the high byte, which only grouping can use.
        let scales: Vec<u16> = (0..40).map(|i| 0x2000 + i * 0x123).collect();
        let values: Vec<u8> = (0..20_000usize)
            .flat_map(|block| {
                let scale = scales[block * 7 % scales.len()].to_le_bytes();
                let codes = (0..32).map(move |i| ((block * 31 + i * 17) % 200) as u8);
                scale.into_iter().chain(codes)
            })
            .collect();
        let layout = Layout::Blocks(&crate::blocks::Q8_0);
        let coding = chunk_coding(layout, &round_trip(layout, &values)).unwrap();
        assert_eq!(coding.modes[1], entropy::Mode::Grouped, "{coding:?}");
    }

    proptest! {
        #[test]
        fn every_layout_round_trips(values in prop::collection::vec(any::<u8>(), 0..4096)) {
            let per_channel = ChannelFloat::ALL.map(|float| Layout::Channels { float, channels: 3 });
            for layout in Layout::all().chain(per_channel) {
                let whole = values.len() / layout.value_size() * layout.value_size();
                round_trip(layout, &values[..whole]);
            }
        }
    }
}
