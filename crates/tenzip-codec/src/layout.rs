//! Field layouts: how one chunk of values is split into byte streams, and merged back.
//!
//! Every layout works on the raw integer bits of little-endian values; nothing is ever converted through a
//! float type, so NaN payloads, infinities, subnormals and negative zero survive untouched.
//!
//! A [`Layout`] names the dtype family a tensor was routed as; a [`Split`] is one concrete way of cutting a
//! chunk into streams. Most layouts have exactly one split. The one-byte layouts (FP8, packed FP4) have two
//! and pick per chunk: the whole code as one symbol, whose order-0 entropy can never exceed the fields'
//! sum, or the fields apart, whose smaller alphabets need smaller tables and so win on small chunks.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::blocks::{self, BlockFormat};
use crate::channels::{self, ChannelFloat, MAX_CHANNELS};

/// The dtype family a chunk's values belong to, which decides how they may be split into streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layout {
    /// One stream: the bytes as they are. For integers, bools and anything without a better layout.
    Bytes,
    /// bfloat16 `s eeeeeeee mmmmmmm`: the 8 exponent bits as one stream, sign with the 7 mantissa bits as
    /// the other.
    Bf16,
    /// IEEE half `s eeeee mmmmmmmmmm`: the 5 exponent bits with the top 3 mantissa bits as one stream, sign
    /// with the low 7 mantissa bits as the other. The top mantissa bits are far from uniform and depend on
    /// the exponent, so coding them together beats an exponent-only stream.
    F16,
    /// IEEE single `s eeeeeeee m(23)`: the exponent byte, then sign with the top 7 mantissa bits, then the
    /// two low mantissa bytes, as four streams.
    F32,
    /// FP8 `s eeee mmm` (E4M3, both the OCP and the FNUZ variant): whole codes, or the exponent apart from
    /// sign with mantissa.
    F8E4M3,
    /// FP8 `s eeeee mm` (E5M2, both variants): whole codes, or the exponent apart from sign with mantissa.
    F8E5M2,
    /// FP4 E2M1 packed two to a byte, low nibble first (MXFP4 and NVFP4 codes, safetensors `F4`): whole
    /// bytes, or the low and high nibbles as two streams.
    F4E2M1,
    /// Quantized blocks (GGML's Q8_0, Q4_K, ...): each field of the block its own stream.
    Blocks(&'static BlockFormat),
    /// A float tensor of rank 2 or more whose rows hold `channels` elements: per chunk, the flat split(s) of
    /// its format, or exponents coded with tables per channel ([`channels`]). A value
    /// is one row.
    Channels {
        /// The element format.
        float: ChannelFloat,
        /// Elements per row, at most [`MAX_CHANNELS`].
        channels: u32,
    },
}

/// One concrete way of cutting a chunk into streams, each holding one byte per value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Split {
    /// The bytes as they are, one stream, with dictionary coding tried too (headers, integers).
    Bytes,
    /// One-byte codes as one stream of symbols, order-0 coded only (FP8 values, pairs of FP4 values).
    Codes,
    /// 16-bit values: bits 14..7 | sign with bits 6..0.
    Fields16,
    /// 32-bit values: exponent | sign with mantissa bits 22..16 | bits 15..8 | bits 7..0.
    Fields32,
    /// FP8 values: the exponent field | sign with the mantissa.
    Fp8Fields {
        /// Width of the mantissa field: 3 for E4M3, 2 for E5M2.
        mantissa_bits: u32,
    },
    /// FP8 E4M3 values two by two: their exponents as one byte (the first in the low nibble) | their signs
    /// with mantissas as one byte. One symbol to decode per two values, as BF16 has: restores as fast per
    /// byte, for about 0.6 points of size against the whole codes: only writers preferring speed take it.
    Fp8Pairs,
    /// Packed FP4 pairs: low nibble | high nibble.
    Nibbles,
    /// Quantized blocks: one stream per field, two per f16 scale.
    Blocks(&'static BlockFormat),
    /// Rows of float elements: exponent (and sign) streams per channel, mantissa flat.
    Channels {
        /// The element format.
        float: ChannelFloat,
        /// Elements per row.
        channels: u32,
    },
    /// Rows of 16-bit float elements as [`Split::Fields16`] cuts them, each element's exponent less an
    /// offset of its channel: the offsets (one byte a channel: its mean exponent less the median of the
    /// channels' means) | bits 14..7 less the offset | sign with bits 6..0. Channels whose values sit at
    /// their own scale (a token embedding's) then share one exponent distribution, which a flat code, in
    /// pairs, codes in fewer bits: on whisper's token embedding 2.47 bits an exponent against 2.78, two
    /// thirds of what tables per channel save, restored at nearly the flat split's speed where those restore
    /// at less than half.
    Offsets16 {
        /// Elements per row.
        channels: u32,
        /// Where the exponent starts in bits 14..7: 0 for bfloat16, 3 for IEEE half (whose top mantissa
        /// bits come with it).
        exponent_shift: u32,
    },
}

/// Rows per chunk of a per-channel layout, at least.
const MIN_CHANNEL_ROWS: usize = 4096;

