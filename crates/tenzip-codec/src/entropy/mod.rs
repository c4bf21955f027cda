//! Order-0 entropy coding of one byte stream.
//!
//! A stream is coded as one self-describing *block*: `[mode: u8][body length: u32 LE][body]`. The encoder
//! measures the stream once and writes whichever mode is smallest:
//!
//! | mode | body |
//! |---|---|
//! | 0 `Raw` | the bytes as they are (for streams that do not compress, e.g. low mantissa bits) |
//! | 1 `Run` | one byte: the single symbol the whole stream repeats |
//! | 2 `Huffman` | a canonical, length-limited Huffman code ([`huffman`]) |
//! | 3 `Tans` | table-based ANS ([`tans`]): within a few thousandths of a bit of the entropy, slower to decode |
//! | 4 `Deflate` | raw DEFLATE (RFC 1951), for plain byte streams only ([`encode_block_lz`]) |
//! | 5 `Grouped` | blocks coding the stream grouped by a context stream ([`encode_block_given`]) |
//! | 6 `Parts` | `u32` part count, then one block per equal part of the stream ([`encode_block_parts`]) |
//! | 7 `Rans` | interleaved rANS in 32 lanes ([`rans`]): tANS's size on long streams, decoded at over twice its speed |
//! | 8 `Clusters` | equal parts grouped into clusters of alike parts, one block per cluster ([`encode_block_clustered`]) |
//! | 9 `Packed` | symbols narrower than a byte, stored in as many bits as the widest needs (`packed.rs`) |
//! | 10 `RansWide` | interleaved rANS in 64 lanes: on longer streams, a quarter faster to decode than 32 |
//! | 11 `RansPairs` | 64-lane rANS of pairs of symbols' ranks, with escapes ([`rans::pairs`]): skewed streams, two symbols a lookup |
//!
//! Float fields have no repeats for a dictionary coder to find, so they get the order-0 coders only. Plain
//! byte streams (headers, integer tensors, opaque files) often do repeat, and there DEFLATE beats any
//! order-0 code many times over.
//!
//! A stream that no code shrinks enough is stored: raw, or bit-packed where its symbols are narrower than a
//! byte (a field of 7, 3 or 2 bits). A mode must earn its decoding cost: Huffman is used when it saves at
//! least 2% over the stored form; tANS (on long blocks rANS, the same code with a faster decoder) when it
//! saves at least 0.3% over Huffman, or 2% where the caller prefers speed ([`Preference`]) (skewed exponent
//! streams, where whole-bit codes lose 1-2%).
//! Huffman's decoder takes up to three short codes per lookup and then outruns rANS; on long codes it does
//! not, and there rANS is taken whenever it is smaller.
//!
//! The block does not store the symbol count: the caller knows it (one symbol per value of the chunk), and
//! the decoder checks that the body decodes to exactly that many symbols, consuming exactly its bytes.

mod bits;
pub(crate) mod clusters;
mod grouped;
mod histogram;
pub mod huffman;
mod packed;
pub mod rans;
pub mod tans;

use crate::Error;
pub use histogram::histogram;

/// How a block's body is coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Stored as is.
    Raw = 0,
    /// One symbol repeated.
    Run = 1,
    /// Canonical Huffman code.
    Huffman = 2,
    /// Table-based ANS.
    Tans = 3,
    /// Raw DEFLATE.
    Deflate = 4,
    /// Grouped by a context stream.
    Grouped = 5,
    /// Equal parts, each its own block.
    Parts = 6,
    /// Interleaved rANS.
    Rans = 7,
    /// Equal parts in clusters, each cluster its own block.
    Clusters = 8,
    /// Symbols narrower than a byte, bit-packed.
    Packed = 9,
    /// Interleaved rANS, 64 lanes.
    RansWide = 10,
    /// Interleaved rANS of symbol pairs, 64 lanes.
    RansPairs = 11,
}

impl Mode {
    /// Every mode, in order of its byte.
    pub const ALL: [Mode; 12] = [
        Mode::Raw,
        Mode::Run,
        Mode::Huffman,
        Mode::Tans,
        Mode::Deflate,
        Mode::Grouped,
        Mode::Parts,
        Mode::Rans,
        Mode::Clusters,
        Mode::Packed,
        Mode::RansWide,
        Mode::RansPairs,
    ];

    /// A short lowercase name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Raw => "raw",
            Mode::Run => "run",
            Mode::Huffman => "huffman",
            Mode::Tans => "tans",
            Mode::Deflate => "deflate",
            Mode::Grouped => "grouped",
            Mode::Parts => "parts",
            Mode::Rans => "rans",
            Mode::Clusters => "clusters",
            Mode::Packed => "packed",
            Mode::RansWide => "rans-wide",
            Mode::RansPairs => "rans-pairs",
        }
    }

    fn from_byte(byte: u8) -> Result<Mode, Error> {
        match byte {
            0 => Ok(Mode::Raw),
            1 => Ok(Mode::Run),
            2 => Ok(Mode::Huffman),
            3 => Ok(Mode::Tans),
            4 => Ok(Mode::Deflate),
            5 => Ok(Mode::Grouped),
            6 => Ok(Mode::Parts),
            7 => Ok(Mode::Rans),
            8 => Ok(Mode::Clusters),
            9 => Ok(Mode::Packed),
            10 => Ok(Mode::RansWide),
            11 => Ok(Mode::RansPairs),
            other => Err(Error::UnknownMode(other)),
        }
    }
}

