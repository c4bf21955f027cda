//! Table-based asymmetric numeral systems (tANS): near-entropy coding for skewed streams.
//!
//! Huffman codes spend whole bits per symbol, which costs one to two percent on the skewed exponent streams
//! of neural-network weights; tANS spends fractions of a bit and lands within a few thousandths of the
//! order-0 entropy. The encoder uses it where it pays enough to be worth its slower decoding.
//!
//! Body layout: the table log and the normalised frequencies (summing to `2^log`; see [`Frequencies`] for
//! their encoding), then, for streams of [`SPLIT_STREAM_MIN`] symbols or more, `u32 LE` the byte length of
//! sub-stream 0 and sub-streams 0 and 1; shorter streams are one sub-stream. Sub-stream 0 codes the first
//! `ceil(n/2)` symbols, sub-stream 1 the rest; the decoder runs them in lockstep, because each has a serial
//! read position and two chains overlap in the CPU.
//!
//! The table log is the encoder's choice per block, from 5 to 12: a long stream wants the finest
//! frequencies, a short one (one channel of a per-channel chunk: a few thousand symbols) is smaller with a
//! coarser table, whose counts take one byte each and whose states take fewer bits, and it decodes faster
//! because its decoding table is smaller to build.
//!
//! Within a sub-stream four states take symbols in turn (symbol `i` of it goes to state `i % 4`), so that
//! their table lookups overlap too. The encoder walks the symbols backwards and writes bits
//! least-significant first; after the last symbol it writes the four final states (`log` bits each,
//! state 0 first) and a single 1 bit, then pads to a byte with zeros. The decoder finds that 1 bit in the
//! last byte, reads the states back and then the symbols forwards, reading the stream from its end. An
//! intact sub-stream is consumed exactly and leaves every state at its initial value.

use super::bits::{write_bit_streams, BitWriter};
use super::take;
use crate::Error;
use std::cell::RefCell;

/// The finest table: states of a block with table log `log` live in `[2^log, 2^(log+1))`, and its decoding
/// table has `2^log` entries (16 KiB at most).
pub const MAX_TABLE_LOG: u32 = 12;
/// The coarsest table: 32 entries.
const MIN_TABLE_LOG: u32 = 5;
/// Tables are allocated at the largest size, so that indices masked by it need no bounds check.
const TABLE_SIZE: usize = 1 << MAX_TABLE_LOG;
/// Streams this long or longer are coded as two sub-streams; below it the second set of final states and
/// the length field cost more than the overlap saves.
pub const SPLIT_STREAM_MIN: usize = 8192;
/// How many decoding table entries weigh as much as one coded byte when a block's table size is chosen. A
/// decoder fills every entry before its first symbol, so on short streams (the channels of a per-channel
/// chunk) table building is a third of the restore time; at 16 entries a byte, whisper's BF16 file restores
/// 16% faster at the same ratio to four places.
const ENTRIES_PER_BYTE: usize = 16;
/// Streams below this length try coarser tables; longer ones gain next to nothing from a smaller table.
const TRY_COARSER_BELOW: usize = 1 << 15;
const STATES: usize = 4;
/// Below this many unread bits, a group of reads takes the checked path (the window would start before
/// the stream, or a corrupt stream could read past its start).
const FAST_GROUP_MIN_BITS: usize = 64;

/// Normalised frequencies: each symbol that occurs gets at least 1, and they sum to `2^log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frequencies {
    log: u32,
    counts: [u16; 256],
}

impl Frequencies {
    /// The frequencies that code `histogram` (at least two symbols occur) best: in the fewest bytes, table
    /// and framing included, with each entry of the decoding table weighed as 1/16 of a byte.
    /// The finest table for long streams, the best of the coarser ones for short ones.
    pub fn for_histogram(histogram: &[u32; 256]) -> Frequencies {
        let total = super::histogram::total(histogram);
        if total >= TRY_COARSER_BELOW as u64 {
            return Frequencies::normalize(histogram, MAX_TABLE_LOG);
        }
        let distinct = histogram.iter().filter(|&&c| c > 0).count();
        let logs = MIN_TABLE_LOG.max(distinct.next_power_of_two().ilog2())..=MAX_TABLE_LOG;
        let sized = |log: u32| {
            let frequencies = Frequencies::normalize(histogram, log);
            let len = frequencies.coded_len(histogram) + frequencies.size() / ENTRIES_PER_BYTE;
            (frequencies, len)
        };
        // The size falls as the table shrinks until rounding the frequencies costs more than the table saves,
        // then rises. Start where short streams usually end, about 16 symbols per table entry, and walk
        // towards whichever neighbour is smaller (two or three normalisations, where a walk down from the
        // finest table took six on per-channel exponents).
        let start = (total.ilog2().saturating_sub(4)).clamp(*logs.start(), *logs.end());
        let mut best = sized(start);
        for step in [-1i32, 1] {
            let mut log = start.saturating_add_signed(step);
            let mut moved = false;
            while logs.contains(&log) {
                let candidate = sized(log);
                if candidate.1 >= best.1 {
                    break;
                }
                (best, moved) = (candidate, true);
                log = log.saturating_add_signed(step);
            }
            if moved {
                break;
            }
        }
        best.0
    }

