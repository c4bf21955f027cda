//! The AVX-512 coder: sixteen states a register. Against two AVX2 registers the decoder needs half the
//! instructions a step, a mask register says which lanes read a word, and one expand hands those lanes their
//! words in order (where AVX2 needs a table of shuffles): on Zen 4, 9% faster restores of MiniLM's FP8 file
//! with 32 lanes, 23% with 64. The encoder compresses the shedding lanes in one instruction too (where AVX2
//! shuffles from a table): 1.95 GiB/s with 32 lanes against AVX2's 1.51. Every pointer access is a load or
//! store of a slice or array at least as long as the access (each block says why), and every gather index
//! is masked below the table's length.

use super::{
    join, pair_ranks_in_order, pairs, put_coded_x16, put_escapes, Entry, WordReader, LOWER,
    TABLE_SIZE,
};
use std::arch::x86_64::*;

/// Decodes whole steps of `16 * GROUPS` coded symbols while a step's words are surely in the stream, exactly
/// as `decode_scalar` would, into `out` from its start as the output of kind `JOIN` would put them
/// (`put_coded_x16`: the symbols, or values joined with `others`; where `PAIRED`, two symbols a coded one,
/// by `ranks`); returns the coded symbols decoded.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX-512VL.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
pub(super) unsafe fn decode_steps<const GROUPS: usize, const JOIN: u8, const PAIRED: bool>(
    table: &[Entry; TABLE_SIZE],
    log: u32,
    states: &mut [[u32; 16]; GROUPS],
    reader: &mut WordReader,
    ranks: &mut pairs::Ranks,
    others: &[&[u8]; 3],
    out: &mut [u8],
) -> usize {
    // Coded symbols whose values are all there: an odd FP8 pair's last symbol, or an odd stream's last pair
    // of symbols where `PAIRED`, is the scalar tail's.
    let len = out.len() / super::join::bytes_per_symbol(JOIN) / if PAIRED { 2 } else { 1 };
    let slot_mask = _mm512_set1_epi32((1 << log) - 1);
    let low_12 = _mm512_set1_epi32(0xfff);
    let lower = _mm512_set1_epi32(LOWER as i32);
    let log = _mm_cvtsi32_si128(log as i32);
    // SAFETY (both closures): reads or writes the 16 u32 of one group.
    let mut registers = states.map(|group| unsafe { _mm512_loadu_si512(group.as_ptr().cast()) });
    let (words, mut pos) = (reader.words, reader.pos);
    let mut done = 0;
    // A step loads 32 bytes of words per register, each from where the one before stopped reading, which is
    // at most 32 bytes further.
    while done + 16 * GROUPS <= len && pos + 32 * GROUPS <= words.len() {
        // SAFETY: every gather index is masked below 2^log <= TABLE_SIZE, the table's length.
        let entries = registers.map(|states| unsafe {
            _mm512_i32gather_epi32::<4>(_mm512_and_si512(states, slot_mask), table.as_ptr().cast())
        });
        for (group, (states, entries)) in registers.iter_mut().zip(entries).enumerate() {
            let count = _mm512_and_si512(entries, low_12);
            let bias = _mm512_and_si512(_mm512_srli_epi32::<12>(entries), low_12);
            let scaled = _mm512_mullo_epi32(count, _mm512_srl_epi32(*states, log));
            *states = _mm512_add_epi32(scaled, bias);
            let symbols = _mm512_cvtepi32_epi8(_mm512_srli_epi32::<24>(entries));
            let at = done + 16 * group;
            if PAIRED && JOIN == join::FIELDS16 {
                put_paired_fields16(symbols, ranks, others[0], at, out);
            } else {
                put_coded_x16::<JOIN, PAIRED>(symbols, ranks, others, at, out);
            }
        }
        for states in &mut registers {
            let wants = _mm512_cmplt_epu32_mask(*states, lower);
            let next = &words[pos..pos + 32];
            // SAFETY: loads 32 bytes of `next`, which holds 32.
            let next = _mm512_cvtepu16_epi32(unsafe { _mm256_loadu_si256(next.as_ptr().cast()) });
            // The wanting lanes take the next words in lane order.
            let next = _mm512_maskz_expand_epi32(wants, next);
            let refilled = _mm512_or_si512(_mm512_slli_epi32::<16>(*states), next);
            *states = _mm512_mask_mov_epi32(*states, wants, refilled);
            pos += 2 * wants.count_ones() as usize;
        }
        done += 16 * GROUPS;
    }
    reader.pos = pos;
    for (group, registers) in states.iter_mut().zip(registers) {
        // SAFETY: writes the 16 u32 of one group.
        unsafe { _mm512_storeu_si512(group.as_mut_ptr().cast(), registers) };
    }
    done
}

