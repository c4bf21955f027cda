//! Narrow symbols stored in as many bits as the widest needs (mode 9): the stored form of a field narrower
//! than a byte.
//!
//! Fields of a split are one byte per symbol, so a field of `b < 8` bits stored raw spends `8 - b` bits a
//! value for nothing: BF16's 7 mantissa bits in a per-channel split, F16's mantissa bits 9..8, FP8's 3 or 2.
//! Such fields are nearly uniform (F16's bits 9..8 carry 1.975 bits, BF16's 7 about 6.96), so an entropy
//! coder saves a percent or two at the cost of decoding every symbol; packed, they cost their width and
//! unpack eight at a time at memory speed.
//!
//! Body: `bits: u8` (1 to 7), then the symbols as one little-endian bit string, symbol `i` in bits
//! `i * bits ..` of it, the unused high bits of the last byte zero.

use crate::Error;

/// The body length of `symbols` symbols packed at `bits` each.
pub(crate) fn body_len(symbols: usize, bits: u32) -> usize {
    1 + (symbols * bits as usize).div_ceil(8)
}

/// The width of the widest symbol counted in `histogram`: 1 to 8 bits.
pub(crate) fn width(histogram: &[u32; 256]) -> u32 {
    let widest = histogram.iter().rposition(|&count| count > 0).unwrap_or(0);
    (usize::BITS - widest.leading_zeros()).max(1)
}

/// Appends the body of `symbols`, each below `2^bits`, packed at `bits` each.
pub(crate) fn encode(symbols: &[u8], bits: u32, out: &mut Vec<u8>) {
    debug_assert!((1..8).contains(&bits));
    debug_assert!(symbols.iter().all(|&symbol| u32::from(symbol) >> bits == 0));
    out.push(bits as u8);
    let len = out.len() + body_len(symbols.len(), bits) - 1;
    out.reserve(len + 8 - out.len());
    match bits {
        1 => pack::<1>(symbols, out),
        2 => pack::<2>(symbols, out),
        3 => pack::<3>(symbols, out),
        4 => pack::<4>(symbols, out),
        5 => pack::<5>(symbols, out),
        6 => pack::<6>(symbols, out),
        _ => pack::<7>(symbols, out),
    }
    out.truncate(len);
}

/// Appends `symbols` packed at `BITS` each, plus up to 7 bytes the caller cuts off: each group of eight is
/// gathered ([`gather`]) and appended as a whole 8-byte word (a fixed-size copy, where `BITS` bytes would be a
/// call to memcpy), then cut back to its `BITS` bytes.
fn pack<const BITS: u32>(symbols: &[u8], out: &mut Vec<u8>) {
    let mut groups = symbols.chunks_exact(8);
    for group in &mut groups {
        let bytes = u64::from_le_bytes(group.try_into().expect("8 symbols"));
        out.extend_from_slice(&gather::<BITS>(bytes).to_le_bytes());
        out.truncate(out.len() - 8 + BITS as usize);
    }
    let mut last = [0u8; 8];
    last[..groups.remainder().len()].copy_from_slice(groups.remainder());
    out.extend_from_slice(&gather::<BITS>(u64::from_le_bytes(last)).to_le_bytes());
}

/// Decodes a packed body into `out`, every symbol of the stream.
pub(crate) fn decode(body: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let (&bits, packed) = body.split_first().ok_or(Error::Truncated {
        what: "packed symbol width",
        needed: 1,
        available: 0,
    })?;
    let bits = u32::from(bits);
    if !(1..8).contains(&bits) {
        return Err(Error::PackedWidth(bits));
    }
    if body.len() != body_len(out.len(), bits) {
        return Err(Error::RawLength {
            got: packed.len(),
            expected: body_len(out.len(), bits) - 1,
        });
    }
    match bits {
        1 => unpack::<1>(packed, out),
        2 => unpack::<2>(packed, out),
        3 => unpack::<3>(packed, out),
        4 => unpack::<4>(packed, out),
        5 => unpack::<5>(packed, out),
        6 => unpack::<6>(packed, out),
        _ => unpack::<7>(packed, out),
    }
    let used_bits = (out.len() * bits as usize) % 8;
    match packed.last() {
        Some(&last) if used_bits > 0 && last >> used_bits != 0 => Err(Error::AnsStream(
            "packed stream has bits set past its last symbol",
        )),
        _ => Ok(()),
    }
}

/// Unpacks `out.len()` symbols of `BITS` bits each: eight from each `BITS` bytes, read as one word, spread to
/// a byte each ([`spread`]) and stored as one word.
fn unpack<const BITS: u32>(packed: &[u8], out: &mut [u8]) {
    let step = BITS as usize;
    // Groups of eight whose word can be read as eight whole bytes of `packed`; the last one or two cannot.
    let readable = match packed.len() {
        len if len >= 8 => (len - 8) / step + 1,
        _ => 0,
    };
    let word_groups = (out.len() / 8).min(readable);
    let (fast, rest) = out.split_at_mut(word_groups * 8);
    for (index, group) in fast.chunks_exact_mut(8).enumerate() {
        let word = u64::from_le_bytes(packed[index * step..][..8].try_into().expect("8 bytes"));
        group.copy_from_slice(&spread::<BITS>(word).to_le_bytes());
    }
    for (group, bytes) in rest
        .chunks_mut(8)
        .zip(packed[word_groups * step..].chunks(step))
    {
        let mut word = [0u8; 8];
        word[..bytes.len()].copy_from_slice(bytes);
        let spread = spread::<BITS>(u64::from_le_bytes(word)).to_le_bytes();
        group.copy_from_slice(&spread[..group.len()]);
    }
}

