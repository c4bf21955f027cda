//! Interleaved rANS with 16-bit words: tANS's compression for long streams, decoded 32 or 64 symbols at a
//! time with AVX-512 or AVX2.
//!
//! A tANS decoder reads a variable number of bits per symbol from a bit position that every symbol moves, a
//! serial chain of about a dozen instructions a symbol (0.9 G symbols/s here, however it is arranged). rANS
//! with 32-bit states and 16-bit words needs per symbol only a table lookup, a multiply and an add, and a
//! state reads either no word or one: 16 states stepping in lockstep are one AVX-512 register (two AVX2
//! ones), their lookups one gather, their word reads one load and one expand. A step is a chain of
//! dependent latencies (the gather's above all), so the lanes are what makes it fast: each group of 16 is a
//! chain of its own that the CPU overlaps with the others. Measured on MiniLM's BF16 exponents, the file
//! restored at 1.6 GB/s with 16 lanes and 2.2 GB/s with 32 (AVX2); with AVX-512 on Zen 4, its FP8 file
//! restores 13% faster with 64 lanes than with 32 (the coder alone, 26%). There the decoder runs at about
//! one gathered element a cycle, the gather's own throughput (gathering in halves of 8 changes nothing, and
//! 128 lanes gained the coder only 7% more). Lanes cost their states, 4 bytes each a block, so a block takes
//! [`Lanes::Wide`] where those cost at most 1% of it, [`Lanes::Narrow`] where 32 states do, and tANS where
//! neither does ([`Lanes::for_block`]). Since a lookup costs the same whatever it decodes, long exponent
//! streams are coded as pairs of ranks, two symbols a lookup ([`pairs`]).
//!
//! The encoder steps the same registers backwards through the symbols. Each symbol's count, cumulative
//! count and division constants sit in one 64-bit entry (scalar loads and inserts beat gathers, by a third
//! with AVX2), the division by the count is Granlund and Montgomery's multiply-and-shift on 32-bit lanes,
//! and the words a register sheds are compacted in one step: a byte shuffle from a table for 8 lanes (AVX2,
//! 1.6 G symbols/s), a compress and a word permute for 16 (AVX-512, 2.1 G symbols/s with 32 lanes). The
//! scalar encoder (0.65 G symbols/s) stays as the portable path and the reference the tests hold both to.
//!
//! Body layout: the frequency table (as tANS writes it, [`Frequencies`]), the `n` final states (`u32 LE`,
//! state 0 first; `n` is 32 or 64, given by the block's mode), then the word stream (`u16 LE` words, in the
//! order the decoder reads them). Symbol `i` belongs to state `i % n`. The decoder takes the symbols in order;
//! for each it looks up `slot = state mod 2^log`, whose symbol `s` owns slots `[cum_s, cum_s + f_s)`, emits
//! `s`, sets `state = f_s * (state >> log) + slot - cum_s`, and, if the state fell below 2^16, shifts in the
//! next word: `state = state << 16 | word`. An intact stream is consumed exactly and leaves every state at
//! 2^16.

use super::take;
use super::tans::Frequencies;
use crate::layout::{join_16, join_32, join_fp8_pair};
use crate::Error;
use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512;
pub mod pairs;

/// How many states a block interleaves, in groups of 16 (one AVX-512 register).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// 32 states: 128 bytes a block.
    Narrow,
    /// 64 states: 256 bytes a block, decoded a quarter faster than 32 on long blocks.
    Wide,
}

impl Lanes {
    /// Every width, widest first.
    pub const ALL: [Lanes; 2] = [Lanes::Wide, Lanes::Narrow];

    /// The number of states.
    pub const fn count(self) -> usize {
        match self {
            Lanes::Narrow => 32,
            Lanes::Wide => 64,
        }
    }

    /// The widest interleaving worth its states for a block of `symbols` that tANS would code in `tans_len`
    /// bytes, or `None` where tANS should code it. States must cost at most 1% of the block (at 0.2%,
    /// MiniLM's 384 x 384 BF16 tensors kept tANS, which decodes at half rANS's speed and now encodes slower
    /// too: at 1% the file restores 20% faster for 5 KB more in 30 MB). Skewed streams (per-channel signs:
    /// 143K symbols in 1.8 KB) code in few bytes but decode symbol by symbol, so a block of 32K symbols or
    /// more takes 32 lanes however short it codes (they decode it at least 20 us faster than tANS); 64 lanes
    /// would gain such a block only a quarter of that time for 128 bytes more, so they must pay by size.
    pub fn for_block(tans_len: usize, symbols: usize) -> Option<Lanes> {
        let states_pay = |lanes: Lanes| tans_len >= 100 * 4 * lanes.count();
        if states_pay(Lanes::Wide) {
            Some(Lanes::Wide)
        } else if states_pay(Lanes::Narrow) || symbols >= MANY_SYMBOLS {
            Some(Lanes::Narrow)
        } else {
            None
        }
    }
}

/// See [`Lanes::for_block`].
const MANY_SYMBOLS: usize = 1 << 15;

/// Whether a block of `symbols` that tANS would code in `tans_len` bytes is worth coding with rANS instead
/// ([`Lanes::for_block`]).
pub fn pays_for_its_states(tans_len: usize, symbols: usize) -> bool {
    Lanes::for_block(tans_len, symbols).is_some()
}

/// States live in `[LOWER, LOWER << 16)`; they start and end at `LOWER`.
const LOWER: u32 = 1 << 16;
/// Decoding tables have room for the finest frequency table, so that masked slots need no bounds check.
const TABLE_SIZE: usize = 1 << super::tans::MAX_TABLE_LOG;