    /// Scales `histogram` (at least two and at most `2^log` symbols occur) to sum to `2^log`, then moves
    /// single units where they cost least, measured in coded bits.
    pub fn normalize(histogram: &[u32; 256], log: u32) -> Frequencies {
        let size = 1u64 << log;
        let total = super::histogram::total(histogram);
        let mut counts = [0u16; 256];
        let mut sum = 0i64;
        for (normalized, &count) in counts.iter_mut().zip(histogram) {
            if count > 0 {
                let scaled = (u64::from(count) * size + total / 2) / total;
                *normalized = scaled.clamp(1, size - 1) as u16;
                sum += i64::from(*normalized);
            }
        }
        // Cost in bits of giving symbol `s` one unit more (`delta` = 1) or less (`delta` = -1); +inf where
        // the move is not allowed. Kept per symbol that occurs (a few dozen in exponent streams, so the search
        // for the cheapest move is short) and refreshed only for the symbol that moved.
        let delta = if sum > size as i64 { -1 } else { 1 };
        let cost = |counts: &[u16; 256], s: usize| -> f64 {
            if delta < 0 && counts[s] <= 1 {
                return f64::INFINITY;
            }
            let q = f64::from(counts[s]);
            f64::from(histogram[s]) * (q / (q + f64::from(delta))).log2()
        };
        // On the stack: for_histogram normalises up to eight times per block, and blocks can be short.
        let mut present = [0usize; 256];
        let mut present_count = 0;
        for symbol in (0..256).filter(|&s| histogram[s] > 0) {
            present[present_count] = symbol;
            present_count += 1;
        }
        let present = &present[..present_count];
        let mut costs = [0f64; 256];
        for (cost_of, &symbol) in costs.iter_mut().zip(present) {
            *cost_of = cost(&counts, symbol);
        }
        let costs = &mut costs[..present_count];
        while sum != size as i64 {
            let (best, _) = costs
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .expect("a symbol occurs");
            let symbol = present[best];
            counts[symbol] = (i32::from(counts[symbol]) + delta) as u16;
            costs[best] = cost(&counts, symbol);
            sum += i64::from(delta);
        }
        Frequencies { log, counts }
    }

    /// The table log: the counts sum to `2^log`.
    pub(crate) fn log(&self) -> u32 {
        self.log
    }

    /// Entries of the table: `2^log`.
    fn size(&self) -> usize {
        1 << self.log
    }

    /// The normalised count of each symbol.
    pub(crate) fn counts(&self) -> &[u16; 256] {
        &self.counts
    }

    /// Scales `histogram` (at least one symbol, at most `2^log` distinct) to sum to `2^log` in integers
    /// only: every symbol gets its share rounded down (at least 1), and the most frequent symbols take up
    /// or give back the difference. Coarser than [`Frequencies::normalize`], but the same on every machine,
    /// for tables that encoder and decoder each derive rather than store.
    pub(crate) fn derive(histogram: &[u32; 256], log: u32) -> Frequencies {
        let size = 1u64 << log;
        let total = super::histogram::total(histogram);
        let mut counts = [0u16; 256];
        for (normalized, &count) in counts.iter_mut().zip(histogram) {
            if count > 0 {
                *normalized = (u64::from(count) * size / total).max(1) as u16;
            }
        }
        let mut by_count: Vec<usize> = (0..256).filter(|&s| counts[s] > 0).collect();
        by_count.sort_by_key(|&s| std::cmp::Reverse(counts[s]));
        let sum: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        if sum < size {
            counts[by_count[0]] += (size - sum) as u16;
        } else {
            // Units rounded up to 1 are taken back from the largest counts, one symbol after another.
            let mut excess = sum - size;
            for &symbol in &by_count {
                let give = excess.min(u64::from(counts[symbol] - 1));
                counts[symbol] -= give as u16;
                excess -= give;
            }
        }
        Frequencies { log, counts }
    }

    /// Bits the stream takes under these frequencies, plus table and framing: the encoder's estimate.
    pub fn coded_len(&self, histogram: &[u32; 256]) -> usize {
        let bits: f64 = histogram
            .iter()
            .zip(&self.counts)
            .filter(|(&c, _)| c > 0)
            .map(|(&c, &q)| f64::from(c) * (self.size() as f64 / f64::from(q)).log2())
            .sum();
        let mut table = 0;
        self.emit_table(|bytes| table += bytes.len());
        let symbols: u32 = histogram.iter().sum();
        let per_sub_stream = (STATES * self.log as usize + 8) / 8 + 1;
        let framing = if symbols as usize >= SPLIT_STREAM_MIN {
            4 + 2 * per_sub_stream
        } else {
            per_sub_stream
        };
        table + framing + (bits / 8.0).ceil() as usize
    }

    fn symbol_range(&self) -> (u8, u8) {
        let first = self.counts.iter().position(|&c| c > 0).unwrap_or(0);
        let last = self.counts.iter().rposition(|&c| c > 0).unwrap_or(0);
        (first as u8, last as u8)
    }

