//! Canonical, length-limited Huffman coding of byte streams.
//!
//! Body layout: the code-length table, then three `u32 LE` byte lengths of sub-streams 0..2, then four
//! bit-streams back to back. Sub-stream `k` codes the `k`-th quarter of the symbols; the decoder runs the four
//! in lockstep so their table lookups overlap in the CPU instead of waiting on one another.
//!
//! Bits are written least-significant first and codes are stored bit-reversed, so the decoder peeks the
//! next code with a mask and one table lookup. Codes are at most [`MAX_CODE_LEN`] bits, which keeps the
//! table at 2^11 entries (4 KiB, resident in L1) and lets one 64-bit refill serve five symbols.
//!
//! Code-length table: `first symbol: u8`, `last symbol: u8`, then one nibble per symbol in
//! `first..=last` (low nibble first), the code length or 0 for an absent symbol.

use super::bits::{write_bit_streams, BitReader, BitWriter};
use super::take;
use crate::Error;

/// Longest code, in bits.
pub const MAX_CODE_LEN: u32 = 11;
const TABLE_SIZE: usize = 1 << MAX_CODE_LEN;
const TABLE_MASK: u64 = TABLE_SIZE as u64 - 1;
const SUB_STREAMS: usize = 4;

/// A prefix code: one length per symbol (0 for symbols that do not occur).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    lengths: [u8; 256],
}

impl Code {
    /// The optimal code for `histogram` whose lengths do not exceed [`MAX_CODE_LEN`]. At least one symbol
    /// must occur.
    pub fn from_histogram(histogram: &[u32; 256]) -> Code {
        Code {
            lengths: limited_lengths(histogram),
        }
    }

    /// The block body size this code gives for `histogram`, table and framing included.
    pub fn coded_len(&self, histogram: &[u32; 256]) -> usize {
        let bits: u64 = histogram
            .iter()
            .zip(&self.lengths)
            .map(|(&count, &len)| u64::from(count) * u64::from(len))
            .sum();
        let (first, last) = self.symbol_range();
        body_len(bits, first, last)
    }

    /// A lower bound on `Code::from_histogram(histogram).coded_len(histogram)`, at a fraction of its cost:
    /// the size an unlimited Huffman code would give, whose bits are the sum of the weights its merges make
    /// (two sorted queues, no tree). It settles the choice of coder wherever ANS beats even that, without the
    /// package-merge. At least one symbol must occur.
    pub fn coded_len_at_least(histogram: &[u32; 256]) -> usize {
        let mut leaves = [0u64; 256];
        let mut len = 0;
        for &count in histogram.iter().filter(|&&count| count > 0) {
            leaves[len] = u64::from(count);
            len += 1;
        }
        let leaves = &mut leaves[..len];
        leaves.sort_unstable();
        // Merged weights come out in nondecreasing order, so a second sorted queue holds them.
        let mut merged = [0u64; 256];
        let (mut next_leaf, mut next_merged, mut merged_len) = (0, 0, 0);
        // A lone symbol gets a 1-bit code.
        let mut bits = if len == 1 { leaves[0] } else { 0 };
        for _ in 1..len {
            let mut weight = 0;
            for _ in 0..2 {
                let leaf = leaves.get(next_leaf).copied().unwrap_or(u64::MAX);
                weight += if next_merged < merged_len && merged[next_merged] < leaf {
                    next_merged += 1;
                    merged[next_merged - 1]
                } else {
                    next_leaf += 1;
                    leaf
                };
            }
            merged[merged_len] = weight;
            merged_len += 1;
            bits += weight;
        }
        let first = histogram.iter().position(|&count| count > 0).unwrap_or(0);
        let last = histogram.iter().rposition(|&count| count > 0).unwrap_or(0);
        body_len(bits, first as u8, last as u8)
    }

    fn symbol_range(&self) -> (u8, u8) {
        let first = self.lengths.iter().position(|&len| len > 0).unwrap_or(0);
        let last = self.lengths.iter().rposition(|&len| len > 0).unwrap_or(0);
        (first as u8, last as u8)
    }

