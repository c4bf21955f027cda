//! A strict reader for the safetensors header.
//!
//! A safetensors file is an 8-byte little-endian header length `N`, `N` bytes of JSON (optionally padded with
//! spaces), then the tensor data. [`Header::parse`] validates the whole layout before anything is trusted and
//! reports each broken rule as its own [`Error`] variant. It never re-serializes: tenzip restores the header
//! from the file's own bytes, because the `safetensors` crate writes keys in another order and with other
//! whitespace, which would break a byte-exact restore.
//!
//! ```
//! let header_json = br#"{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#;
//! let mut file = (header_json.len() as u64).to_le_bytes().to_vec();
//! file.extend_from_slice(header_json);
//! file.extend_from_slice(&[0x80, 0x3f, 0x00, 0xc0]);
//!
//! let header = tenzip_safetensors::Header::parse(&file)?;
//! assert_eq!(header.tensors[0].name, "w");
//! assert_eq!(header.tensors[0].range, header.len..header.len + 4);
//! # Ok::<(), tenzip_safetensors::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod header;
mod write;

pub use error::Error;
pub use header::{Header, MAX_HEADER_LEN};
pub use write::{serialize, OwnedTensor, Padding, TensorData};