    /// Table format: the table log, `first`, `last`, then the counts of `first..=last` as LEB128 varints,
    /// except that a zero count is followed by one byte saying how many more zeros follow (0 to 255).
    /// Exponent streams use a few dozen symbols spread over a range that outliers stretch to a hundred or
    /// more, so zeros dominate.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        self.emit_table(|bytes| out.extend_from_slice(bytes));
    }

    /// Hands the table's bytes to `emit`, a few at a time: [`Frequencies::write`] appends them,
    /// [`Frequencies::coded_len`] counts them.
    fn emit_table(&self, mut emit: impl FnMut(&[u8])) {
        let (first, last) = self.symbol_range();
        emit(&[self.log as u8, first, last]);
        let counts = &self.counts[usize::from(first)..=usize::from(last)];
        let mut index = 0;
        while index < counts.len() {
            let count = counts[index];
            if count == 0 {
                let more = counts[index + 1..]
                    .iter()
                    .take(255)
                    .take_while(|&&c| c == 0)
                    .count();
                emit(&[0, more as u8]);
                index += 1 + more;
                continue;
            }
            if count < 0x80 {
                emit(&[count as u8]);
            } else {
                emit(&[(count & 0x7f) as u8 | 0x80, (count >> 7) as u8]);
            }
            index += 1;
        }
    }

    pub(crate) fn read(body: &[u8]) -> Result<(Frequencies, usize), Error> {
        let range = take(body, 0, 3, "tANS table")?;
        let log = u32::from(range[0]);
        if !(MIN_TABLE_LOG..=MAX_TABLE_LOG).contains(&log) {
            return Err(Error::InvalidTable("tANS table log out of range"));
        }
        let (first, last) = (usize::from(range[1]), usize::from(range[2]));
        if first > last {
            return Err(Error::InvalidTable("first symbol after last symbol"));
        }
        let mut counts = [0u16; 256];
        let mut at = 3;
        let next_byte = |at: &mut usize| -> Result<u8, Error> {
            let byte = *body.get(*at).ok_or(Error::Truncated {
                what: "tANS table",
                needed: 1,
                available: 0,
            })?;
            *at += 1;
            Ok(byte)
        };
        let mut symbol = first;
        while symbol <= last {
            let low = next_byte(&mut at)?;
            if low == 0 {
                symbol += 1 + usize::from(next_byte(&mut at)?);
                continue;
            }
            let count = if low < 0x80 {
                u16::from(low)
            } else {
                u16::from(low & 0x7f) | u16::from(next_byte(&mut at)?) << 7
            };
            counts[symbol] = count;
            symbol += 1;
        }
        if symbol != last + 1 {
            return Err(Error::InvalidTable("tANS zero run passes the last symbol"));
        }
        let sum: u32 = counts.iter().map(|&c| u32::from(c)).sum();
        if sum != 1 << log {
            return Err(Error::InvalidTable(
                "tANS frequencies do not sum to the table size",
            ));
        }
        Ok((Frequencies { log, counts }, at))
    }

    /// Calls `place(position, symbol)` for each table position: symbols spread over the table with a step
    /// coprime to its size, so that each symbol's positions are scattered evenly.
    fn spread(&self, mut place: impl FnMut(usize, u8)) {
        let size = self.size();
        let step = (size >> 1) + (size >> 3) + 3;
        let mut position = 0;
        for (symbol, &count) in self.counts.iter().enumerate() {
            for _ in 0..count {
                place(position, symbol as u8);
                position = (position + step) & (size - 1);
            }
        }
    }
}

/// Appends the body (frequencies, bit-stream) coding `symbols` with `frequencies`, which must give every
/// symbol of `symbols` a nonzero count.
pub fn encode(symbols: &[u8], frequencies: &Frequencies, out: &mut Vec<u8>) {
    frequencies.write(out);
    ENCODE_TABLE.with(|next| {
        let mut next = next.borrow_mut();
        let transforms = fill_encode_tables(frequencies, &mut next[..], 0);
        encode_sub_streams(symbols, &transforms, &next, frequencies.log, out);
    });
}

thread_local! {
    /// Each thread's encoding table, refilled (its first `2^log` entries) for every block: a fresh one would
    /// cost an allocation and an 8 KiB clear per block, as much as coding a short stream.
    static ENCODE_TABLE: RefCell<Box<[u16; TABLE_SIZE]>> = RefCell::new(Box::new([0; TABLE_SIZE]));
}

/// Appends the bit-streams of `symbols`: one sub-stream, or the length of the first and two.
fn encode_sub_streams(
    symbols: &[u8],
    transforms: &[Transform; 256],
    next: &[u16; TABLE_SIZE],
    log: u32,
    out: &mut Vec<u8>,
) {
    if symbols.len() < SPLIT_STREAM_MIN {
        code_sub_streams([symbols], transforms, next, log, out);
        return;
    }
    let (first_half, second_half) = symbols.split_at(symbols.len().div_ceil(2));
    let length_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let [first_len, _] = code_sub_streams([first_half, second_half], transforms, next, log, out);
    let first_len = u32::try_from(first_len).expect("sub-streams are under 4 GiB");
    out[length_at..length_at + 4].copy_from_slice(&first_len.to_le_bytes());
}

/// Fills `next[..2^log]`, the encoding table: for symbol s, `next[start[s] + k - f_s]` is the state after
/// coding s from a state whose top bits are k, one of f_s values in [f_s, 2 f_s). Returns the symbols'
/// transforms, whose offsets point `offset` entries further (where `next` is one of several tables).
fn fill_encode_tables(
    frequencies: &Frequencies,
    next: &mut [u16],
    offset: usize,
) -> [Transform; 256] {
    let size = frequencies.size();
    let mut start = [0u32; 256];
    let mut cumulative = 0;
    for (symbol, &count) in frequencies.counts.iter().enumerate() {
        start[symbol] = cumulative;
        cumulative += u32::from(count);
    }
    // Walking positions in increasing order, the j-th position holding s is the state for k = f_s + j.
    let mut spread = [0u8; TABLE_SIZE];
    frequencies.spread(|position, symbol| spread[position] = symbol);
    let mut filled = start;
    for (position, &symbol) in spread[..size].iter().enumerate() {
        next[filled[usize::from(symbol)] as usize] = (size + position) as u16;
        filled[usize::from(symbol)] += 1;
    }
    std::array::from_fn(|symbol| {
        Transform::new(
            frequencies.counts[symbol],
            start[symbol] + offset as u32,
            frequencies.log,
        )
    })
}

/// Appends `N` sub-streams, each coding its symbols last to first by four states in turn and ending in the
/// final states and the end marker; returns their byte lengths. (Coding the sub-streams in lockstep was
/// measured 9% slower: the coder is bound by instruction count, and two sets of states spill registers.)
fn code_sub_streams<const N: usize>(
    parts: [&[u8]; N],
    transforms: &[Transform; 256],
    next: &[u16; TABLE_SIZE],
    log: u32,
    out: &mut Vec<u8>,
) -> [usize; N] {
    // At most `log` bits a symbol, plus the states and the end bit.
    let longest = parts.iter().map(|part| part.len()).max().unwrap_or(0);
    let max_bits = (longest + STATES) * log as usize + 1;
    write_bit_streams(out, max_bits, |writers| {
        for (part, bits) in parts.iter().zip(writers) {
            code_sub_stream(part, transforms, next, log, bits);
        }
    })
}