/// Puts the 32 symbols that 16 coded pairs give, as `put_coded_x16` would for 16-bit values, in 512-bit
/// registers: ranks to symbols with one byte shuffle of 32, symbols and `low`'s bytes widened to 16 bits and
/// joined, one 64-byte store (with the 128-bit path's two joins of 16 and four stores, MiniLM's BF16 file
/// restored 12% slower).
#[inline(always)]
fn put_paired_fields16(
    coded: __m128i,
    ranks: &mut pairs::Ranks,
    low: &[u8],
    at: usize,
    out: &mut [u8],
) {
    let (low, values) = (&low[2 * at..2 * at + 32], &mut out[4 * at..4 * at + 64]);
    // SAFETY: loads the 16 bytes of the table and the 32 of `low`, stores the 64 of `values`; this is
    // inlined into `decode_steps`, whose callers guarantee AVX-512F, BW and VL.
    let escaped = unsafe {
        let (first, second) = pair_ranks_in_order(coded);
        let in_order = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(first), second);
        let table = _mm256_broadcastsi128_si256(_mm_loadu_si128(ranks.table().as_ptr().cast()));
        let symbols = _mm512_cvtepu8_epi16(_mm256_shuffle_epi8(table, in_order));
        let low = _mm512_cvtepu8_epi16(_mm256_loadu_si256(low.as_ptr().cast()));
        // Bit 15 from the low byte's top bit, bits 14..7 the symbol, bits 6..0 the low byte's.
        let top = _mm512_and_si512(_mm512_slli_epi16::<8>(low), _mm512_set1_epi16(i16::MIN));
        let bottom = _mm512_and_si512(low, _mm512_set1_epi16(0x7f));
        let joined = _mm512_or_si512(
            _mm512_or_si512(top, bottom),
            _mm512_slli_epi16::<7>(symbols),
        );
        _mm512_storeu_si512(values.as_mut_ptr().cast(), joined);
        _mm256_cmpeq_epi8_mask(in_order, _mm256_set1_epi8(pairs::ESCAPE as i8))
    };
    if escaped != 0 {
        put_escapes(join::FIELDS16, escaped, ranks, 2 * at, out);
    }
}

/// Symbols whose coding parameters the encoder keeps in registers: two registers of sixteen each.
const WINDOW: usize = 32;

/// The window is used where all but at most this fraction of a table's counts fall in it (1 / 1024 of the
/// symbols outside sends about 1.5% of the steps to the slower path).
const WINDOW_SHARE: u32 = 1024;

