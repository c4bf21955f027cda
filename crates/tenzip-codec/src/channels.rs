//! Per-channel coding of float tensors of rank 2 and more: the exponent (with the sign where it fits a byte)
//! is coded with tables per channel, where a channel is a position in the trailing dimensions.
//!
//! Keys of a K/V cache have outlier channels whose exponents sit far from the rest, and some weight matrices
//! have rows or columns with their own scale (whisper's token embedding): tables per channel code such
//! exponents in fewer bits than one table for the whole tensor. A chunk holds whole rows; each
//! channel-grouped stream is stored transposed (channel by channel) and coded one part per channel, alike
//! channels sharing a table ([`encode_block_clustered`](crate::entropy::encode_block_clustered)); the rest of
//! the value (the mantissa, nearly uniform) as flat streams.

/// The most channels a layout may have: per-channel tables for more would cost more than they save on
/// chunks of ordinary size.
pub const MAX_CHANNELS: u32 = 1024;

/// The float formats that can be coded per channel, each with its grouping of fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelFloat {
    /// bfloat16: exponent and sign per channel, as two streams (together they take 9 bits); the 7 mantissa
    /// bits flat.
    Bf16,
    /// IEEE half: sign with exponent per channel; mantissa bits 9..8 and 7..0 flat.
    F16,
    /// FP8 E4M3 (either variant): sign with exponent per channel; the 3 mantissa bits flat.
    F8E4M3,
    /// FP8 E5M2 (either variant): sign with exponent per channel; the 2 mantissa bits flat.
    F8E5M2,
    /// bfloat16 whose exponents are all below 128 (magnitudes below 2, zeros and subnormals included, as
    /// weights nearly always are): sign and exponent per channel as one byte, one symbol where
    /// [`ChannelFloat::Bf16`] takes two (and its joint entropy is never above the two fields'); the 7
    /// mantissa bits flat. A chunk with a larger exponent takes [`ChannelFloat::Bf16`]'s split.
    /// Not for K/V sequences ([`crate::sequence`]), whose later pages are not checked.
    Bf16Joint,
    /// IEEE half: the high byte (sign, exponent, mantissa bits 9..8) per channel, the low byte flat. The top
    /// mantissa bits go with the exponent (as in the flat `f16-split`): on whisper's token embedding this
    /// codes 3% smaller than [`ChannelFloat::F16`]'s sign and exponent per channel beside bits 9..8 flat,
    /// which short chunks still take.
    F16High,
}

impl ChannelFloat {
    /// Every format.
    pub const ALL: [ChannelFloat; 6] = [
        ChannelFloat::Bf16,
        ChannelFloat::F16,
        ChannelFloat::F8E4M3,
        ChannelFloat::F8E5M2,
        ChannelFloat::Bf16Joint,
        ChannelFloat::F16High,
    ];

