//! Interleaved rANS with 16-bit words: tANS's compression for long streams, decoded 32 symbols at a time
//! with AVX2.
//!
//! A tANS decoder reads a variable number of bits per symbol from a bit position that every symbol moves, a
//! serial chain of about a dozen instructions a symbol (0.9 G symbols/s here, however it is arranged). rANS
//! with 32-bit states and 16-bit words needs per symbol only a table lookup, a multiply and an add, and a
//! state reads either no word or one: 32 states stepping in lockstep are four AVX2 registers, their lookups
//! one gather each, and their word reads one load and one shuffle each. A step is a chain of dependent
//! latencies (the gather's above all), so the lanes are what makes it fast: measured on MiniLM's BF16
//! exponents, the file restores at 1.6 GB/s with 16 lanes and 2.2 GB/s with 32 (64 gained another 12% but
//! cost 256 bytes of states a block). Both coders spend the same bits on the same frequencies, so the
//! encoder picks rANS for blocks long enough that its states cost at most 1%, and tANS for the others.
//!
//! The encoder steps the same four registers backwards through the symbols. Each symbol's count, cumulative
//! count and division constants sit in one 64-bit entry (eight scalar loads and inserts a register beat two
//! gathers by a third), the division by the count is Granlund and Montgomery's multiply-and-shift on 32-bit
//! lanes, and the words eight lanes shed are compacted with one byte shuffle: 1.6 G symbols/s, against 0.65
//! for the scalar encoder, which stays as the portable path and the reference the tests hold it to.
//!
//! Body layout: the frequency table (as tANS writes it, [`Frequencies`]), the 32 final states (`u32 LE`,
//! state 0 first), then the word stream (`u16 LE` words, in the order the decoder reads them). Symbol `i`
//! belongs to state `i % 32`. The decoder takes the symbols in order; for each it looks up
//! `slot = state mod 2^log`, whose symbol `s` owns slots `[cum_s, cum_s + f_s)`, emits `s`, sets
//! `state = f_s * (state >> log) + slot - cum_s`, and, if the state fell below 2^16, shifts in the next word:
//! `state = state << 16 | word`. An intact stream is consumed exactly and leaves every state at 2^16.

use super::take;
use super::tans::Frequencies;
use crate::Error;
use std::cell::RefCell;

/// States coded in turn.
pub const LANES: usize = 32;
/// States live in `[LOWER, LOWER << 16)`; they start and end at `LOWER`.
const LOWER: u32 = 1 << 16;
/// Decoding tables have room for the finest frequency table, so that masked slots need no bounds check.
const TABLE_SIZE: usize = 1 << super::tans::MAX_TABLE_LOG;

/// Whether a block of `symbols` that tANS would code in `tans_len` bytes is worth coding with rANS instead:
/// the same bits, but its states take `4 * LANES` bytes against tANS's 15. They must cost at most 1% of the
/// block (at 0.2%, MiniLM's 384 x 384 BF16 tensors kept tANS, which decodes at half rANS's speed and now
/// encodes slower too: at 1% the file restores 20% faster for 5 KB more in 30 MB), or the block must hold
/// at least 32K symbols: skewed streams (per-channel signs: 143K symbols in 1.8 KB) code in few bytes
/// but decode symbol by symbol, and there rANS saves more time than 1% of a 12,800-byte block does.
pub fn pays_for_its_states(tans_len: usize, symbols: usize) -> bool {
    tans_len >= 100 * 4 * LANES || symbols >= MANY_SYMBOLS
}

/// See [`pays_for_its_states`]: 32K symbols decode at least 20 us faster with rANS than with tANS.
const MANY_SYMBOLS: usize = 1 << 15;

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

/// Bytes of room below the words: the vector encoder stores 16 bytes at a time, of which it keeps the top ones.
const ROOM_BELOW: usize = 16;

/// Appends the body (frequencies, final states, words) coding `symbols`, of which every one must have a
/// nonzero count in `frequencies`, and none the whole table.
pub fn encode(symbols: &[u8], frequencies: &Frequencies, out: &mut Vec<u8>) {
    encode_with(symbols, frequencies, out, true);
}

