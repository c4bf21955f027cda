//! The forward bit reader shared by the Huffman and tANS decoders.

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