    /// The per-channel splits a layout of this format offers, in split order after the flat ones. Layouts
    /// written before [`ChannelFloat::Bf16Joint`] and [`ChannelFloat::F16High`] have the separate fields only;
    /// the newer ones keep them too: BF16 for chunks whose exponents do not fit the joint byte, F16 for short
    /// chunks, where tables of the high byte's larger alphabet cost more than they save.
    pub(crate) fn channel_splits(self) -> &'static [ChannelFloat] {
        match self {
            ChannelFloat::Bf16 => &[ChannelFloat::Bf16],
            ChannelFloat::F16 => &[ChannelFloat::F16],
            ChannelFloat::F8E4M3 => &[ChannelFloat::F8E4M3],
            ChannelFloat::F8E5M2 => &[ChannelFloat::F8E5M2],
            ChannelFloat::Bf16Joint => &[ChannelFloat::Bf16Joint, ChannelFloat::Bf16],
            ChannelFloat::F16High => &[ChannelFloat::F16High, ChannelFloat::F16],
        }
    }

    /// Whether every value of `values` can be split this way: for [`ChannelFloat::Bf16Joint`], whether no
    /// exponent reaches 128 (bit 14 clear), from one OR over whole words; for the others, always.
    pub(crate) fn fits(self, values: &[u8]) -> bool {
        if self != ChannelFloat::Bf16Joint {
            return true;
        }
        let mut words = values.chunks_exact(8);
        let whole = (&mut words).fold(0u64, |seen, word| {
            seen | u64::from_le_bytes(word.try_into().expect("8 bytes"))
        });
        let rest = words
            .remainder()
            .iter()
            .skip(1)
            .step_by(2)
            .fold(0u8, |seen, &high| seen | high);
        whole & 0x4000_4000_4000_4000 == 0 && rest & 0x40 == 0
    }

    /// Its index in [`ChannelFloat::ALL`].
    pub fn index(self) -> u8 {
        ChannelFloat::ALL
            .iter()
            .position(|&float| float == self)
            .expect("every format is in ALL") as u8
    }

    /// The prefix of layout names: `"bf16"` in `"bf16-channels-192"`.
    pub fn prefix(self) -> &'static str {
        match self {
            ChannelFloat::Bf16 => "bf16",
            ChannelFloat::F16 => "f16",
            ChannelFloat::F8E4M3 => "f8-e4m3",
            ChannelFloat::F8E5M2 => "f8-e5m2",
            ChannelFloat::Bf16Joint => "bf16-joint",
            ChannelFloat::F16High => "f16-high",
        }
    }

    /// Bytes per element.
    pub fn element_size(self) -> usize {
        match self {
            ChannelFloat::Bf16
            | ChannelFloat::F16
            | ChannelFloat::Bf16Joint
            | ChannelFloat::F16High => 2,
            ChannelFloat::F8E4M3 | ChannelFloat::F8E5M2 => 1,
        }
    }

    pub(crate) fn stream_count(self) -> usize {
        match self {
            ChannelFloat::Bf16 | ChannelFloat::F16 => 3,
            ChannelFloat::F8E4M3
            | ChannelFloat::F8E5M2
            | ChannelFloat::Bf16Joint
            | ChannelFloat::F16High => 2,
        }
    }

    /// Streams grouped by channel; they come first.
    pub(crate) fn grouped_count(self) -> usize {
        match self {
            ChannelFloat::Bf16 => 2,
            _ => 1,
        }
    }

    /// Whether stream `stream` is grouped by channel.
    pub(crate) fn grouped(self, stream: usize) -> bool {
        stream < self.grouped_count()
    }

    pub(crate) fn stream_name(self, stream: usize) -> &'static str {
        match (self, stream) {
            (ChannelFloat::Bf16, 0) => "exponent per channel",
            (ChannelFloat::Bf16, 1) => "sign per channel",
            (ChannelFloat::Bf16, _) => "mantissa",
            (ChannelFloat::F16High, 0) => "sign, exponent and mantissa 9..8 per channel",
            (ChannelFloat::F16High, _) => "mantissa 7..0",
            (_, 0) => "sign and exponent per channel",
            (ChannelFloat::F16, 1) => "mantissa 9..8",
            (ChannelFloat::F16, _) => "mantissa 7..0",
            (_, _) => "mantissa",
        }
    }

    /// Where the exponent starts in a 16-bit format's bits 14..7 ([`crate::Split::Offsets16`]): bfloat16's
    /// are all exponent, IEEE half's hold three mantissa bits below it.
    pub(crate) fn exponent_shift(self) -> u32 {
        match self {
            ChannelFloat::F16 | ChannelFloat::F16High => 3,
            _ => 0,
        }
    }

    /// Width of the mantissa of FP8 formats.
    fn fp8_mantissa_bits(self) -> u32 {
        match self {
            ChannelFloat::F8E5M2 => 2,
            _ => 3,
        }
    }
}

