//! K/V cache pages in memory: compress one page of tokens from a caller's buffer and restore it into one, with
//! no file, no manifest and no allocation on the hot path once the codec is warm.
//!
//! A page is `tokens x kv_heads x head_dim` elements, row-major, as inference servers keep them (keys after
//! RoPE). Each page is coded on its own with the per-channel layout: a channel is one `(head, dim)` position,
//! and keys, whose outlier channels sit at their own exponents, get one exponent table per channel where that
//! pays; pages too small for per-channel tables to pay fall back to the flat split by themselves.
//!
//! ```
//! use tenzip::kv::{KvDtype, KvPages};
//!
//! let mut pages = KvPages::new(KvDtype::Bf16, 2, 64);
//! let page: Vec<u8> = (0..16 * 2 * 64u32).flat_map(|i| (0x3c00u16 + (i % 97) as u16).to_le_bytes()).collect();
//! let mut packed = Vec::new();
//! pages.compress(&page, &mut packed);
//! let mut restored = vec![0; page.len()];
//! pages.decompress(&packed, &mut restored)?;
//! assert_eq!(restored, page);
//! # Ok::<(), tenzip_codec::Error>(())
//! ```

use tenzip_codec::{decode_chunk, encode_chunk, Layout, Scratch};

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

/// Compresses and restores K/V cache pages of one shape. Keeps its buffers between calls.
#[derive(Debug)]
pub struct KvPages {
    layout: Layout,
    scratch: Scratch,
}

impl KvPages {
    /// A codec for pages of `dtype` elements with `kv_heads x head_dim` elements per token.
    pub fn new(dtype: KvDtype, kv_heads: usize, head_dim: usize) -> KvPages {
        let flat = match dtype {
            KvDtype::Bf16 => Layout::Bf16,
            KvDtype::F16 => Layout::F16,
            KvDtype::F8E4M3 => Layout::F8E4M3,
        };
        let channels = (kv_heads * head_dim) as u64;
        KvPages {
            layout: flat.channels(channels).unwrap_or(flat),
            scratch: Scratch::default(),
        }
    }

    /// The layout pages are coded with: per channel, or flat for more channels than tables pay for.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Codes `page` (whole tokens) into `out`, which is cleared first.
    ///
    /// # Panics
    /// If `page` is not a whole number of tokens.
    pub fn compress(&mut self, page: &[u8], out: &mut Vec<u8>) {
        encode_chunk(self.layout, page, &mut self.scratch, out);
    }

    /// Restores a page coded by [`KvPages::compress`] into `out`, which must be exactly the page's length.
    pub fn decompress(
        &mut self,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<(), tenzip_codec::Error> {
        decode_chunk(self.layout, payload, out, &mut self.scratch)
    }
}