/// Puts the bits of one sub-stream: see [`code_sub_streams`].
fn code_sub_stream(
    symbols: &[u8],
    transforms: &[Transform; 256],
    next: &[u16; TABLE_SIZE],
    log: u32,
    bits: &mut BitWriter,
) {
    let mut states = [1u32 << log; STATES];
    // Symbol i goes to state i % STATES. The ragged end goes first, then whole groups, whose four codings
    // are independent of one another.
    let whole = symbols.len() / STATES * STATES;
    for (index, &symbol) in symbols.iter().enumerate().skip(whole).rev() {
        transforms[usize::from(symbol)].apply::<ONE_TABLE_MASK>(
            &mut states[index % STATES],
            next,
            bits,
        );
        bits.flush();
    }
    for group in symbols[..whole].chunks_exact(STATES).rev() {
        let [s0, s1, s2, s3] = &mut states;
        transforms[usize::from(group[3])].apply::<ONE_TABLE_MASK>(s3, next, bits);
        transforms[usize::from(group[2])].apply::<ONE_TABLE_MASK>(s2, next, bits);
        transforms[usize::from(group[1])].apply::<ONE_TABLE_MASK>(s1, next, bits);
        transforms[usize::from(group[0])].apply::<ONE_TABLE_MASK>(s0, next, bits);
        bits.flush();
    }
    for state in states {
        bits.put(state - (1 << log), log);
        bits.flush();
    }
    bits.put(1, 1);
}

/// [`Transform::apply`]'s index mask for one table of the largest size: no bounds check is needed.
const ONE_TABLE_MASK: usize = TABLE_SIZE - 1;
/// [`Transform::apply`]'s index mask for several tables in one slice: the index is used as it is.
const NO_MASK: usize = usize::MAX;

/// How the encoder codes one symbol.
#[derive(Debug, Clone, Copy, Default)]
struct Transform {
    /// `(most << 16) - (f << most)`, where `most = log - floor(log2 f)`: adding it to a state and
    /// shifting by 16 gives the bits to emit, `most` or `most - 1` (the trick FSE uses).
    delta_bits: u32,
    /// Where the symbol's next states start in the encoding table, minus f.
    next_offset: i32,
}

impl Transform {
    fn new(count: u16, start: u32, log: u32) -> Transform {
        if count == 0 {
            return Transform::default();
        }
        let count = u32::from(count);
        let most = log - count.ilog2();
        // A symbol that takes the whole table (the only one of its context) costs no bits: `most` is 0 and
        // the delta wraps below zero, as the state's addition then does.
        Transform {
            delta_bits: (most << 16).wrapping_sub(count << most),
            next_offset: start as i32 - count as i32,
        }
    }

    /// Codes one symbol from `state` with the encoding table `next`; a table of the largest size is masked
    /// for free, a slice of several tables is bounds-checked.
    #[inline(always)]
    fn apply<const MASK: usize>(self, state: &mut u32, next: &[u16], bits: &mut BitWriter) {
        let nb = state.wrapping_add(self.delta_bits) >> 16;
        bits.put(*state & ((1 << nb) - 1), nb);
        let index = (self.next_offset + (*state >> nb) as i32) as usize;
        *state = u32::from(next[index & MASK]);
    }
}

/// Decoding table entry, packed so that one load fetches it: `bits | symbol << 8 | base << 16`. The next
/// state is `base` plus the next `bits` bits of the stream.
#[derive(Debug, Clone, Copy, Default)]
struct Entry(u32);

impl Entry {
    #[inline(always)]
    fn base(self) -> u32 {
        self.0 >> 16
    }

    #[inline(always)]
    fn bits(self) -> u32 {
        self.0 & 0xff
    }

    #[inline(always)]
    fn symbol(self) -> u8 {
        (self.0 >> 8) as u8
    }
}

/// Fills `table` for `frequencies`: symbols spread as the encoder spreads them, then, walking positions in
/// increasing order, the `j`-th position holding `s` gets `k = f_s + j` and its bit count and base. `table`
/// has at least `2^log` entries; the rest are left as they are.
fn fill_decode_table(frequencies: &Frequencies, table: &mut [Entry]) {
    let table = &mut table[..frequencies.size()];
    frequencies.spread(|position, symbol| table[position] = Entry(u32::from(symbol) << 8));
    let (log, size) = (frequencies.log, frequencies.size() as u32);
    let mut rank = frequencies.counts;
    for entry in table.iter_mut() {
        let symbol = entry.symbol();
        let k = u32::from(rank[usize::from(symbol)]);
        rank[usize::from(symbol)] += 1;
        let bits = log - k.ilog2();
        let base = (k << bits) - size;
        *entry = Entry(bits | u32::from(symbol) << 8 | base << 16);
    }
}

thread_local! {
    /// Each thread's decoding tables, rebuilt for every block (two for a pair of blocks decoded together):
    /// allocating 16 KiB per block costs as much as filling it when blocks are small (one per channel of a
    /// per-channel chunk).
    static DECODE_TABLES: RefCell<Box<[[Entry; TABLE_SIZE]; 2]>> =
        RefCell::new(Box::new([[Entry::default(); TABLE_SIZE]; 2]));
}

/// Reads a bit-stream backwards from its end: the bits written last come out first.
struct BackwardReader<'a> {
    data: &'a [u8],
    /// Bits of the stream not yet read: positions `0..remaining`.
    remaining: usize,
    /// Set when a read wanted bits below the start of the stream (only in corrupt streams).
    overrun: bool,
}

impl<'a> BackwardReader<'a> {
    /// Positions the reader below the end marker (the highest 1 bit of the last byte).
    fn new(data: &'a [u8]) -> Result<Self, Error> {
        match data.last() {
            Some(&last) if last != 0 => {
                let remaining = (data.len() - 1) * 8 + last.ilog2() as usize;
                Ok(BackwardReader {
                    data,
                    remaining,
                    overrun: false,
                })
            }
            _ => Err(Error::AnsStream("no end marker")),
        }
    }