/// Splits whole rows of `channels` elements: every field first in element order (a flat loop the compiler
/// vectorises), the grouped ones into `scratch`, from where they are transposed channel by channel into their
/// streams.
pub(crate) fn split(
    float: ChannelFloat,
    channels: usize,
    values: &[u8],
    streams: &mut [Vec<u8>],
    scratch: &mut Vec<u8>,
) {
    let elements = values.len() / float.element_size();
    if elements == 0 {
        return;
    }
    let staged = crate::chunk::room(scratch, elements * float.grouped_count());
    let (grouped, flat) = streams.split_at_mut(float.grouped_count());
    let mut fields: [&mut [u8]; 3] = Default::default();
    let targets = staged
        .chunks_exact_mut(elements)
        .chain(flat.iter_mut().map(|stream| &mut stream[..elements]));
    for (field, target) in fields.iter_mut().zip(targets) {
        *field = target;
    }
    split_fields(float, values, &mut fields[..float.stream_count()]);
    for (field, stream) in staged.chunks_exact(elements).zip(grouped) {
        transpose(field, elements / channels, channels, stream);
    }
}

/// Splits `values` into one field per stream (each as long as there are elements), in element order.
pub(crate) fn split_fields(float: ChannelFloat, values: &[u8], fields: &mut [&mut [u8]]) {
    match (float, fields) {
        (ChannelFloat::Bf16, [exponent, sign, mantissa]) => {
            split_pairs(values, [exponent, sign, mantissa], |low, high| {
                [
                    std::array::from_fn(|j| high[j] << 1 | low[j] >> 7),
                    std::array::from_fn(|j| high[j] >> 7),
                    std::array::from_fn(|j| low[j] & 0x7f),
                ]
            })
        }
        (ChannelFloat::F16High, [high, low]) => {
            split_pairs(values, [high, low], |low, high| [*high, *low])
        }
        (ChannelFloat::Bf16Joint, [sign_exponent, mantissa]) => {
            // Bit 14 is clear: the exponent's low 7 bits are all of it.
            split_pairs(values, [sign_exponent, mantissa], |low, high| {
                [
                    std::array::from_fn(|j| high[j] & 0x80 | (high[j] << 1 & 0x7e) | low[j] >> 7),
                    std::array::from_fn(|j| low[j] & 0x7f),
                ]
            })
        }
        (ChannelFloat::F16, [sign_exponent, high_mantissa, low_mantissa]) => split_pairs(
            values,
            [sign_exponent, high_mantissa, low_mantissa],
            |low, high| {
                [
                    std::array::from_fn(|j| high[j] >> 2),
                    std::array::from_fn(|j| high[j] & 0x03),
                    *low,
                ]
            },
        ),
        (ChannelFloat::F8E4M3 | ChannelFloat::F8E5M2, [sign_exponent, mantissa]) => {
            let bits = float.fp8_mantissa_bits();
            let mask = (1u8 << bits) - 1;
            for ((&code, sign_exponent), mantissa) in values
                .iter()
                .zip(sign_exponent.iter_mut())
                .zip(mantissa.iter_mut())
            {
                *sign_exponent = code >> bits;
                *mantissa = code & mask;
            }
        }
        (float, fields) => unreachable!("{float:?} has {} fields", fields.len()),
    }
}

/// Splits little-endian 16-bit `values` into `N` fields, sixteen values at a time: `fields_of` takes their
/// low and high bytes ([`byte_planes`]) and gives the sixteen bytes of each field (whole arrays, which the
/// compiler turns into vector operations; element by element, it assembled each value one byte load at a
/// time). The last values are padded to sixteen.
fn split_pairs<const N: usize>(
    values: &[u8],
    mut fields: [&mut [u8]; N],
    fields_of: impl Fn(&[u8; 16], &[u8; 16]) -> [[u8; 16]; N],
) {
    let steps = values.len() / 32;
    for (step, pairs) in values.chunks_exact(32).enumerate() {
        let (low, high) = byte_planes(pairs.try_into().expect("32 bytes"));
        for (field, bytes) in fields.iter_mut().zip(fields_of(&low, &high)) {
            field[step * 16..][..16].copy_from_slice(&bytes);
        }
    }
    let rest = &values[steps * 32..];
    if !rest.is_empty() {
        let mut padded = [0u8; 32];
        padded[..rest.len()].copy_from_slice(rest);
        let (low, high) = byte_planes(&padded);
        for (field, bytes) in fields.iter_mut().zip(fields_of(&low, &high)) {
            field[steps * 16..].copy_from_slice(&bytes[..rest.len() / 2]);
        }
    }
}