    /// Appends the block body (table, sub-stream lengths, sub-streams) coding `symbols`.
    pub fn encode(&self, symbols: &[u8], out: &mut Vec<u8>) {
        self.write_table(out);
        let codes = self.reversed_codes();
        let lengths_at = out.len();
        out.extend_from_slice(&[0; 4 * (SUB_STREAMS - 1)]);
        let quarter = symbols.len().div_ceil(SUB_STREAMS).max(1);
        let parts: [&[u8]; SUB_STREAMS] = std::array::from_fn(|k| {
            let rest = symbols.get(k * quarter..).unwrap_or_default();
            &rest[..quarter.min(rest.len())]
        });
        let lengths = write_bit_streams(out, quarter * MAX_CODE_LEN as usize, |writers| {
            encode_parts(&parts, &codes, writers)
        });
        for (k, &len) in lengths[..SUB_STREAMS - 1].iter().enumerate() {
            let len = u32::try_from(len).expect("sub-streams are smaller than 4 GiB");
            out[lengths_at + 4 * k..lengths_at + 4 * k + 4].copy_from_slice(&len.to_le_bytes());
        }
    }

    fn write_table(&self, out: &mut Vec<u8>) {
        let (first, last) = self.symbol_range();
        out.push(first);
        out.push(last);
        for pair in self.lengths[usize::from(first)..=usize::from(last)].chunks(2) {
            out.push(pair[0] | pair.get(1).map_or(0, |&high| high << 4));
        }
    }

    /// Reads a table written by `write_table`; returns the code and the bytes it took.
    fn read_table(body: &[u8]) -> Result<(Code, usize), Error> {
        let range = take(body, 0, 2, "Huffman table")?;
        let (first, last) = (usize::from(range[0]), usize::from(range[1]));
        if first > last {
            return Err(Error::InvalidTable("first symbol after last symbol"));
        }
        let count = last - first + 1;
        let nibbles = take(body, 2, count.div_ceil(2), "Huffman table")?;
        let mut lengths = [0u8; 256];
        for (i, len) in lengths[first..=last].iter_mut().enumerate() {
            *len = (nibbles[i / 2] >> (4 * (i % 2))) & 0x0f;
        }
        let code = Code { lengths };
        code.check_kraft()?;
        Ok((code, 2 + nibbles.len()))
    }

    /// A decodable code has lengths of at most `MAX_CODE_LEN`, at least one symbol, and a Kraft sum of at
    /// most one (an incomplete code is allowed; its unused table slots decode as length-0 sentinels).
    fn check_kraft(&self) -> Result<(), Error> {
        let mut kraft = 0u32;
        for &len in &self.lengths {
            if u32::from(len) > MAX_CODE_LEN {
                return Err(Error::InvalidTable("code length over the limit"));
            }
            if len > 0 {
                kraft += 1 << (MAX_CODE_LEN - u32::from(len));
            }
        }
        match kraft {
            0 => Err(Error::InvalidTable("no symbols")),
            k if k > TABLE_SIZE as u32 => {
                Err(Error::InvalidTable("lengths over-subscribe the code space"))
            }
            _ => Ok(()),
        }
    }

    /// Canonical codes (assigned in order of length, then symbol), bit-reversed for LSB-first streams.
    /// Each entry is `code | length << 16`.
    fn reversed_codes(&self) -> [u32; 256] {
        let mut count_per_len = [0u32; MAX_CODE_LEN as usize + 1];
        for &len in &self.lengths {
            count_per_len[usize::from(len)] += 1;
        }
        count_per_len[0] = 0;
        let mut next_code = [0u32; MAX_CODE_LEN as usize + 2];
        for len in 1..=MAX_CODE_LEN as usize {
            next_code[len + 1] = (next_code[len] + count_per_len[len]) << 1;
        }
        let mut codes = [0u32; 256];
        for (symbol, &len) in self.lengths.iter().enumerate() {
            if len > 0 {
                let code = next_code[usize::from(len)];
                next_code[usize::from(len)] += 1;
                codes[symbol] =
                    (code.reverse_bits() >> (32 - u32::from(len))) | u32::from(len) << 16;
            }
        }
        codes
    }

