//! K/V cache pages in memory: compress one page of tokens from a caller's buffer and restore it into one, with
//! no file, no manifest and no allocation on the hot path once the codec is warm.
//!
//! A page is `tokens x kv_heads x head_dim` elements, row-major, as inference servers keep them (keys after
//! RoPE). A channel is one `(head, dim)` position; keys have outlier channels whose exponents sit apart, so
//! one exponent table per channel codes them in fewer bits than one table for all.
//!
//! Pages are coded in one of two ways:
//! - **Each page its own tables** (after [`KvPages::new`]): per-channel tables where the page is long enough
//!   for them to pay, flat ones below. Needs nothing but the page.
//! - **Tables of the sequence** (after [`KvPages::learn`]): tables per field and cluster of alike channels,
//!   learned from the first pages of a sequence and stored once ([`KvPages::write_tables`],
//!   [`KvPages::read_tables`]); each later page is then only its bits, so 16-token pages keep the channels'
//!   structure. A page with a value the learned tables cannot code (an exponent the first pages never
//!   showed) gets its own tables.
//!
//! ```
//! use tenzip::kv::{KvDtype, KvPages};
//!
//! let token = |t: u32| -> Vec<u8> {
//!     (0..2 * 64u32).flat_map(|i| (0x3c00u16 + ((i * 7 + t) % 97) as u16).to_le_bytes()).collect()
//! };
//! let prefill: Vec<u8> = (0..256).flat_map(token).collect();
//! let page: Vec<u8> = (256..272).flat_map(token).collect();
//!
//! let mut pages = KvPages::new(KvDtype::Bf16, 2, 64);
//! pages.learn(&prefill);
//! let mut tables = Vec::new();
//! pages.write_tables(&mut tables); // stored once per sequence
//! let mut packed = Vec::new();
//! pages.compress(&page, &mut packed);
//!
//! let mut reader = KvPages::new(KvDtype::Bf16, 2, 64);
//! reader.read_tables(&tables)?;
//! let mut restored = vec![0; page.len()];
//! reader.decompress(&packed, &mut restored)?;
//! assert_eq!(restored, page);
//! # Ok::<(), tenzip_codec::Error>(())
//! ```

use tenzip_codec::sequence::{PageScratch, SequenceTables};
use tenzip_codec::{decode_chunk, encode_chunk, ChannelFloat, Error, Layout, Preference, Scratch};

/// Last byte of a page coded with its own tables: a chunk of the page's layout comes before it. (Last, not
/// first, so that the coders write straight into the caller's buffer.)
const OWN_TABLES: u8 = 0;
/// Last byte of a page coded with the sequence's tables, after the stream.
const SEQUENCE_TABLES: u8 = 1;

/// The element types of K/V caches that [`KvPages`] codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDtype {
    /// bfloat16.
    Bf16,
    /// IEEE half precision.
    F16,
    /// FP8 E4M3 with a scale kept by the caller (vLLM's fp8 K/V cache).
    F8E4M3,
}

impl KvDtype {
    fn float(self) -> ChannelFloat {
        match self {
            KvDtype::Bf16 => ChannelFloat::Bf16,
            KvDtype::F16 => ChannelFloat::F16,
            KvDtype::F8E4M3 => ChannelFloat::F8E4M3,
        }
    }
}

/// Compresses and restores K/V cache pages of one shape. Keeps its buffers between calls.
#[derive(Debug)]
pub struct KvPages {
    layout: Layout,
    float: ChannelFloat,
    /// Channels of the sequence tables: every `(head, dim)` position, or only `dim` where there are more
    /// positions than per-channel tables allow.
    table_channels: usize,
    tables: Option<SequenceTables>,
    scratch: Scratch,
    page_scratch: PageScratch,
}

impl KvPages {
    /// A codec for pages of `dtype` elements with `kv_heads x head_dim` elements per token, each page coded
    /// with its own tables.
    pub fn new(dtype: KvDtype, kv_heads: usize, head_dim: usize) -> KvPages {
        let flat = match dtype {
            KvDtype::Bf16 => Layout::Bf16,
            KvDtype::F16 => Layout::F16,
            KvDtype::F8E4M3 => Layout::F8E4M3,
        };
        let positions = kv_heads * head_dim;
        let table_channels = if positions <= tenzip_codec::channels::MAX_CHANNELS as usize {
            positions
        } else {
            head_dim
        };
        KvPages {
            layout: flat.channels(positions as u64).unwrap_or(flat),
            float: dtype.float(),
            table_channels,
            tables: None,
            scratch: Scratch::default(),
            page_scratch: PageScratch::default(),
        }
    }

    /// The layout of pages coded with their own tables: per channel, or flat for more channels than tables
    /// pay for.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Learns tables from `first_pages` (whole tokens: the first pages of a sequence, a few hundred tokens)
    /// and codes every later page with them. Store them with [`KvPages::write_tables`]. Learning again from
    /// the pages written since pays: keys drift along a sequence (`cargo xtask bench --kv` relearns every 512
    /// tokens).
    ///
    /// # Panics
    /// If `first_pages` is empty or not whole tokens.
    pub fn learn(&mut self, first_pages: &[u8]) {
        self.tables = Some(SequenceTables::learn(
            self.float,
            self.table_channels,
            first_pages,
        ));
    }

    /// Appends the learned tables to `out` (nothing if there are none), to be stored once per sequence.
    pub fn write_tables(&self, out: &mut Vec<u8>) {
        if let Some(tables) = &self.tables {
            tables.write(out);
        }
    }

    /// Reads tables written by [`KvPages::write_tables`] for this shape and dtype, and decodes pages coded
    /// with them from now on. Returns the bytes the tables took.
    pub fn read_tables(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        let (tables, len) = SequenceTables::read(self.float, self.table_channels, bytes)?;
        self.tables = Some(tables);
        Ok(len)
    }

    /// Codes `page` (whole tokens) into `out`, which is cleared first.
    ///
    /// # Panics
    /// If `page` is not a whole number of tokens.
    pub fn compress(&mut self, page: &[u8], out: &mut Vec<u8>) {
        out.clear();
        if let Some(tables) = &self.tables {
            if tables.encode(page, &mut self.page_scratch, out) {
                out.push(SEQUENCE_TABLES);
                return;
            }
        }
        encode_chunk(self.layout, page, Preference::Size, &mut self.scratch, out);
        out.push(OWN_TABLES);
    }

    /// Restores a page coded by [`KvPages::compress`] into `out`, which must be exactly the page's length.
    pub fn decompress(&mut self, payload: &[u8], out: &mut [u8]) -> Result<(), Error> {
        match (payload.split_last(), &self.tables) {
            (Some((&OWN_TABLES, chunk)), _) => {
                decode_chunk(self.layout, chunk, out, &mut self.scratch)
            }
            (Some((&SEQUENCE_TABLES, stream)), Some(tables)) => {
                tables.decode(stream, out, &mut self.page_scratch)
            }
            (Some((&SEQUENCE_TABLES, _)), None) => Err(Error::InvalidTable(
                "page coded with sequence tables, and none were read",
            )),
            (Some((&other, _)), _) => Err(Error::UnknownMode(other)),
            (None, _) => Err(Error::Truncated {
                what: "K/V page",
                needed: 1,
                available: 0,
            }),
        }
    }
}