    /// The `count` (at most `MAX_TABLE_LOG`) bits below the read position.
    #[inline(always)]
    fn read(&mut self, count: u32) -> u32 {
        let Some(position) = self.remaining.checked_sub(count as usize) else {
            return self.overrun();
        };
        self.remaining = position;
        let byte = position / 8;
        let window = match self.data.get(byte..byte + 8) {
            Some(bytes) => u64::from_le_bytes(bytes.try_into().expect("8 bytes")),
            None => self.tail_window(byte),
        };
        (window >> (position % 8)) as u32 & ((1u32 << count) - 1)
    }

    /// A window of the stream for up to four reads: the word holding the 56 to 63 bits below the read
    /// position, and the read position within it. Needs `remaining >= FAST_GROUP_MIN_BITS`.
    #[inline(always)]
    fn window(&self) -> (u64, u32) {
        let base = (self.remaining - 56) / 8;
        let window = match self.data.get(base..base + 8) {
            Some(bytes) => u64::from_le_bytes(bytes.try_into().expect("8 bytes")),
            None => self.tail_window(base),
        };
        (window, (self.remaining - base * 8) as u32)
    }

    /// Moves the read position to `position` within the last [`BackwardReader::window`].
    #[inline(always)]
    fn advance_to(&mut self, position: u32) {
        self.remaining = (self.remaining - 56) / 8 * 8 + position as usize;
    }

    #[cold]
    fn overrun(&mut self) -> u32 {
        self.overrun = true;
        self.remaining = 0;
        0
    }

    /// The last bytes of the stream, zero-padded to a word.
    #[cold]
    fn tail_window(&self, byte: usize) -> u64 {
        let mut window = [0u8; 8];
        let rest = self.data.get(byte..).unwrap_or(&[]);
        window[..rest.len()].copy_from_slice(rest);
        u64::from_le_bytes(window)
    }
}

/// One sub-stream being decoded: its reader and its four states.
struct SubStream<'a> {
    reader: BackwardReader<'a>,
    states: [u32; STATES],
}

impl<'a> SubStream<'a> {
    /// Opens a sub-stream and reads its final states (the last written, so the first read), `log` bits each.
    fn new(data: &'a [u8], log: u32) -> Result<Self, Error> {
        let mut reader = BackwardReader::new(data)?;
        let mut states = [0u32; STATES];
        for state in states.iter_mut().rev() {
            *state = reader.read(log);
        }
        Ok(SubStream { reader, states })
    }

    /// Whether a whole group can take the fast path.
    #[inline(always)]
    fn fast_ready(&self) -> bool {
        self.reader.remaining >= FAST_GROUP_MIN_BITS
    }

    /// Decodes one group of four symbols from one window of bits. Needs [`SubStream::fast_ready`].
    /// `entry(lane, state)` is the table entry of `state` for the group's `lane`-th symbol.
    #[inline(always)]
    fn fast_group(&mut self, entry: impl Fn(usize, u32) -> Entry, out: &mut [u8; STATES]) {
        let (window, mut position) = self.reader.window();
        // Constant indices let the states live in registers.
        for (lane, symbol) in out.iter_mut().enumerate() {
            let state = &mut self.states[lane];
            *symbol = step(entry(lane, *state), window, &mut position, state);
        }
        self.reader.advance_to(position);
    }

    /// Decodes a group of up to four symbols with every check.
    #[cold]
    fn checked_group(&mut self, entry: impl Fn(usize, u32) -> Entry, out: &mut [u8]) {
        for (lane, (symbol, state)) in out.iter_mut().zip(self.states.iter_mut()).enumerate() {
            let entry = entry(lane, *state);
            *state = entry.base() + self.reader.read(entry.bits());
            *symbol = entry.symbol();
        }
    }

    /// Decodes `out` (which continues this sub-stream from a multiple of four symbols) with one table, then
    /// checks the end.
    fn rest(&mut self, table: &[Entry; TABLE_SIZE], out: &mut [u8]) -> Result<(), Error> {
        let entry = |_, state: u32| table[state as usize % TABLE_SIZE];
        for group in out.chunks_mut(STATES) {
            match <&mut [u8; STATES]>::try_from(&mut *group) {
                Ok(group) if self.fast_ready() => self.fast_group(entry, group),
                _ => self.checked_group(entry, group),
            }
        }
        self.finish()
    }

    /// Checks that an intact stream ended: every bit read, every state back at its start.
    fn finish(&self) -> Result<(), Error> {
        if self.reader.overrun || self.reader.remaining != 0 {
            return Err(Error::AnsStream(
                "decoding did not consume the stream exactly",
            ));
        }
        if self.states.iter().any(|&state| state != 0) {
            return Err(Error::AnsStream(
                "decoding did not end in the initial state",
            ));
        }
        Ok(())
    }
}

/// `LOW_BITS[n]` masks the low `n` bits: a load is cheaper here than computing the mask, and 256 entries
/// let a `u8` index it with no bounds check.
const LOW_BITS: [u32; 256] = {
    let mut masks = [0u32; 256];
    let mut n = 0;
    while n < 32 {
        masks[n] = (1 << n) - 1;
        n += 1;
    }
    masks
};

/// Decodes one symbol with `entry`, the table entry of `state`, reading its bits from `window` below
/// `position`.
#[inline(always)]
fn step(entry: Entry, window: u64, position: &mut u32, state: &mut u32) -> u8 {
    *position -= entry.bits();
    let bits = (window >> *position) as u32 & LOW_BITS[usize::from(entry.bits() as u8)];
    *state = entry.base() + bits;
    entry.symbol()
}

/// Decodes a body written by [`encode`] into `out` (exactly the original symbol count).
pub fn decode(body: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let (frequencies, table_len) = Frequencies::read(body)?;
    DECODE_TABLES.with(|tables| {
        let table = &mut tables.borrow_mut()[0];
        fill_decode_table(&frequencies, &mut table[..]);
        decode_with(body, table_len, frequencies.log, table, out)
    })
}