    /// One-symbol decoding table indexed by the next `MAX_CODE_LEN` stream bits: `symbol | length << 8`,
    /// length 0 for bit patterns no code starts with (possible only in an incomplete code).
    fn single_table(&self) -> Box<[u16; TABLE_SIZE]> {
        let mut table = Box::new([0u16; TABLE_SIZE]);
        for (symbol, &code) in self.reversed_codes().iter().enumerate() {
            let len = code >> 16;
            if len == 0 {
                continue;
            }
            let entry = symbol as u16 | (len as u16) << 8;
            let mut index = (code & 0xffff) as usize;
            while index < TABLE_SIZE {
                table[index] = entry;
                index += 1 << len;
            }
        }
        table
    }
}

/// Decoding tables: one lookup of the next `MAX_CODE_LEN` bits yields every whole code among them, up to
/// three. Exponent streams average two to three bits a code, so this cuts lookups per symbol to about a third.
struct DecodeTables {
    /// `s0 | s1 << 8 | s2 << 16 | count << 24 | bits << 26`: the symbols, how many are valid, bits consumed.
    /// Patterns no code starts with decode as one symbol 0 of `MAX_CODE_LEN` bits, so that a corrupt stream
    /// still makes progress and then fails the length check at its end.
    multi: Box<[u32; TABLE_SIZE]>,
    /// One symbol per lookup, for the last few symbols of a sub-stream.
    single: Box<[u16; TABLE_SIZE]>,
}

impl DecodeTables {
    fn new(code: &Code) -> DecodeTables {
        let single = code.single_table();
        let mut multi = Box::new([0u32; TABLE_SIZE]);
        for (index, entry) in multi.iter_mut().enumerate() {
            let (mut symbols, mut count, mut used) = (0u32, 0u32, 0u32);
            while count < MAX_SYMBOLS_PER_LOOKUP {
                // The bits after `used` are known only up to bit MAX_CODE_LEN; above, the index reads zeros,
                // so a code counts only if it ends within the known bits.
                let next = single[index >> used];
                let len = u32::from(next >> 8);
                if len == 0 || used + len > MAX_CODE_LEN {
                    break;
                }
                symbols |= u32::from(next & 0xff) << (8 * count);
                count += 1;
                used += len;
            }
            *entry = if count == 0 {
                1 << 24 | MAX_CODE_LEN << 26
            } else {
                symbols | count << 24 | used << 26
            };
        }
        DecodeTables { multi, single }
    }
}

/// The body size of a block whose code spends `bits` on its symbols, `first..=last` in its table.
fn body_len(bits: u64, first: u8, last: u8) -> usize {
    let table_len = 2 + (usize::from(last - first) + 2) / 2;
    // Each sub-stream may end in a partly filled byte.
    table_len + 4 * (SUB_STREAMS - 1) + (bits / 8) as usize + SUB_STREAMS
}

const MAX_SYMBOLS_PER_LOOKUP: u32 = 3;
/// Lookups per refill: a refill leaves at least 56 bits, five lookups take at most 55.
const LOOKUPS_PER_REFILL: usize = 5;
/// Output room one round of lookups needs: each lookup stores 4 bytes and advances at most 3.
const ROUND_ROOM: usize = LOOKUPS_PER_REFILL * MAX_SYMBOLS_PER_LOOKUP as usize + 1;