/// How the encoder codes one symbol of count `f` and cumulative count `cum` (with `2^log` the table size):
/// a state `x` (below `limit`) becomes `(x / f) << log | x % f` plus `cum`, which is `x + (x / f) * (2^log -
/// f) + cum`; the division is a multiplication by `reciprocal` and a shift by `32 + log` (a hardware divide
/// took half the coding time).
#[derive(Debug, Clone, Copy, Default)]
struct SymbolCoder {
    /// `ceil(2^(32 + log) / f)`, so that `(x * reciprocal) >> (32 + log)` is exactly `x / f` for every state
    /// the coder sees (`x < limit`). The rounding adds `x * e / 2^(32 + log)` with `e < 1`, less than `1 / f`
    /// because `x * f < f^2 * 2^(32 - log) <= 2^(32 + log)`, while `x / f` falls at least `1 / f` short of
    /// the next integer. The product stays below 2^64: it is at most `x * 2^(32 + log) / f + x`, and
    /// `x / f < 2^(32 - log) - 1 / f` takes off more than the `x < 2^32` added. For `f = 1`, exactly `x`.
    reciprocal: u64,
    /// Above it, a state first sheds its low word, so that the coded state stays below 2^32.
    limit: u32,
    complement: u32,
    cum: u32,
}

