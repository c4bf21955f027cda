//! tenzip's codec: bytes in, bytes out, no file formats.
//!
//! A tensor's bytes are cut into chunks by the caller. [`encode_chunk`] splits one chunk into the field
//! streams its [`Layout`] names (for BF16: exponents in one stream, sign and mantissa in another), then
//! entropy-codes every stream on its own ([`entropy`]): whichever of stored-raw, a single-symbol run, a
//! canonical Huffman code or an ANS code (tANS, or on long streams rANS, coded with AVX2 and decoded with AVX-512 or AVX2) is smallest,
//! where its decoding speed allows. [`decode_chunk`] is the exact inverse. Chunks are independent, so
//! callers decode them in parallel and can read one tensor back without touching the others.
//!
//! ```
//! use tenzip_codec::{decode_chunk, encode_chunk, Layout, Preference, Scratch};
//!
//! let bf16_values: Vec<u8> = (0..4096u32).flat_map(|i| ((i % 50) as u16 + 0x3f00).to_le_bytes()).collect();
//! let mut scratch = Scratch::default();
//! let mut payload = Vec::new();
//! encode_chunk(Layout::Bf16, &bf16_values, Preference::Size, &mut scratch, &mut payload);
//! assert!(payload.len() < bf16_values.len() / 2);
//!
//! let mut restored = vec![0; bf16_values.len()];
//! decode_chunk(Layout::Bf16, &payload, &mut restored, &mut scratch)?;
//! assert_eq!(restored, bf16_values);
//! # Ok::<(), tenzip_codec::Error>(())
//! ```
// `unsafe` is allowed in three places: the AVX2 and AVX-512 rANS coders (`entropy::rans`) and the AVX2 count of
// skewed streams (`entropy::histogram`), behind runtime detection, and the calls into two SSE2 kernels of
// per-channel streams (`channels`: the 16 x 16 transpose and the byte-plane split of 16-bit values), a feature
// every x86-64 CPU has.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod blocks;
pub mod channels;
mod chunk;
pub mod entropy;
mod error;
mod layout;
mod rows;
pub mod sequence;

pub use channels::ChannelFloat;
pub use chunk::{channels_pay, chunk_coding, decode_chunk, encode_chunk, ChunkCoding, Scratch};
pub use entropy::Preference;
pub use error::Error;
pub use layout::{Layout, Split};