/// Optimal code lengths of at most `MAX_CODE_LEN` bits, by package-merge (Larmore and Hirschberg).
///
/// Coin-collector view: every symbol offers one coin of its weight at each of the `MAX_CODE_LEN` levels;
/// packaging pairs of the cheapest items level by level and keeping the cheapest `2n - 2` items of the last
/// level picks the optimal lengths, a symbol's length being how many of its coins were kept. A cheap greedy
/// repair of an unlimited Huffman code costs measurably more on the flatter streams (F16 exponent with
/// mantissa bits), so the exact algorithm is worth its few microseconds.
fn limited_lengths(histogram: &[u32; 256]) -> [u8; 256] {
    #[derive(Clone, Copy)]
    enum Item {
        Leaf(u8),
        Package(usize, usize),
    }
    let mut leaves: Vec<(u64, u8)> = histogram
        .iter()
        .enumerate()
        .filter(|(_, &count)| count > 0)
        .map(|(symbol, &count)| (u64::from(count), symbol as u8))
        .collect();
    let mut lengths = [0u8; 256];
    if let [(_, symbol)] = leaves[..] {
        lengths[usize::from(symbol)] = 1;
        return lengths;
    }
    leaves.sort_unstable();

    let mut items: Vec<Item> = leaves
        .iter()
        .map(|&(_, symbol)| Item::Leaf(symbol))
        .collect();
    let leaf_list: Vec<(u64, usize)> = leaves
        .iter()
        .enumerate()
        .map(|(id, &(weight, _))| (weight, id))
        .collect();
    let mut list = leaf_list.clone();
    for _ in 1..MAX_CODE_LEN {
        let packages: Vec<(u64, usize)> = list
            .chunks_exact(2)
            .map(|pair| {
                items.push(Item::Package(pair[0].1, pair[1].1));
                (pair[0].0 + pair[1].0, items.len() - 1)
            })
            .collect();
        // Merge the leaves with the packages by weight (leaves first on ties, for shorter codes on them).
        let mut merged = Vec::with_capacity(leaf_list.len() + packages.len());
        let (mut l, mut p) = (0, 0);
        while l < leaf_list.len() || p < packages.len() {
            if p == packages.len() || (l < leaf_list.len() && leaf_list[l].0 <= packages[p].0) {
                merged.push(leaf_list[l]);
                l += 1;
            } else {
                merged.push(packages[p]);
                p += 1;
            }
        }
        list = merged;
    }
    let mut stack: Vec<usize> = list[..2 * leaves.len() - 2]
        .iter()
        .map(|&(_, id)| id)
        .collect();
    while let Some(id) = stack.pop() {
        match items[id] {
            Item::Leaf(symbol) => lengths[usize::from(symbol)] += 1,
            Item::Package(a, b) => stack.extend([a, b]),
        }
    }
    lengths
}

/// Puts each part into its own bit-stream. (Putting the four in lockstep was measured 8% slower: the coder
/// is bound by instruction count, and four writers spill registers.)
fn encode_parts(
    parts: &[&[u8]; SUB_STREAMS],
    codes: &[u32; 256],
    writers: &mut [BitWriter; SUB_STREAMS],
) {
    const SYMBOLS_PER_FLUSH: usize = 4; // 4 codes of <= 11 bits plus <= 7 pending bits fit in 64 bits.
    for (part, bits) in parts.iter().zip(writers) {
        for group in part.chunks(SYMBOLS_PER_FLUSH) {
            for &symbol in group {
                let code = codes[usize::from(symbol)];
                bits.put(code & 0xffff, code >> 16);
            }
            bits.flush();
        }
    }
}

impl BitReader<'_> {
    /// Decodes one symbol (for the tails of sub-streams).
    #[inline(always)]
    fn decode_one(&mut self, table: &[u16; TABLE_SIZE]) -> u8 {
        let entry = table[(self.bits & TABLE_MASK) as usize];
        self.consume(u32::from(entry >> 8));
        entry as u8
    }

    /// One multi-symbol lookup into `out[*pos..]`, which must have room for 4 bytes.
    #[inline(always)]
    fn lookup(&mut self, table: &[u32; TABLE_SIZE], out: &mut [u8], pos: &mut usize) {
        let entry = table[(self.bits & TABLE_MASK) as usize];
        // Stores all three symbol slots; the ones past `count` are overwritten by later symbols.
        out[*pos..*pos + 4].copy_from_slice(&entry.to_le_bytes());
        *pos += (entry >> 24 & 3) as usize;
        self.consume(entry >> 26);
    }

    /// A stream is intact when decoding it consumed its last byte but not beyond it.
    fn check_end(&self) -> Result<(), Error> {
        let consumed_bits = self.consumed_bits();
        if consumed_bits.div_ceil(8) == self.data.len() as u64 {
            Ok(())
        } else {
            Err(Error::StreamLength {
                expected_bytes: self.data.len(),
                consumed_bits,
            })
        }
    }
}