thread_local! {
    /// Each thread's room for the words a block sheds (at most one a symbol, two bytes each, and
    /// [`ROOM_BELOW`] bytes under them), filled from the top down so that they end in the order the decoder
    /// reads them. Never cleared: the encoder writes a word at every symbol and keeps only the ones it counts.
    static WORD_ROOM: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Bytes of room below the words: the vector encoders store 16 bytes (AVX2) or 32 (AVX-512) at a time, of
/// which they keep the top ones.
const ROOM_BELOW: usize = 32;

/// Appends the body (frequencies, final states, words) coding `symbols` in `lanes`, of which every one must
/// have a nonzero count in `frequencies`, and none the whole table.
pub fn encode(symbols: &[u8], frequencies: &Frequencies, lanes: Lanes, out: &mut Vec<u8>) {
    encode_on(Path::fastest(), symbols, frequencies, lanes, out);
}

/// [`encode`] on `path`: every path writes the same bytes. A path the CPU cannot take codes on the portable
/// one.
pub fn encode_on(
    path: Path,
    symbols: &[u8],
    frequencies: &Frequencies,
    lanes: Lanes,
    out: &mut Vec<u8>,
) {
    match lanes {
        Lanes::Narrow => encode_with::<2>(path, symbols, frequencies, out),
        Lanes::Wide => encode_with::<4>(path, symbols, frequencies, out),
    }
}

/// [`encode_on`] in `16 * GROUPS` lanes. The encoder runs backwards, from the last symbol: the ragged last
/// step first, then the whole steps.
fn encode_with<const GROUPS: usize>(
    path: Path,
    symbols: &[u8],
    frequencies: &Frequencies,
    out: &mut Vec<u8>,
) {
    frequencies.write(out);
    let log = frequencies.log();
    let mut coders = [SymbolCoder::default(); 256];
    let mut cum = 0;
    for (coder, &count) in coders.iter_mut().zip(frequencies.counts()) {
        if count > 0 {
            let count = u32::from(count);
            *coder = SymbolCoder {
                reciprocal: (1u64 << (32 + log)).div_ceil(u64::from(count)),
                limit: count << (32 - log),
                complement: (1 << log) - count,
                cum,
            };
            cum += count;
        }
    }
    let mut states = [[LOWER; 16]; GROUPS];
    WORD_ROOM.with(|room| {
        let mut room = room.borrow_mut();
        let room_len = 2 * symbols.len() + ROOM_BELOW;
        if room.len() < room_len {
            room.resize(room_len, 0);
        }
        let room = &mut room[..room_len];
        let mut free = room_len;
        let whole = symbols.len() / (16 * GROUPS) * (16 * GROUPS);
        let lanes = states.as_flattened_mut();
        encode_scalar(&coders, log, lanes, &symbols[whole..], room, &mut free);
        let vectorised = vector_encode_steps(
            path,
            frequencies,
            &mut states,
            &symbols[..whole],
            room,
            &mut free,
        );
        let scalar_steps = if vectorised { 0 } else { whole };
        let lanes = states.as_flattened_mut();
        encode_scalar(
            &coders,
            log,
            lanes,
            &symbols[..scalar_steps],
            room,
            &mut free,
        );
        for state in states.as_flattened() {
            out.extend_from_slice(&state.to_le_bytes());
        }
        out.extend_from_slice(&room[free..]);
    });
}

/// Codes the whole steps of `steps` (a multiple of `16 * GROUPS` symbols) onto `states` on `path`'s vector
/// encoder, where the CPU has it; returns whether it did (else the caller codes them on the portable path).
#[allow(unsafe_code)]
fn vector_encode_steps<const GROUPS: usize>(
    path: Path,
    frequencies: &Frequencies,
    states: &mut [[u32; 16]; GROUPS],
    steps: &[u8],
    room: &mut [u8],
    free: &mut usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let log = frequencies.log();
        match path {
            Path::Avx512 if Path::has_avx512() => {
                let table = vector_symbol_table(frequencies);
                // SAFETY: AVX-512F, BW and VL are available, as just checked.
                unsafe { avx512::encode_steps(&table, log, states, steps, room, free) };
                return true;
            }
            Path::Avx2 if Path::has_avx2() => {
                let table = vector_symbol_table(frequencies);
                // SAFETY: AVX2 is available, as just checked.
                unsafe { avx2::encode_steps(&table, log, states, steps, room, free) };
                return true;
            }
            _ => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (path, frequencies, states, steps, room, free);
    false
}

/// Each symbol's coding parameters in one 64-bit entry, for the vector encoders: the low half is the magic
/// number of Granlund and Montgomery's division by the count `f` (exact for every 32-bit dividend, with no
/// 64-bit product, which neither AVX2 nor AVX-512F has), the high half `f | cum << 12 | sh2 << 24 | sh1 <<
/// 28`, with `l` the bits of `f - 1`, magic `2^32 * (2^l - f) / f + 1`, `sh1 = min(l, 1)`,
/// `sh2 = max(l, 1) - 1`, and `x / f = (t + ((x - t) >> sh1)) >> sh2` for `t` the high word of `x * magic`.
#[cfg(target_arch = "x86_64")]
fn vector_symbol_table(frequencies: &Frequencies) -> [u64; 256] {
    let mut table = [0; 256];
    let mut cum = 0;
    for (entry, &count) in table.iter_mut().zip(frequencies.counts()) {
        if count > 0 {
            let count = u64::from(count);
            let l = u64::from(64 - (count - 1).leading_zeros());
            let magic = (1 << 32) * ((1 << l) - count) / count + 1;
            let params = count | cum << 12 | (l.max(1) - 1) << 24 | l.min(1) << 28;
            *entry = magic | params << 32;
            cum += count;
        }
    }
    table
}

/// Codes `symbols` (whose first one belongs to lane 0) onto `states` (a multiple of 8 lanes), last symbol
/// first, shedding words into `room` below `free`.
fn encode_scalar(
    coders: &[SymbolCoder; 256],
    log: u32,
    states: &mut [u32],
    symbols: &[u8],
    room: &mut [u8],
    free: &mut usize,
) {
    let shift = 32 + log;
    let mut at = *free;
    let mut code = |state: &mut u32, symbol: u8| {
        let coder = coders[usize::from(symbol)];
        // Branch-free: the word is always written, and kept only if the state sheds it.
        let sheds = *state >= coder.limit;
        room[at - 2..at].copy_from_slice(&(*state as u16).to_le_bytes());
        at -= 2 * usize::from(sheds);
        *state = if sheds { *state >> 16 } else { *state };
        let quotient = ((u64::from(*state) * coder.reciprocal) >> shift) as u32;
        *state += quotient * coder.complement + coder.cum;
    };
    // The ragged end first, then whole steps unrolled by eight lanes, each lane's index a constant, so that
    // the compiler sees consecutive codings as independent (17% faster than indexing the lane).
    let lanes = states.len();
    let whole = symbols.len() / lanes * lanes;
    for (index, &symbol) in symbols.iter().enumerate().skip(whole).rev() {
        code(&mut states[index % lanes], symbol);
    }
    for step in symbols[..whole].chunks_exact(lanes).rev() {
        for (states, symbols) in states.chunks_exact_mut(8).zip(step.chunks_exact(8)).rev() {
            let [s0, s1, s2, s3, s4, s5, s6, s7] =
                <&mut [u32; 8]>::try_from(states).expect("groups of 8");
            let [y0, y1, y2, y3, y4, y5, y6, y7] =
                *<&[u8; 8]>::try_from(symbols).expect("groups of 8");
            code(s7, y7);
            code(s6, y6);
            code(s5, y5);
            code(s4, y4);
            code(s3, y3);
            code(s2, y2);
            code(s1, y1);
            code(s0, y0);
        }
    }
    *free = at;
}

/// Decoding table entry of a slot: `f | (slot - cum) << 12 | symbol << 24`. A rANS block has two symbols or
/// more, so `f` and `slot - cum` are below 2^12.
type Entry = u32;

thread_local! {
    /// Each thread's decoding table, refilled (its first `2^log` entries) for every block.
    static DECODE_TABLE: RefCell<Box<[Entry; TABLE_SIZE]>> = RefCell::new(Box::new([0; TABLE_SIZE]));
}

/// Fills `table[..2^log]` for `frequencies`; an error if one symbol takes the whole table.
fn fill_decode_table(
    frequencies: &Frequencies,
    table: &mut [Entry; TABLE_SIZE],
) -> Result<(), Error> {
    let mut slot = 0;
    for (symbol, &count) in frequencies.counts().iter().enumerate() {
        let count = u32::from(count);
        // The counts sum to 2^log <= 2^12, so every other count is below 2^12.
        if count == 1 << frequencies.log() {
            return Err(Error::InvalidTable("rANS symbol takes the whole table"));
        }
        for bias in 0..count {
            table[slot] = count | bias << 12 | (symbol as u32) << 24;
            slot += 1;
        }
    }
    Ok(())
}

/// Where [`decode`] puts a block's symbols.
///
/// The joining outputs merge a field split (the layouts' `Fields16`, `Fields32` and `Fp8Pairs`) as the
/// symbols come, the symbols being its first field: they are never stored and the values are written once.
/// MiniLM's BF16 file restores a fifth faster than by decoding the symbols and then merging them, its F32
/// file 40% faster.
#[derive(Debug)]
pub enum Output<'a> {
    /// One byte a symbol.
    Symbols(&'a mut [u8]),
    /// 16-bit values (BF16, F16): value `i` has symbol `i` as bits 14..7, and bit 7 of `low[i]` as bit 15 and
    /// its bits 6..0 as bits 6..0.
    Fields16 {
        /// The second field: sign and low bits.
        low: &'a [u8],
        /// Two bytes (little-endian) a symbol.
        values: &'a mut [u8],
    },
    /// 32-bit values (F32): value `i` has symbol `i` as bits 30..23, bit 7 of `rest[0][i]` as bit 31 and its
    /// bits 6..0 as bits 22..16, `rest[1][i]` as bits 15..8 and `rest[2][i]` as bits 7..0.
    Fields32 {
        /// The other fields: sign and top mantissa bits, middle, bottom.
        rest: [&'a [u8]; 3],
        /// Four bytes (little-endian) a symbol.
        values: &'a mut [u8],
    },
    /// FP8 E4M3 codes two by two: codes `2i` and `2i + 1` take their exponents (bits 6..3) from the low and
    /// high nibbles of symbol `i`, and their signs (bit 3 of the nibble) and mantissas (bits 2..0) from those
    /// of `sign_mantissas[i]`.
    Fp8Pairs {
        /// The second field: signs with mantissas, two a byte.
        sign_mantissas: &'a [u8],
        /// Two codes a symbol, but one for the last symbol where their count is odd.
        values: &'a mut [u8],
    },
}

/// How the vector decoders put symbols, one const parameter for each kind of [`Output`].
mod join {
    pub const SYMBOLS: u8 = 0;
    pub const FIELDS16: u8 = 1;
    pub const FIELDS32: u8 = 2;
    pub const FP8_PAIRS: u8 = 3;

    /// Bytes of values a symbol gives.
    pub const fn bytes_per_symbol(join: u8) -> usize {
        match join {
            FIELDS16 | FP8_PAIRS => 2,
            FIELDS32 => 4,
            _ => 1,
        }
    }
}

impl<'a> Output<'a> {
    /// The symbols it takes.
    fn len(&self) -> usize {
        match self {
            Output::Symbols(out) => out.len(),
            Output::Fields16 { low, .. } => low.len(),
            Output::Fields32 { rest, .. } => rest[0].len(),
            Output::Fp8Pairs { sign_mantissas, .. } => sign_mantissas.len(),
        }
    }

    /// Its kind (a [`join`] constant), the other fields (as many as the split has beyond the symbols) and
    /// the values: what the vector decoders take.
    fn parts(&mut self) -> (u8, [&[u8]; 3], &mut [u8]) {
        match self {
            Output::Symbols(out) => (join::SYMBOLS, [&[]; 3], out),
            Output::Fields16 { low, values } => (join::FIELDS16, [low, &[], &[]], values),
            Output::Fields32 { rest, values } => (join::FIELDS32, *rest, values),
            Output::Fp8Pairs {
                sign_mantissas,
                values,
            } => (join::FP8_PAIRS, [sign_mantissas, &[], &[]], values),
        }
    }

    /// Whether the fields and values are as long as the symbols make them.
    fn is_consistent(&self) -> bool {
        match self {
            Output::Symbols(_) => true,
            Output::Fields16 { low, values } => values.len() == 2 * low.len(),
            Output::Fields32 { rest, values } => {
                rest.iter().all(|field| values.len() == 4 * field.len())
            }
            Output::Fp8Pairs {
                sign_mantissas,
                values,
            } => values.len().div_ceil(2) == sign_mantissas.len(),
        }
    }

    /// Puts symbol `index`.
    fn put(&mut self, index: usize, symbol: u8) {
        match self {
            Output::Symbols(out) => out[index] = symbol,
            Output::Fields16 { low, values } => {
                values[2 * index..2 * index + 2].copy_from_slice(&join_16(symbol, low[index]))
            }
            Output::Fields32 { rest, values } => values[4 * index..4 * index + 4]
                .copy_from_slice(&join_32(symbol, rest.map(|field| field[index]))),
            Output::Fp8Pairs {
                sign_mantissas,
                values,
            } => {
                let end = (2 * index + 2).min(values.len());
                let codes = &mut values[2 * index..end];
                let len = codes.len();
                codes.copy_from_slice(&join_fp8_pair(symbol, sign_mantissas[index])[..len]);
            }
        }
    }
}

/// Puts 16 decoded symbols, the bytes of `symbols`, as values `at..at + 16` of `out` as the [`Output`] of kind
/// `JOIN` would: themselves, or joined with `others`' bytes. SSE2, which every x86-64 CPU has, for the AVX2
/// and AVX-512 decoders alike.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[inline(always)]
fn put_x16<const JOIN: u8>(
    symbols: std::arch::x86_64::__m128i,
    others: &[&[u8]; 3],
    at: usize,
    out: &mut [u8],
) {
    use std::arch::x86_64::*;
    let size = join::bytes_per_symbol(JOIN);
    let out = &mut out[size * at..size * (at + 16)];
    // SAFETY: SSE2 is part of x86-64; the loads read the 16 bytes of 16-byte slices, the stores write 16
    // bytes at offsets 0, 16, 32 and 48 below `out`'s length `16 * size`.
    unsafe {
        let load = |field: &[u8]| _mm_loadu_si128(field[at..at + 16].as_ptr().cast());
        let mut store = |offset: usize, bytes: __m128i| {
            _mm_storeu_si128(out.as_mut_ptr().add(offset).cast(), bytes)
        };
        if JOIN == join::SYMBOLS {
            return store(0, symbols);
        }
        // Fields are joined byte by byte: 16-bit shifts, then masks that drop what crossed a byte.
        let second = load(others[0]);
        let mask = |bits: i8| _mm_set1_epi8(bits);
        if JOIN == join::FP8_PAIRS {
            // Code 0 from the low nibbles, code 1 from the high ones: sign (bit 3 of the nibble) at bit 7,
            // exponent at bits 6..3, mantissa at bits 2..0.
            let first_codes = _mm_or_si128(
                _mm_or_si128(
                    _mm_and_si128(_mm_slli_epi16::<4>(second), mask(i8::MIN)),
                    _mm_and_si128(_mm_slli_epi16::<3>(symbols), mask(0x78)),
                ),
                _mm_and_si128(second, mask(0x07)),
            );
            let second_codes = _mm_or_si128(
                _mm_or_si128(
                    _mm_and_si128(second, mask(i8::MIN)),
                    _mm_and_si128(_mm_srli_epi16::<1>(symbols), mask(0x78)),
                ),
                _mm_and_si128(_mm_srli_epi16::<4>(second), mask(0x07)),
            );
            store(0, _mm_unpacklo_epi8(first_codes, second_codes));
            store(16, _mm_unpackhi_epi8(first_codes, second_codes));
            return;
        }
        // The byte with the symbol's bit 0 over the second field's low 7 bits (`lower`), and the one with that
        // field's top bit over the symbol's other 7 (`upper`): bytes 0 and 1 of F16 / BF16 values, bytes 2
        // and 3 of F32 values.
        let top = mask(i8::MIN);
        let lower = _mm_or_si128(
            _mm_and_si128(_mm_slli_epi16::<7>(symbols), top),
            _mm_andnot_si128(top, second),
        );
        let upper = _mm_or_si128(
            _mm_and_si128(second, top),
            _mm_andnot_si128(top, _mm_srli_epi16::<1>(symbols)),
        );
        if JOIN == join::FIELDS16 {
            store(0, _mm_unpacklo_epi8(lower, upper));
            store(16, _mm_unpackhi_epi8(lower, upper));
            return;
        }
        let (middle, bottom) = (load(others[1]), load(others[2]));
        let (bottom_half_first, bottom_half_second) = (
            _mm_unpacklo_epi8(bottom, middle),
            _mm_unpackhi_epi8(bottom, middle),
        );
        let (top_half_first, top_half_second) = (
            _mm_unpacklo_epi8(lower, upper),
            _mm_unpackhi_epi8(lower, upper),
        );
        store(0, _mm_unpacklo_epi16(bottom_half_first, top_half_first));
        store(16, _mm_unpackhi_epi16(bottom_half_first, top_half_first));
        store(32, _mm_unpacklo_epi16(bottom_half_second, top_half_second));
        store(48, _mm_unpackhi_epi16(bottom_half_second, top_half_second));
    }
}

/// Puts the 16 coded symbols of one register: symbols `at..at + 16` of the output as [`put_x16`] would, or,
/// where `PAIRED`, the 32 symbols `2 * at..2 * at + 32` that their ranks give ([`pairs::Ranks`]: a pair's
/// first symbol from the low nibble, its second from the high one; escapes in a cold path).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[inline(always)]
fn put_coded_x16<const JOIN: u8, const PAIRED: bool>(
    coded: std::arch::x86_64::__m128i,
    ranks: &mut pairs::Ranks,
    others: &[&[u8]; 3],
    at: usize,
    out: &mut [u8],
) {
    use std::arch::x86_64::*;
    if !PAIRED {
        return put_x16::<JOIN>(coded, others, at, out);
    }
    // SAFETY: loads the 16 bytes of the table. The byte shuffle is SSSE3, which the AVX2 and AVX-512
    // decoders this is inlined into have; the rest is SSE2, part of x86-64.
    let (first, second, escaped) = unsafe {
        let table = _mm_loadu_si128(ranks.table().as_ptr().cast());
        let (first, second) = pair_ranks_in_order(coded);
        let escape = _mm_set1_epi8(pairs::ESCAPE as i8);
        let escaped = |ranks| _mm_movemask_epi8(_mm_cmpeq_epi8(ranks, escape)) as u32;
        (
            _mm_shuffle_epi8(table, first),
            _mm_shuffle_epi8(table, second),
            escaped(first) | escaped(second) << 16,
        )
    };
    put_x16::<JOIN>(first, others, 2 * at, out);
    put_x16::<JOIN>(second, others, 2 * at + 16, out);
    if escaped != 0 {
        put_escapes(JOIN, escaped, ranks, 2 * at, out);
    }
}

/// The 32 ranks of 16 coded pairs in symbol order: those of symbols 0 to 15, then 16 to 31 (a pair's first
/// rank is its low nibble).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[inline(always)]
fn pair_ranks_in_order(
    coded: std::arch::x86_64::__m128i,
) -> (std::arch::x86_64::__m128i, std::arch::x86_64::__m128i) {
    use std::arch::x86_64::*;
    // SAFETY: SSE2, part of x86-64.
    unsafe {
        let nibble = _mm_set1_epi8(0x0f);
        let (low, high) = (
            _mm_and_si128(coded, nibble),
            _mm_and_si128(_mm_srli_epi16::<4>(coded), nibble),
        );
        (_mm_unpacklo_epi8(low, high), _mm_unpackhi_epi8(low, high))
    }
}

/// Sets the symbols of the 32 from `start` whose bits are set in `escaped` to the next escaped symbols.
#[cfg(target_arch = "x86_64")]
#[cold]
#[inline(never)]
fn put_escapes(join: u8, mut escaped: u32, ranks: &mut pairs::Ranks, start: usize, out: &mut [u8]) {
    while escaped != 0 {
        set_symbol(
            join,
            out,
            start + escaped.trailing_zeros() as usize,
            ranks.escape(),
        );
        escaped &= escaped - 1;
    }
}

/// Sets the symbol of value `index`, joined by kind `join` (not FP8 pairs), leaving its other fields.
#[cfg(target_arch = "x86_64")]
fn set_symbol(join: u8, out: &mut [u8], index: usize, symbol: u8) {
    let size = join::bytes_per_symbol(join);
    let value = &mut out[size * index..size * (index + 1)];
    // The symbol's bit 0 lies at bit 7 of the value's top half: 16-bit values' bits 14..7, 32-bit ones'
    // bits 30..23.
    match size {
        1 => value[0] = symbol,
        _ => {
            let top = &mut value[size - 2..];
            let bits = u16::from_le_bytes([top[0], top[1]]) & !0x7f80 | u16::from(symbol) << 7;
            top.copy_from_slice(&bits.to_le_bytes());
        }
    }
}

/// Decodes a body written by [`encode`] with the same `lanes` into `output` (exactly the original symbol count).
pub fn decode(body: &[u8], lanes: Lanes, output: Output) -> Result<(), Error> {
    decode_on(Path::fastest(), body, lanes, output)
}

/// Which code decodes a block's whole steps: every path gives the same result, error for error and byte for
/// byte, which the tests and the `ans_decode` fuzz target check on each path the CPU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Symbol by symbol, on any CPU: the reference.
    Portable,
    /// Eight lanes a register.
    Avx2,
    /// Sixteen lanes a register.
    Avx512,
}

impl Path {
    /// The paths this CPU can take, the portable one first and the fastest last.
    pub fn available() -> Vec<Path> {
        let mut paths = vec![Path::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if Path::has_avx2() {
                paths.push(Path::Avx2);
            }
            if Path::has_avx512() {
                paths.push(Path::Avx512);
            }
        }
        paths
    }

    /// Whether the CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    fn has_avx2() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }

    /// Whether the CPU has the AVX-512 subsets the vector coder uses (F; BW and VL for 16-bit stores).
    #[cfg(target_arch = "x86_64")]
    fn has_avx512() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }

    /// The fastest path this CPU can take (detected once: the check is a few loads, but blocks are many).
    fn fastest() -> Path {
        static FASTEST: std::sync::OnceLock<Path> = std::sync::OnceLock::new();
        *FASTEST.get_or_init(|| *Path::available().last().expect("the portable path"))
    }
}

/// [`decode`] on `path`; a path the CPU cannot take decodes on the portable one.
///
/// # Panics
/// If the fields of a joining `output` are not as long as each other.
pub fn decode_on(path: Path, body: &[u8], lanes: Lanes, output: Output) -> Result<(), Error> {
    decode_coded(path, body, lanes, None, output)
}

/// [`decode_on`], or, given `ranks`, for a body whose symbols are pairs of ranks ([`pairs`]): `output` then
/// takes twice as many symbols as the body codes, less one for an odd stream.
fn decode_coded(
    path: Path,
    body: &[u8],
    lanes: Lanes,
    ranks: Option<&mut pairs::Ranks>,
    mut output: Output,
) -> Result<(), Error> {
    assert!(output.is_consistent(), "fields of different lengths");
    match lanes {
        Lanes::Narrow => decode_with::<2>(path, body, ranks, &mut output),
        Lanes::Wide => decode_with::<4>(path, body, ranks, &mut output),
    }
}

/// [`decode_coded`] in `16 * GROUPS` lanes.
fn decode_with<const GROUPS: usize>(
    path: Path,
    body: &[u8],
    mut ranks: Option<&mut pairs::Ranks>,
    output: &mut Output,
) -> Result<(), Error> {
    let (frequencies, table_len) = Frequencies::read(body)?;
    let state_bytes = take(body, table_len, 64 * GROUPS, "rANS states")?;
    let mut states = [[0u32; 16]; GROUPS];
    for (state, bytes) in states
        .as_flattened_mut()
        .iter_mut()
        .zip(state_bytes.chunks_exact(4))
    {
        *state = u32::from_le_bytes(bytes.try_into().expect("4 bytes"));
    }
    let words = &body[table_len + 64 * GROUPS..];
    if !words.len().is_multiple_of(2) {
        return Err(Error::AnsStream("rANS word stream of odd length"));
    }
    DECODE_TABLE.with(|table| {
        let mut table = table.borrow_mut();
        fill_decode_table(&frequencies, &mut table)?;
        let mut reader = WordReader {
            words,
            pos: 0,
            overrun: false,
        };
        let log = frequencies.log();
        let done = vector_decode_steps(
            path,
            &table,
            log,
            &mut states,
            &mut reader,
            ranks.as_deref_mut(),
            output,
        );
        let lanes = states.as_flattened_mut();
        decode_scalar(&table, log, lanes, &mut reader, ranks, output, done);
        if reader.overrun || reader.pos != words.len() {
            return Err(Error::AnsStream(
                "decoding did not consume the stream exactly",
            ));
        }
        if lanes.iter().any(|&state| state != LOWER) {
            return Err(Error::AnsStream(
                "decoding did not end in the initial state",
            ));
        }
        Ok(())
    })
}

/// Decodes whole steps from the start of `output` on `path`'s vector decoder, where the CPU has it; returns
/// the coded symbols decoded (none where it does not). Each decoder is compiled for each kind of output,
/// paired or not, so that no step loop asks how to put its symbols. FP8 pairs are never paired again.
#[allow(unsafe_code)]
fn vector_decode_steps<const GROUPS: usize>(
    path: Path,
    table: &[Entry; TABLE_SIZE],
    log: u32,
    states: &mut [[u32; 16]; GROUPS],
    reader: &mut WordReader,
    ranks: Option<&mut pairs::Ranks>,
    output: &mut Output,
) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use join::*;
        let (join, others, out) = output.parts();
        let (others, avx512, avx2) = (&others, Path::has_avx512(), Path::has_avx2());
        let paired = ranks.is_some();
        let mut unpaired = pairs::Ranks::default();
        let ranks = ranks.unwrap_or(&mut unpaired);
        macro_rules! steps {
            ($path:ident, $join:ident, $paired:literal) => {
                $path::decode_steps::<GROUPS, $join, $paired>(
                    table, log, states, reader, ranks, others, out,
                )
            };
        }
        // SAFETY (every arm): the path's instructions are available, as checked.
        unsafe {
            match (path, join, paired) {
                (Path::Avx512, SYMBOLS, false) if avx512 => steps!(avx512, SYMBOLS, false),
                (Path::Avx512, FIELDS16, false) if avx512 => steps!(avx512, FIELDS16, false),
                (Path::Avx512, FIELDS32, false) if avx512 => steps!(avx512, FIELDS32, false),
                (Path::Avx512, FP8_PAIRS, false) if avx512 => steps!(avx512, FP8_PAIRS, false),
                (Path::Avx512, SYMBOLS, true) if avx512 => steps!(avx512, SYMBOLS, true),
                (Path::Avx512, FIELDS16, true) if avx512 => steps!(avx512, FIELDS16, true),
                (Path::Avx512, FIELDS32, true) if avx512 => steps!(avx512, FIELDS32, true),
                (Path::Avx2, SYMBOLS, false) if avx2 => steps!(avx2, SYMBOLS, false),
                (Path::Avx2, FIELDS16, false) if avx2 => steps!(avx2, FIELDS16, false),
                (Path::Avx2, FIELDS32, false) if avx2 => steps!(avx2, FIELDS32, false),
                (Path::Avx2, FP8_PAIRS, false) if avx2 => steps!(avx2, FP8_PAIRS, false),
                (Path::Avx2, SYMBOLS, true) if avx2 => steps!(avx2, SYMBOLS, true),
                (Path::Avx2, FIELDS16, true) if avx2 => steps!(avx2, FIELDS16, true),
                (Path::Avx2, FIELDS32, true) if avx2 => steps!(avx2, FIELDS32, true),
                _ => 0,
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (path, table, log, states, reader, ranks, output);
        0
    }
}

/// Reads the word stream; reading past its end yields zeros and marks the stream corrupt.
struct WordReader<'a> {
    words: &'a [u8],
    /// Byte position of the next word.
    pos: usize,
    overrun: bool,
}