/// What the encoder favours where two codes are close: the choice is recorded in each block, so the
/// decoder needs to know nothing of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preference {
    /// The smallest code: tANS or rANS wherever they save 0.3% over Huffman.
    #[default]
    Size,
    /// Faster decoding: on streams of 16K symbols or more, tANS or 32-lane rANS only where they save 2% over
    /// Huffman, or where Huffman's codes are long (about one symbol per lookup) and the block long enough for
    /// rANS, which then decodes faster. Blocks long enough for 64-lane rANS take it as [`Preference::Size`]
    /// does: it decodes BF16 exponents as fast as Huffman does (2 GB/s with AVX-512), where the preference
    /// had made MiniLM's BF16 file 0.2 points larger and 4% slower to restore. Chunks also take the splits
    /// that decode faster at some cost in size (FP8 pairs) and leave those that decode slower for their size
    /// (per-channel tables, whose clusters decode one symbol a value and are transposed back into rows;
    /// channels at their own scale still get the exponent offsets of [`crate::Split::Offsets16`]).
    Speed,
}

impl Preference {
    /// The largest tANS size, in thousandths of the Huffman size, at which ANS is used for a stream of
    /// `symbols` that tANS codes in `tans_len` bytes. Below `HUFFMAN_TABLE_AMORTISED` symbols, building
    /// Huffman's 2048-entry decoding tables costs as much as decoding, so Huffman is no faster there and speed
    /// buys nothing.
    fn tans_at_most_per_mille(self, symbols: usize, tans_len: usize) -> usize {
        let wide = rans::Lanes::for_block(tans_len, symbols) == Some(rans::Lanes::Wide);
        match self {
            Preference::Speed if symbols >= HUFFMAN_TABLE_AMORTISED && !wide => 980,
            _ => 997,
        }
    }
}

/// Streams at least this long decode faster with Huffman than with tANS, its tables built: measured on
/// whisper's per-channel blocks (about 4000 symbols each), preferring Huffman there made restores slower.
const HUFFMAN_TABLE_AMORTISED: usize = 1 << 14;

/// Bytes of block framing: the mode byte and the body length.
const BLOCK_HEADER_LEN: usize = 5;

/// Appends the smallest block coding `symbols` to `out`. Streams must hold fewer than 2^32 symbols.
pub fn encode_block(symbols: &[u8], preference: Preference, out: &mut Vec<u8>) {
    encode_uncounted(symbols, preference, false, out);
}

/// [`encode_block`], or a pair code ([`rans::pairs`], mode 11) where it codes at most 1% larger than the
/// 64-lane rANS code [`encode_block`] would write: for the exponents of 16-bit floats, whose restores it
/// makes half again as fast. (F32 exponents gained 4% and stay one symbol a lookup: their 0.04 points had
/// taken MiniLM's F32 file above ZipNN's ratio.)
pub fn encode_block_pairable(symbols: &[u8], preference: Preference, out: &mut Vec<u8>) {
    encode_uncounted(symbols, preference, true, out);
}

/// [`encode_block`], in pairs where `pairable` and they pay.
fn encode_uncounted(symbols: &[u8], preference: Preference, pairable: bool, out: &mut Vec<u8>) {
    if let Some(stored) = stored_if_incompressible(symbols) {
        return stored.write(symbols, out);
    }
    encode_counted(symbols, &histogram(symbols), preference, pairable, out);
}

/// [`encode_block`] for a stream whose histogram the caller has already counted.
pub fn encode_block_counted(
    symbols: &[u8],
    histogram: &[u32; 256],
    preference: Preference,
    out: &mut Vec<u8>,
) {
    encode_counted(symbols, histogram, preference, false, out);
}

/// [`encode_block_counted`], in pairs where `pairable` and they pay.
fn encode_counted(
    symbols: &[u8],
    histogram: &[u32; 256],
    preference: Preference,
    pairable: bool,
    out: &mut Vec<u8>,
) {
    let distinct = histogram.iter().filter(|&&count| count > 0).count();
    if distinct == 1 {
        write_block(out, Mode::Run, |body| body.push(symbols[0]));
        return;
    }
    let stored = Stored::for_histogram(histogram, symbols.len());
    if distinct > 1 {
        let stored_limit = stored.len() * 98 / 100;
        let mut ans = AnsCandidate {
            histogram,
            symbols: symbols.len(),
            preference,
            pairable,
            entropy: entropy_bytes(histogram),
            stored_limit,
            normalised: None,
        };
        // An unlimited Huffman code's size, a lower bound on the real code's, settles most blocks that ANS
        // takes without the package-merge; the real code is built only where it does not.
        let huffman_bound = huffman::Code::coded_len_at_least(histogram);
        if huffman_bound >= stored_limit {
            // No Huffman code saves enough (packed symbols of one or two bits, for one): ANS still may.
            if ans.beats(stored_limit) {
                return ans.write(symbols, out);
            }
        } else {
            if ans.beats(huffman_bound) {
                return ans.write(symbols, out);
            }
            let code = huffman::Code::from_histogram(histogram);
            let huffman_len = code.coded_len(histogram);
            if huffman_len < stored_limit {
                if ans.beats(huffman_len) {
                    return ans.write(symbols, out);
                }
                write_block(out, Mode::Huffman, |body| code.encode(symbols, body));
                return;
            }
        }
    }
    stored.write(symbols, out);
}

/// How a stream is stored when no code saves enough: as its bytes, or bit-packed where every symbol is
/// narrower than a byte. Every code must save 2% against it.
enum Stored {
    Raw { len: usize },
    Packed { bits: u32, len: usize },
}

impl Stored {
    fn for_histogram(histogram: &[u32; 256], symbols: usize) -> Stored {
        Stored::of_width(packed::width(histogram), symbols)
    }

