//! The AVX2 coder: eight states a register, two registers a group of 16 lanes. Every pointer access is a
//! load or store of a slice or array at least as long as the access (each block says why), and every
//! gather index is masked below the table's length.

use super::pairs::{self, ESCAPE};
use super::{put_coded_x16, Entry, WordReader, LOWER, TABLE_SIZE};
use std::arch::x86_64::*;

// A state wants a word when its top 16 bits are zero.
const _: () = assert!(LOWER == 1 << 16);

/// For each 8-bit mask of the lanes (of eight) that read a word, where each lane finds its word among the
/// next eight: lane `l` takes word number (set bits of the mask below `l`).
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

/// The states of `GROUPS` groups of 16 lanes, two registers a group.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn load<const GROUPS: usize>(states: &[[u32; 16]; GROUPS]) -> [[__m256i; 2]; GROUPS] {
    states.map(|group| {
        std::array::from_fn(|half| {
            // SAFETY: reads 8 u32 of an array of 16, starting at 0 or 8.
            unsafe { _mm256_loadu_si256(group[8 * half..].as_ptr().cast()) }
        })
    })
}

/// Writes `registers` back to `states`, the inverse of [`load`].
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn store<const GROUPS: usize>(
    registers: [[__m256i; 2]; GROUPS],
    states: &mut [[u32; 16]; GROUPS],
) {
    for (group, registers) in states.iter_mut().zip(registers) {
        for (half, register) in group.chunks_exact_mut(8).zip(registers) {
            // SAFETY: writes 8 u32 into a chunk of 8 u32.
            unsafe { _mm256_storeu_si256(half.as_mut_ptr().cast(), register) };
        }
    }
}