/// The low bytes and the high bytes of sixteen little-endian 16-bit values.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn byte_planes(pairs: &[u8; 32]) -> ([u8; 16], [u8; 16]) {
    // SAFETY: SSE2 is part of the x86-64 baseline: every x86_64 CPU has it.
    unsafe { byte_planes_sse2(pairs) }
}

/// Masks (for the low bytes) or shifts (for the high bytes) each 16-bit lane down to its byte, then packs two
/// registers of lanes into one of bytes. Bytes move in and out through `i64` halves, as in the transpose.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn byte_planes_sse2(pairs: &[u8; 32]) -> ([u8; 16], [u8; 16]) {
    use std::arch::x86_64::*;
    let half = |at: usize| i64::from_le_bytes(pairs[at..at + 8].try_into().expect("8 bytes"));
    let first = _mm_set_epi64x(half(8), half(0));
    let second = _mm_set_epi64x(half(24), half(16));
    let byte_mask = _mm_set1_epi16(0xff);
    let low = _mm_packus_epi16(
        _mm_and_si128(first, byte_mask),
        _mm_and_si128(second, byte_mask),
    );
    let high = _mm_packus_epi16(_mm_srli_epi16::<8>(first), _mm_srli_epi16::<8>(second));
    let bytes = |register: __m128i| -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&_mm_cvtsi128_si64(register).to_le_bytes());
        bytes[8..].copy_from_slice(
            &_mm_cvtsi128_si64(_mm_unpackhi_epi64(register, register)).to_le_bytes(),
        );
        bytes
    };
    (bytes(low), bytes(high))
}

/// The low bytes and the high bytes of sixteen little-endian 16-bit values.
#[cfg(not(target_arch = "x86_64"))]
fn byte_planes(pairs: &[u8; 32]) -> ([u8; 16], [u8; 16]) {
    (
        std::array::from_fn(|i| pairs[2 * i]),
        std::array::from_fn(|i| pairs[2 * i + 1]),
    )
}

/// Sets `offsets` (one byte a channel) for the bits 14..7 of 16-bit elements, `high` (whole rows of
/// `offsets.len()` channels, as [`crate::Split::Fields16`] gives them): each channel's mean exponent (the
/// field from bit `exponent_shift` up) less the median of those means, shifted back into place. Subtracted,
/// they bring every channel's exponents about the same centre; channels near the median get none. Means
/// are one vectorised pass of sums over at most [`OFFSET_SAMPLE_ROWS`] rows: each channel's median of the
/// same rows (a selection per channel) coded whisper's token embedding 0.3% smaller and compressed it 23%
/// slower.
pub(crate) fn exponent_offsets(high: &[u8], exponent_shift: u32, offsets: &mut [u8]) {
    let channels = offsets.len();
    let rows = high.len() / channels;
    let mut sums = [0u16; MAX_CHANNELS as usize];
    let sums = &mut sums[..channels];
    let mut sampled = 0;
    for row in high
        .chunks_exact(channels)
        .step_by(rows.div_ceil(OFFSET_SAMPLE_ROWS).max(1))
    {
        sampled += 1;
        for (sum, &byte) in sums.iter_mut().zip(row) {
            *sum += u16::from(byte >> exponent_shift);
        }
    }
    let mut means = [0u16; MAX_CHANNELS as usize];
    let means = &mut means[..channels];
    for (mean, &sum) in means.iter_mut().zip(sums.iter()) {
        *mean = ((u32::from(sum) + sampled / 2) / sampled.max(1)) as u16;
    }
    let mut sorted = [0u16; MAX_CHANNELS as usize];
    let sorted = &mut sorted[..channels];
    sorted.copy_from_slice(means);
    let (_, &mut centre, _) = sorted.select_nth_unstable(channels / 2);
    for (offset, &mean) in offsets.iter_mut().zip(means.iter()) {
        *offset = (mean.wrapping_sub(centre) << exponent_shift) as u8;
    }
}

/// Rows, evenly spread over a chunk, whose means give its offsets: enough for means (every 16th row of a
/// 4096-row chunk), and few enough for sums in 16 bits (256 exponents of at most 255), twice as many a
/// vector as in 32. Summing every row had taken a tenth of whisper's embedding's compression.
const OFFSET_SAMPLE_ROWS: usize = 256;