    /// The stored form of `symbols` symbols of `bits` bits each, at most 8 (raw for none: a packed body
    /// would still hold its width).
    fn of_width(bits: u32, symbols: usize) -> Stored {
        match bits {
            _ if symbols == 0 => Stored::Raw { len: 0 },
            8 => Stored::Raw { len: symbols },
            bits => Stored::Packed {
                bits,
                len: packed::body_len(symbols, bits),
            },
        }
    }

    /// The body's length.
    fn len(&self) -> usize {
        match *self {
            Stored::Raw { len } | Stored::Packed { len, .. } => len,
        }
    }

    fn write(self, symbols: &[u8], out: &mut Vec<u8>) {
        match self {
            Stored::Raw { .. } => {
                write_block(out, Mode::Raw, |body| body.extend_from_slice(symbols))
            }
            Stored::Packed { bits, .. } => write_block(out, Mode::Packed, |body| {
                packed::encode(symbols, bits, body)
            }),
        }
    }
}

/// tANS (on long blocks rANS) for one stream, weighed against Huffman codes of a given size; its frequencies
/// are normalised only once a Huffman code is far enough above the entropy to ask.
struct AnsCandidate<'a> {
    histogram: &'a [u32; 256],
    symbols: usize,
    preference: Preference,
    /// Whether the stream may be coded in pairs of symbols.
    pairable: bool,
    /// The stream's order-0 entropy, in bytes.
    entropy: f64,
    /// The size every coder must stay below: 98% of the stored form.
    stored_limit: usize,
    /// The frequencies and the size they code the stream in.
    normalised: Option<(tans::Frequencies, usize)>,
}

impl AnsCandidate<'_> {
    /// Whether ANS should code the stream rather than a Huffman code of `huffman_len` bytes. The answer can
    /// only turn from no to yes as `huffman_len` grows, so a lower bound that says yes settles it.
    fn beats(&mut self, huffman_len: usize) -> bool {
        // Normalising for tANS costs more than building a Huffman code: only try it where Huffman is
        // measurably above the entropy.
        if huffman_len as f64 <= self.entropy * 1.003 {
            return false;
        }
        let histogram = self.histogram;
        let (_, tans_len) = *self.normalised.get_or_insert_with(|| {
            let frequencies = tans::Frequencies::for_histogram(histogram);
            let tans_len = frequencies.coded_len(histogram);
            (frequencies, tans_len)
        });
        // Where rANS can take the block and Huffman's codes are long, rANS is smaller and faster too,
        // whatever the preference.
        let huffman_one_per_lookup = huffman_len * 8 > self.symbols * MULTI_SYMBOL_CODE_BITS;
        let per_mille = self
            .preference
            .tans_at_most_per_mille(self.symbols, tans_len);
        tans_len < self.stored_limit
            && (tans_len < huffman_len * per_mille / 1000
                || (rans::pays_for_its_states(tans_len, self.symbols)
                    && huffman_one_per_lookup
                    && tans_len < huffman_len))
    }

    /// Appends the block, once [`AnsCandidate::beats`] said yes: tANS and rANS spend the same bits, rANS
    /// decodes faster, and its states cost little on a long stream.
    fn write(self, symbols: &[u8], out: &mut Vec<u8>) {
        let (frequencies, tans_len) = self.normalised.expect("beats() normalised the frequencies");
        let lanes = rans::Lanes::for_block(tans_len, self.symbols);
        if self.pairable && lanes == Some(rans::Lanes::Wide) {
            let budget =
                (tans_len + 4 * rans::Lanes::Wide.count()) * PAIRS_AT_MOST_PER_MILLE / 1000;
            let start = out.len();
            let mut paired = false;
            write_block(out, Mode::RansPairs, |body| {
                paired = rans::pairs::encode_within(symbols, self.histogram, budget, body)
            });
            if paired {
                return;
            }
            out.truncate(start);
        }
        if let Some(lanes) = lanes {
            let mode = match lanes {
                rans::Lanes::Narrow => Mode::Rans,
                rans::Lanes::Wide => Mode::RansWide,
            };
            write_block(out, mode, |body| {
                rans::encode(symbols, &frequencies, lanes, body)
            });
        } else {
            write_block(out, Mode::Tans, |body| {
                tans::encode(symbols, &frequencies, body)
            });
        }
    }
}

/// The largest size of a pair code ([`rans::pairs`]), in thousandths of the one-symbol rANS code's, at which
/// it is taken where the caller allows it ([`encode_block_pairable`]): it decodes twice the symbols a lookup.
/// On the corpus, pairs of exponents code 0.3-0.6% larger (a table of 256 frequencies and their rounding,
/// less what adjacent exponents share), and at 1% nearly every long exponent block takes them: MiniLM's BF16
/// file restores a third faster (4486 MB/s against 3348) for 0.07 points of ratio.
const PAIRS_AT_MOST_PER_MILLE: usize = 1010;

/// Huffman codes averaging more bits than this take about one symbol per table lookup (11 bits), which
/// decodes at about half rANS's speed (FP8 codes, F16's exponent with mantissa bits); shorter ones take two or
/// three, and decode faster than rANS (BF16 and F32 exponents).
const MULTI_SYMBOL_CODE_BITS: usize = 4;

/// Streams at least this long are first judged on a sample.
const SAMPLED_STREAM_LEN: usize = 1 << 16;
/// About this many symbols, evenly spaced, are sampled (a sample of an eighth of a 128K-symbol stream took 6%
/// of BF16 compression).
const SAMPLE_SYMBOLS: usize = 1 << 13;