impl Layout {
    /// Every layout without parameters, and every block format (not the per-channel layouts, which are
    /// one per channel count).
    pub fn all() -> impl Iterator<Item = Layout> {
        let scalar = [
            Layout::Bytes,
            Layout::Bf16,
            Layout::F16,
            Layout::F32,
            Layout::F8E4M3,
            Layout::F8E5M2,
            Layout::F4E2M1,
        ];
        scalar
            .into_iter()
            .chain(blocks::ALL.into_iter().map(Layout::Blocks))
    }

    /// The stable name written into manifests: `"bf16-split"`, `"gguf-q8_0"`, `"bf16-channels-192"`.
    pub fn name(self) -> Cow<'static, str> {
        let name = match self {
            Layout::Bytes => "bytes",
            Layout::Bf16 => "bf16-split",
            Layout::F16 => "f16-split",
            Layout::F32 => "f32-split",
            Layout::F8E4M3 => "f8-e4m3",
            Layout::F8E5M2 => "f8-e5m2",
            Layout::F4E2M1 => "f4-e2m1",
            Layout::Blocks(format) => format.name,
            Layout::Channels { float, channels } => {
                return Cow::Owned(format!("{}-channels-{channels}", float.prefix()))
            }
        };
        Cow::Borrowed(name)
    }

    /// The per-channel layout of a float tensor whose rows hold `channels` elements, if its dtype has one
    /// and `channels` is within [`MAX_CHANNELS`].
    pub fn channels(self, channels: u64) -> Option<Layout> {
        let float = match self {
            Layout::Bf16 => ChannelFloat::Bf16Joint,
            Layout::F16 => ChannelFloat::F16High,
            Layout::F8E4M3 => ChannelFloat::F8E4M3,
            Layout::F8E5M2 => ChannelFloat::F8E5M2,
            _ => return None,
        };
        let channels = u32::try_from(channels)
            .ok()
            .filter(|&c| (2..=MAX_CHANNELS).contains(&c))?;
        Some(Layout::Channels { float, channels })
    }

    /// The flat layout a per-channel layout falls back to (itself for every other layout).
    pub fn flat(self) -> Layout {
        match self {
            Layout::Channels {
                float: ChannelFloat::Bf16 | ChannelFloat::Bf16Joint,
                ..
            } => Layout::Bf16,
            Layout::Channels {
                float: ChannelFloat::F16 | ChannelFloat::F16High,
                ..
            } => Layout::F16,
            Layout::Channels {
                float: ChannelFloat::F8E4M3,
                ..
            } => Layout::F8E4M3,
            Layout::Channels {
                float: ChannelFloat::F8E5M2,
                ..
            } => Layout::F8E5M2,
            other => other,
        }
    }

    /// Bytes per value. A chunk's length must be a multiple of it.
    pub fn value_size(self) -> usize {
        match self {
            Layout::Bytes | Layout::F8E4M3 | Layout::F8E5M2 | Layout::F4E2M1 => 1,
            Layout::Bf16 | Layout::F16 => 2,
            Layout::F32 => 4,
            Layout::Blocks(format) => format.size,
            Layout::Channels { float, channels } => float.element_size() * channels as usize,
        }
    }

    /// The smallest chunk worth coding in this layout, in bytes: per-channel layouts need enough rows per
    /// chunk for one table per channel to pay (and to decode fast: a table is built per channel and chunk).
    pub fn min_chunk_len(self) -> usize {
        match self {
            Layout::Channels { .. } => MIN_CHANNEL_ROWS * self.value_size(),
            _ => self.value_size(),
        }
    }

    /// The chunk length to cut a tensor of this layout into when `requested` bytes are asked for: whole
    /// values, at least [`Layout::min_chunk_len`], at most `max` (what readers accept) where a value fits.
    pub fn chunk_len(self, requested: usize, max: usize) -> usize {
        let value_size = self.value_size();
        let len = requested.max(self.min_chunk_len()).min(max);
        (len / value_size).max(1) * value_size
    }

    /// How many split numbers a chunk of this layout may choose from (per-channel layouts skip one, the
    /// repeated-rows marker, for which [`Layout::split`] gives `None`). When there are several, each coded
    /// chunk starts with one byte: the number of its split.
    pub fn split_count(self) -> usize {
        match self {
            Layout::F8E4M3 => 3,
            Layout::F8E5M2 | Layout::F4E2M1 => 2,
            Layout::Channels { float, .. } => match float.element_size() {
                // After the repeated-rows marker: the offsets split came later, and files with repeated
                // rows name the marker by the number it had.
                2 => self.repeated_rows_marker() + 2,
                _ => self.repeated_rows_marker(),
            },
            _ => 1,
        }
    }

    /// The split byte that marks a per-channel chunk of repeated rows ([`crate::rows`]): the number after
    /// the splits its layout had when repeated rows came, which later splits skip.
    pub(crate) fn repeated_rows_marker(self) -> usize {
        match self {
            Layout::Channels { float, .. } => {
                self.flat().splits_before_channels() + float.channel_splits().len()
            }
            other => other.split_count(),
        }
    }

    /// How many of this flat layout's splits its per-channel layouts offer, before their own: those it had
    /// when they took their split numbers. A flat split added later (FP8's pairs) is the flat layout's
    /// alone, so that no per-channel split (or repeated-rows marker) changes its number.
    fn splits_before_channels(self) -> usize {
        match self {
            Layout::F8E4M3 => 2,
            flat => flat.split_count(),
        }
    }

    /// Split number `index` of this layout, if it has that many.
    pub fn split(self, index: usize) -> Option<Split> {
        let split = match (self, index) {
            (Layout::Bytes, 0) => Split::Bytes,
            (Layout::Bf16 | Layout::F16, 0) => Split::Fields16,
            (Layout::F32, 0) => Split::Fields32,
            (Layout::F8E4M3 | Layout::F8E5M2 | Layout::F4E2M1, 0) => Split::Codes,
            (Layout::F8E4M3, 1) => Split::Fp8Fields { mantissa_bits: 3 },
            (Layout::F8E5M2, 1) => Split::Fp8Fields { mantissa_bits: 2 },
            (Layout::F8E4M3, 2) => Split::Fp8Pairs,
            (Layout::F4E2M1, 1) => Split::Nibbles,
            (Layout::Blocks(format), 0) => Split::Blocks(format),
            (Layout::Channels { float, channels }, index) => {
                let flat = self.flat();
                if index == self.repeated_rows_marker() + 1 && index < self.split_count() {
                    return Some(Split::Offsets16 {
                        channels,
                        exponent_shift: float.exponent_shift(),
                    });
                }
                return match index.checked_sub(flat.splits_before_channels()) {
                    None => flat.split(index),
                    Some(index) => float
                        .channel_splits()
                        .get(index)
                        .map(|&float| Split::Channels { float, channels }),
                };
            }
            _ => return None,
        };
        Some(split)
    }
}