/// Subtracts each channel's offset from its bytes of `high` (whole rows of `offsets.len()` channels).
pub(crate) fn subtract_offsets(offsets: &[u8], high: &mut [u8]) {
    for row in high.chunks_exact_mut(offsets.len()) {
        for (byte, &offset) in row.iter_mut().zip(offsets) {
            *byte = byte.wrapping_sub(offset);
        }
    }
}

/// Adds each channel's offset back to bits 14..7 of the little-endian 16-bit values of `out` (whole rows
/// of `offsets.len()` channels), leaving the sign and bits 6..0 as they are: the inverse of
/// [`subtract_offsets`] on the merged values.
pub(crate) fn add_offsets(offsets: &[u8], out: &mut [u8]) {
    if offsets.iter().all(|&offset| offset == 0) {
        return;
    }
    let mut steps = [0u16; MAX_CHANNELS as usize];
    let steps = &mut steps[..offsets.len()];
    for (step, &offset) in steps.iter_mut().zip(offsets) {
        *step = u16::from(offset) << 7;
    }
    let restore = |bits: u16, step: u16| (bits & 0x807f) | (bits.wrapping_add(step) & 0x7f80);
    for row in out.chunks_exact_mut(2 * offsets.len()) {
        // Sixteen values at a time as whole arrays, which the compiler turns into vector operations (value
        // by value, it did not, and this pass took 40% of the restore).
        let mut groups = row.chunks_exact_mut(32);
        let mut step_groups = steps.chunks_exact(16);
        for (group, steps) in (&mut groups).zip(&mut step_groups) {
            let group: &mut [u8; 32] = group.try_into().expect("32 bytes");
            let values: [u16; 16] =
                std::array::from_fn(|i| u16::from_le_bytes([group[2 * i], group[2 * i + 1]]));
            let restored: [u16; 16] = std::array::from_fn(|i| restore(values[i], steps[i]));
            *group = std::array::from_fn(|i| restored[i / 2].to_le_bytes()[i % 2]);
        }
        let rest = groups.into_remainder().chunks_exact_mut(2);
        for (value, &step) in rest.zip(step_groups.remainder()) {
            let bits = restore(u16::from_le_bytes([value[0], value[1]]), step);
            value.copy_from_slice(&bits.to_le_bytes());
        }
    }
}

/// Inverse of [`split`], a band of [`TILE`] rows at a time: the band of each grouped stream transposed back
/// into `scratch` (tile by tile), then the band's values merged in element order with the flat streams into
/// `out`. A band is a few tens of KB, so what is transposed is still in the cache when it is merged; whole
/// transposed streams (several MB a chunk) were written to memory and read back, which held two threads to
/// the speed of one.
pub(crate) fn merge(
    float: ChannelFloat,
    channels: usize,
    streams: &[&[u8]],
    out: &mut [u8],
    scratch: &mut Vec<u8>,
) {
    let element_size = float.element_size();
    let rows = out.len() / element_size / channels;
    let grouped = float.grouped_count();
    let band_len = TILE * channels;
    let bands = crate::chunk::room(scratch, grouped * band_len);
    let mut tile = [[0u8; TILE]; TILE];
    for row_start in (0..rows).step_by(TILE) {
        let height = TILE.min(rows - row_start);
        for (band, stream) in bands.chunks_exact_mut(band_len).zip(streams) {
            // The grouped streams list channel by channel: a tile is `width` channels of `height` rows.
            for column_start in (0..channels).step_by(TILE) {
                let width = TILE.min(channels - column_start);
                transpose_tile(
                    stream,
                    rows,
                    column_start,
                    row_start,
                    width,
                    height,
                    &mut tile,
                );
                for (row, transposed) in tile.iter().take(height).enumerate() {
                    put_tile_row(
                        &mut band[row * channels + column_start..][..width],
                        transposed,
                    );
                }
            }
        }
        let first = row_start * channels;
        let len = height * channels;
        let mut fields: [&[u8]; 3] = [&[]; 3];
        for (field, stream) in fields.iter_mut().zip(streams) {
            *field = &stream[first..first + len];
        }
        for (field, band) in fields
            .iter_mut()
            .zip(bands.chunks_exact(band_len))
            .take(grouped)
        {
            *field = &band[..len];
        }
        let target = &mut out[first * element_size..(first + len) * element_size];
        merge_fields(float, &fields[..float.stream_count()], target);
    }
}