/// The stored form of a long stream whose sample shows it too close to uniform, within its width, for any
/// order-0 code to save the 2% that Huffman must save (low mantissa bits; a 7-bit mantissa field, whose 6.96
/// bits of entropy a code would save 0.5% on). Skips the full histogram of such streams, which is a sizeable
/// share of compression time; the width is of every symbol, from one OR over the stream, a fraction of a
/// histogram's cost. A sample of 8K symbols, its bias taken off, estimates the entropy of a byte stream to
/// within a few thousandths of a bit, far inside the margin.
fn stored_if_incompressible(symbols: &[u8]) -> Option<Stored> {
    if symbols.len() < SAMPLED_STREAM_LEN {
        return None;
    }
    let widest = symbols.iter().fold(0u8, |widest, &symbol| widest | symbol);
    let bits = (u8::BITS - widest.leading_zeros()).max(1);
    // Odd: a stride that a row's length divides samples the same few channels of every row (at 1.5M
    // symbols, a stride of 192 saw two of whisper's 384 channels, and misjudged the stream).
    let stride = (symbols.len() / SAMPLE_SYMBOLS) | 1;
    let sample = histogram::sampled_histogram(symbols, stride);
    let sampled = symbols.len().div_ceil(stride) as f64;
    // A sample's entropy reads low by about (distinct symbols - 1) / (2 ln 2) bits over the sample (Miller
    // and Madow): 0.02 bits on 8K uniform bytes, a fifth of the margin to the threshold. Added back, so that
    // the judgement does not depend on the sample's size.
    let distinct = sample.iter().filter(|&&count| count > 0).count() as f64;
    let bits_per_symbol = entropy_bytes(&sample) * 8.0 / sampled
        + (distinct - 1.0) / (2.0 * std::f64::consts::LN_2 * sampled);
    (bits_per_symbol > f64::from(bits) * INCOMPRESSIBLE_SHARE)
        .then(|| Stored::of_width(bits, symbols.len()))
}

/// A sampled entropy above this share of the symbols' width (7.9 bits of 8) leaves no order-0 code 2% to save.
const INCOMPRESSIBLE_SHARE: f64 = 0.9875;

/// Bytes an order-0 block of symbols with `histogram`, scaled `scale` times, is expected to take: the entropy, a
/// table, and the fixed framing of a coded block; or the stored form (raw or packed), where that is smaller.
pub(crate) fn estimated_block_len(histogram: &[u32; 256], scale: f64) -> f64 {
    let distinct = histogram.iter().filter(|&&count| count > 0).count();
    let coded = entropy_bytes(histogram) * scale
        + TABLE_BYTES_PER_SYMBOL * distinct as f64
        + BLOCK_FRAMING_BYTES;
    let symbols = histogram::total(histogram) as f64 * scale;
    let stored = Stored::for_histogram(histogram, symbols as usize).len() + BLOCK_HEADER_LEN;
    coded.min(stored as f64)
}

/// Fixed bytes of a coded block beyond its table: the block header (5), the sub-stream lengths (4 for tANS,
/// 12 for Huffman) and the tANS final states (12), about.
const BLOCK_FRAMING_BYTES: f64 = 20.0;

/// What a coded table costs per symbol it holds, roughly: a Huffman length is a nibble, a tANS frequency a
/// varint byte or two.
const TABLE_BYTES_PER_SYMBOL: f64 = 1.0;

/// The order-0 entropy of a histogram, in bytes.
pub(crate) fn entropy_bytes(histogram: &[u32; 256]) -> f64 {
    let total = histogram::total(histogram) as f64;
    let bits: f64 = histogram
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| f64::from(c) * (total / f64::from(c)).log2())
        .sum();
    bits / 8.0
}

/// DEFLATE level for plain byte streams. Level 6 spent 14% of whisper MXFP4's compression on its E8M0 scales
/// (half a MB); level 4 codes them 7% larger (a hundredth of a point of the file; the GGUF file 0.0002) at
/// four times the speed, and compresses the MXFP4 files 15% faster.
const DEFLATE_LEVEL: u8 = 4;

/// Streams up to this long are always tried with DEFLATE; longer ones only when a probe of their start
/// finds repeats. DEFLATE runs at tens of MB/s on data without repeats (FP8 codes, packed FP4), which would
/// otherwise set the speed of the whole file. At 16 KB, each of whisper MXFP4's 44 E8M0 scale tensors (12-14
/// KB, where the order-0 code nearly always wins) was deflated whole at level 4; probed, the file compresses
/// about 6% faster and 900 bytes larger (two fused QKV scale tensors, on which DEFLATE won by 12%, fail the
/// probe), and no other corpus file changes by a byte.
const DEFLATE_ALWAYS_LEN: usize = 4 << 10;
/// Bytes of a long stream the probe deflates.
const DEFLATE_PROBE_LEN: usize = 4 << 10;

/// Like [`encode_block`], but also tries DEFLATE and keeps it when it is smaller: for byte streams with
/// repeats, such as headers and integer tensors.
pub fn encode_block_lz(symbols: &[u8], preference: Preference, out: &mut Vec<u8>) {
    let start = out.len();
    encode_block(symbols, preference, out);
    if symbols.len() < 64 || out[start] == Mode::Run as u8 {
        return;
    }
    if symbols.len() > DEFLATE_ALWAYS_LEN {
        // Worth a full pass only if a quick DEFLATE of the start beats the order-0 code by a clear margin.
        let probe = &symbols[..DEFLATE_PROBE_LEN];
        let order0 = (out.len() - start) as f64 * probe.len() as f64 / symbols.len() as f64;
        if miniz_oxide::deflate::compress_to_vec(probe, 1).len() as f64 > order0 * 0.9 {
            return;
        }
    }
    let deflated = miniz_oxide::deflate::compress_to_vec(symbols, DEFLATE_LEVEL);
    if deflated.len() + BLOCK_HEADER_LEN < out.len() - start {
        out.truncate(start);
        write_block(out, Mode::Deflate, |body| body.extend_from_slice(&deflated));
    }
}