/// Chunks of at least this many rows of an F16 per-channel layout price only its own split, the high byte
/// per channel, among the per-channel ones (see [`Split::gives_way_in`]).
const OWN_SPLIT_ONLY_ROWS: usize = 512;

impl Split {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Split::Bytes => "bytes",
            Split::Codes => "codes",
            Split::Fields16 | Split::Fields32 | Split::Fp8Fields { .. } | Split::Blocks(_) => {
                "fields"
            }
            Split::Fp8Pairs => "pairs",
            Split::Nibbles => "nibbles",
            Split::Channels { .. } => "channels",
            Split::Offsets16 { .. } => "offsets",
        }
    }

    /// How many streams a chunk is split into.
    pub fn stream_count(self) -> usize {
        match self {
            Split::Bytes | Split::Codes => 1,
            Split::Fields16 | Split::Fp8Fields { .. } | Split::Fp8Pairs | Split::Nibbles => 2,
            Split::Fields32 => 4,
            Split::Blocks(format) => format.stream_count(),
            Split::Channels { float, .. } => float.stream_count(),
            Split::Offsets16 { .. } => 3,
        }
    }

    /// How much smaller this split must code a chunk to be chosen over a faster one, as a factor on its
    /// estimated size. Per-channel streams decode at about half the speed of flat streams (transposes, a
    /// table per cluster of channels): they must save at least 1.5%. Splitting one code into two fields adds
    /// a symbol to decode per value: the fields must save 1% more (FP8 fields against the whole code, BF16's
    /// sign and exponent apart against the two as one byte per channel).
    pub(crate) fn speed_penalty(self) -> f64 {
        match self {
            Split::Channels {
                float: ChannelFloat::Bf16,
                ..
            } => 1.015 * 1.01,
            Split::Channels { .. } => 1.015,
            Split::Fp8Fields { .. } | Split::Nibbles => 1.01,
            // Considered only when speed is preferred: taken where it codes at most 2% larger.
            Split::Fp8Pairs => 1.0 / 1.02,
            // Offsets restore at nearly the flat split's speed (a pass adding them back: 4-7% of it), far
            // faster than tables: but the same weight as theirs, so that between the two the smaller wins. At
            // 1.003 the keys of the corpus K/V caches took offsets where tables coded them 1.1% smaller (0.45
            // points of the BF16 keys, 0.6 of the F16 ones); at 1.01, 0.02 and 0.08 points. Against the flat
            // split, offsets must then save 1.5%: whisper's token embedding saves 2.7%.
            Split::Offsets16 { .. } => 1.015,
            _ => 1.0,
        }
    }

    /// Whether stream `stream` may be coded in pairs of symbols ([`crate::entropy::encode_block_pairable`]):
    /// the exponents of BF16 (and F16's high byte, where it qualifies).
    pub(crate) fn pairable(self, stream: usize) -> bool {
        match self {
            Split::Fields16 => stream == 0,
            Split::Offsets16 { .. } => stream == 1,
            _ => false,
        }
    }

    /// Whether this split trades size for speed, so that only [`Preference::Speed`](crate::Preference::Speed)
    /// considers it: FP8 pairs code about 0.6 points larger than the whole codes (on MiniLM's and whisper's
    /// FP8 weights) and decode one symbol for two bytes, where the whole codes take one a byte.
    pub(crate) fn is_for_speed(self) -> bool {
        self == Split::Fp8Pairs
    }

    /// Whether this split trades speed for size, so that only [`Preference::Size`](crate::Preference::Size)
    /// considers it: per-channel tables take whisper's token embedding 5-7% below the flat split, but its
    /// channels decode in clusters, one symbol a value, and are transposed back into rows, at 1.8 GB/s
    /// (BF16) where the flat split, its exponents in pairs, restores at 4.9.
    pub(crate) fn is_for_size(self) -> bool {
        matches!(self, Split::Channels { .. })
    }

    /// Whether this split, an alternative to `layout`'s own per-channel split, is left out of the choice for
    /// a chunk of `rows` rows, where `own_split_fits` says whether the own split can represent it
    /// ([`Split::fits`]). Pricing a per-channel split takes a sixth of such a chunk's compression, and these
    /// alternatives rarely win where they are left out:
    /// - BF16's sign and exponent per channel as two streams, behind the joint byte
    ///   ([`ChannelFloat::Bf16Joint`]), wherever the joint byte fits: its clusters code as small (on whisper's
    ///   BF16 file the two streams won 2 chunks of 16, by 0.006% of the file).
    /// - F16's sign and exponent per channel, behind the high byte ([`ChannelFloat::F16High`]), on chunks
    ///   of 512 rows or more, where the high byte's larger tables pay for themselves. Coding the corpus F16
    ///   K/V cache in chunks of 64 to 384 rows, the separate fields make it 0.2-0.3 points smaller; in
    ///   chunks of 512, 1024 or 2048 rows, leaving them out makes it 0.01-0.09 points smaller (the estimate
    ///   from a sample had picked them where they code larger; at 768 rows, 0.02 points larger), and
    ///   whisper's F16 file compresses 10% faster, byte for byte as before.
    pub(crate) fn gives_way_in(self, layout: Layout, rows: usize, own_split_fits: bool) -> bool {
        let Layout::Channels { float: own, .. } = layout else {
            return false;
        };
        match (self, own) {
            (
                Split::Channels {
                    float: ChannelFloat::Bf16,
                    ..
                },
                ChannelFloat::Bf16Joint,
            ) => own_split_fits,
            (
                Split::Channels {
                    float: ChannelFloat::F16,
                    ..
                },
                ChannelFloat::F16High,
            ) => rows >= OWN_SPLIT_ONLY_ROWS,
            _ => false,
        }
    }

    /// Whether this split can represent every value of `values` (see [`ChannelFloat::fits`]).
    pub(crate) fn fits(self, values: &[u8]) -> bool {
        match self {
            Split::Channels { float, .. } => float.fits(values),
            _ => true,
        }
    }

    /// Whether each stream of this split holds one symbol per byte of the values, each a function of that
    /// byte alone: the streams' histograms then follow from the values' byte histogram.
    pub(crate) fn is_bytewise(self) -> bool {
        matches!(
            self,
            Split::Bytes | Split::Codes | Split::Fp8Fields { .. } | Split::Nibbles
        )
    }

    /// Whether this split's one stream is the values as they are, so that coders can read them in place.
    pub(crate) fn is_identity(self) -> bool {
        matches!(self, Split::Bytes | Split::Codes)
    }

    /// How many equal parts stream `stream` is coded in: one per channel for channel-grouped streams.
    pub(crate) fn parts(self, stream: usize) -> usize {
        match self {
            Split::Channels { float, channels } if float.grouped(stream) => channels as usize,
            _ => 1,
        }
    }

    /// The length of stream `stream` of a chunk of `chunk_len` bytes: one byte per element (per value of
    /// the flat float splits, per element of the per-channel one), or the byte fields of quantized blocks.
    pub(crate) fn stream_len(self, stream: usize, chunk_len: usize) -> usize {
        match self {
            Split::Fields16 => chunk_len / 2,
            Split::Fields32 => chunk_len / 4,
            Split::Fp8Pairs => chunk_len.div_ceil(2),
            Split::Blocks(format) => format.stream_len(stream) * (chunk_len / format.size),
            Split::Channels { float, .. } => chunk_len / float.element_size(),
            Split::Offsets16 { channels, .. } if stream == 0 => match chunk_len {
                0 => 0,
                _ => channels as usize,
            },
            Split::Offsets16 { .. } => chunk_len / 2,
            Split::Bytes | Split::Codes | Split::Fp8Fields { .. } | Split::Nibbles => chunk_len,
        }
    }

    /// What stream number `stream` holds, for reports: "bits 14..7", "low nibble", "scale@0 high".
    pub fn stream_name(self, stream: usize) -> String {
        let name = match (self, stream) {
            (Split::Bytes, _) => "bytes",
            (Split::Codes, _) => "codes",
            (Split::Fields16, 0) => "bits 14..7",
            (Split::Fields16, _) => "sign, bits 6..0",
            (Split::Fields32, 0) => "exponent",
            (Split::Fields32, 1) => "sign and mantissa 22..16",
            (Split::Fields32, 2) => "mantissa 15..8",
            (Split::Fields32, _) => "mantissa 7..0",
            (Split::Fp8Fields { .. }, 0) => "exponent",
            (Split::Fp8Fields { .. }, _) => "sign and mantissa",
            (Split::Fp8Pairs, 0) => "exponent pairs",
            (Split::Fp8Pairs, _) => "sign and mantissa pairs",
            (Split::Nibbles, 0) => "low nibble",
            (Split::Nibbles, _) => "high nibble",
            (Split::Blocks(format), stream) => return format.stream_name(stream),
            (Split::Channels { float, .. }, stream) => float.stream_name(stream),
            (Split::Offsets16 { .. }, 0) => "exponent offset per channel",
            (Split::Offsets16 { .. }, 1) => "bits 14..7 less the offset",
            (Split::Offsets16 { .. }, _) => "sign, bits 6..0",
        };
        name.to_owned()
    }

    /// The earlier stream that stream number `stream` may be coded given (see
    /// [`encode_block_given`](crate::entropy::encode_block_given)).
    pub(crate) fn context_of(self, stream: usize) -> Option<usize> {
        match self {
            Split::Blocks(format) => format.context_of(stream),
            _ => None,
        }
    }

    /// Whether the streams may repeat strings, so that a dictionary coder is worth trying.
    pub(crate) fn has_repeats(self) -> bool {
        self == Split::Bytes
    }

    /// Splits `values` (a whole number of values) into `stream_count()` streams, reusing their buffers
    /// (and `scratch`, for the per-channel transpose).
    pub fn split(self, values: &[u8], streams: &mut [Vec<u8>], scratch: &mut Vec<u8>) {
        // Every split writes every byte of its streams, so buffers already long enough are not cleared.
        for (index, stream) in streams.iter_mut().enumerate() {
            stream.resize(self.stream_len(index, values.len()), 0);
        }
        match (self, streams) {
            (Split::Bytes | Split::Codes, [bytes]) => bytes.copy_from_slice(values),
            (Split::Fields16, [high, low]) => split_16(values, high, low),
            (Split::Fields32, [exponent, sign_top, middle, bottom]) => {
                split_32(values, exponent, sign_top, middle, bottom)
            }
            (Split::Fp8Fields { mantissa_bits }, [exponent, sign_mantissa]) => {
                for ((&value, exponent), sign_mantissa) in
                    values.iter().zip(exponent).zip(sign_mantissa)
                {
                    [*exponent, *sign_mantissa] = fp8_fields(value, mantissa_bits);
                }
            }
            (Split::Fp8Pairs, [exponents, sign_mantissas]) => {
                split_fp8_pairs(values, exponents, sign_mantissas)
            }
            (Split::Nibbles, [low, high]) => {
                for ((&value, low), high) in values.iter().zip(low).zip(high) {
                    *low = value & 0x0f;
                    *high = value >> 4;
                }
            }
            (Split::Blocks(format), streams) => blocks::split(format, values, streams),
            (Split::Channels { float, channels }, streams) => {
                channels::split(float, channels as usize, values, streams, scratch)
            }
            (Split::Offsets16 { exponent_shift, .. }, [offsets, high, low]) => {
                split_16(values, high, low);
                if !values.is_empty() {
                    channels::exponent_offsets(high, exponent_shift, offsets);
                    channels::subtract_offsets(offsets, high);
                }
            }
            (split, streams) => unreachable!("{split:?} has {} streams", streams.len()),
        }
    }

    /// Inverse of [`Split::split`]: writes `out.len()` bytes of values from the streams.
    pub(crate) fn merge(self, streams: &[&[u8]], out: &mut [u8], scratch: &mut Vec<u8>) {
        match (self, streams) {
            (Split::Bytes | Split::Codes, [bytes]) => out.copy_from_slice(bytes),
            (Split::Fields16, [high, low]) => merge_16(high, low, out),
            (Split::Fields32, [exponent, sign_top, middle, bottom]) => {
                merge_32(exponent, sign_top, middle, bottom, out)
            }
            (Split::Fp8Fields { mantissa_bits }, [exponent, sign_mantissa]) => {
                let mantissa_mask = (1u8 << mantissa_bits) - 1;
                for ((value, &exponent), &sign_mantissa) in
                    out.iter_mut().zip(*exponent).zip(*sign_mantissa)
                {
                    *value = (sign_mantissa >> mantissa_bits) << 7
                        | exponent << mantissa_bits
                        | (sign_mantissa & mantissa_mask);
                }
            }
            (Split::Fp8Pairs, [exponents, sign_mantissas]) => {
                let pairs = out.chunks_mut(2).zip(*exponents).zip(*sign_mantissas);
                for ((pair, &exponents), &sign_mantissas) in pairs {
                    let len = pair.len();
                    pair.copy_from_slice(&join_fp8_pair(exponents, sign_mantissas)[..len]);
                }
            }
            (Split::Nibbles, [low, high]) => {
                for ((value, &low), &high) in out.iter_mut().zip(*low).zip(*high) {
                    *value = high << 4 | low;
                }
            }
            (Split::Blocks(format), streams) => blocks::merge(format, streams, out),
            (Split::Channels { float, channels }, streams) => {
                channels::merge(float, channels as usize, streams, out, scratch)
            }
            (Split::Offsets16 { .. }, [offsets, high, low]) => {
                merge_16(high, low, out);
                channels::add_offsets(offsets, out);
            }
            (split, streams) => unreachable!("{split:?} has {} streams", streams.len()),
        }
    }
}

