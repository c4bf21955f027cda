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
    // Each group of eight symbols is appended as a whole 8-byte word (a fixed-size copy, where `bits` bytes
    // would be a call to memcpy), then cut back to its `bits` bytes.
    let word = |group: &[u8]| {
        group.iter().enumerate().fold(0u64, |word, (i, &symbol)| {
            word | u64::from(symbol) << (i as u32 * bits)
        })
    };
    let mut groups = symbols.chunks_exact(8);
    for group in &mut groups {
        out.extend_from_slice(&word(group).to_le_bytes());
        out.truncate(out.len() - 8 + bits as usize);
    }
    out.extend_from_slice(&word(groups.remainder()).to_le_bytes());
    out.truncate(len);
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

/// Unpacks `out.len()` symbols of `BITS` bits each: eight from each `BITS` bytes, read as one word (a
/// constant width lets the compiler turn the eight extractions into straight shifts and masks).
fn unpack<const BITS: usize>(packed: &[u8], out: &mut [u8]) {
    let mask = (1u64 << BITS) - 1;
    let spread = |word: u64, group: &mut [u8]| {
        for (i, symbol) in group.iter_mut().enumerate() {
            *symbol = (word >> (i * BITS) & mask) as u8;
        }
    };
    // Groups of eight whose word can be read as eight whole bytes of `packed`; the last one or two cannot.
    let readable = match packed.len() {
        len if len >= 8 => (len - 8) / BITS + 1,
        _ => 0,
    };
    let word_groups = (out.len() / 8).min(readable);
    let (fast, rest) = out.split_at_mut(word_groups * 8);
    for (index, group) in fast.chunks_exact_mut(8).enumerate() {
        let bytes = &packed[index * BITS..][..8];
        spread(
            u64::from_le_bytes(bytes.try_into().expect("8 bytes")),
            group,
        );
    }
    for (group, bytes) in rest
        .chunks_mut(8)
        .zip(packed[word_groups * BITS..].chunks(BITS))
    {
        let mut word = [0u8; 8];
        word[..bytes.len()].copy_from_slice(bytes);
        spread(u64::from_le_bytes(word), group);
    }
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