impl WordReader<'_> {
    fn next(&mut self) -> u32 {
        match self.words.get(self.pos..self.pos + 2) {
            Some(word) => {
                self.pos += 2;
                u32::from(u16::from_le_bytes([word[0], word[1]]))
            }
            None => {
                self.overrun = true;
                0
            }
        }
    }
}

/// Decodes coded symbols `start..` into `output`, one by one: the reference, and the tail the vector path
/// leaves. With `ranks`, each coded symbol is a pair of ranks ([`decode_coded`]).
fn decode_scalar(
    table: &[Entry; TABLE_SIZE],
    log: u32,
    states: &mut [u32],
    reader: &mut WordReader,
    mut ranks: Option<&mut pairs::Ranks>,
    output: &mut Output,
    start: usize,
) {
    let mask = (1 << log) - 1;
    let lanes = states.len();
    let symbols = output.len();
    let coded = if ranks.is_some() {
        symbols.div_ceil(2)
    } else {
        symbols
    };
    for index in start..coded {
        let state = &mut states[index % lanes];
        let entry = table[(*state & mask) as usize];
        let symbol = (entry >> 24) as u8;
        match ranks.as_deref_mut() {
            None => output.put(index, symbol),
            Some(ranks) => {
                output.put(2 * index, ranks.symbol(symbol & 0xf));
                if 2 * index + 1 < symbols {
                    output.put(2 * index + 1, ranks.symbol(symbol >> 4));
                }
            }
        }
        *state = (entry & 0xfff) * (*state >> log) + (entry >> 12 & 0xfff);
        if *state < LOWER {
            *state = *state << 16 | reader.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::histogram;
    use proptest::prelude::*;

    /// The body from every encoding path, which must write the same bytes.
    pub(super) fn encoded(symbols: &[u8], lanes: Lanes) -> Vec<u8> {
        encoded_with(
            symbols,
            &Frequencies::for_histogram(&histogram(symbols)),
            lanes,
        )
    }

    fn encoded_with(symbols: &[u8], frequencies: &Frequencies, lanes: Lanes) -> Vec<u8> {
        let mut portable = Vec::new();
        encode_on(Path::Portable, symbols, frequencies, lanes, &mut portable);
        for path in Path::available() {
            let mut body = Vec::new();
            encode_on(path, symbols, frequencies, lanes, &mut body);
            assert!(body == portable, "{path:?} differs ({lanes:?})");
        }
        portable
    }

    /// Every decoding path, which must agree on every body, intact or not, putting symbols and joining
    /// values of every kind; joined values must be what joining the decoded symbols afterwards gives.
    fn decode_both(body: &[u8], lanes: Lanes, len: usize) -> Result<Vec<u8>, Error> {
        let kinds = [
            join::SYMBOLS,
            join::FIELDS16,
            join::FIELDS32,
            join::FP8_PAIRS,
        ];
        decode_every_way(len, &kinds, |path, output| {
            decode_on(path, body, lanes, output)
        })
    }

    /// Decodes `len` symbols with `decode` on every path into every output of `kinds`, which must agree,
    /// error for error, and join as the symbols do; returns the symbols.
    pub(super) fn decode_every_way(
        len: usize,
        kinds: &[u8],
        decode: impl Fn(Path, Output) -> Result<(), Error>,
    ) -> Result<Vec<u8>, Error> {
        let field = |seed: usize| -> Vec<u8> { (0..len).map(|i| (i * seed + 13) as u8).collect() };
        let rest = [field(167), field(89), field(251)];
        // FP8 pairs: an odd number of codes where `len` is odd.
        let pair_codes = 2 * len - len % 2;
        let decode = |path, join: u8| {
            let mut out = vec![0; [len, 2 * len, 4 * len, pair_codes][usize::from(join)]];
            let values = &mut out;
            let output = match join {
                join::SYMBOLS => Output::Symbols(values),
                join::FIELDS16 => Output::Fields16 {
                    low: &rest[0],
                    values,
                },
                join::FIELDS32 => Output::Fields32 {
                    rest: [&rest[0], &rest[1], &rest[2]],
                    values,
                },
                _ => Output::Fp8Pairs {
                    sign_mantissas: &rest[0],
                    values,
                },
            };
            (decode(path, output), out)
        };
        let (result, symbols) = decode(Path::Portable, join::SYMBOLS);
        for &kind in kinds {
            let (portable_result, portable) = decode(Path::Portable, kind);
            assert_eq!(portable_result, result);
            if result.is_ok() {
                let mut joined: Vec<u8> = (0..len)
                    .flat_map(|i| match kind {
                        join::SYMBOLS => vec![symbols[i]],
                        join::FIELDS16 => join_16(symbols[i], rest[0][i]).to_vec(),
                        join::FIELDS32 => {
                            join_32(symbols[i], rest.each_ref().map(|field| field[i])).to_vec()
                        }
                        _ => join_fp8_pair(symbols[i], rest[0][i]).to_vec(),
                    })
                    .collect();
                joined.truncate(portable.len());
                assert!(
                    portable == joined,
                    "joined as decoded differs from joined after ({kind})"
                );
            }
            for path in Path::available() {
                let (path_result, out) = decode(path, kind);
                assert_eq!(path_result, result, "{path:?}");
                assert!(out == portable, "{path:?} differs putting output {kind}");
            }
        }
        result.map(|()| symbols)
    }

    /// Exponent-like symbols: a geometric spread around 120.
    pub(super) fn skewed(len: usize, seed: u64) -> Vec<u8> {
        let mut next = crate::entropy::test_symbols::generator(seed);
        (0..len)
            .map(|_| {
                let draw = (next() >> 40) as u32;
                (120 + draw.trailing_zeros().min(30) as u8).wrapping_sub((draw & 1) as u8 * 3)
            })
            .collect()
    }

    #[test]
    fn long_skewed_streams_round_trip_near_their_entropy() {
        let symbols = skewed(100_000, 7);
        for lanes in Lanes::ALL {
            let body = encoded(&symbols, lanes);
            assert_eq!(decode_both(&body, lanes, symbols.len()).unwrap(), symbols);
            let states = 4.0 * lanes.count() as f64;
            crate::entropy::test_symbols::assert_near_entropy(
                &symbols,
                body.len(),
                1.003,
                72.0 + states,
            );
        }
    }

    #[test]
    fn every_length_around_the_lanes_round_trips() {
        for lanes in Lanes::ALL {
            let n = lanes.count();
            for len in [0, 1, 2, 15, 16, 17, n - 1, n, n + 1, 2 * n + 3, 1000] {
                let mut symbols = skewed(len, len as u64);
                // Two symbols at least, so that no symbol takes the whole table.
                symbols.extend([0, 255]);
                let body = encoded(&symbols, lanes);
                let decoded = decode_both(&body, lanes, symbols.len());
                assert_eq!(decoded.unwrap(), symbols, "{len} in {lanes:?}");
            }
        }
    }

    #[test]
    fn extreme_counts_round_trip() {
        // Counts of 1, powers of two, and 4095 of 4096 test every branch of the division by the count.
        let symbols: Vec<u8> = (0..40_000u32)
            .map(|i| match i % 4096 {
                0 => 7,
                _ => 200,
            })
            .collect();
        let mut counts = [0u32; 256];
        counts[7] = 1;
        counts[200] = 4095;
        let frequencies = Frequencies::normalize(&counts, 12);
        let spread: Vec<u8> = (0..20_000u32).map(|i| (i * 37 % 23) as u8 * 11).collect();
        for lanes in Lanes::ALL {
            let body = encoded_with(&symbols, &frequencies, lanes);
            assert_eq!(decode_both(&body, lanes, symbols.len()).unwrap(), symbols);
            for log in [5, 9, 12] {
                let frequencies = Frequencies::normalize(&histogram(&spread), log);
                let body = encoded_with(&spread, &frequencies, lanes);
                let decoded = decode_both(&body, lanes, spread.len());
                assert_eq!(decoded.unwrap(), spread, "log {log} in {lanes:?}");
            }
        }
    }

    #[test]
    fn exponents_with_rare_outliers_round_trip() {
        // Twenty common symbols in a window the vector encoder keeps in registers, two far outside it a few
        // times (under 1/1024 of the counts, so the window is used): the steps holding them load their
        // entries one by one. Then the same with too many outliers for the window.
        for outliers in [3, 300] {
            let mut symbols: Vec<u8> = skewed(1 << 16, 9).iter().map(|&s| 100 + s % 20).collect();
            for k in 0..outliers {
                symbols[k * 211 % (1 << 16)] = [0, 255][k % 2];
            }
            for lanes in Lanes::ALL {
                let body = encoded(&symbols, lanes);
                let decoded = decode_both(&body, lanes, symbols.len());
                assert_eq!(decoded.unwrap(), symbols, "{outliers} outliers, {lanes:?}");
            }
        }
    }

    #[test]
    fn damaged_bodies_are_errors() {
        let symbols = skewed(5000, 3);
        for lanes in Lanes::ALL {
            let len = symbols.len();
            let body = encoded(&symbols, lanes);
            assert!(decode_both(&body[..body.len() - 2], lanes, len).is_err());
            assert!(decode_both(&body[..body.len() - 1], lanes, len).is_err());
            let mut longer = body.clone();
            longer.extend([0, 0]);
            assert!(decode_both(&longer, lanes, len).is_err());
            assert!(decode_both(&body, lanes, len + 1).is_err());
            // The other width reads the states and words wrongly.
            let other = Lanes::ALL
                .into_iter()
                .find(|&other| other != lanes)
                .unwrap();
            assert!(decode_both(&body, other, len).is_err());
            // One symbol with the whole table cannot be a rANS block.
            let mut histogram = [0u32; 256];
            histogram[9] = 10;
            let mut one_symbol = Vec::new();
            Frequencies::derive(&histogram, 5).write(&mut one_symbol);
            one_symbol.extend(vec![0; 4 * lanes.count()]);
            assert_eq!(
                decode_both(&one_symbol, lanes, 10),
                Err(Error::InvalidTable("rANS symbol takes the whole table"))
            );
        }
    }

    proptest! {
        #[test]
        fn random_alphabets_round_trip(
            weights in prop::collection::vec(1u32..1000, 2..=256),
            len in 2usize..20_000,
            seed in any::<u64>(),
        ) {
            let mut symbols = crate::entropy::test_symbols::weighted(&weights, len, seed);
            symbols[0] = 0;
            symbols[1] = 1;
            for lanes in Lanes::ALL {
                let body = encoded(&symbols, lanes);
                prop_assert_eq!(&decode_both(&body, lanes, symbols.len()).unwrap(), &symbols);
            }
        }

        #[test]
        fn corrupt_bodies_never_panic_and_both_paths_agree(
            seed in any::<u64>(),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let symbols = skewed(3000, seed);
            for lanes in Lanes::ALL {
                let mut body = encoded(&symbols, lanes);
                for &(at, bits) in &flips {
                    let at = at % body.len();
                    body[at] ^= bits;
                }
                let _ = decode_both(&body, lanes, symbols.len());
            }
        }
    }
}