/// An FP8 code `s e..e m..m` as `[exponent, sign << mantissa_bits | mantissa]`.
fn fp8_fields(value: u8, mantissa_bits: u32) -> [u8; 2] {
    let mantissa_mask = (1u8 << mantissa_bits) - 1;
    [
        (value & 0x7f) >> mantissa_bits,
        (value >> 7) << mantissa_bits | (value & mantissa_mask),
    ]
}

/// FP8 E4M3 codes two by two, as [`split_fp8_pair`] splits each pair; an odd last code is paired with 0.
fn split_fp8_pairs(values: &[u8], exponents: &mut [u8], sign_mantissas: &mut [u8]) {
    let pairs = values.chunks_exact(2);
    let last = pairs
        .remainder()
        .first()
        .map(|&first| split_fp8_pair(first, 0));
    for ((pair, exponents), sign_mantissas) in pairs.zip(&mut *exponents).zip(&mut *sign_mantissas)
    {
        [*exponents, *sign_mantissas] = split_fp8_pair(pair[0], pair[1]);
    }
    if let Some(last) = last {
        [
            exponents[values.len() / 2],
            sign_mantissas[values.len() / 2],
        ] = last;
    }
}

/// Two FP8 E4M3 codes `s eeee mmm` as `[exponents, sign_mantissas]`, the first code's fields in the low
/// nibbles: `[e1 << 4 | e0, s1 m1 << 4 | s0 m0]`.
#[inline]
fn split_fp8_pair(first: u8, second: u8) -> [u8; 2] {
    // Shifted as one 16-bit word, each part cut to a byte before its mask: the compiler vectorises this form
    // (12 GB/s); masked before the cut, or shifted byte by byte, it loaded byte by byte (2 GB/s).
    let pair = u16::from_le_bytes([first, second]);
    [
        (pair >> 3) as u8 & 0x0f | (pair >> 7) as u8 & 0xf0,
        (pair >> 4) as u8 & 0x78 | (pair >> 8) as u8 & 0x80 | pair as u8 & 0x07,
    ]
}