/// Like [`encode_block`], but also tries coding `symbols` grouped by `context` (a stream of the same
/// length that the decoder will have first) and keeps whichever is smaller. `regroup` is scratch space.
pub fn encode_block_given(
    symbols: &[u8],
    context: &[u8],
    preference: Preference,
    out: &mut Vec<u8>,
    regroup: &mut Vec<u8>,
) {
    let plain_start = out.len();
    encode_block(symbols, preference, out);
    let grouped_start = out.len();
    write_block(out, Mode::Grouped, |body| {
        grouped::encode(symbols, context, preference, body, regroup)
    });
    if out.len() - grouped_start < grouped_start - plain_start {
        out.drain(plain_start..grouped_start);
    } else {
        out.truncate(grouped_start);
    }
}

/// Appends a block coding `symbols` as `parts` equal parts, each with its own code (for a stream laid out
/// channel by channel, one table per channel). `symbols` must be a non-empty multiple of `parts` long.
pub fn encode_block_parts(symbols: &[u8], parts: usize, preference: Preference, out: &mut Vec<u8>) {
    assert!(
        parts > 0 && !symbols.is_empty() && symbols.len().is_multiple_of(parts),
        "whole, non-empty parts"
    );
    let parts_u32 = u32::try_from(parts).expect("fewer than 2^32 parts");
    write_block(out, Mode::Parts, |body| {
        body.extend_from_slice(&parts_u32.to_le_bytes());
        for part in symbols.chunks_exact(symbols.len() / parts) {
            encode_block(part, preference, body);
        }
    });
}

/// Appends a block coding `symbols` as `parts` equal parts with one code per cluster of alike parts (for a
/// stream laid out channel by channel, channels of one scale share a table): as many clusters as keep each
/// long enough for rANS, so one per part only where parts are long, and one for the stream where it is short.
/// `symbols` must be a non-empty multiple of `parts` long.
pub fn encode_block_clustered(
    symbols: &[u8],
    parts: usize,
    preference: Preference,
    out: &mut Vec<u8>,
) {
    clusters::encode(symbols, parts, preference, out);
}

fn write_block(out: &mut Vec<u8>, mode: Mode, write_body: impl FnOnce(&mut Vec<u8>)) {
    let header_at = out.len();
    out.push(mode as u8);
    out.extend_from_slice(&[0; 4]);
    write_body(out);
    let body_len = out.len() - header_at - BLOCK_HEADER_LEN;
    let body_len = u32::try_from(body_len).expect("stream bodies are smaller than 4 GiB");
    out[header_at + 1..header_at + BLOCK_HEADER_LEN].copy_from_slice(&body_len.to_le_bytes());
}

