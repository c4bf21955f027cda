//! rANS over pairs of symbols (block mode 11): one table lookup decodes two exponents.
//!
//! A flat BF16 restore was three quarters rANS decoding, and the decoder runs at the gather's throughput, one
//! table entry a cycle: a symbol costs a gathered entry whatever its entropy. Exponent streams spend nearly
//! all their symbols on a dozen values, so two symbols' ranks among the stream's 15 commonest fit in one byte,
//! and one entry decodes both: the symbols become two nibbles, looked up in a 16-byte table with a byte
//! shuffle. Symbols outside the 15 (the far tail of small exponents, a few in ten thousand) take rank 15 and
//! are stored beside the code, in order; the vector decoders see rank 15 in a register's 32 ranks with one
//! compare and put those symbols in a cold path. Adjacent weights share their row's scale, so the pairs'
//! entropy is a little below twice the symbols', which makes up part of what 256 pair frequencies in a
//! 4096-entry table lose to rounding and to their larger table.
//!
//! Body layout: the symbols of ranks 0 to 14 (15 bytes), the escape count (`u32` LE), the escaped symbols in
//! stream order, then a 64-lane rANS body ([`super::encode`]) of the pairs: symbols `2i` and `2i + 1` are
//! pair `i`, the first's rank in the low nibble; an odd stream's last pair has rank 0 as its second.

use super::{Lanes, Output, Path};
use crate::chunk::room;
use crate::entropy::tans::{Frequencies, MAX_TABLE_LOG};
use crate::entropy::{histogram, take};
use crate::Error;
use std::cell::RefCell;

/// Streams shorter than this are coded one symbol at a time: a 64-lane block must be long for its states,
/// and pairs must be many for 256 frequencies.
pub const MIN_SYMBOLS: usize = 1 << 16;

/// The rank of symbols outside the table: stored as they are.
pub(super) const ESCAPE: u8 = 15;

/// How a paired body's ranks become symbols: ranks 0 to 14 through the table, rank 15 the next escaped
/// symbol.
#[derive(Debug, Default)]
pub(super) struct Ranks<'a> {
    /// The symbols of ranks 0 to 14; the 16th entry, which rank 15 looks up before its escape replaces
    /// it, is 0.
    table: [u8; 16],
    escapes: &'a [u8],
    next: usize,
    /// Whether more ranks escaped than symbols were stored.
    overrun: bool,
}

impl Ranks<'_> {
    /// The table, for the vector decoders' byte shuffles.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn table(&self) -> &[u8; 16] {
        &self.table
    }

    /// The symbol of `rank` (below 16), taking the next escape for rank 15.
    pub(super) fn symbol(&mut self, rank: u8) -> u8 {
        match rank {
            ESCAPE => self.escape(),
            _ => self.table[usize::from(rank)],
        }
    }

    /// The next escaped symbol; 0, and the stream marked corrupt, past the last.
    pub(super) fn escape(&mut self) -> u8 {
        match self.escapes.get(self.next) {
            Some(&symbol) => {
                self.next += 1;
                symbol
            }
            None => {
                self.overrun = true;
                0
            }
        }
    }
}

/// Streams with more than one symbol in this many outside the 15 commonest are not paired: each escape costs
/// a stored byte and a trip through the decoders' cold path.
const MAX_ESCAPE_SHARE: usize = 256;