/// The two FP8 E4M3 codes whose fields [`split_fp8_pair`] gives.
#[inline]
pub(crate) fn join_fp8_pair(exponents: u8, sign_mantissas: u8) -> [u8; 2] {
    let code = |exponent: u8, sign_mantissa: u8| {
        (sign_mantissa & 0x8) << 4 | (exponent & 0xf) << 3 | (sign_mantissa & 0x7)
    };
    [
        code(exponents, sign_mantissas),
        code(exponents >> 4, sign_mantissas >> 4),
    ]
}

/// 16-bit values: `high` takes bits 14..7, `low` takes the sign (bit 15) as its top bit and bits 6..0.
/// For BF16 `high` is exactly the exponent; for F16 it is the exponent and the top 3 mantissa bits.
fn split_16(values: &[u8], high: &mut [u8], low: &mut [u8]) {
    for ((value, high), low) in values.chunks_exact(2).zip(high).zip(low) {
        let bits = u16::from_le_bytes([value[0], value[1]]);
        *high = (bits >> 7) as u8;
        *low = ((bits >> 8) as u8 & 0x80) | (bits as u8 & 0x7f);
    }
}

fn merge_16(high: &[u8], low: &[u8], out: &mut [u8]) {
    for ((value, &high), &low) in out.chunks_exact_mut(2).zip(high).zip(low) {
        value.copy_from_slice(&join_16(high, low));
    }
}

