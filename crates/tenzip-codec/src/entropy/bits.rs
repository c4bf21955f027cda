//! LSB-first bit-streams: the writer shared by the Huffman and tANS encoders, the reader of the Huffman
//! decoder.

use std::cell::RefCell;

/// Reads an LSB-first bit-stream. Reading past the end yields zero bits; [`BitReader::consumed_bits`] lets
/// the caller check afterwards, once, that the stream ended exactly where it should.
pub(crate) struct BitReader<'a> {
    pub(crate) data: &'a [u8],
    /// Next byte of `data` not yet in `bits`.
    pos: usize,
    /// The next bits of the stream, least significant first.
    pub(crate) bits: u64,
    /// Valid bits at the bottom of `bits`; the bits above are zero or copies of the byte at `pos`.
    available: u32,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            bits: 0,
            available: 0,
        }
    }

    /// Tops `bits` up to at least 56 valid bits with one unaligned load and no per-byte branches.
    #[inline(always)]
    pub(crate) fn refill(&mut self) {
        let word = match self.data.get(self.pos..self.pos + 8) {
            Some(bytes) => u64::from_le_bytes(bytes.try_into().expect("slice of 8")),
            None => self.tail_word(),
        };
        self.bits |= word << self.available;
        self.pos += (63 - self.available as usize) >> 3;
        self.available |= 56;
    }

    /// The last few bytes of the stream, zero-padded to a word.
    #[cold]
    fn tail_word(&self) -> u64 {
        let mut word = [0u8; 8];
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        word[..rest.len()].copy_from_slice(rest);
        u64::from_le_bytes(word)
    }

    /// Drops `bits` bits, which must be available.
    #[inline(always)]
    pub(crate) fn consume(&mut self, bits: u32) {
        self.bits >>= bits;
        self.available -= bits;
    }

    /// Bits consumed since the start of the stream, including any read past its end.
    pub(crate) fn consumed_bits(&self) -> u64 {
        self.pos as u64 * 8 - u64::from(self.available)
    }
}

/// Writes an LSB-first bit-stream into a region sized for the worst case, with one unaligned 8-byte store per
/// flush and no per-byte branches. [`write_bit_streams`] sets it up and appends what was written.
pub(crate) struct BitWriter<'a> {
    buf: &'a mut [u8],
    /// Next byte of `buf` to write.
    pos: usize,
    /// Bits not yet written, least significant first.
    pending: u64,
    pending_bits: u32,
}

impl BitWriter<'_> {
    /// Adds the low `bits` bits of `value`. Callers flush before more than 57 bits are pending.
    #[inline(always)]
    pub(crate) fn put(&mut self, value: u32, bits: u32) {
        self.pending |= u64::from(value) << self.pending_bits;
        self.pending_bits += bits;
    }

    /// Writes out the whole bytes of the pending bits (the store covers 8 bytes; the ones past the whole
    /// bytes are rewritten by the next flush).
    #[inline(always)]
    pub(crate) fn flush(&mut self) {
        self.buf[self.pos..self.pos + 8].copy_from_slice(&self.pending.to_le_bytes());
        let whole_bytes = self.pending_bits / 8;
        self.pos += whole_bytes as usize;
        self.pending >>= whole_bytes * 8;
        self.pending_bits %= 8;
    }
}

thread_local! {
    /// Each thread's room for the bit-streams being written, never cleared: every byte a stream keeps was
    /// stored by one of its own flushes, so stale bytes from earlier streams never leak into a stream. Growing
    /// it is the only cost, once per thread, where sizing a stream's worst case inside the output would clear
    /// one and a half bytes per symbol for every block.
    static ROOM: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes `N` independent bit-streams of at most `max_bits` bits each and appends them to `out` back to back,
/// each padded with zero bits to a whole byte; returns their byte lengths. `write` puts the bits.
pub(crate) fn write_bit_streams<const N: usize>(
    out: &mut Vec<u8>,
    max_bits: usize,
    write: impl FnOnce(&mut [BitWriter; N]),
) -> [usize; N] {
    ROOM.with(|room| {
        let mut room = room.borrow_mut();
        // Eight bytes of slack per stream for the word-wide stores of `flush`.
        let region = max_bits.div_ceil(8) + 8;
        if room.len() < N * region {
            room.resize(N * region, 0);
        }
        let mut regions = room.chunks_exact_mut(region);
        let mut writers: [BitWriter; N] = std::array::from_fn(|_| BitWriter {
            buf: regions.next().expect("N regions"),
            pos: 0,
            pending: 0,
            pending_bits: 0,
        });
        write(&mut writers);
        writers.map(|mut writer| {
            writer.flush();
            let len = writer.pos + writer.pending_bits.div_ceil(8) as usize;
            out.extend_from_slice(&writer.buf[..len]);
            len
        })
    })
}
