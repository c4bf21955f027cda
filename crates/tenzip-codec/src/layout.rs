//! Field layouts: how one chunk of values is split into byte streams, and merged back.
//!
//! Every layout works on the raw integer bits of little-endian values; nothing is ever converted through a
//! float type, so NaN payloads, infinities, subnormals and negative zero survive untouched.

use std::fmt;
use std::str::FromStr;

/// How a chunk's bytes are split into separately coded streams.
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
}

impl Layout {
    /// Every layout, in declaration order.
    pub const ALL: [Layout; 4] = [Layout::Bytes, Layout::Bf16, Layout::F16, Layout::F32];

    /// The stable name written into manifests.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Bytes => "bytes",
            Layout::Bf16 => "bf16-split",
            Layout::F16 => "f16-split",
            Layout::F32 => "f32-split",
        }
    }

    /// Bytes per value. A chunk's length must be a multiple of it.
    pub fn value_size(self) -> usize {
        match self {
            Layout::Bytes => 1,
            Layout::Bf16 | Layout::F16 => 2,
            Layout::F32 => 4,
        }
    }

    /// How many streams a chunk is split into. Each stream holds one byte per value.
    pub fn stream_count(self) -> usize {
        match self {
            Layout::Bytes => 1,
            Layout::Bf16 | Layout::F16 => 2,
            Layout::F32 => 4,
        }
    }

    /// Splits `values` (a whole number of values) into `stream_count()` streams of one byte per value.
    pub(crate) fn split(self, values: &[u8], streams: &mut [Vec<u8>]) {
        debug_assert_eq!(values.len() % self.value_size(), 0);
        let count = values.len() / self.value_size();
        for stream in streams.iter_mut() {
            stream.clear();
            stream.resize(count, 0);
        }
        match (self, streams) {
            (Layout::Bytes, [bytes]) => bytes.copy_from_slice(values),
            (Layout::Bf16 | Layout::F16, [high, low]) => split_16(values, high, low),
            (Layout::F32, [exponent, sign_top, middle, bottom]) => {
                split_32(values, exponent, sign_top, middle, bottom)
            }
            (layout, streams) => unreachable!("{layout} has {} streams", streams.len()),
        }
    }

    /// Inverse of [`Layout::split`]: writes `out.len() / value_size()` values from the streams.
    pub(crate) fn merge(self, streams: &[&[u8]], out: &mut [u8]) {
        match (self, streams) {
            (Layout::Bytes, [bytes]) => out.copy_from_slice(bytes),
            (Layout::Bf16 | Layout::F16, [high, low]) => merge_16(high, low, out),
            (Layout::F32, [exponent, sign_top, middle, bottom]) => {
                merge_32(exponent, sign_top, middle, bottom, out)
            }
            (layout, streams) => unreachable!("{layout} has {} streams", streams.len()),
        }
    }
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
        let bits = (u16::from(low & 0x80) << 8) | (u16::from(high) << 7) | u16::from(low & 0x7f);
        value.copy_from_slice(&bits.to_le_bytes());
    }
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
        let bits = (u32::from(sign_top & 0x80) << 24)
            | (u32::from(exponent) << 23)
            | (u32::from(sign_top & 0x7f) << 16)
            | (u32::from(middle) << 8)
            | u32::from(bottom);
        value.copy_from_slice(&bits.to_le_bytes());
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A layout name that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown layout {0:?}")]
pub struct UnknownLayout(pub String);

impl FromStr for Layout {
    type Err = UnknownLayout;

    fn from_str(name: &str) -> Result<Layout, UnknownLayout> {
        Layout::ALL
            .into_iter()
            .find(|layout| layout.name() == name)
            .ok_or_else(|| UnknownLayout(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(layout: Layout, values: &[u8]) {
        let mut streams = vec![Vec::new(); layout.stream_count()];
        layout.split(values, &mut streams);
        let mut out = vec![0xaa; values.len()];
        let streams: Vec<&[u8]> = streams.iter().map(Vec::as_slice).collect();
        layout.merge(&streams, &mut out);
        assert_eq!(out, values, "{layout}");
    }

    #[test]
    fn every_16_bit_pattern_survives() {
        let values: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        round_trip(Layout::Bf16, &values);
        round_trip(Layout::F16, &values);
    }

    #[test]
    fn bf16_high_stream_is_the_exponent() {
        // -1.0 in BF16 is 0xBF80: sign 1, exponent 127, mantissa 0.
        let mut streams = vec![Vec::new(); 2];
        Layout::Bf16.split(&0xbf80u16.to_le_bytes(), &mut streams);
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
        let mut streams = vec![Vec::new(); 4];
        Layout::F32.split(&0xbf80_0000u32.to_le_bytes(), &mut streams);
        assert_eq!(streams, [vec![127], vec![0x80], vec![0], vec![0]]);
    }

    #[test]
    fn names_round_trip() {
        for layout in Layout::ALL {
            assert_eq!(layout.name().parse(), Ok(layout));
        }
        assert!("zstd".parse::<Layout>().is_err());
    }
}