/// Inverse of [`split_fields`].
pub(crate) fn merge_fields(float: ChannelFloat, fields: &[&[u8]], out: &mut [u8]) {
    match (float, fields) {
        (ChannelFloat::Bf16, [exponent, sign, mantissa]) => {
            for (((value, &exponent), &sign), &mantissa) in out
                .chunks_exact_mut(2)
                .zip(exponent.iter())
                .zip(sign.iter())
                .zip(mantissa.iter())
            {
                // Whole 16-bit values, as in the split.
                let bits = u16::from(sign) << 15 | u16::from(exponent) << 7 | u16::from(mantissa);
                value.copy_from_slice(&bits.to_le_bytes());
            }
        }
        (ChannelFloat::F16High, [high, low]) => {
            for ((value, &high), &low) in out.chunks_exact_mut(2).zip(high.iter()).zip(low.iter()) {
                value.copy_from_slice(&[low, high]);
            }
        }
        (ChannelFloat::Bf16Joint, [sign_exponent, mantissa]) => {
            for ((value, &sign_exponent), &mantissa) in out
                .chunks_exact_mut(2)
                .zip(sign_exponent.iter())
                .zip(mantissa.iter())
            {
                let bits = u16::from(sign_exponent & 0x80) << 8
                    | u16::from(sign_exponent & 0x7f) << 7
                    | u16::from(mantissa);
                value.copy_from_slice(&bits.to_le_bytes());
            }
        }
        (ChannelFloat::F16, [sign_exponent, high_mantissa, low_mantissa]) => {
            for (((value, &sign_exponent), &high), &low) in out
                .chunks_exact_mut(2)
                .zip(sign_exponent.iter())
                .zip(high_mantissa.iter())
                .zip(low_mantissa.iter())
            {
                let bits = u16::from(sign_exponent) << 10 | u16::from(high) << 8 | u16::from(low);
                value.copy_from_slice(&bits.to_le_bytes());
            }
        }
        (ChannelFloat::F8E4M3 | ChannelFloat::F8E5M2, [sign_exponent, mantissa]) => {
            let bits = float.fp8_mantissa_bits();
            for ((value, &sign_exponent), &mantissa) in out
                .iter_mut()
                .zip(sign_exponent.iter())
                .zip(mantissa.iter())
            {
                *value = sign_exponent << bits | mantissa;
            }
        }
        (float, streams) => unreachable!("{float:?} has {} streams", streams.len()),
    }
}

/// The transpose works on square tiles of this many bytes a side, copied whole into a local tile and out of
/// another: each source and each target row segment is one cache line, read or written once. Streams of
/// per-channel layouts often have a power-of-two length per channel, so strided accesses straight into them
/// keep evicting one another from the same cache sets.
const TILE: usize = 64;
/// Within a tile, blocks of 16 x 16 bytes are transposed in sixteen vector registers.
const BLOCK: usize = 16;

/// Writes the `rows` x `columns` byte matrix `source` (row by row) into `target` column by column.
fn transpose(source: &[u8], rows: usize, columns: usize, target: &mut [u8]) {
    let mut transposed = [[0u8; TILE]; TILE];
    for row_start in (0..rows).step_by(TILE) {
        let height = TILE.min(rows - row_start);
        for column_start in (0..columns).step_by(TILE) {
            let width = TILE.min(columns - column_start);
            transpose_tile(
                source,
                columns,
                row_start,
                column_start,
                height,
                width,
                &mut transposed,
            );
            for (column, transposed_row) in (column_start..column_start + width).zip(&transposed) {
                put_tile_row(
                    &mut target[column * rows + row_start..][..height],
                    transposed_row,
                );
            }
        }
    }
}