/// [`encode`] without vector instructions: the reference that tests hold the vector path to, byte for byte.
pub fn encode_portable(symbols: &[u8], frequencies: &Frequencies, out: &mut Vec<u8>) {
    encode_with(symbols, frequencies, out, false);
}

/// [`encode`], with the vector path allowed or not. The encoder runs backwards, from the last symbol: the
/// ragged last step first, then the whole steps.
fn encode_with(symbols: &[u8], frequencies: &Frequencies, out: &mut Vec<u8>, allow_vector: bool) {
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
    let mut states = [LOWER; LANES];
    WORD_ROOM.with(|room| {
        let mut room = room.borrow_mut();
        let room_len = 2 * symbols.len() + ROOM_BELOW;
        if room.len() < room_len {
            room.resize(room_len, 0);
        }
        let room = &mut room[..room_len];
        let mut free = room_len;
        let whole = symbols.len() / LANES * LANES;
        encode_scalar(
            &coders,
            log,
            &mut states,
            &symbols[whole..],
            room,
            &mut free,
        );
        let mut scalar_steps = whole;
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        if allow_vector && std::arch::is_x86_feature_detected!("avx2") {
            let table = avx2::symbol_table(frequencies);
            // SAFETY: AVX2 is available, as just checked.
            unsafe {
                avx2::encode_steps(&table, log, &mut states, &symbols[..whole], room, &mut free)
            };
            scalar_steps = 0;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = allow_vector;
        encode_scalar(
            &coders,
            log,
            &mut states,
            &symbols[..scalar_steps],
            room,
            &mut free,
        );
        for state in states {
            out.extend_from_slice(&state.to_le_bytes());
        }
        out.extend_from_slice(&room[free..]);
    });
}

/// Codes `symbols` (whose first one belongs to lane 0) onto `states`, last symbol first, shedding words
/// into `room` below `free`.
fn encode_scalar(
    coders: &[SymbolCoder; 256],
    log: u32,
    states: &mut [u32; LANES],
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
    let whole = symbols.len() / LANES * LANES;
    for (index, &symbol) in symbols.iter().enumerate().skip(whole).rev() {
        code(&mut states[index % LANES], symbol);
    }
    for step in symbols[..whole].chunks_exact(LANES).rev() {
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

/// Decodes a body written by [`encode`] into `out` (exactly the original symbol count).
pub fn decode(body: &[u8], out: &mut [u8]) -> Result<(), Error> {
    decode_with(body, out, true)
}

/// [`decode`] without vector instructions: the reference that tests and the `ans_decode` fuzz target hold
/// the vector path to, result for result and byte for byte.
pub fn decode_portable(body: &[u8], out: &mut [u8]) -> Result<(), Error> {
    decode_with(body, out, false)
}

/// [`decode`], with the vector path allowed or not.
fn decode_with(body: &[u8], out: &mut [u8], allow_vector: bool) -> Result<(), Error> {
    let (frequencies, table_len) = Frequencies::read(body)?;
    let state_bytes = take(body, table_len, 4 * LANES, "rANS states")?;
    let mut states: [u32; LANES] = std::array::from_fn(|lane| {
        let bytes = &state_bytes[4 * lane..4 * lane + 4];
        u32::from_le_bytes(bytes.try_into().expect("4 bytes"))
    });
    let words = &body[table_len + 4 * LANES..];
    if words.len() % 2 != 0 {
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
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        if allow_vector && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available, as just checked.
            done = unsafe {
                avx2::decode_steps(&table, frequencies.log(), &mut states, &mut reader, out)
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = allow_vector;
        decode_scalar(
            &table,
            frequencies.log(),
            &mut states,
            &mut reader,
            out,
            done,
        );
        if reader.overrun || reader.pos != words.len() {
            return Err(Error::AnsStream(
                "decoding did not consume the stream exactly",
            ));
        }
        if states.iter().any(|&state| state != LOWER) {
            return Err(Error::AnsStream(
                "decoding did not end in the initial state",
            ));
        }
        Ok(())
    })
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

/// Decodes `out[start..]`, symbol by symbol: the reference, and the tail the vector path leaves.
fn decode_scalar(
    table: &[Entry; TABLE_SIZE],
    log: u32,
    states: &mut [u32; LANES],
    reader: &mut WordReader,
    out: &mut [u8],
    start: usize,
) {
    let mask = (1 << log) - 1;
    for (index, symbol) in out.iter_mut().enumerate().skip(start) {
        let state = &mut states[index % LANES];
        let entry = table[(*state & mask) as usize];
        *symbol = (entry >> 24) as u8;
        *state = (entry & 0xfff) * (*state >> log) + (entry >> 12 & 0xfff);
        if *state < LOWER {
            *state = *state << 16 | reader.next();
        }
    }
}

/// The vector coder. Every pointer access is a load or store of a slice or array at least as long as the
/// access (each block says why), and every gather index is masked below the table's length.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use super::{Entry, WordReader, LANES, LOWER, TABLE_SIZE};
    use std::arch::x86_64::*;

    // A state wants a word when its top 16 bits are zero.
    const _: () = assert!(LOWER == 1 << 16);
    /// Eight states a register; symbols are packed to bytes two registers at a time.
    const REGISTERS: usize = LANES / 8;
    const _: () = assert!(LANES % 16 == 0);

    /// For each 8-bit mask of the lanes (of eight) that read a word, where each lane finds its word among
    /// the next eight: lane `l` takes word number (set bits of the mask below `l`).
    const WORD_INDEX: [[u32; 8]; 256] = {
        let mut table = [[0u32; 8]; 256];
        let mut mask = 0;
        while mask < 256 {
            let (mut lane, mut rank) = (0, 0);
            while lane < 8 {
                if mask >> lane & 1 == 1 {
                    table[mask][lane] = rank;
                    rank += 1;
                }
                lane += 1;
            }
            mask += 1;
        }
        table
    };

    /// For each 8-bit mask of the lanes (of eight) that shed a word, the byte shuffle that moves those lanes'
    /// 16-bit words, in lane order, to the top of 16 bytes.
    const SHED_TO_TOP: [[u8; 16]; 256] = {
        let mut table = [[0x80u8; 16]; 256];
        let mut mask = 0;
        while mask < 256 {
            let (mut lane, mut slot) = (0, 8 - (mask as u32).count_ones() as usize);
            while lane < 8 {
                if mask >> lane & 1 == 1 {
                    table[mask][2 * slot] = 2 * lane as u8;
                    table[mask][2 * slot + 1] = 2 * lane as u8 + 1;
                    slot += 1;
                }
                lane += 1;
            }
            mask += 1;
        }
        table
    };

    /// Each symbol's coding parameters in one 64-bit entry: the low half is the magic number of
    /// Granlund and Montgomery's division by the count `f` (exact for every 32-bit dividend, with no 64-bit
    /// product, which AVX2 lacks), the high half `f | cum << 12 | sh2 << 24 | sh1 << 28`, with `l` the
    /// bits of `f - 1`, magic `2^32 * (2^l - f) / f + 1`, `sh1 = min(l, 1)`, `sh2 = max(l, 1) - 1`, and
    /// `x / f = (t + ((x - t) >> sh1)) >> sh2` for `t` the high word of `x * magic`.
    pub(super) fn symbol_table(frequencies: &super::Frequencies) -> [u64; 256] {
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

    /// Codes whole steps of [`LANES`] symbols onto `states`, last step first, exactly as `encode_scalar`
    /// would: the 32 states in four registers, each symbol's parameters one 64-bit entry, the shed words of
    /// eight lanes stored together below `free` in `room`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn encode_steps(
        table: &[u64; 256],
        log: u32,
        states: &mut [u32; LANES],
        symbols: &[u8],
        room: &mut [u8],
        free: &mut usize,
    ) {
        let low_4 = _mm256_set1_epi32(0xf);
        let low_12 = _mm256_set1_epi32(0xfff);
        let low_16 = _mm256_set1_epi32(0xffff);
        let table_size = _mm256_set1_epi32(1 << log);
        let limit_shift = _mm_cvtsi32_si128(32 - log as i32);
        let mut registers: [__m256i; REGISTERS] = std::array::from_fn(|r| {
            let lanes: &[u32; 8] = states[8 * r..8 * r + 8].try_into().expect("8 lanes");
            // SAFETY: reads 8 u32 of an array of 8 u32.
            unsafe { _mm256_loadu_si256(lanes.as_ptr().cast()) }
        });
        let mut at = *free;
        for step in symbols.chunks_exact(LANES).rev() {
            for (states, lanes) in registers.iter_mut().zip(step.chunks_exact(8)).rev() {
                let lanes: &[u8; 8] = lanes.try_into().expect("8 lanes");
                // Eight loads and inserts: a third faster here than two gathers of four entries.
                let entry = |lane: usize| table[usize::from(lanes[lane])] as i64;
                let low = _mm256_set_epi64x(entry(3), entry(2), entry(1), entry(0));
                let high = _mm256_set_epi64x(entry(7), entry(6), entry(5), entry(4));
                // The entries' low and high halves, each back in lane order.
                let (low, high) = (_mm256_castsi256_ps(low), _mm256_castsi256_ps(high));
                let magic = _mm256_permute4x64_epi64::<0xd8>(_mm256_castps_si256(
                    _mm256_shuffle_ps::<0x88>(low, high),
                ));
                let params = _mm256_permute4x64_epi64::<0xd8>(_mm256_castps_si256(
                    _mm256_shuffle_ps::<0xdd>(low, high),
                ));
                let count = _mm256_and_si256(params, low_12);
                let limit = _mm256_sll_epi32(count, limit_shift);
                let sheds = _mm256_cmpeq_epi32(_mm256_max_epu32(*states, limit), *states);
                let mask = _mm256_movemask_ps(_mm256_castsi256_ps(sheds)) as usize;
                let words = _mm256_and_si256(*states, low_16);
                let words = _mm256_permute4x64_epi64::<0x08>(_mm256_packus_epi32(words, words));
                // SAFETY: reads the 16 bytes of one row.
                let order = unsafe { _mm_loadu_si128(SHED_TO_TOP[mask].as_ptr().cast()) };
                let words = _mm_shuffle_epi8(_mm256_castsi256_si128(words), order);
                // At least ROOM_BELOW bytes lie below the words kept so far.
                let below = &mut room[at - 16..at];
                // SAFETY: writes the 16 bytes of `below`.
                unsafe { _mm_storeu_si128(below.as_mut_ptr().cast(), words) };
                at -= 2 * mask.count_ones() as usize;
                let x = _mm256_blendv_epi8(*states, _mm256_srli_epi32::<16>(*states), sheds);
                // x / count, from the high words of x * magic, lane by lane.
                let even = _mm256_mul_epu32(x, magic);
                let odd =
                    _mm256_mul_epu32(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(magic));
                let t = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(even), odd);
                let sh1 = _mm256_srli_epi32::<28>(params);
                let sh2 = _mm256_and_si256(_mm256_srli_epi32::<24>(params), low_4);
                let quotient = _mm256_srlv_epi32(
                    _mm256_add_epi32(t, _mm256_srlv_epi32(_mm256_sub_epi32(x, t), sh1)),
                    sh2,
                );
                let complement = _mm256_sub_epi32(table_size, count);
                let cum = _mm256_and_si256(_mm256_srli_epi32::<12>(params), low_12);
                *states = _mm256_add_epi32(
                    _mm256_add_epi32(x, _mm256_mullo_epi32(quotient, complement)),
                    cum,
                );
            }
        }
        for (lanes, states) in states.chunks_exact_mut(8).zip(registers) {
            let lanes: &mut [u32; 8] = lanes.try_into().expect("8 lanes");
            // SAFETY: writes 8 u32 into an array of 8 u32.
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), states) };
        }
        *free = at;
    }

    /// Decodes whole steps of [`LANES`] symbols from the start of `out` while a step's words are surely in
    /// the stream, exactly as `decode_scalar` would; returns the symbols decoded.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn decode_steps(
        table: &[Entry; TABLE_SIZE],
        log: u32,
        states: &mut [u32; LANES],
        reader: &mut WordReader,
        out: &mut [u8],
    ) -> usize {
        let slot_mask = _mm256_set1_epi32((1 << log) - 1);
        let low_12 = _mm256_set1_epi32(0xfff);
        let log = _mm_cvtsi32_si128(log as i32);
        let zero = _mm256_setzero_si256();
        // The symbols of two registers, packed to bytes, come out in the order 0-3, 8-11, 4-7, 12-15 (in
        // 32-bit groups); this puts them back in order.
        let symbol_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let mut registers: [__m256i; REGISTERS] = std::array::from_fn(|r| {
            let lanes: &[u32; 8] = states[8 * r..8 * r + 8].try_into().expect("8 lanes");
            // SAFETY: reads 8 u32 of an array of 8 u32.
            unsafe { _mm256_loadu_si256(lanes.as_ptr().cast()) }
        });
        let mut done = 0;
        // A step loads 16 bytes of words per register, each from where the one before stopped reading, which
        // is at most 16 bytes further.
        while done + LANES <= out.len() && reader.pos + 16 * REGISTERS <= reader.words.len() {
            // SAFETY: every gather index is masked below 2^log <= TABLE_SIZE, the table's length.
            let entries = registers.map(|states| unsafe {
                _mm256_i32gather_epi32::<4>(
                    table.as_ptr().cast(),
                    _mm256_and_si256(states, slot_mask),
                )
            });
            for (states, entries) in registers.iter_mut().zip(entries) {
                let count = _mm256_and_si256(entries, low_12);
                let bias = _mm256_and_si256(_mm256_srli_epi32::<12>(entries), low_12);
                let scaled = _mm256_mullo_epi32(count, _mm256_srl_epi32(*states, log));
                *states = _mm256_add_epi32(scaled, bias);
            }
            for (pair, target) in entries
                .chunks_exact(2)
                .zip(out[done..done + LANES].chunks_exact_mut(16))
            {
                let symbols = _mm256_packus_epi16(
                    _mm256_packus_epi32(
                        _mm256_srli_epi32::<24>(pair[0]),
                        _mm256_srli_epi32::<24>(pair[1]),
                    ),
                    zero,
                );
                let symbols = _mm256_permutevar8x32_epi32(symbols, symbol_order);
                // SAFETY: stores 16 bytes into `target`, which holds 16.
                unsafe {
                    _mm_storeu_si128(target.as_mut_ptr().cast(), _mm256_castsi256_si128(symbols))
                };
            }
            for states in &mut registers {
                let wants = _mm256_cmpeq_epi32(_mm256_srli_epi32::<16>(*states), zero);
                let mask = _mm256_movemask_ps(_mm256_castsi256_ps(wants)) as usize;
                let next = &reader.words[reader.pos..reader.pos + 16];
                // SAFETY: loads 16 bytes of `next`, which holds 16.
                let words = _mm256_cvtepu16_epi32(unsafe { _mm_loadu_si128(next.as_ptr().cast()) });
                // SAFETY: reads 8 u32 of a row of 8 u32.
                let index = unsafe { _mm256_loadu_si256(WORD_INDEX[mask].as_ptr().cast()) };
                let words = _mm256_permutevar8x32_epi32(words, index);
                let refilled = _mm256_or_si256(_mm256_slli_epi32::<16>(*states), words);
                *states = _mm256_blendv_epi8(*states, refilled, wants);
                reader.pos += 2 * mask.count_ones() as usize;
            }
            done += LANES;
        }
        for (lanes, states) in states.chunks_exact_mut(8).zip(registers) {
            let lanes: &mut [u32; 8] = lanes.try_into().expect("8 lanes");
            // SAFETY: writes 8 u32 into an array of 8 u32.
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), states) };
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::histogram;
    use proptest::prelude::*;

    /// The body from both encoding paths, which must write the same bytes.
    fn encoded(symbols: &[u8]) -> Vec<u8> {
        encoded_with(symbols, &Frequencies::for_histogram(&histogram(symbols)))
    }

    fn encoded_with(symbols: &[u8], frequencies: &Frequencies) -> Vec<u8> {
        let (mut vector, mut scalar) = (Vec::new(), Vec::new());
        encode(symbols, frequencies, &mut vector);
        encode_portable(symbols, frequencies, &mut scalar);
        assert!(
            vector == scalar,
            "the vector encoder differs from the scalar one"
        );
        vector
    }

    /// Both decoding paths, which must agree on every body, intact or not.
    fn decode_both(body: &[u8], len: usize) -> Result<Vec<u8>, Error> {
        let mut vector = vec![0; len];
        let mut scalar = vec![0; len];
        let from_vector = decode(body, &mut vector);
        let from_scalar = decode_portable(body, &mut scalar);
        assert_eq!(from_vector, from_scalar);
        assert_eq!(vector, scalar);
        from_vector.map(|()| vector)
    }

    /// Exponent-like symbols: a geometric spread around 120.
    fn skewed(len: usize, seed: u64) -> Vec<u8> {
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
        let body = encoded(&symbols);
        assert_eq!(decode_both(&body, symbols.len()).unwrap(), symbols);
        crate::entropy::test_symbols::assert_near_entropy(&symbols, body.len(), 1.003, 200.0);
    }

    #[test]
    fn every_length_around_the_lanes_round_trips() {
        for len in [
            0,
            1,
            2,
            15,
            16,
            17,
            LANES - 1,
            LANES,
            LANES + 1,
            2 * LANES + 3,
            1000,
        ] {
            let mut symbols = skewed(len, len as u64);
            // Two symbols at least, so that no symbol takes the whole table.
            symbols.extend([0, 255]);
            let body = encoded(&symbols);
            assert_eq!(decode_both(&body, symbols.len()).unwrap(), symbols, "{len}");
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
        let body = encoded_with(&symbols, &frequencies);
        assert_eq!(decode_both(&body, symbols.len()).unwrap(), symbols);
        let spread: Vec<u8> = (0..20_000u32).map(|i| (i * 37 % 23) as u8 * 11).collect();
        for log in [5, 9, 12] {
            let frequencies = Frequencies::normalize(&histogram(&spread), log);
            let body = encoded_with(&spread, &frequencies);
            assert_eq!(
                decode_both(&body, spread.len()).unwrap(),
                spread,
                "log {log}"
            );
        }
    }

    #[test]
    fn damaged_bodies_are_errors() {
        let symbols = skewed(5000, 3);
        let body = encoded(&symbols);
        assert!(decode_both(&body[..body.len() - 2], symbols.len()).is_err());
        assert!(decode_both(&body[..body.len() - 1], symbols.len()).is_err());
        let mut longer = body.clone();
        longer.extend([0, 0]);
        assert!(decode_both(&longer, symbols.len()).is_err());
        assert!(decode_both(&body, symbols.len() + 1).is_err());
        // One symbol with the whole table cannot be a rANS block.
        let mut histogram = [0u32; 256];
        histogram[9] = 10;
        let mut one_symbol = Vec::new();
        Frequencies::derive(&histogram, 5).write(&mut one_symbol);
        one_symbol.extend([0; 4 * LANES]);
        assert_eq!(
            decode_both(&one_symbol, 10),
            Err(Error::InvalidTable("rANS symbol takes the whole table"))
        );
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
            let body = encoded(&symbols);
            prop_assert_eq!(decode_both(&body, symbols.len()).unwrap(), symbols);
        }

        #[test]
        fn corrupt_bodies_never_panic_and_both_paths_agree(
            seed in any::<u64>(),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let symbols = skewed(3000, seed);
            let mut body = encoded(&symbols);
            for (at, bits) in flips {
                let at = at % body.len();
                body[at] ^= bits;
            }
            let _ = decode_both(&body, symbols.len());
        }
    }
}