/// Decodes a block body written by [`Code::encode`] into `out` (exactly the original symbol count).
pub fn decode(body: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let (code, table_len) = Code::read_table(body)?;
    let lengths = take(
        body,
        table_len,
        4 * (SUB_STREAMS - 1),
        "Huffman sub-stream lengths",
    )?;
    let mut rest = &body[table_len + lengths.len()..];
    let mut streams = [&[][..]; SUB_STREAMS];
    for (k, len) in lengths.chunks_exact(4).enumerate() {
        let len = u32::from_le_bytes(len.try_into().expect("chunks of 4")) as usize;
        streams[k] = take(rest, 0, len, "Huffman sub-stream")?;
        rest = &rest[len..];
    }
    streams[SUB_STREAMS - 1] = rest;

    let quarter = out.len().div_ceil(SUB_STREAMS);
    let (out0, tail) = out.split_at_mut(quarter.min(out.len()));
    let (out1, tail) = tail.split_at_mut(quarter.min(tail.len()));
    let (out2, out3) = tail.split_at_mut(quarter.min(tail.len()));
    let mut outs = [out0, out1, out2, out3];
    let mut readers = streams.map(BitReader::new);
    let tables = DecodeTables::new(&code);
    let multi = &*tables.multi;

    // Lockstep over the four sub-streams while all have room for a round: the lookups of one step are
    // independent of one another, so the CPU overlaps their latencies.
    let [o0, o1, o2, o3] = &mut outs;
    let [r0, r1, r2, r3] = &mut readers;
    let [mut p0, mut p1, mut p2, mut p3] = [0usize; SUB_STREAMS];
    while o0.len() - p0 >= ROUND_ROOM
        && o1.len() - p1 >= ROUND_ROOM
        && o2.len() - p2 >= ROUND_ROOM
        && o3.len() - p3 >= ROUND_ROOM
    {
        r0.refill();
        r1.refill();
        r2.refill();
        r3.refill();
        for _ in 0..LOOKUPS_PER_REFILL {
            r0.lookup(multi, o0, &mut p0);
            r1.lookup(multi, o1, &mut p1);
            r2.lookup(multi, o2, &mut p2);
            r3.lookup(multi, o3, &mut p3);
        }
    }
    let positions = [p0, p1, p2, p3];
    for ((reader, out), mut pos) in readers.iter_mut().zip(outs.iter_mut()).zip(positions) {
        let pos = &mut pos;
        while out.len() - *pos >= ROUND_ROOM {
            reader.refill();
            for _ in 0..LOOKUPS_PER_REFILL {
                reader.lookup(multi, out, pos);
            }
        }
        for group in out[*pos..].chunks_mut(LOOKUPS_PER_REFILL) {
            reader.refill();
            for symbol in group {
                *symbol = reader.decode_one(&tables.single);
            }
        }
        reader.check_end()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::histogram;
    use proptest::prelude::*;

    fn kraft_sum(code: &Code) -> u32 {
        code.lengths
            .iter()
            .filter(|&&len| len > 0)
            .map(|&len| 1 << (MAX_CODE_LEN - u32::from(len)))
            .sum()
    }

    fn round_trip(symbols: &[u8]) {
        let code = Code::from_histogram(&histogram(symbols));
        let mut body = Vec::new();
        code.encode(symbols, &mut body);
        assert_eq!(
            body.len(),
            code.coded_len(&histogram(symbols)).min(body.len()),
            "estimate is an upper bound"
        );
        let mut out = vec![0; symbols.len()];
        decode(&body, &mut out).unwrap();
        assert_eq!(out, symbols);
    }

    #[test]
    fn fibonacci_weights_hit_the_length_limit_and_still_decode() {
        // Fibonacci counts give the deepest possible tree: unlimited lengths would reach 20+ bits.
        let mut symbols = Vec::new();
        let (mut a, mut b) = (1usize, 1usize);
        for symbol in 0..25u8 {
            symbols.extend(std::iter::repeat_n(symbol, a));
            (a, b) = (b, a + b);
        }
        let code = Code::from_histogram(&histogram(&symbols));
        assert_eq!(code.lengths.iter().copied().max(), Some(MAX_CODE_LEN as u8));
        assert!(kraft_sum(&code) <= TABLE_SIZE as u32);
        round_trip(&symbols);
    }

    #[test]
    fn all_256_symbols_round_trip() {
        let symbols: Vec<u8> = (0..=255u8)
            .flat_map(|s| std::iter::repeat_n(s, usize::from(s) + 1))
            .collect();
        round_trip(&symbols);
    }

    #[test]
    fn lengths_match_textbook_huffman() {
        let mut histogram = [0u32; 256];
        histogram[..4].copy_from_slice(&[8, 4, 2, 2]);
        assert_eq!(Code::from_histogram(&histogram).lengths[..4], [1, 2, 3, 3]);
    }

    #[test]
    fn the_size_bound_is_exact_below_the_length_limit_and_a_bound_above_it() {
        let mut textbook = [0u32; 256];
        textbook[7..11].copy_from_slice(&[8, 4, 2, 2]);
        assert_eq!(
            Code::coded_len_at_least(&textbook),
            Code::from_histogram(&textbook).coded_len(&textbook)
        );
        let mut lone = [0u32; 256];
        lone[200] = 1000;
        assert_eq!(
            Code::coded_len_at_least(&lone),
            Code::from_histogram(&lone).coded_len(&lone)
        );
        // Fibonacci counts: unlimited lengths would reach 20+ bits, so the limited code is larger.
        let mut fibonacci = [0u32; 256];
        let (mut a, mut b) = (1, 1);
        for count in &mut fibonacci[..25] {
            *count = a;
            (a, b) = (b, a + b);
        }
        assert!(
            Code::coded_len_at_least(&fibonacci)
                < Code::from_histogram(&fibonacci).coded_len(&fibonacci)
        );
    }

    #[test]
    fn corrupt_tables_are_rejected() {
        let mut out = [0u8; 8];
        assert_eq!(
            decode(&[5, 4], &mut out),
            Err(Error::InvalidTable("first symbol after last symbol"))
        );
        // Two symbols of length 1 and one more of length 1 over-subscribe the code space.
        assert_eq!(
            decode(&[0, 2, 0x11, 0x01], &mut out),
            Err(Error::InvalidTable("lengths over-subscribe the code space"))
        );
        assert_eq!(
            decode(&[0, 1, 0x00], &mut out),
            Err(Error::InvalidTable("no symbols"))
        );
        assert_eq!(
            decode(&[0, 0, 0x0c], &mut out),
            Err(Error::InvalidTable("code length over the limit"))
        );
    }

    #[test]
    fn a_stream_that_ends_early_is_an_error() {
        let symbols: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 13) as u8).collect();
        let code = Code::from_histogram(&histogram(&symbols));
        let mut body = Vec::new();
        code.encode(&symbols, &mut body);
        body.pop();
        let mut out = vec![0; symbols.len()];
        assert!(matches!(
            decode(&body, &mut out),
            Err(Error::StreamLength { .. })
        ));
    }

    proptest! {
        #[test]
        fn random_alphabets_round_trip(
            weights in prop::collection::vec(1u32..1000, 2..=256),
            len in 1usize..30_000,
            seed in any::<u64>(),
        ) {
            let symbols = crate::entropy::test_symbols::weighted(&weights, len, seed);
            let code = Code::from_histogram(&histogram(&symbols));
            prop_assert!(kraft_sum(&code) <= TABLE_SIZE as u32);
            prop_assert!(code.lengths.iter().all(|&l| u32::from(l) <= MAX_CODE_LEN));
            let counts = histogram(&symbols);
            prop_assert!(Code::coded_len_at_least(&counts) <= code.coded_len(&counts));
            round_trip(&symbols);
        }
    }
}
