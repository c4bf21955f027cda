//! One chunk: split into field streams, each coded as an [`entropy`](crate::entropy) block.

use crate::entropy::{self, Block};
use crate::{Error, Layout, Split};

/// Buffers reused from chunk to chunk: allocating and first-touching fresh stream buffers for every chunk
/// costs as much as coding them. Keep one per thread.
#[derive(Debug, Default)]
pub struct Scratch {
    streams: Vec<Vec<u8>>,
    /// A stream regrouped by its context stream.
    regroup: Vec<u8>,
}

impl Scratch {
    /// `count` stream buffers and the regrouping buffer.
    fn parts(&mut self, count: usize) -> (&mut [Vec<u8>], &mut Vec<u8>) {
        if self.streams.len() < count {
            self.streams.resize_with(count, Vec::new);
        }
        (&mut self.streams[..count], &mut self.regroup)
    }
}

/// Codes one chunk of values into `payload` (cleared first): for layouts with several splits, one byte
/// naming the split, then one block per stream of the split, in order.
///
/// # Panics
/// If `values.len()` is not a multiple of `layout.value_size()`; callers cut chunks on value boundaries.
pub fn encode_chunk(layout: Layout, values: &[u8], scratch: &mut Scratch, payload: &mut Vec<u8>) {
    assert_eq!(
        values.len() % layout.value_size(),
        0,
        "{layout} chunks hold whole values"
    );
    payload.clear();
    let choice = layout.choose_split(values);
    if layout.split_count() > 1 {
        payload.push(choice as u8);
    }
    let split = layout
        .split(choice)
        .expect("choose_split picks an existing split");
    let (streams, regroup) = scratch.parts(split.stream_count());
    split.split(values, streams);
    for (index, stream) in streams.iter().enumerate() {
        match split.context_of(index) {
            Some(context) => {
                entropy::encode_block_given(stream, &streams[context], payload, regroup)
            }
            None if split.has_repeats() => entropy::encode_block_lz(stream, payload),
            None => entropy::encode_block(stream, payload),
        }
    }
}

/// How one coded chunk was coded: its split and the mode of each of its streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkCoding {
    /// The split the chunk used.
    pub split: Split,
    /// The coding mode of each stream, in stream order.
    pub modes: Vec<entropy::Mode>,
}

/// How a coded chunk was coded, read from its split byte and block headers alone.
pub fn chunk_coding(layout: Layout, payload: &[u8]) -> Result<ChunkCoding, Error> {
    let (split, mut rest) = read_split(layout, payload)?;
    let modes = (0..split.stream_count())
        .map(|_| {
            let (block, used) = Block::parse(rest)?;
            rest = &rest[used..];
            Ok(block.mode())
        })
        .collect::<Result<_, Error>>()?;
    Ok(ChunkCoding { split, modes })
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
    if out.len() % layout.value_size() != 0 {
        return Err(Error::ValueAlignment {
            len: out.len(),
            value_size: layout.value_size(),
        });
    }
    let values = out.len() / layout.value_size();
    let (split, mut rest) = read_split(layout, payload)?;
    let count = split.stream_count();
    let (buffers, regroup) = scratch.parts(count);
    // Stored streams are merged straight from the payload; only coded ones go through the buffers.
    let mut stored: [Option<&[u8]>; MAX_STREAMS] = [None; MAX_STREAMS];
    for index in 0..count {
        let (block, used) = Block::parse(rest)?;
        rest = &rest[used..];
        let len = split.stream_len(index, values);
        if let Block::Raw(bytes) = block {
            if bytes.len() == len {
                stored[index] = Some(bytes);
                continue;
            }
        }
        let (decoded, [buffer, ..]) = buffers.split_at_mut(index) else {
            unreachable!("index < count");
        };
        buffer.clear();
        buffer.resize(len, 0);
        match split.context_of(index) {
            Some(context) => {
                let context = stored[context].unwrap_or(&decoded[context]);
                block.decode_given(context, buffer, regroup)?;
            }
            None => block.decode_into(buffer)?,
        }
    }
    if !rest.is_empty() {
        return Err(Error::TrailingBytes(rest.len()));
    }
    let mut streams: [&[u8]; MAX_STREAMS] = [&[]; MAX_STREAMS];
    for ((stream, stored), buffer) in streams.iter_mut().zip(stored).zip(buffers.iter()) {
        *stream = stored.unwrap_or(buffer);
    }
    split.merge(&streams[..count], out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(layout: Layout, values: &[u8]) -> usize {
        let (mut scratch, mut payload) = (Scratch::default(), Vec::new());
        encode_chunk(layout, values, &mut scratch, &mut payload);
        let mut out = vec![0; values.len()];
        decode_chunk(layout, &payload, &mut out, &mut scratch).unwrap();
        assert_eq!(out, values, "{layout}");
        payload.len()
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
        assert!(round_trip(Layout::Bf16, &values) < values.len() * 6 / 10);
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
        encode_chunk(Layout::Bytes, &[1, 2, 3], &mut scratch, &mut payload);
        payload.push(0);
        assert_eq!(
            decode_chunk(Layout::Bytes, &payload, &mut [0; 3], &mut scratch),
            Err(Error::TrailingBytes(1))
        );
    }

    #[test]
    fn every_split_fits_the_stream_arrays() {
        for layout in Layout::all() {
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
        round_trip(layout, &values);
        let (mut scratch, mut payload) = (Scratch::default(), Vec::new());
        encode_chunk(layout, &values, &mut scratch, &mut payload);
        let coding = chunk_coding(layout, &payload).unwrap();
        assert_eq!(coding.modes[1], entropy::Mode::Grouped, "{coding:?}");
    }

    proptest! {
        #[test]
        fn every_layout_round_trips(values in prop::collection::vec(any::<u8>(), 0..4096)) {
            for layout in Layout::all() {
                let whole = values.len() / layout.value_size() * layout.value_size();
                round_trip(layout, &values[..whole]);
            }
        }
    }
}