/// Decodes two bodies written by [`encode`] for streams of equal length below [`SPLIT_STREAM_MIN`] (each one
/// sub-stream), such as two parts of a per-channel stream, in lockstep: each decoder is a serial chain
/// through its read position, and two independent chains keep the CPU twice as busy.
pub fn decode_pair(
    first: &[u8],
    first_out: &mut [u8],
    second: &[u8],
    second_out: &mut [u8],
) -> Result<(), Error> {
    debug_assert!(first_out.len() == second_out.len() && first_out.len() < SPLIT_STREAM_MIN);
    let (first_frequencies, first_table_len) = Frequencies::read(first)?;
    let (second_frequencies, second_table_len) = Frequencies::read(second)?;
    DECODE_TABLES.with(|tables| {
        let [first_table, second_table] = &mut **tables.borrow_mut();
        fill_decode_table(&first_frequencies, &mut first_table[..]);
        fill_decode_table(&second_frequencies, &mut second_table[..]);
        let first_stream = SubStream::new(&first[first_table_len..], first_frequencies.log)?;
        let second_stream = SubStream::new(&second[second_table_len..], second_frequencies.log)?;
        lockstep(
            (first_stream, first_table, first_out),
            (second_stream, second_table, second_out),
        )
    })
}

/// Decodes two sub-streams, each with its table into its output, in lockstep while both have whole groups
/// on the fast path, then each to its end.
fn lockstep(
    (mut first, first_table, first_out): (SubStream, &[Entry; TABLE_SIZE], &mut [u8]),
    (mut second, second_table, second_out): (SubStream, &[Entry; TABLE_SIZE], &mut [u8]),
) -> Result<(), Error> {
    let mut done = 0;
    for (a, b) in first_out
        .chunks_exact_mut(STATES)
        .zip(second_out.chunks_exact_mut(STATES))
    {
        if !(first.fast_ready() && second.fast_ready()) {
            break;
        }
        first.fast_group(
            |_, state| first_table[state as usize % TABLE_SIZE],
            a.try_into().expect("groups of STATES"),
        );
        second.fast_group(
            |_, state| second_table[state as usize % TABLE_SIZE],
            b.try_into().expect("groups of STATES"),
        );
        done += STATES;
    }
    first.rest(first_table, &mut first_out[done..])?;
    second.rest(second_table, &mut second_out[done..])
}

/// Decodes the sub-streams after the frequency table (`table_len` bytes) with the filled `table`.
fn decode_with(
    body: &[u8],
    table_len: usize,
    log: u32,
    table: &[Entry; TABLE_SIZE],
    out: &mut [u8],
) -> Result<(), Error> {
    if out.len() < SPLIT_STREAM_MIN {
        return SubStream::new(&body[table_len..], log)?.rest(table, out);
    }
    let first_len = take(body, table_len, 4, "tANS sub-stream length")?;
    let first_len = u32::from_le_bytes(first_len.try_into().expect("4 bytes")) as usize;
    let first_data = take(body, table_len + 4, first_len, "tANS sub-stream")?;
    let first = SubStream::new(first_data, log)?;
    let second = SubStream::new(&body[table_len + 4 + first_len..], log)?;
    let (first_out, second_out) = out.split_at_mut(out.len().div_ceil(2));
    lockstep((first, table, first_out), (second, table, second_out))
}

/// Most contexts a [`ContextTables`] may have: 4096 tables of 4096 entries are 64 MiB of decoding tables, the
/// most a hostile table set can make a reader allocate.
pub const MAX_CONTEXTS: usize = 4096;

/// Frequency tables for many contexts, all with one table log, built once and used for many short streams:
/// the fields and channels of the pages of one K/V cache sequence. A stream coded with them carries no table
/// and its decoder builds none, so a page of a few hundred symbols costs only its bits and final states.
///
/// Symbol `k` of a stream is coded with the table of context `contexts[k % contexts.len()]`, where
/// `contexts`, the caller's repeating pattern, has a multiple of four entries (one per state of a group). A
/// stream is one sub-stream of the body format of [`encode`], without the frequency table; every context's
/// states share one range because they share the log.
#[derive(Debug, Clone)]
pub struct ContextTables {
    frequencies: Vec<Frequencies>,
    /// The decoding tables, `2^log` entries per context, one after the other.
    decode: Vec<Entry>,
    /// Built on the first encode: readers never need them.
    encoder: std::cell::OnceCell<ContextEncoder>,
}

/// The encoding side of [`ContextTables`].
#[derive(Debug, Clone)]
struct ContextEncoder {
    /// Per context, the transform of each symbol; offsets point into `next`.
    transforms: Vec<[Transform; 256]>,
    /// The encoding tables, laid out like the decoding tables.
    next: Vec<u16>,
}

impl ContextTables {
    /// Tables with these frequencies, one per context, all of one log.
    ///
    /// # Panics
    /// If there are no tables or more than [`MAX_CONTEXTS`], or if their logs differ.
    pub(crate) fn new(frequencies: Vec<Frequencies>) -> ContextTables {
        assert!(
            (1..=MAX_CONTEXTS).contains(&frequencies.len()),
            "{} contexts",
            frequencies.len()
        );
        let size = frequencies[0].size();
        assert!(
            frequencies.iter().all(|f| f.size() == size),
            "one table log"
        );
        let mut decode = vec![Entry::default(); frequencies.len() * size];
        for (frequencies, table) in frequencies.iter().zip(decode.chunks_exact_mut(size)) {
            fill_decode_table(frequencies, table);
        }
        ContextTables {
            frequencies,
            decode,
            encoder: std::cell::OnceCell::new(),
        }
    }