/// Codes whole steps of `16 * GROUPS` symbols onto `states`, last step first, exactly as `encode_scalar`
/// would: each symbol's parameters one 64-bit entry of `table` ([`super::vector_symbol_table`]), and the
/// words a register sheds put in lane order at the top of one 32-byte store ending at `free` in `room`.
/// The entries of the 32 symbols that occur most are held in registers, and sixteen symbols among them
/// take theirs with two permutes; sixteen with any other load theirs one by one (two gathers of eight were
/// slower). Exponents span a few dozen values, nearly all within 32: on Zen 4 the permutes code the
/// synthetic exponents of `cargo bench -p tenzip-codec --bench coder -- coder/encode` 25% faster in 64
/// lanes (2.26 GiB/s against 1.80) and 4% in 32, and MiniLM's BF16 file compresses 7% faster.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX-512VL.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
pub(super) unsafe fn encode_steps<const GROUPS: usize>(
    table: &[u64; 256],
    log: u32,
    states: &mut [[u32; 16]; GROUPS],
    symbols: &[u8],
    room: &mut [u8],
    free: &mut usize,
) {
    // The 32 consecutive symbols with the most counts (a count is the low 12 bits of an entry's parameters).
    // Where they are not nearly all the symbols (FP8 codes, signs with exponents), every step loads entries
    // one by one, with no window to check (a check, and the window's four registers, cost 5% there).
    let counts = table.map(|entry| (entry >> 32) as u32 & 0xfff);
    let mut in_window: u32 = counts[..WINDOW].iter().sum();
    let (mut window, mut most) = (0, in_window);
    for start in 1..=256 - WINDOW {
        in_window = in_window + counts[start + WINDOW - 1] - counts[start - 1];
        if in_window > most {
            (window, most) = (start, in_window);
        }
    }
    let total: u32 = counts.iter().sum();
    // SAFETY (both calls): the caller's promise.
    if most >= total - total / WINDOW_SHARE {
        unsafe { code_steps::<GROUPS, true>(table, window, log, states, symbols, room, free) }
    } else {
        unsafe { code_steps::<GROUPS, false>(table, window, log, states, symbols, room, free) }
    }
}