/// The value (little-endian) whose fields [`split_16`] gives as `high` and `low`.
#[inline]
pub(crate) fn join_16(high: u8, low: u8) -> [u8; 2] {
    let bits = (u16::from(low & 0x80) << 8) | (u16::from(high) << 7) | u16::from(low & 0x7f);
    bits.to_le_bytes()
}

/// 32-bit values: the exponent (bits 30..23), sign with mantissa bits 22..16, mantissa bits 15..8, 7..0.
fn split_32(
    values: &[u8],
    exponent: &mut [u8],
    sign_top: &mut [u8],
    middle: &mut [u8],
    bottom: &mut [u8],
) {
    let fields = exponent.iter_mut().zip(sign_top).zip(middle).zip(bottom);
    for (value, (((exponent, sign_top), middle), bottom)) in values.chunks_exact(4).zip(fields) {
        let bits = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
        *exponent = (bits >> 23) as u8;
        *sign_top = ((bits >> 24) as u8 & 0x80) | ((bits >> 16) as u8 & 0x7f);
        *middle = value[1];
        *bottom = value[0];
    }
}

fn merge_32(exponent: &[u8], sign_top: &[u8], middle: &[u8], bottom: &[u8], out: &mut [u8]) {
    let fields = exponent.iter().zip(sign_top).zip(middle).zip(bottom);
    for (value, (((&exponent, &sign_top), &middle), &bottom)) in out.chunks_exact_mut(4).zip(fields)
    {
        value.copy_from_slice(&join_32(exponent, [sign_top, middle, bottom]));
    }
}