/// A parsed stream block, borrowing its body from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block<'a> {
    /// Stored bytes: callers can use them in place, with no copy.
    Raw(&'a [u8]),
    /// One symbol repeated.
    Run(u8),
    /// A Huffman-coded body.
    Huffman(&'a [u8]),
    /// A tANS-coded body.
    Tans(&'a [u8]),
    /// A DEFLATE body.
    Deflate(&'a [u8]),
    /// Blocks grouped by a context stream.
    Grouped(&'a [u8]),
    /// A part count and one block per part.
    Parts(&'a [u8]),
    /// An interleaved rANS body, in 32 lanes (mode 7) or 64 (mode 10).
    Rans(rans::Lanes, &'a [u8]),
    /// Parts in clusters, one block per cluster.
    Clusters(&'a [u8]),
    /// Bit-packed narrow symbols.
    Packed(&'a [u8]),
    /// An interleaved rANS body of symbol pairs, with its rank table and escapes.
    RansPairs(&'a [u8]),
}

impl<'a> Block<'a> {
    /// The block's coding mode.
    pub fn mode(&self) -> Mode {
        match self {
            Block::Raw(_) => Mode::Raw,
            Block::Run(_) => Mode::Run,
            Block::Huffman(_) => Mode::Huffman,
            Block::Tans(_) => Mode::Tans,
            Block::Deflate(_) => Mode::Deflate,
            Block::Grouped(_) => Mode::Grouped,
            Block::Parts(_) => Mode::Parts,
            Block::Rans(rans::Lanes::Narrow, _) => Mode::Rans,
            Block::Rans(rans::Lanes::Wide, _) => Mode::RansWide,
            Block::Clusters(_) => Mode::Clusters,
            Block::Packed(_) => Mode::Packed,
            Block::RansPairs(_) => Mode::RansPairs,
        }
    }

    /// Parses the block at the front of `input`; returns it and the bytes it took.
    pub fn parse(input: &'a [u8]) -> Result<(Block<'a>, usize), Error> {
        let header = take(input, 0, BLOCK_HEADER_LEN, "stream block header")?;
        let mode = Mode::from_byte(header[0])?;
        let body_len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let body = take(input, BLOCK_HEADER_LEN, body_len, "stream block body")?;
        let block = match mode {
            Mode::Raw => Block::Raw(body),
            Mode::Run => match body {
                [symbol] => Block::Run(*symbol),
                _ => {
                    return Err(Error::RawLength {
                        got: body.len(),
                        expected: 1,
                    })
                }
            },
            Mode::Huffman => Block::Huffman(body),
            Mode::Tans => Block::Tans(body),
            Mode::Deflate => Block::Deflate(body),
            Mode::Grouped => Block::Grouped(body),
            Mode::Parts => Block::Parts(body),
            Mode::Rans => Block::Rans(rans::Lanes::Narrow, body),
            Mode::RansWide => Block::Rans(rans::Lanes::Wide, body),
            Mode::Clusters => Block::Clusters(body),
            Mode::Packed => Block::Packed(body),
            Mode::RansPairs => Block::RansPairs(body),
        };
        Ok((block, BLOCK_HEADER_LEN + body_len))
    }

    /// Decodes a block written by [`encode_block_given`] into `out`, given the same `context`.
    pub fn decode_given(
        &self,
        context: &[u8],
        out: &mut [u8],
        regroup: &mut Vec<u8>,
    ) -> Result<(), Error> {
        match *self {
            Block::Grouped(body) => grouped::decode(body, context, out, regroup),
            _ => self.decode_into(out),
        }
    }

    /// Decodes a block nested in a parts or grouped block, which may only code a plain stream: a hostile
    /// payload nesting parts in parts would otherwise recurse as deep as it is long.
    pub(crate) fn decode_nested(&self, out: &mut [u8]) -> Result<(), Error> {
        match self {
            Block::Parts(_) | Block::Grouped(_) | Block::Clusters(_) => {
                Err(Error::NestedBlock(self.mode()))
            }
            _ => self.decode_into(out),
        }
    }

    /// Decodes the block into `out`, which must be exactly as long as the stream was. A grouped block
    /// needs its context ([`Block::decode_given`]) and is an error here.
    pub fn decode_into(&self, out: &mut [u8]) -> Result<(), Error> {
        match *self {
            Block::Grouped(_) => return Err(Error::UnexpectedGrouping),
            Block::Parts(body) => decode_parts(body, out)?,
            Block::Clusters(body) => clusters::decode(body, out)?,
            Block::Packed(body) => packed::decode(body, out)?,
            Block::Raw(bytes) if bytes.len() == out.len() => out.copy_from_slice(bytes),
            Block::Raw(bytes) => {
                return Err(Error::RawLength {
                    got: bytes.len(),
                    expected: out.len(),
                })
            }
            Block::Run(symbol) => out.fill(symbol),
            Block::Huffman(body) => huffman::decode(body, out)?,
            Block::Tans(body) => tans::decode(body, out)?,
            Block::Rans(lanes, body) => rans::decode(body, lanes, rans::Output::Symbols(out))?,
            Block::RansPairs(body) => rans::pairs::decode(body, rans::Output::Symbols(out))?,
            Block::Deflate(body) => {
                let inflated = miniz_oxide::inflate::decompress_slice_iter_to_slice(
                    out,
                    std::iter::once(body),
                    false,
                    true,
                );
                match inflated {
                    Ok(len) if len == out.len() => {}
                    Ok(len) => {
                        return Err(Error::Inflate(format!(
                            "{len} bytes, should be {}",
                            out.len()
                        )))
                    }
                    Err(status) => return Err(Error::Inflate(format!("{status:?}"))),
                }
            }
        }
        Ok(())
    }
}

/// Decodes a parts body: the part count, then one block per equal part of `out`.
fn decode_parts(body: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let count = take(body, 0, 4, "part count")?;
    let parts = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
    if parts == 0 || out.is_empty() || !out.len().is_multiple_of(parts) {
        return Err(Error::Parts {
            parts,
            len: out.len(),
        });
    }
    let part_len = out.len() / parts;
    let mut rest = &body[4..];
    let mut parts = out.chunks_exact_mut(part_len);
    while let Some(part) = parts.next() {
        let (block, used) = Block::parse(rest)?;
        rest = &rest[used..];
        // Short tANS parts (one sub-stream each) decode two at a time.
        if let (Block::Tans(first), true) = (block, part_len < tans::SPLIT_STREAM_MIN) {
            if let Ok((Block::Tans(second), second_used)) = Block::parse(rest) {
                if let Some(second_part) = parts.next() {
                    tans::decode_pair(first, part, second, second_part)?;
                    rest = &rest[second_used..];
                    continue;
                }
            }
        }
        block.decode_nested(part)?;
    }
    if !rest.is_empty() {
        return Err(Error::TrailingBytes(rest.len()));
    }
    Ok(())
}

/// Decodes the block at the front of `input` into `out`, which must be exactly as long as the stream was.
/// Returns how many bytes of `input` the block took.
pub fn decode_block(input: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    let (block, used) = Block::parse(input)?;
    block.decode_into(out)?;
    Ok(used)
}

/// `input[start..start + len]`, or a [`Error::Truncated`] naming `what`.
pub(crate) fn take<'a>(
    input: &'a [u8],
    start: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], Error> {
    let available = input.len().saturating_sub(start);
    input
        .get(start..)
        .and_then(|rest| rest.get(..len))
        .ok_or(Error::Truncated {
            what,
            needed: len,
            available,
        })
}

/// Symbols for the coders' property tests.
#[cfg(test)]
pub(crate) mod test_symbols {
    /// A 64-bit linear congruential generator (Knuth's MMIX constants).
    pub(crate) fn generator(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed | 1;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state
        }
    }

    /// Asserts that `coded_len` bytes code `symbols` within `tolerance` (a factor) of their order-0 entropy,
    /// plus `framing` bytes of tables and states.
    pub(crate) fn assert_near_entropy(
        symbols: &[u8],
        coded_len: usize,
        tolerance: f64,
        framing: f64,
    ) {
        let entropy = super::entropy_bytes(&super::histogram(symbols));
        assert!(
            (coded_len as f64) < entropy * tolerance + framing,
            "{coded_len} bytes for {entropy:.0} of entropy"
        );
    }

    /// `len` symbols drawn from `0..weights.len()`, symbol `s` with weight `weights[s]`.
    pub(crate) fn weighted(weights: &[u32], len: usize, seed: u64) -> Vec<u8> {
        let total: u32 = weights.iter().sum();
        let mut next = generator(seed);
        (0..len)
            .map(|_| {
                let mut pick = ((next() >> 33) % u64::from(total)) as u32;
                weights
                    .iter()
                    .position(|&weight| {
                        let here = pick < weight;
                        pick = pick.wrapping_sub(weight);
                        here
                    })
                    .expect("pick < total") as u8
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(symbols: &[u8]) -> Vec<u8> {
        let mut block = Vec::new();
        encode_block(symbols, Preference::Size, &mut block);
        let mut out = vec![0x5a; symbols.len()];
        assert_eq!(decode_block(&block, &mut out), Ok(block.len()));
        assert_eq!(out, symbols);
        block
    }

    #[test]
    fn preferring_speed_keeps_huffman_unless_tans_saves_two_percent() {
        // The exponents of Gaussian weights (a sum of four uniforms, scaled as trained weights are): tANS
        // saves about 1% over Huffman there.
        let mut state = 7u64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let symbols: Vec<u8> = (0..50_000)
            .map(|_| {
                let gaussian = uniform() + uniform() + uniform() + uniform() - 2.0;
                ((gaussian * 0.03).to_bits() >> 23) as u8
            })
            .collect();
        let mode = |preference| {
            let mut block = Vec::new();
            encode_block(&symbols, preference, &mut block);
            let mut out = vec![0; symbols.len()];
            decode_block(&block, &mut out).unwrap();
            assert_eq!(out, symbols);
            (block[0], block.len())
        };
        let (size_mode, size_len) = mode(Preference::Size);
        let (speed_mode, speed_len) = mode(Preference::Speed);
        // 17 KB of tANS: long enough for rANS's states.
        assert_eq!(size_mode, Mode::Rans as u8);
        assert_eq!(speed_mode, Mode::Huffman as u8);
        assert!(size_len < speed_len && speed_len * 98 < size_len * 100);
        // Long codes (FP8-like, about six bits a symbol) on a long stream: Huffman would decode one symbol
        // per lookup, so even preferring speed takes rANS, which is smaller too; 150 KB, in 64 lanes.
        let weights: Vec<u32> = (0..96).map(|s| 1000 - 10 * s).collect();
        let long_codes = test_symbols::weighted(&weights, 200_000, 5);
        let mut block = Vec::new();
        encode_block(&long_codes, Preference::Speed, &mut block);
        assert_eq!(block[0], Mode::RansWide as u8);
        // 90% / 10%: tANS saves far more than 2%, so both take it.
        let skewed: Vec<u8> = (0..10_000).map(|i| u8::from(i % 10 == 0)).collect();
        let mut block = Vec::new();
        encode_block(&skewed, Preference::Speed, &mut block);
        assert_eq!(block[0], Mode::Tans as u8);
    }

    #[test]
    fn picks_the_smallest_mode() {
        assert_eq!(round_trip(&[])[0], Mode::Raw as u8);
        assert_eq!(round_trip(&[7; 1000])[0], Mode::Run as u8);
        // Dyadic probabilities (1/2, 1/4, 1/8, 1/8): Huffman is exact, tANS cannot beat it.
        let dyadic: Vec<u8> = (0..10_000)
            .map(|i| [0, 0, 0, 0, 1, 1, 2, 3][i % 8])
            .collect();
        assert_eq!(round_trip(&dyadic)[0], Mode::Huffman as u8);
        // 90% / 10%: Huffman spends a whole bit a symbol on 0.47 bits of entropy.
        let skewed: Vec<u8> = (0..10_000)
            .map(|i| if i % 10 == 0 { 1 } else { 2 })
            .collect();
        assert_eq!(round_trip(&skewed)[0], Mode::Tans as u8);
        // 32K symbols or more take rANS however few bytes they code in, in 32 lanes: 64 must pay by size.
        for (symbols, mode) in [(40_000, Mode::Rans), (400_000, Mode::Rans)] {
            let long_skewed: Vec<u8> = skewed.iter().copied().cycle().take(symbols).collect();
            assert_eq!(round_trip(&long_skewed)[0], mode as u8);
        }
        let uniform: Vec<u8> = (0..=255).cycle().take(10_000).collect();
        assert_eq!(round_trip(&uniform)[0], Mode::Raw as u8);
    }

    #[test]
    fn repeats_take_deflate_when_allowed() {
        let json: Vec<u8> = (0..200)
            .flat_map(|i| format!("{{\"layer.{i}.weight\":[0,1]}}").into_bytes())
            .collect();
        let mut block = Vec::new();
        encode_block_lz(&json, Preference::Size, &mut block);
        assert_eq!(block[0], Mode::Deflate as u8);
        assert!(block.len() < json.len() / 4);
        let mut out = vec![0; json.len()];
        assert_eq!(decode_block(&block, &mut out), Ok(block.len()));
        assert_eq!(out, json);
        let mut short = vec![0; json.len() + 1];
        assert!(matches!(
            decode_block(&block, &mut short),
            Err(Error::Inflate(_))
        ));
        let mut corrupt = block.clone();
        corrupt[8] ^= 0xff;
        let _ = decode_block(&corrupt, &mut out);
    }

    #[test]
    fn long_near_uniform_streams_are_stored_without_a_histogram() {
        let mut state = 3u64;
        let noise: Vec<u8> = (0..1 << 17)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect();
        assert!(matches!(
            stored_if_incompressible(&noise),
            Some(Stored::Raw { .. })
        ));
        assert_eq!(round_trip(&noise)[0], Mode::Raw as u8);
        // Four uniform bits: stored packed, as uniform as bytes within their width.
        let nibbles: Vec<u8> = noise.iter().map(|&b| b & 0x0f).collect();
        assert!(matches!(
            stored_if_incompressible(&nibbles),
            Some(Stored::Packed { bits: 4, .. })
        ));
        assert_eq!(round_trip(&nibbles)[0], Mode::Packed as u8);
        // Four bits, skewed: coded.
        let skewed: Vec<u8> = noise.iter().map(|&b| (b & 0x0f).min(b >> 4)).collect();
        assert!(stored_if_incompressible(&skewed).is_none());
    }

    #[test]
    fn bad_blocks_are_errors() {
        let mut out = [0u8; 4];
        assert!(matches!(
            decode_block(&[0, 4, 0], &mut out),
            Err(Error::Truncated { .. })
        ));
        assert_eq!(
            decode_block(&[12, 0, 0, 0, 0], &mut out),
            Err(Error::UnknownMode(12))
        );
        assert_eq!(
            decode_block(&[0, 2, 0, 0, 0, 1, 2], &mut out),
            Err(Error::RawLength {
                got: 2,
                expected: 4
            })
        );
        assert!(matches!(
            decode_block(&[0, 9, 0, 0, 0, 1, 2, 3, 4], &mut out),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn short_tans_parts_decode_in_pairs_and_damage_to_either_is_an_error() {
        // Five parts of skewed symbols, each its own spread: tANS parts, two pairs and one alone.
        let symbols: Vec<u8> = (0..5u8)
            .flat_map(|part| {
                // One symbol of about 80%, where Huffman's whole bits lose most.
                let weights = [4000 + 100 * u32::from(part), 500, 300, 120, 50, 20, 9, 3, 1];
                test_symbols::weighted(&weights, 3000, u64::from(part))
            })
            .collect();
        let mut block = Vec::new();
        encode_block_parts(&symbols, 5, Preference::Size, &mut block);
        let (Block::Parts(body), _) = Block::parse(&block).unwrap() else {
            panic!("a parts block")
        };
        let mut rest = &body[4..];
        for _ in 0..5 {
            let (part, used) = Block::parse(rest).unwrap();
            assert_eq!(part.mode(), Mode::Tans);
            rest = &rest[used..];
        }
        let mut out = vec![0; symbols.len()];
        assert_eq!(decode_block(&block, &mut out), Ok(block.len()));
        assert_eq!(out, symbols);
        // A flipped byte in the middle of each part's body: first of a pair, second of a pair, alone.
        let mut starts = Vec::new();
        let mut at = BLOCK_HEADER_LEN + 4;
        for _ in 0..5 {
            let (_, used) = Block::parse(&block[at..]).unwrap();
            starts.push((at, used));
            at += used;
        }
        for &(start, used) in &[starts[0], starts[1], starts[4]] {
            let mut damaged = block.clone();
            damaged[start + used / 2] ^= 0x10;
            assert!(decode_block(&damaged, &mut out).is_err(), "part at {start}");
        }
    }

    #[test]
    fn parts_inside_parts_are_an_error_not_a_stack_overflow() {
        // Parts blocks of one part each, nested `depth` deep around a run of 7s.
        let nested = |depth: u32| {
            let mut block = Vec::new();
            for level in (1..=depth).rev() {
                block.push(Mode::Parts as u8);
                block.extend((4 + 6 + 9 * (level - 1)).to_le_bytes());
                block.extend(1u32.to_le_bytes());
            }
            block.extend([Mode::Run as u8, 1, 0, 0, 0, 7]);
            block
        };
        let mut out = [0u8; 4];
        assert_eq!(decode_block(&nested(1), &mut out), Ok(15));
        assert_eq!(out, [7; 4]);
        // A million deep (9 MB) would overflow the stack if each level recursed.
        for depth in [2, 1_000_000] {
            assert_eq!(
                decode_block(&nested(depth), &mut out),
                Err(Error::NestedBlock(Mode::Parts))
            );
        }
    }

    proptest! {
        #[test]
        fn any_stream_round_trips(symbols in prop::collection::vec(any::<u8>(), 0..5000)) {
            round_trip(&symbols);
        }

        #[test]
        fn small_alphabets_round_trip(alphabet in 1u8..=16, seed in any::<u64>(), len in 0usize..20_000) {
            let mut state = seed | 1;
            let symbols: Vec<u8> = (0..len).map(|_| {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                // Geometric-ish: low symbols far more likely, like exponents.
                (state.trailing_zeros() as u8) % alphabet
            }).collect();
            round_trip(&symbols);
        }

        #[test]
        fn corrupt_blocks_never_panic(symbols in prop::collection::vec(0u8..8, 1..3000), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
            let mut block = Vec::new();
            encode_block(&symbols, Preference::Size, &mut block);
            for (at, mask) in flips {
                let at = at % block.len();
                block[at] ^= mask.max(1);
            }
            let mut out = vec![0; symbols.len()];
            let _ = decode_block(&block, &mut out);
        }
    }
}