/// [`encode_steps`], the entries of symbols `window..window + 32` in registers where `WINDOWED`.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX-512VL.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
unsafe fn code_steps<const GROUPS: usize, const WINDOWED: bool>(
    table: &[u64; 256],
    window: usize,
    log: u32,
    states: &mut [[u32; 16]; GROUPS],
    symbols: &[u8],
    room: &mut [u8],
    free: &mut usize,
) {
    let low_4 = _mm512_set1_epi32(0xf);
    let low_12 = _mm512_set1_epi32(0xfff);
    let table_size = _mm512_set1_epi32(1 << log);
    let limit_shift = _mm_cvtsi32_si128(32 - log as i32);
    // The even and the odd 32-bit halves of sixteen 64-bit entries in two registers: magic numbers and
    // parameters, each in lane order.
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    // Word `k` of a register's low half at `2k`: the low halves of sixteen 32-bit lanes, in order.
    let low_halves: [u16; 32] = std::array::from_fn(|word| (2 * word % 32) as u16);
    // SAFETY: reads the 64 bytes of `low_halves`.
    let low_halves = unsafe { _mm512_loadu_si512(low_halves.as_ptr().cast()) };
    // The magic numbers and parameters of the window's symbols, sixteen a register.
    let halves = |high: bool| -> [__m512i; 2] {
        let half: [u32; WINDOW] =
            std::array::from_fn(|symbol| (table[window + symbol] >> (32 * u32::from(high))) as u32);
        // SAFETY (both loads): read 16 u32 of `half`, which holds 32.
        unsafe {
            [
                _mm512_loadu_si512(half.as_ptr().cast()),
                _mm512_loadu_si512(half[16..].as_ptr().cast()),
            ]
        }
    };
    let ([magic_low, magic_high], [params_low, params_high]) = (halves(false), halves(true));
    let window_start = _mm512_set1_epi32(window as i32);
    let window_len = _mm512_set1_epi32(WINDOW as i32);
    // SAFETY (both closures): reads or writes the 16 u32 of one group.
    let mut registers = states.map(|group| unsafe { _mm512_loadu_si512(group.as_ptr().cast()) });
    let mut at = *free;
    for step in symbols.chunks_exact(16 * GROUPS).rev() {
        for (states, lanes) in registers.iter_mut().zip(step.chunks_exact(16)).rev() {
            let lanes: &[u8; 16] = lanes.try_into().expect("16 lanes");
            // SAFETY: loads the 16 bytes of `lanes`.
            let lane_symbols =
                _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(lanes.as_ptr().cast()) });
            let in_window = _mm512_sub_epi32(lane_symbols, window_start);
            let (magic, params) = if WINDOWED && _mm512_cmpge_epu32_mask(in_window, window_len) == 0
            {
                (
                    _mm512_permutex2var_epi32(magic_low, in_window, magic_high),
                    _mm512_permutex2var_epi32(params_low, in_window, params_high),
                )
            } else {
                let entry = |lane: usize| table[usize::from(lanes[lane])] as i64;
                let first = _mm512_set_epi64(
                    entry(7),
                    entry(6),
                    entry(5),
                    entry(4),
                    entry(3),
                    entry(2),
                    entry(1),
                    entry(0),
                );
                let second = _mm512_set_epi64(
                    entry(15),
                    entry(14),
                    entry(13),
                    entry(12),
                    entry(11),
                    entry(10),
                    entry(9),
                    entry(8),
                );
                (
                    _mm512_permutex2var_epi32(first, even, second),
                    _mm512_permutex2var_epi32(first, odd, second),
                )
            };
            let count = _mm512_and_si512(params, low_12);
            let limit = _mm512_sll_epi32(count, limit_shift);
            let sheds = _mm512_cmpge_epu32_mask(*states, limit);
            let shed = sheds.count_ones() as usize;
            // The shedding lanes' states, in lane order, in the low lanes; then their low halves, as the
            // top `shed` of sixteen 16-bit words (the words below them are not kept). The index depends on
            // `shed`, which keeps the compiler from seeing a truncation and storing it with `vpmovdw`,
            // which is microcoded on Zen 4 (a third of the time).
            let compressed = _mm512_maskz_compress_epi32(sheds, *states);
            let offset = _mm512_set1_epi16(2 * (16 - shed as i16));
            let words = _mm512_permutexvar_epi16(_mm512_sub_epi16(low_halves, offset), compressed);
            let words = _mm512_castsi512_si256(words);
            let below = &mut room[at - 32..at];
            // SAFETY: writes the 32 bytes of `below`.
            unsafe { _mm256_storeu_si256(below.as_mut_ptr().cast(), words) };
            at -= 2 * shed;
            let x = _mm512_mask_srli_epi32(*states, sheds, *states, 16);
            // x / count, from the high words of x * magic, lane by lane.
            let even_products = _mm512_mul_epu32(x, magic);
            let odd_products =
                _mm512_mul_epu32(_mm512_srli_epi64::<32>(x), _mm512_srli_epi64::<32>(magic));
            let t = _mm512_mask_blend_epi32(
                0xaaaa,
                _mm512_srli_epi64::<32>(even_products),
                odd_products,
            );
            let sh1 = _mm512_srli_epi32::<28>(params);
            let sh2 = _mm512_and_si512(_mm512_srli_epi32::<24>(params), low_4);
            let quotient = _mm512_srlv_epi32(
                _mm512_add_epi32(t, _mm512_srlv_epi32(_mm512_sub_epi32(x, t), sh1)),
                sh2,
            );
            let complement = _mm512_sub_epi32(table_size, count);
            let cum = _mm512_and_si512(_mm512_srli_epi32::<12>(params), low_12);
            *states = _mm512_add_epi32(
                _mm512_add_epi32(x, _mm512_mullo_epi32(quotient, complement)),
                cum,
            );
        }
    }
    for (group, registers) in states.iter_mut().zip(registers) {
        // SAFETY: writes the 16 u32 of one group.
        unsafe { _mm512_storeu_si512(group.as_mut_ptr().cast(), registers) };
    }
    *free = at;
}