/// Copies the first `segment.len()` bytes of a transposed tile's row into `segment`: a whole row as a
/// fixed-size copy, a few vector moves, where a variable one calls memcpy (merging whisper's per-channel
/// token embedding spent 2% of its restore in those calls).
fn put_tile_row(segment: &mut [u8], row: &[u8; TILE]) {
    match <&mut [u8; TILE]>::try_from(&mut *segment) {
        Ok(whole) => *whole = *row,
        Err(_) => segment.copy_from_slice(&row[..segment.len()]),
    }
}

/// Writes the tile of `height` rows from `row_start` and `width` columns from `column_start` of the byte matrix
/// `source` of `columns` columns into `transposed`, transposed: its row `j` is column `column_start + j`, the
/// first `height` bytes valid (past a ragged edge the bytes are stale). An out-parameter, not a returned
/// array: returned, the 4 KiB tile was copied once more.
#[allow(clippy::too_many_arguments)]
fn transpose_tile(
    source: &[u8],
    columns: usize,
    row_start: usize,
    column_start: usize,
    height: usize,
    width: usize,
    transposed: &mut [[u8; TILE]; TILE],
) {
    let mut tile = [[0u8; TILE]; TILE];
    for (row, tile_row) in (row_start..row_start + height).zip(tile.iter_mut()) {
        let segment = &source[row * columns + column_start..][..width];
        match <&[u8; TILE]>::try_from(segment) {
            // A fixed-size copy is a few vector moves; a variable one calls memcpy.
            Ok(whole) => *tile_row = *whole,
            Err(_) => tile_row[..width].copy_from_slice(segment),
        }
    }
    // Whole blocks (on a ragged tile, the bytes past its edge are stale and never used).
    for block_row in (0..height).step_by(BLOCK) {
        for block_column in (0..width).step_by(BLOCK) {
            let block = std::array::from_fn(|i| {
                let segment = &tile[block_row + i][block_column..][..BLOCK];
                segment.try_into().expect("a block row")
            });
            for (j, block_row_out) in transpose_block(block).iter().enumerate() {
                transposed[block_column + j][block_row..][..BLOCK].copy_from_slice(block_row_out);
            }
        }
    }
}

/// Transposes a 16 x 16 byte matrix (about a quarter of the instructions of transposing 8 x 8 blocks in
/// general registers).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn transpose_block(rows: [[u8; BLOCK]; BLOCK]) -> [[u8; BLOCK]; BLOCK] {
    // SAFETY: SSE2 is part of the x86-64 baseline: every x86_64 CPU has it.
    unsafe { transpose_block_sse2(rows) }
}

/// Four rounds of interleaving row `i` with row `i + 8`, each of which moves every byte one bit of its
/// index further towards its transposed place. Bytes move in and out through `i64` halves, which needs no
/// pointers and compiles to whole-register loads and stores.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn transpose_block_sse2(rows: [[u8; BLOCK]; BLOCK]) -> [[u8; BLOCK]; BLOCK] {
    use std::arch::x86_64::*;
    // Plain loops rather than closures, which would not inherit the target feature and stay calls.
    let mut registers = [_mm_setzero_si128(); BLOCK];
    for (register, row) in registers.iter_mut().zip(&rows) {
        let (low, high) = row.split_at(8);
        *register = _mm_set_epi64x(
            i64::from_le_bytes(high.try_into().expect("8 bytes")),
            i64::from_le_bytes(low.try_into().expect("8 bytes")),
        );
    }
    for _ in 0..4 {
        let mut interleaved = [_mm_setzero_si128(); BLOCK];
        for k in 0..BLOCK / 2 {
            let (first, second) = (registers[k], registers[k + BLOCK / 2]);
            interleaved[2 * k] = _mm_unpacklo_epi8(first, second);
            interleaved[2 * k + 1] = _mm_unpackhi_epi8(first, second);
        }
        registers = interleaved;
    }
    let mut transposed = [[0u8; BLOCK]; BLOCK];
    for (row, register) in transposed.iter_mut().zip(registers) {
        let (low, high) = row.split_at_mut(8);
        low.copy_from_slice(&_mm_cvtsi128_si64(register).to_le_bytes());
        high.copy_from_slice(
            &_mm_cvtsi128_si64(_mm_unpackhi_epi64(register, register)).to_le_bytes(),
        );
    }
    transposed
}