thread_local! {
    /// Each thread's pair stream and escaped symbols, reused from block to block.
    static PAIRS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Appends a pair body coding `symbols`, whose histogram is `histogram`, and returns `true`, if it takes at
/// most `budget` bytes; otherwise appends nothing and returns `false`. Streams of fewer than [`MIN_SYMBOLS`],
/// or with more than one symbol in 256 outside the commonest 15, are not tried.
pub fn encode_within(
    symbols: &[u8],
    histogram: &[u32; 256],
    budget: usize,
    out: &mut Vec<u8>,
) -> bool {
    if symbols.len() < MIN_SYMBOLS {
        return false;
    }
    let table = commonest(histogram);
    let covered: u64 = table
        .iter()
        .map(|&symbol| u64::from(histogram[usize::from(symbol)]))
        .sum();
    let escapes = symbols.len() - covered as usize;
    escapes * MAX_ESCAPE_SHARE <= symbols.len() && encode_ranked(symbols, &table, budget, out)
}

/// The 15 symbols with the highest counts in `histogram`, highest first (the lower symbol first among equal
/// counts).
fn commonest(histogram: &[u32; 256]) -> [u8; 15] {
    let mut by_count: [u8; 256] = std::array::from_fn(|symbol| symbol as u8);
    by_count.sort_by_key(|&symbol| std::cmp::Reverse(histogram[usize::from(symbol)]));
    by_count[..15].try_into().expect("15 symbols")
}

/// [`encode_within`] for a stream of any length and any share of escapes, ranked by `table`; `false` also
/// where every pair is the same (a run, which rANS cannot code).
fn encode_ranked(symbols: &[u8], table: &[u8; 15], budget: usize, out: &mut Vec<u8>) -> bool {
    let mut ranks = [ESCAPE; 256];
    for (rank, &symbol) in table.iter().enumerate() {
        ranks[usize::from(symbol)] = rank as u8;
    }
    PAIRS.with(|buffers| {
        let (pairs, escaped) = &mut *buffers.borrow_mut();
        let pairs = room(pairs, symbols.len().div_ceil(2));
        escaped.clear();
        let whole = symbols.len() / 2;
        let (symbols_whole, pairs_whole) = (&symbols[..2 * whole], &mut pairs[..whole]);
        let vectorised =
            pair_ranks_on(Path::fastest(), &ranks, symbols_whole, pairs_whole, escaped);
        pair_ranks(
            &ranks,
            &symbols_whole[vectorised..],
            &mut pairs_whole[vectorised / 2..],
            escaped,
        );
        if let Some(&last) = symbols.get(2 * whole) {
            pairs[whole] = ranks[usize::from(last)];
            if pairs[whole] == ESCAPE {
                escaped.push(last);
            }
        }
        let pair_histogram = histogram::histogram(pairs);
        if pair_histogram.iter().filter(|&&count| count > 0).count() < 2 {
            // One pair value throughout: a run codes it, and rANS cannot.
            return false;
        }
        let frequencies = Frequencies::normalize(&pair_histogram, MAX_TABLE_LOG);
        let len = table.len()
            + 4
            + escaped.len()
            + 4 * Lanes::Wide.count()
            + frequencies.coded_len(&pair_histogram);
        if len > budget {
            return false;
        }
        out.extend_from_slice(table);
        out.extend_from_slice(&(escaped.len() as u32).to_le_bytes());
        out.extend_from_slice(escaped);
        super::encode(pairs, &frequencies, Lanes::Wide, out);
        true
    })
}

/// Writes pair `i` of `symbols` (an even count) as `pairs[i]`, the ranks of symbols `2i` and `2i + 1` in
/// `ranks` in its low and high nibble, and appends the symbols of rank [`ESCAPE`] to `escaped`, in order.
/// Batches of 64 pairs keep one flag for any escape in them, so that escapes are gathered only in the few
/// batches that hold them.
fn pair_ranks(ranks: &[u8; 256], symbols: &[u8], pairs: &mut [u8], escaped: &mut Vec<u8>) {
    for (pairs, symbols) in pairs.chunks_mut(64).zip(symbols.chunks(128)) {
        let mut any_escaped = false;
        for (pair, two) in pairs.iter_mut().zip(symbols.chunks_exact(2)) {
            let (first, second) = (ranks[usize::from(two[0])], ranks[usize::from(two[1])]);
            *pair = first | second << 4;
            any_escaped |= (first == ESCAPE) | (second == ESCAPE);
        }
        if any_escaped {
            escaped.extend(
                symbols
                    .iter()
                    .filter(|&&symbol| ranks[usize::from(symbol)] == ESCAPE),
            );
        }
    }
}

/// [`pair_ranks`] for the whole batches of 64 symbols at the start of `symbols` on `path`'s vector code, where
/// the CPU has AVX2 (without, BF16 compression is a quarter slower): 32 ranks looked up with a byte shuffle
/// for each high nibble the table's symbols have (exponents: two or three). Returns the symbols paired.
/// (AVX-512 VBMI's byte permutes, 64 ranks from the whole table at once, compressed MiniLM's BF16 file only 2%
/// faster.)
#[allow(unsafe_code)]
fn pair_ranks_on(
    path: Path,
    ranks: &[u8; 256],
    symbols: &[u8],
    pairs: &mut [u8],
    escaped: &mut Vec<u8>,
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if matches!(path, Path::Avx2 | Path::Avx512) && Path::has_avx2() {
        // SAFETY: the CPU has AVX2, as just checked.
        return unsafe { super::avx2::pair_ranks(ranks, symbols, pairs, escaped) };
    }
    let _ = (path, ranks, symbols, pairs, escaped);
    0
}

/// Decodes a body written by [`encode_within`] into `output` (exactly the original symbol count).
pub fn decode(body: &[u8], output: Output) -> Result<(), Error> {
    decode_on(Path::fastest(), body, output)
}

/// [`decode`] on `path`; every path gives the same result.
///
/// # Panics
/// If `output` joins FP8 pairs, whose symbols are never paired again.
pub fn decode_on(path: Path, body: &[u8], output: Output) -> Result<(), Error> {
    assert!(
        !matches!(output, Output::Fp8Pairs { .. }),
        "FP8 pairs are never paired again"
    );
    let mut table = [0; 16];
    table[..15].copy_from_slice(take(body, 0, 15, "pair table")?);
    let count = take(body, 15, 4, "escape count")?;
    let count = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
    let escapes = take(body, 19, count, "escaped symbols")?;
    let mut ranks = Ranks {
        table,
        escapes,
        next: 0,
        overrun: false,
    };
    super::decode_coded(
        path,
        &body[19 + count..],
        Lanes::Wide,
        Some(&mut ranks),
        output,
    )?;
    if ranks.overrun || ranks.next != escapes.len() {
        return Err(Error::AnsStream(
            "escaped symbols do not match the escape ranks",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::join;
    use super::super::tests::{decode_every_way, skewed};
    use super::*;
    use proptest::prelude::*;

    /// Codes `symbols` in pairs on every encoding path, which must write the same bytes (the pairing is the
    /// same on every CPU, and rANS's paths agree), and checks the pair body decodes back every way.
    fn round_trip(symbols: &[u8]) -> Vec<u8> {
        let table = commonest(&histogram::histogram(symbols));
        let mut body = Vec::new();
        if !encode_ranked(symbols, &table, usize::MAX, &mut body) {
            let pairs: std::collections::HashSet<_> = symbols.chunks(2).collect();
            assert!(
                pairs.len() < 2 || symbols.len() < 4,
                "only runs are refused"
            );
            assert!(body.is_empty());
            return body;
        }
        let decoded = decode_body(&body, symbols.len());
        assert!(decoded.unwrap() == symbols, "{} symbols", symbols.len());
        body
    }

    fn decode_body(body: &[u8], len: usize) -> Result<Vec<u8>, Error> {
        let kinds = [join::SYMBOLS, join::FIELDS16, join::FIELDS32];
        decode_every_way(len, &kinds, |path, output| decode_on(path, body, output))
    }

    /// Exponents with escapes: 15 symbols (every 16th symbol cycling through them all, so that on streams of
    /// a few thousand each outnumbers the escapes) and, where `escapes` says (odd and even positions, the
    /// vector steps and the scalar tail), five others, which fall outside the table.
    fn with_escapes(len: usize, escapes: &[usize]) -> Vec<u8> {
        let mut symbols: Vec<u8> = skewed(len, len as u64)
            .iter()
            .enumerate()
            .map(|(i, &s)| match i % 16 {
                15 => 100 + (i / 16 % 15) as u8,
                _ => 100 + s % 15,
            })
            .collect();
        for (k, &at) in escapes.iter().enumerate() {
            symbols[at % len] = [1, 2, 250, 251, 252][k % 5];
        }
        symbols
    }

    #[test]
    fn streams_round_trip_with_escapes_anywhere() {
        for len in [5, 31, 64, 129, 2047, 2048, 2049, 100_001] {
            for escapes in [
                &[][..],
                &[0],
                &[len - 1],
                &[1, 2, 3, 64, 65, 127, 128, 4000, 5],
            ] {
                round_trip(&with_escapes(len, escapes));
            }
        }
        // Every symbol of several vector steps escaped (the table then holds the 15 commonest of 20).
        let mut symbols = with_escapes(10_000, &[]);
        for (at, symbol) in symbols.iter_mut().enumerate().skip(256).take(512) {
            *symbol = 200 + (at % 5) as u8;
        }
        round_trip(&symbols);
    }

    #[test]
    fn long_exponent_streams_pair_within_their_budget() {
        let symbols = with_escapes(1 << 17, &[7, 9000, 100_000]);
        let histogram = histogram::histogram(&symbols);
        let mut body = Vec::new();
        assert!(!encode_within(
            &symbols[..1000],
            &histogram,
            usize::MAX,
            &mut body
        ));
        assert!(!encode_within(&symbols, &histogram, 1000, &mut body));
        assert!(body.is_empty(), "a refused stream appends nothing");
        assert!(encode_within(&symbols, &histogram, usize::MAX, &mut body));
        assert_eq!(decode_body(&body, symbols.len()).unwrap(), symbols);
        // Near the entropy of the symbols: pairs lose to rounding what they gain from adjacent symbols.
        crate::entropy::test_symbols::assert_near_entropy(&symbols, body.len(), 1.01, 2000.0);
    }

    #[test]
    fn vector_and_portable_pairing_agree() {
        let symbols = with_escapes(10_000, &[0, 1, 127, 128, 129, 5000, 9998]);
        let mut ranks = [ESCAPE; 256];
        for (rank, &symbol) in commonest(&histogram::histogram(&symbols))
            .iter()
            .enumerate()
        {
            ranks[usize::from(symbol)] = rank as u8;
        }
        let (mut portable, mut portable_escaped) = (vec![0; 5000], Vec::new());
        pair_ranks(&ranks, &symbols, &mut portable, &mut portable_escaped);
        for path in Path::available() {
            let (mut vector, mut vector_escaped) = (vec![0; 5000], Vec::new());
            let done = pair_ranks_on(path, &ranks, &symbols, &mut vector, &mut vector_escaped);
            pair_ranks(
                &ranks,
                &symbols[done..],
                &mut vector[done / 2..],
                &mut vector_escaped,
            );
            assert_eq!(vector, portable, "{path:?}");
            assert_eq!(vector_escaped, portable_escaped, "{path:?}");
        }
        assert_eq!(portable_escaped.len(), 7);
    }

    #[test]
    fn too_many_escapes_are_not_paired() {
        let symbols: Vec<u8> = (0..1u32 << 16).map(|i| (i * 7 % 40) as u8).collect();
        let histogram = histogram::histogram(&symbols);
        assert!(!encode_within(
            &symbols,
            &histogram,
            usize::MAX,
            &mut Vec::new()
        ));
    }

    #[test]
    fn damaged_bodies_are_errors() {
        let symbols = with_escapes(5000, &[10, 20, 4999]);
        let body = round_trip(&symbols);
        let len = symbols.len();
        assert!(decode_body(&body[..10], len).is_err());
        assert!(decode_body(&body[..body.len() - 2], len).is_err());
        assert!(decode_body(&body, len + 1).is_err());
        // One escaped symbol more, or fewer, than the ranks ask for.
        let count = u32::from_le_bytes(body[15..19].try_into().unwrap());
        for wrong in [count - 1, count + 1] {
            let mut damaged = body[..15].to_vec();
            damaged.extend(wrong.to_le_bytes());
            damaged.extend(&body[19..19 + count as usize]);
            damaged.extend([7].repeat(wrong.saturating_sub(count) as usize));
            damaged.extend(&body[19 + count as usize..][..]);
            if wrong < count {
                damaged.remove(19 + wrong as usize);
            }
            assert_eq!(
                decode_body(&damaged, len),
                Err(Error::AnsStream(
                    "escaped symbols do not match the escape ranks"
                ))
            );
        }
    }

    proptest! {
        #[test]
        fn random_alphabets_round_trip(
            weights in prop::collection::vec(1u32..1000, 2..=40),
            len in 2usize..5000,
            seed in any::<u64>(),
        ) {
            let mut symbols = crate::entropy::test_symbols::weighted(&weights, len, seed);
            symbols[0] = 0;
            symbols[1] = 1;
            round_trip(&symbols);
        }

        #[test]
        fn corrupt_bodies_never_panic_and_every_path_agrees(
            seed in any::<u64>(),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let symbols = with_escapes(3000, &[seed as usize, (seed >> 20) as usize]);
            let mut body = round_trip(&symbols);
            for &(at, bits) in &flips {
                let at = at % body.len();
                body[at] ^= bits;
            }
            let _ = decode_body(&body, symbols.len());
        }
    }
}
