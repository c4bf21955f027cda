//! LSB-first bit-streams: the writer shared by the Huffman and tANS encoders, the reader of the Huffman
//! decoder.

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

/// Writes an LSB-first bit-stream into a region of a vector sized for the worst case, with one unaligned
/// 8-byte store per flush and no per-byte branches. [`write_bits`] sets it up and trims the region.
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

/// Appends a bit-stream of at most `max_bits` bits to `out`: `write` puts the bits, and the stream ends
/// padded with zero bits to a whole byte.
pub(crate) fn write_bits(out: &mut Vec<u8>, max_bits: usize, write: impl FnOnce(&mut BitWriter)) {
    let start = out.len();
    // Eight bytes of slack for the word-wide stores of `flush`.
    out.resize(start + max_bits.div_ceil(8) + 8, 0);
    let mut writer = BitWriter {
        buf: &mut out[start..],
        pos: 0,
        pending: 0,
        pending_bits: 0,
    };
    write(&mut writer);
    writer.flush();
    let len = writer.pos + writer.pending_bits.div_ceil(8) as usize;
    out.truncate(start + len);
}