/// Transposes a 16 x 16 byte matrix.
#[cfg(not(target_arch = "x86_64"))]
fn transpose_block(rows: [[u8; BLOCK]; BLOCK]) -> [[u8; BLOCK]; BLOCK] {
    std::array::from_fn(|j| std::array::from_fn(|i| rows[i][j]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(float: ChannelFloat, channels: usize, values: &[u8]) -> Vec<Vec<u8>> {
        let elements = values.len() / float.element_size();
        let mut streams = vec![vec![0; elements]; float.stream_count()];
        let mut scratch = Vec::new();
        split(float, channels, values, &mut streams, &mut scratch);
        let mut out = vec![0; values.len()];
        let views: Vec<&[u8]> = streams.iter().map(Vec::as_slice).collect();
        merge(float, channels, &views, &mut out, &mut scratch);
        assert_eq!(out, values, "{float:?}");
        streams
    }

    #[test]
    fn every_bit_pattern_survives() {
        let all_16: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        // The joint BF16 fields hold every pattern with bit 14 clear (an exponent below 128).
        let below_128: Vec<u8> = (0..=u16::MAX)
            .filter(|bits| bits & 0x4000 == 0)
            .flat_map(u16::to_le_bytes)
            .collect();
        let all_8: Vec<u8> = (0..=u8::MAX).collect();
        for float in ChannelFloat::ALL {
            let values = match float {
                ChannelFloat::Bf16Joint => &below_128,
                _ if float.element_size() == 2 => &all_16,
                _ => &all_8,
            };
            assert!(float.fits(values), "{float:?}");
            round_trip(float, 16, values);
            round_trip(float, 256, values);
        }
    }

    #[test]
    fn only_exponents_below_128_fit_the_joint_fields() {
        for len in [2usize, 6, 8, 14, 16, 30] {
            let mut values: Vec<u8> = (0..len as u16 / 2)
                .flat_map(|i| (0x3f80 + i).to_le_bytes())
                .collect();
            assert!(ChannelFloat::Bf16Joint.fits(&values));
            // Exponent 128 (2.0), or 255 (infinity, NaN), in any place.
            for (at, high) in [(len - 1, 0x40), (1, 0x7f), (len - 1, 0xff)] {
                let saved = values[at];
                values[at] = high;
                assert!(
                    !ChannelFloat::Bf16Joint.fits(&values),
                    "{len} bytes, {high:#x} at {at}"
                );
                assert!(ChannelFloat::Bf16.fits(&values));
                values[at] = saved;
            }
        }
    }

    #[test]
    fn grouped_streams_are_transposed() {
        // 2 rows of 3 FP8 E4M3 channels: the sign+exponent stream lists channel 0's rows first.
        let streams = round_trip(
            ChannelFloat::F8E4M3,
            3,
            &[0x08, 0x10, 0x18, 0x09, 0x11, 0x19],
        );
        assert_eq!(streams[0], [1, 1, 2, 2, 3, 3]);
        assert_eq!(streams[1], [0, 0, 0, 1, 1, 1]);
    }

    #[test]
    fn transpose_matches_the_definition_at_every_edge() {
        // Sizes around the block (16) and tile (64) edges, and a power-of-two stride.
        for (rows, columns) in [
            (1, 1),
            (7, 9),
            (16, 16),
            (15, 17),
            (13, 64),
            (48, 80),
            (64, 65),
            (130, 17),
            (256, 24),
        ] {
            let source: Vec<u8> = (0..rows * columns).map(|i| (i * 31 % 251) as u8).collect();
            let mut target = vec![0; source.len()];
            transpose(&source, rows, columns, &mut target);
            for row in 0..rows {
                for column in 0..columns {
                    assert_eq!(
                        target[column * rows + row],
                        source[row * columns + column],
                        "{rows} x {columns} at ({row}, {column})"
                    );
                }
            }
        }
    }
}