/// The low `8 * BITS` bits of `word`, eight fields of `BITS` bits, spread to the eight bytes of the result, in
/// three halvings: four fields to each 32-bit half, two to each 16-bit quarter, one to each byte. Twelve
/// operations and one store, where extracting each field and storing it took twenty-four and eight.
fn spread<const BITS: u32>(word: u64) -> u64 {
    let halves = word & low_bits(4 * BITS) | (word >> (4 * BITS) & low_bits(4 * BITS)) << 32;
    let quarters_mask = every(32, low_bits(2 * BITS));
    let quarters = halves & quarters_mask | (halves >> (2 * BITS) & quarters_mask) << 16;
    let bytes_mask = every(16, low_bits(BITS));
    quarters & bytes_mask | (quarters >> BITS & bytes_mask) << 8
}

/// Inverse of [`spread`]: eight bytes, each below `2^BITS`, gathered into the low `8 * BITS` bits.
fn gather<const BITS: u32>(bytes: u64) -> u64 {
    let pairs = bytes & every(16, 0xff) | (bytes >> 8 & every(16, 0xff)) << BITS;
    let quads = pairs & every(32, 0xffff) | (pairs >> 16 & every(32, 0xffff)) << (2 * BITS);
    quads & 0xffff_ffff | (quads >> 32) << (4 * BITS)
}

/// A mask of the low `bits` bits.
const fn low_bits(bits: u32) -> u64 {
    (1 << bits) - 1
}

/// `pattern` repeated every `period` bits across a word.
const fn every(period: u32, pattern: u64) -> u64 {
    let mut repeated = 0;
    let mut shift = 0;
    while shift < 64 {
        repeated |= pattern << shift;
        shift += period;
    }
    repeated
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::test_symbols::generator;

    #[test]
    fn every_width_and_length_round_trips() {
        let mut next = generator(9);
        for bits in 1..8u32 {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4099] {
                let symbols: Vec<u8> = (0..len)
                    .map(|_| (next() >> 40) as u8 >> (8 - bits))
                    .collect();
                let mut body = Vec::new();
                encode(&symbols, bits, &mut body);
                assert_eq!(
                    body.len(),
                    body_len(len, bits),
                    "{bits} bits, {len} symbols"
                );
                let mut out = vec![0xaa; len];
                decode(&body, &mut out).unwrap();
                assert_eq!(out, symbols, "{bits} bits, {len} symbols");
            }
        }
    }

    #[test]
    fn spreading_and_gathering_match_the_bit_string() {
        let mut next = generator(4);
        for _ in 0..100 {
            let word = next();
            fn check<const BITS: u32>(word: u64) {
                let packed = word & low_bits(8 * BITS);
                let spread = spread::<BITS>(packed).to_le_bytes();
                for (i, &byte) in spread.iter().enumerate() {
                    assert_eq!(
                        u64::from(byte),
                        packed >> (i as u32 * BITS) & low_bits(BITS)
                    );
                }
                assert_eq!(gather::<BITS>(u64::from_le_bytes(spread)), packed);
            }
            check::<1>(word);
            check::<2>(word);
            check::<3>(word);
            check::<4>(word);
            check::<5>(word);
            check::<6>(word);
            check::<7>(word);
        }
    }

    #[test]
    fn the_width_is_the_widest_symbol() {
        let mut histogram = [0u32; 256];
        histogram[0] = 5;
        assert_eq!(width(&histogram), 1);
        histogram[1] = 5;
        assert_eq!(width(&histogram), 1);
        histogram[3] = 5;
        assert_eq!(width(&histogram), 2);
        histogram[127] = 1;
        assert_eq!(width(&histogram), 7);
        histogram[128] = 1;
        assert_eq!(width(&histogram), 8);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let mut body = Vec::new();
        encode(&[1, 2, 3, 3, 0], 2, &mut body);
        let mut out = [0; 5];
        for bad in [
            vec![],                           // no width
            vec![0, 0, 0],                    // width 0
            vec![8, 1, 2, 3, 4, 5],           // a whole byte
            body[..body.len() - 1].to_vec(),  // short
            [body.as_slice(), &[0]].concat(), // long
            {
                let mut high = body.clone();
                *high.last_mut().unwrap() |= 0x80; // a bit past the last symbol
                high
            },
        ] {
            assert!(decode(&bad, &mut out).is_err(), "{bad:?}");
        }
    }
}