    fn encoder(&self) -> &ContextEncoder {
        self.encoder.get_or_init(|| {
            let size = self.frequencies[0].size();
            let mut next = vec![0u16; self.frequencies.len() * size];
            let transforms = self
                .frequencies
                .iter()
                .zip(next.chunks_exact_mut(size))
                .enumerate()
                .map(|(context, (frequencies, next))| {
                    fill_encode_tables(frequencies, next, context * size)
                })
                .collect();
            ContextEncoder { transforms, next }
        })
    }

    fn log(&self) -> u32 {
        self.frequencies[0].log
    }

    /// Whether `context`'s table can code `symbol`.
    fn codes(&self, context: usize, symbol: u8) -> bool {
        self.frequencies[context].counts[usize::from(symbol)] > 0
    }

    /// Appends the stream coding `symbols` by `contexts` (see the type's description) and returns true, or
    /// leaves `out` as it was and returns false if some symbol has no code in its context's table.
    ///
    /// # Panics
    /// If `contexts` is empty, not a multiple of four long, or names a context past the last.
    pub fn encode(&self, symbols: &[u8], contexts: &[u16], out: &mut Vec<u8>) -> bool {
        self.check_pattern(contexts);
        let encoder = self.encoder();
        let log = self.log();
        let start = out.len();
        let mut codable = true;
        let max_bits = (symbols.len() + STATES) * log as usize + 1;
        write_bit_streams(out, max_bits, |[bits]| {
            let mut states = [1u32 << log; STATES];
            let mut slot = symbols.len() % contexts.len();
            for (index, &symbol) in symbols.iter().enumerate().rev() {
                slot = slot.checked_sub(1).unwrap_or(contexts.len() - 1);
                let context = usize::from(contexts[slot]);
                if !self.codes(context, symbol) {
                    codable = false;
                    return;
                }
                let state = &mut states[index % STATES];
                encoder.transforms[context][usize::from(symbol)].apply::<NO_MASK>(
                    state,
                    &encoder.next,
                    bits,
                );
                if index % STATES == 0 {
                    bits.flush();
                }
            }
            for state in states {
                bits.put(state - (1 << log), log);
                bits.flush();
            }
            bits.put(1, 1);
        });
        if !codable {
            out.truncate(start);
        }
        codable
    }

    /// Decodes a stream written by [`ContextTables::encode`] with the same `contexts` into `out` (exactly the
    /// original symbol count).
    ///
    /// # Panics
    /// As [`ContextTables::encode`].
    pub fn decode(&self, body: &[u8], contexts: &[u16], out: &mut [u8]) -> Result<(), Error> {
        self.check_pattern(contexts);
        let log = self.log();
        let mut stream = SubStream::new(body, log)?;
        let mut slot = 0;
        for group in out.chunks_mut(STATES) {
            let lanes: &[u16; STATES] = contexts[slot..slot + STATES]
                .try_into()
                .expect("whole groups");
            slot += STATES;
            if slot == contexts.len() {
                slot = 0;
            }
            // States stay below 2^log, and every context has 2^log entries.
            let entry = |lane: usize, state: u32| {
                self.decode[usize::from(lanes[lane]) << log | state as usize]
            };
            match <&mut [u8; STATES]>::try_from(&mut *group) {
                Ok(group) if stream.fast_ready() => stream.fast_group(entry, group),
                _ => stream.checked_group(entry, group),
            }
        }
        stream.finish()
    }

    /// A context past the last panics where it is used.
    fn check_pattern(&self, contexts: &[u16]) {
        assert!(
            !contexts.is_empty() && contexts.len().is_multiple_of(STATES),
            "a context pattern of {} entries",
            contexts.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::histogram;
    use proptest::prelude::*;

    fn round_trip(symbols: &[u8]) -> Vec<u8> {
        let frequencies = Frequencies::for_histogram(&histogram(symbols));
        round_trip_with(symbols, &frequencies)
    }

    fn round_trip_with(symbols: &[u8], frequencies: &Frequencies) -> Vec<u8> {
        let mut body = Vec::new();
        encode(symbols, frequencies, &mut body);
        let mut out = vec![0; symbols.len()];
        decode(&body, &mut out).unwrap();
        assert_eq!(out, symbols);
        body
    }

    #[test]
    fn normalised_frequencies_sum_to_the_table_and_keep_rare_symbols() {
        let mut histogram = [0u32; 256];
        histogram[0] = 1_000_000;
        histogram[1..200].fill(1);
        let frequencies = Frequencies::normalize(&histogram, MAX_TABLE_LOG);
        assert_eq!(
            frequencies
                .counts
                .iter()
                .map(|&c| u32::from(c))
                .sum::<u32>(),
            TABLE_SIZE as u32
        );
        assert!(frequencies.counts[1..200].iter().all(|&c| c == 1));
    }

    #[test]
    fn codes_skewed_streams_near_their_entropy() {
        let mut state = 1u64;
        let symbols: Vec<u8> = (0..200_000)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Geometric: each symbol a third as likely as the previous one.
                let mut u = (state >> 11) as f64 / (1u64 << 53) as f64;
                let mut symbol = 120;
                while u > 2.0 / 3.0 && symbol < 140 {
                    u = (u - 2.0 / 3.0) * 3.0;
                    symbol += 1;
                }
                symbol
            })
            .collect();
        let body = round_trip(&symbols);
        crate::entropy::test_symbols::assert_near_entropy(&symbols, body.len(), 1.005, 64.0);
    }

    #[test]
    fn edge_cases_round_trip() {
        round_trip(&[3, 4]);
        round_trip(&[0, 255, 0, 255, 7]);
        round_trip(&(0..=255).collect::<Vec<u8>>());
        let mut nearly_constant = vec![9u8; 100_000];
        nearly_constant[50_000] = 10;
        round_trip(&nearly_constant);
    }