/// Codes whole steps of `16 * GROUPS` symbols onto `states`, last step first, exactly as `encode_scalar`
/// would: each symbol's parameters one 64-bit entry of `table` ([`super::vector_symbol_table`]), the shed
/// words of eight lanes stored together below `free` in `room`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn encode_steps<const GROUPS: usize>(
    table: &[u64; 256],
    log: u32,
    states: &mut [[u32; 16]; GROUPS],
    symbols: &[u8],
    room: &mut [u8],
    free: &mut usize,
) {
    let low_4 = _mm256_set1_epi32(0xf);
    let low_12 = _mm256_set1_epi32(0xfff);
    let low_16 = _mm256_set1_epi32(0xffff);
    let table_size = _mm256_set1_epi32(1 << log);
    let limit_shift = _mm_cvtsi32_si128(32 - log as i32);
    // SAFETY: AVX2 is available (this function's contract).
    let mut registers = unsafe { load(states) };
    let mut at = *free;
    for step in symbols.chunks_exact(16 * GROUPS).rev() {
        let registers = registers.as_flattened_mut();
        for (states, lanes) in registers.iter_mut().zip(step.chunks_exact(8)).rev() {
            let lanes: &[u8; 8] = lanes.try_into().expect("8 lanes");
            // Eight loads and inserts: a third faster here than two gathers of four entries.
            let entry = |lane: usize| table[usize::from(lanes[lane])] as i64;
            let low = _mm256_set_epi64x(entry(3), entry(2), entry(1), entry(0));
            let high = _mm256_set_epi64x(entry(7), entry(6), entry(5), entry(4));
            // The entries' low and high halves, each back in lane order.
            let (low, high) = (_mm256_castsi256_ps(low), _mm256_castsi256_ps(high));
            let magic =
                _mm256_permute4x64_epi64::<0xd8>(_mm256_castps_si256(_mm256_shuffle_ps::<0x88>(
                    low, high,
                )));
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
            let odd = _mm256_mul_epu32(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(magic));
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
    // SAFETY: AVX2 is available (this function's contract).
    unsafe { store(registers, states) };
    *free = at;
}

/// Decodes whole steps of `16 * GROUPS` coded symbols while a step's words are surely in the stream, exactly
/// as `decode_scalar` would, into `out` from its start as the output of kind `JOIN` would put them
/// (`put_coded_x16`: the symbols, or values joined with `others`; where `PAIRED`, two symbols a coded one,
/// by `ranks`); returns the coded symbols decoded.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2,popcnt")]
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
    let slot_mask = _mm256_set1_epi32((1 << log) - 1);
    let low_12 = _mm256_set1_epi32(0xfff);
    let log = _mm_cvtsi32_si128(log as i32);
    let zero = _mm256_setzero_si256();
    // The symbols of a group's two registers, packed to bytes, come out in the order 0-3, 8-11, 4-7, 12-15
    // (in 32-bit groups); this puts them back in order.
    let symbol_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    // SAFETY: AVX2 is available (this function's contract).
    let mut registers = unsafe { load(states) };
    let mut done = 0;
    // A step loads 16 bytes of words per register, each from where the one before stopped reading, which is
    // at most 16 bytes further.
    while done + 16 * GROUPS <= len && reader.pos + 32 * GROUPS <= reader.words.len() {
        // SAFETY: every gather index is masked below 2^log <= TABLE_SIZE, the table's length.
        let entries = registers.map(|group| {
            group.map(|states| unsafe {
                _mm256_i32gather_epi32::<4>(
                    table.as_ptr().cast(),
                    _mm256_and_si256(states, slot_mask),
                )
            })
        });
        for (states, entries) in registers
            .as_flattened_mut()
            .iter_mut()
            .zip(entries.as_flattened())
        {
            let count = _mm256_and_si256(*entries, low_12);
            let bias = _mm256_and_si256(_mm256_srli_epi32::<12>(*entries), low_12);
            let scaled = _mm256_mullo_epi32(count, _mm256_srl_epi32(*states, log));
            *states = _mm256_add_epi32(scaled, bias);
        }
        for (group, [first, second]) in entries.iter().enumerate() {
            let symbols = _mm256_packus_epi16(
                _mm256_packus_epi32(
                    _mm256_srli_epi32::<24>(*first),
                    _mm256_srli_epi32::<24>(*second),
                ),
                zero,
            );
            let symbols =
                _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(symbols, symbol_order));
            put_coded_x16::<JOIN, PAIRED>(symbols, ranks, others, done + 16 * group, out);
        }
        for states in registers.as_flattened_mut() {
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
        done += 16 * GROUPS;
    }
    // SAFETY: AVX2 is available (this function's contract).
    unsafe { store(registers, states) };
    done
}

/// [`super::pairs`]'s pairing of ranks for whole batches of 64 symbols: each symbol's rank looked up, for each
/// high nibble that any of the table's symbols has (two or three for exponents), with a byte shuffle of its
/// row of the 256-byte rank table by the low nibble, kept where the high nibble matches (the others escape);
/// each 16-bit lane's two ranks then narrowed to one byte. Batches holding an escape append their escaped
/// symbols to `escaped`, in order. Returns the symbols paired.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pair_ranks(
    ranks: &[u8; 256],
    symbols: &[u8],
    pairs: &mut [u8],
    escaped: &mut Vec<u8>,
) -> usize {
    let escape = _mm256_set1_epi8(ESCAPE as i8);
    let nibble = _mm256_set1_epi8(0x0f);
    // The rows with a ranked symbol, each in both halves of a register, beside its high nibble.
    let mut rows = [(escape, escape); 16];
    let mut used = 0;
    for (high, row) in ranks.chunks_exact(16).enumerate() {
        if row.iter().any(|&rank| rank != ESCAPE) {
            // SAFETY: reads the 16 bytes of `row`.
            let row = unsafe { _mm_loadu_si128(row.as_ptr().cast()) };
            rows[used] = (
                _mm256_broadcastsi128_si256(row),
                _mm256_set1_epi8(high as i8),
            );
            used += 1;
        }
    }
    let rows = &rows[..used];
    let rank = |symbols: __m256i| {
        let low = _mm256_and_si256(symbols, nibble);
        let high = _mm256_and_si256(_mm256_srli_epi16::<4>(symbols), nibble);
        rows.iter().fold(escape, |ranked, &(row, row_high)| {
            let found = _mm256_shuffle_epi8(row, low);
            _mm256_blendv_epi8(ranked, found, _mm256_cmpeq_epi8(high, row_high))
        })
    };
    // A lane's first rank (its low byte) stays in the low nibble, its second moves up from bit 8 to bit 4.
    let pair = |ranks: __m256i| {
        _mm256_or_si256(
            _mm256_and_si256(ranks, _mm256_set1_epi16(0x0f)),
            _mm256_and_si256(_mm256_srli_epi16::<4>(ranks), _mm256_set1_epi16(0xf0)),
        )
    };
    // SAFETY (closure): reads 32 bytes of a slice at least that long.
    let load = |bytes: &[u8]| unsafe { _mm256_loadu_si256(bytes[..32].as_ptr().cast()) };
    let mut done = 0;
    for (batch, out) in symbols.chunks_exact(64).zip(pairs.chunks_exact_mut(32)) {
        let (first, second) = (rank(load(batch)), rank(load(&batch[32..])));
        // The pack interleaves the halves' 8-byte runs; the permute puts them back in order.
        let packed = _mm256_packus_epi16(pair(first), pair(second));
        let packed = _mm256_permute4x64_epi64::<0b11_01_10_00>(packed);
        // SAFETY: writes the 32 bytes of `out`.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), packed) };
        let escapes = _mm256_or_si256(
            _mm256_cmpeq_epi8(first, escape),
            _mm256_cmpeq_epi8(second, escape),
        );
        if _mm256_movemask_epi8(escapes) != 0 {
            let escapes = batch
                .iter()
                .filter(|&&symbol| ranks[usize::from(symbol)] == ESCAPE);
            escaped.extend(escapes);
        }
        done += 64;
    }
    done
}