/// The value (little-endian) whose fields [`split_32`] gives as `exponent` and `[sign_top, middle, bottom]`.
#[inline]
pub(crate) fn join_32(exponent: u8, [sign_top, middle, bottom]: [u8; 3]) -> [u8; 4] {
    let bits = (u32::from(sign_top & 0x80) << 24)
        | (u32::from(exponent) << 23)
        | (u32::from(sign_top & 0x7f) << 16)
        | (u32::from(middle) << 8)
        | u32::from(bottom);
    bits.to_le_bytes()
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A layout name that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown layout {0:?}")]
pub struct UnknownLayout(pub String);

impl FromStr for Layout {
    type Err = UnknownLayout;

    fn from_str(name: &str) -> Result<Layout, UnknownLayout> {
        if let Some((prefix, channels)) = name.split_once("-channels-") {
            let float = ChannelFloat::ALL
                .into_iter()
                .find(|float| float.prefix() == prefix);
            let channels = channels
                .parse::<u32>()
                .ok()
                .filter(|c| c.to_string() == channels);
            // Built directly, not through `channels()`, which names the layout new files get.
            let layout = float
                .zip(channels)
                .filter(|&(_, channels)| (2..=MAX_CHANNELS).contains(&channels))
                .map(|(float, channels)| Layout::Channels { float, channels });
            return layout.ok_or_else(|| UnknownLayout(name.to_owned()));
        }
        Layout::all()
            .find(|layout| layout.name() == name)
            .ok_or_else(|| UnknownLayout(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every split of `layout` restores `values`.
    fn round_trip(layout: Layout, values: &[u8]) {
        for split in (0..layout.split_count()).filter_map(|index| layout.split(index)) {
            let streams = split_into(split, values);
            let mut out = vec![0xaa; values.len()];
            let streams: Vec<&[u8]> = streams.iter().map(Vec::as_slice).collect();
            split.merge(&streams, &mut out, &mut Vec::new());
            assert_eq!(out, values, "{layout} {split:?}");
        }
    }

    fn split_into(split: Split, values: &[u8]) -> Vec<Vec<u8>> {
        let mut streams = vec![Vec::new(); split.stream_count()];
        split.split(values, &mut streams, &mut Vec::new());
        streams
    }

    #[test]
    fn every_16_bit_pattern_survives() {
        let values: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        round_trip(Layout::Bf16, &values);
        round_trip(Layout::F16, &values);
        // Less offsets per channel, in rows of 16 and of 24 channels (not a whole group of 16 values).
        for channels in [16, 24] {
            for exponent_shift in [0, 3] {
                let split = Split::Offsets16 {
                    channels,
                    exponent_shift,
                };
                let values = &values[..values.len() / 48 * 48];
                let streams = split_into(split, values);
                let mut out = vec![0; values.len()];
                let views: Vec<&[u8]> = streams.iter().map(Vec::as_slice).collect();
                split.merge(&views, &mut out, &mut Vec::new());
                assert!(out == values, "{split:?}");
            }
        }
    }

    #[test]
    fn offsets_centre_each_channel_on_the_median_channel() {
        // 3 rows of 4 BF16 channels at exponents about 100, 120, 121 and 140: offsets from 121 (the median
        // of the means, the upper one of an even count), and the exponents less them.
        let exponents: [[u16; 4]; 3] = [
            [99, 120, 121, 140],
            [100, 120, 121, 141],
            [101, 120, 121, 139],
        ];
        let values: Vec<u8> = exponents
            .iter()
            .flatten()
            .flat_map(|&exponent| (exponent << 7 | 0x8005).to_le_bytes())
            .collect();
        let split = Split::Offsets16 {
            channels: 4,
            exponent_shift: 0,
        };
        let streams = split_into(split, &values);
        assert_eq!(streams[0], [235, 255, 0, 19]);
        assert_eq!(
            streams[1],
            [120, 121, 121, 121, 121, 121, 121, 122, 122, 121, 121, 120]
        );
        let mut out = vec![0; values.len()];
        let views: Vec<&[u8]> = streams.iter().map(Vec::as_slice).collect();
        split.merge(&views, &mut out, &mut Vec::new());
        assert_eq!(out, values);
    }

    #[test]
    fn bf16_high_stream_is_the_exponent() {
        // -1.0 in BF16 is 0xBF80: sign 1, exponent 127, mantissa 0.
        let streams = split_into(Split::Fields16, &0xbf80u16.to_le_bytes());
        assert_eq!(streams, [vec![127], vec![0x80]]);
    }

    #[test]
    fn f32_special_values_survive() {
        let specials = [
            0u32,
            0x8000_0000,
            1,
            0x8000_0001,
            0x007f_ffff,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0x7fa1_2345,
            0xffff_ffff,
            0x3f80_0000,
        ];
        let values: Vec<u8> = specials.iter().flat_map(|v| v.to_le_bytes()).collect();
        round_trip(Layout::F32, &values);
        let streams = split_into(Split::Fields32, &0xbf80_0000u32.to_le_bytes());
        assert_eq!(streams, [vec![127], vec![0x80], vec![0], vec![0]]);
    }

    #[test]
    fn every_byte_code_survives_every_split() {
        let codes: Vec<u8> = (0..=u8::MAX).collect();
        for layout in [
            Layout::F8E4M3,
            Layout::F8E5M2,
            Layout::F4E2M1,
            Layout::Bytes,
        ] {
            round_trip(layout, &codes);
        }
    }

    #[test]
    fn fp8_fields_are_exponent_and_sign_with_mantissa() {
        // E4M3 -1.5 is sign 1, exponent 0111, mantissa 100; E5M2 -1.5 is 1, 01111, 10.
        let e4m3 = split_into(Split::Fp8Fields { mantissa_bits: 3 }, &[0b1011_1100]);
        assert_eq!(e4m3, [vec![0b0111], vec![0b1100]]);
        let e5m2 = split_into(Split::Fp8Fields { mantissa_bits: 2 }, &[0b1011_1110]);
        assert_eq!(e5m2, [vec![0b1111], vec![0b110]]);
        assert_eq!(split_into(Split::Nibbles, &[0x7c]), [vec![0xc], vec![0x7]]);
    }

    #[test]
    fn fp8_pairs_hold_every_pair_of_codes_and_an_odd_last_code() {
        let pairs: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        round_trip(Layout::F8E4M3, &pairs);
        for last in 0..=u8::MAX {
            round_trip(Layout::F8E4M3, &[0x38, 0xc7, last]);
        }
        // -1.5 (1 0111 100) then 0.5 (0 0110 000): exponents 0111 and 0110, sign-mantissas 1100 and 0000.
        let streams = split_into(Split::Fp8Pairs, &[0b1011_1100, 0b0011_0000, 0b1011_1100]);
        assert_eq!(streams, [vec![0x67, 0x07], vec![0x0c, 0x0c]]);
    }

    #[test]
    fn fp8_pairs_leave_the_per_channel_split_numbers_as_they_were() {
        // Written files name splits by number: the flat E4M3 layout gained split 2, its per-channel layouts
        // keep theirs (the codes, the fields, then the fields per channel; 3 marks repeated rows).
        assert_eq!(Layout::F8E4M3.split(2), Some(Split::Fp8Pairs));
        let layout = Layout::F8E4M3.channels(8).expect("8 channels");
        assert_eq!(layout.split_count(), 3);
        assert_eq!(layout.split(0), Some(Split::Codes));
        assert_eq!(layout.split(1), Some(Split::Fp8Fields { mantissa_bits: 3 }));
        assert_eq!(
            layout.split(2),
            Some(Split::Channels {
                float: ChannelFloat::F8E4M3,
                channels: 8
            })
        );
    }

    #[test]
    fn offsets_come_after_the_repeated_rows_marker() {
        // Written files name splits, and the repeated-rows marker, by number: the offsets split, which came
        // after the marker, takes the number past it and leaves the others as they were.
        for (layout, shift) in [(Layout::Bf16, 0), (Layout::F16, 3)] {
            let layout = layout.channels(8).expect("8 channels");
            assert_eq!(layout.repeated_rows_marker(), 3);
            assert_eq!(layout.split(3), None);
            assert_eq!(
                layout.split(4),
                Some(Split::Offsets16 {
                    channels: 8,
                    exponent_shift: shift
                })
            );
            assert_eq!(layout.split(5), None);
        }
        let fp8 = Layout::F8E4M3.channels(8).expect("8 channels");
        assert_eq!((fp8.repeated_rows_marker(), fp8.split_count()), (3, 3));
        assert_eq!(fp8.split(4), None);
    }

    #[test]
    fn separate_fields_give_way_to_the_joint_ones_where_those_fit_or_chunks_are_long() {
        let channels = |float| Split::Channels {
            float,
            channels: 16,
        };
        let (bf16, f16) = (Layout::Bf16.channels(16), Layout::F16.channels(16));
        let (bf16, f16) = (bf16.expect("16 channels"), f16.expect("16 channels"));
        let separate_bf16 = channels(ChannelFloat::Bf16);
        assert!(separate_bf16.gives_way_in(bf16, 16, true));
        assert!(!separate_bf16.gives_way_in(bf16, 4096, false));
        let separate_f16 = channels(ChannelFloat::F16);
        assert!(!separate_f16.gives_way_in(f16, OWN_SPLIT_ONLY_ROWS - 1, true));
        assert!(separate_f16.gives_way_in(f16, OWN_SPLIT_ONLY_ROWS, true));
        // Flat splits, and layouts with no alternative, never give way.
        assert!(!Split::Fields16.gives_way_in(f16, 4096, true));
        let fp8 = Layout::F8E4M3.channels(16).expect("16 channels");
        assert!(!channels(ChannelFloat::F8E4M3).gives_way_in(fp8, 4096, true));
    }

    #[test]
    fn names_round_trip() {
        for layout in Layout::all() {
            assert_eq!(layout.name().parse(), Ok(layout));
        }
        let channels = Layout::F8E4M3.channels(192).unwrap();
        assert_eq!(channels.name(), "f8-e4m3-channels-192");
        assert_eq!("f8-e4m3-channels-192".parse(), Ok(channels));
        // New BF16 files get the joint layout; the one earlier writers wrote still reads as it was.
        let joint = Layout::Bf16.channels(192).unwrap();
        assert_eq!(joint.name(), "bf16-joint-channels-192");
        assert_eq!("bf16-joint-channels-192".parse(), Ok(joint));
        let earlier = Layout::Channels {
            float: ChannelFloat::Bf16,
            channels: 192,
        };
        assert_eq!("bf16-channels-192".parse(), Ok(earlier));
        // Split numbers: the flat split, the per-channel ones, the repeated-rows marker, the offsets.
        assert_eq!(earlier.split_count(), 4);
        assert_eq!(joint.split_count(), 5);
        let high = Layout::F16.channels(8).unwrap();
        assert_eq!(high.name(), "f16-high-channels-8");
        assert_eq!(high.split_count(), 5);
        assert_eq!("f16-high-channels-8".parse(), Ok(high));
        assert_eq!(
            "f16-channels-8".parse(),
            Ok(Layout::Channels {
                float: ChannelFloat::F16,
                channels: 8
            })
        );
        for bad in [
            "bf16-joint-channels-1",
            "zstd",
            "bf16-channels-1",
            "bf16-channels-4096",
            "bf16-channels-0192",
            "f32-channels-8",
        ] {
            assert!(bad.parse::<Layout>().is_err(), "{bad}");
        }
    }
}