    #[test]
    fn every_table_log_round_trips_both_sub_stream_shapes() {
        let symbols: Vec<u8> = (0..20_000u32).map(|i| (i * i % 29 + i % 3) as u8).collect();
        for log in MIN_TABLE_LOG..=MAX_TABLE_LOG {
            let frequencies = Frequencies::normalize(&histogram(&symbols), log);
            for len in [2, 5, SPLIT_STREAM_MIN - 1, SPLIT_STREAM_MIN, symbols.len()] {
                let part = &symbols[..len];
                if histogram(part)
                    .iter()
                    .zip(&frequencies.counts)
                    .any(|(&c, &f)| c > 0 && f == 0)
                {
                    continue;
                }
                round_trip_with(part, &frequencies);
            }
        }
    }

    #[test]
    fn short_streams_choose_coarser_tables() {
        // One channel's exponents: a few thousand symbols over a dozen values.
        let symbols: Vec<u8> = (0..3000u32)
            .map(|i| (118 + (i * 7919 % 97 + 1).ilog2()) as u8)
            .collect();
        let chosen = Frequencies::for_histogram(&histogram(&symbols));
        assert!(chosen.log < MAX_TABLE_LOG, "log {}", chosen.log);
        let finest = round_trip_with(
            &symbols,
            &Frequencies::normalize(&histogram(&symbols), MAX_TABLE_LOG),
        );
        assert!(round_trip(&symbols).len() < finest.len());
    }

    #[test]
    fn corrupt_streams_are_errors() {
        let symbols: Vec<u8> = (0..5000u32).map(|i| (i * i % 7) as u8).collect();
        let body = round_trip(&symbols);
        let mut out = vec![0; symbols.len()];
        let mut no_marker = body.clone();
        *no_marker.last_mut().unwrap() = 0;
        assert_eq!(
            decode(&no_marker, &mut out),
            Err(Error::AnsStream("no end marker"))
        );
        let mut bad_log = body.clone();
        bad_log[0] = 13;
        assert_eq!(
            decode(&bad_log, &mut out),
            Err(Error::InvalidTable("tANS table log out of range"))
        );
        let mut bad_sum = body.clone();
        bad_sum[3] ^= 0x01;
        assert!(matches!(
            decode(&bad_sum, &mut out),
            Err(Error::InvalidTable(_))
        ));
        assert!(decode(&body[..body.len() - 3], &mut out).is_err());
        // A bit flipped inside the bit-stream is not always caught here: tANS states resynchronise a few
        // symbols after the damage, and the stream may still end exactly. Catching it is the checksums' job
        // (the container checks every segment before handing bytes back); the coder's duty is not to panic,
        // which `damaged_streams_never_panic` checks.
        let mut moved_marker = body;
        *moved_marker.last_mut().unwrap() |= 0x80;
        assert!(decode(&moved_marker, &mut out).is_err());
    }

    #[test]
    fn derived_tables_sum_to_the_table_and_keep_every_symbol() {
        let mut histogram = [0u32; 256];
        histogram[7] = 1;
        assert_eq!(Frequencies::derive(&histogram, 9).counts[7], 512);
        histogram.iter_mut().for_each(|c| *c += 1);
        histogram[100] = 1_000_000;
        let derived = Frequencies::derive(&histogram, 9);
        assert_eq!(
            derived.counts.iter().map(|&c| u32::from(c)).sum::<u32>(),
            512
        );
        assert!(derived.counts.iter().all(|&c| c >= 1));
    }

    #[test]
    fn context_tables_switch_tables_symbol_by_symbol() {
        // Context 0 codes only 5 (no bits at all), context 1 a skewed pair, context 2 many symbols.
        let mut histograms = [[0u32; 256]; 3];
        histograms[0][5] = 10;
        histograms[1][0] = 90;
        histograms[1][1] = 10;
        histograms[2][..40].fill(3);
        let tables = ContextTables::new(
            histograms
                .iter()
                .map(|histogram| Frequencies::derive(histogram, 9))
                .collect(),
        );
        let contexts = [0, 1, 2, 2, 1, 0, 2, 1];
        for len in [0, 1, 3, 8, 13, 1000] {
            let symbols: Vec<u8> = (0..len)
                .map(|k| match contexts[k % contexts.len()] {
                    0 => 5,
                    1 => u8::from(k % 10 == 0),
                    _ => (k * 7 % 40) as u8,
                })
                .collect();
            let mut body = Vec::new();
            assert!(tables.encode(&symbols, &contexts, &mut body));
            let mut out = vec![0; len];
            tables.decode(&body, &contexts, &mut out).unwrap();
            assert_eq!(out, symbols, "{len}");
            for at in 0..body.len() {
                let mut damaged = body.clone();
                damaged[at] ^= 0x41;
                let _ = tables.decode(&damaged, &contexts, &mut out);
            }
        }
        let mut body = vec![9];
        assert!(
            !tables.encode(&[5, 2], &contexts, &mut body),
            "2 is not in context 1"
        );
        assert_eq!(body, [9]);
    }

    proptest! {
        #[test]
        fn random_streams_round_trip(alphabet in 2u8..=255, len in 0usize..20_000, seed in any::<u64>()) {
            let mut state = seed | 1;
            let mut symbols: Vec<u8> = (0..len).map(|_| {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                (state.trailing_zeros() as u8).wrapping_mul(13) % alphabet
            }).collect();
            symbols.push(alphabet - 1); // At least two distinct symbols.
            symbols.push(0);
            round_trip(&symbols);
        }

        #[test]
        fn damaged_streams_never_panic(
            symbols in prop::collection::vec(0u8..6, 2..3000),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let mut symbols = symbols;
            symbols.extend([0, 1]);
            let frequencies = Frequencies::for_histogram(&histogram(&symbols));
            let mut body = Vec::new();
            encode(&symbols, &frequencies, &mut body);
            for (at, mask) in flips {
                let at = at % body.len();
                body[at] ^= mask.max(1);
            }
            let mut out = vec![0; symbols.len()];
            let _ = decode(&body, &mut out);
        }
    }
}
