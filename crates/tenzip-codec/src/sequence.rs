//! Per-channel tables learned once for a whole sequence of short chunks: the pages of one K/V cache.
//!
//! A page of 16 tokens holds 16 values per channel, far too few to carry a table per channel, so the
//! per-channel layouts fall back to flat tables there and give up the channels' structure. Instead,
//! [`SequenceTables::learn`] groups the channels of each grouped field (see [`ChannelFloat`]) into up to 16
//! clusters of alike distributions, learns one table per cluster from the first pages of a sequence, and
//! the caller stores them once; each page is then coded as one tANS stream that switches tables symbol by
//! symbol ([`ContextTables`]): no tables, no stream lengths, one set of final states per page.
//!
//! Clusters rather than one table per channel: the channels with a scale of their own are few, so a
//! handful of tables keeps nearly all of the gain, learns it from more values (closer to what later pages
//! hold), stores in a fifth of the bytes, and stays in the L1 cache, where 385 tables of a BF16 page of 192
//! channels made every lookup wait on L2 (keys of the captured cache, 16-token pages: 0.6586 against 0.6620,
//! decoding 0.31 GB/s against 0.18).
//!
//! A page holds whole rows of `channels` elements. Its symbols are the fields of each element in turn (for
//! BF16: exponent, sign, mantissa), each grouped field's with its channel's cluster's table, the others with
//! one table each. A page with a symbol its tables cannot code (an exponent the first pages never showed)
//! is refused, and the caller codes it with tables of its own.
//!
//! What is stored is the cluster of each channel and each context's *learned* table, coarse (2^9 entries),
//! compressed as one block. The coding tables are derived from them on both sides with integer arithmetic
//! only: a cluster gets 1/64 of its weight from the field as a whole (all clusters together), so it codes,
//! at a price, the symbols that its own first pages never showed but other channels did, and that costs no
//! stored byte.

use crate::channels::{merge_fields, split_fields, ChannelFloat};
use crate::entropy::clusters::cluster;
use crate::entropy::tans::{ContextTables, Frequencies};
use crate::entropy::{decode_block, encode_block_lz, histogram, take, Preference};
use crate::Error;

/// Table log of the stored, learned tables: counts of one byte for all but the commonest symbols.
const LEARNED_TABLE_LOG: u32 = 9;
/// Table log of the coding tables, 512 entries (2 KiB to decode): on the captured keys 2^10 coded no
/// smaller, and 2^8 a point and a half larger, each channel's share of its field taking a slot of 256 per
/// symbol.
const CODING_TABLE_LOG: u32 = 9;
/// A grouped field's channel takes `1/FIELD_SHARE_DENOMINATOR` of its coding table from the whole field.
const FIELD_SHARE_DENOMINATOR: u32 = 64;
/// The most bytes one stored table takes (log, range, two bytes a count).
const MAX_TABLE_LEN: usize = 3 + 2 * 256;

/// Tables for the pages of one sequence of `channels`-element rows of one float format.
#[derive(Debug, Clone)]
pub struct SequenceTables {
    float: ChannelFloat,
    channels: usize,
    /// The cluster of each channel of each grouped field.
    clusters: Vec<u8>,
    /// What was learned, one table per context: what is stored.
    learned: Vec<Frequencies>,
    /// The coding tables derived from them.
    tables: ContextTables,
    /// The context of each symbol of a row, repeated to a multiple of four symbols.
    contexts: Vec<u16>,
}

/// Buffers a [`SequenceTables`] codes pages through; keep one per thread.
#[derive(Debug, Default)]
pub struct PageScratch {
    fields: Vec<Vec<u8>>,
    symbols: Vec<u8>,
}

impl SequenceTables {
    /// Learns tables from `sample`, whole rows of `channels` elements (the first pages of a sequence).
    ///
    /// # Panics
    /// If `sample` is empty or not whole rows, or if `channels` is 0 or more than
    /// [`MAX_CHANNELS`](crate::channels::MAX_CHANNELS).
    pub fn learn(float: ChannelFloat, channels: usize, sample: &[u8]) -> SequenceTables {
        let row_len = Self::row_len(float, channels);
        assert!(
            !sample.is_empty() && sample.len().is_multiple_of(row_len),
            "a sample of whole rows"
        );
        let mut scratch = PageScratch::default();
        scratch.split(float, sample);
        let grouped = float.grouped_count();
        let mut learned = Vec::with_capacity(Self::context_count(float, channels));
        let mut clusters = Vec::with_capacity(grouped * channels);
        for field in &scratch.fields[..grouped] {
            let columns: Vec<[u32; 256]> = (0..channels)
                .map(|channel| {
                    let mut column = [0u32; 256];
                    for &symbol in field.iter().skip(channel).step_by(channels) {
                        column[usize::from(symbol)] += 1;
                    }
                    column
                })
                .collect();
            // Clustered as the coding tables will mix them: each takes its share from the whole field.
            let (assignment, cluster_histograms) = cluster(
                &columns,
                cluster_count(channels),
                1.0 / f64::from(FIELD_SHARE_DENOMINATOR),
                CLUSTER_ROUNDS,
            );
            clusters.extend(assignment);
            learned.extend(
                cluster_histograms
                    .iter()
                    .map(|histogram| Frequencies::normalize(histogram, LEARNED_TABLE_LOG)),
            );
        }
        learned.extend(
            scratch.fields[grouped..]
                .iter()
                .map(|field| Frequencies::normalize(&histogram(field), LEARNED_TABLE_LOG)),
        );
        SequenceTables::from_learned(float, channels, clusters, learned)
    }

    /// Derives the coding tables from the learned ones (see the module's description).
    fn from_learned(
        float: ChannelFloat,
        channels: usize,
        clusters: Vec<u8>,
        learned: Vec<Frequencies>,
    ) -> SequenceTables {
        let grouped = float.grouped_count();
        let per_field = cluster_count(channels);
        let mut coding = Vec::with_capacity(learned.len());
        for field in learned[..grouped * per_field].chunks_exact(per_field) {
            let mut whole_field = [0u32; 256];
            for table in field {
                for (sum, &count) in whole_field.iter_mut().zip(table.counts()) {
                    *sum += u32::from(count);
                }
            }
            // Each learned table sums to 2^9 and the field to clusters x 2^9: weigh them alike, then mix.
            let own_weight = per_field as u32 * (FIELD_SHARE_DENOMINATOR - 1);
            coding.extend(field.iter().map(|table| {
                let mixed: [u32; 256] = std::array::from_fn(|symbol| {
                    u32::from(table.counts()[symbol]) * own_weight + whole_field[symbol]
                });
                Frequencies::derive(&mixed, CODING_TABLE_LOG)
            }));
        }
        coding.extend(learned[grouped * per_field..].iter().map(|table| {
            let counts = table.counts().map(u32::from);
            Frequencies::derive(&counts, CODING_TABLE_LOG)
        }));
        let tables = ContextTables::new(coding);
        let fields = float.stream_count();
        let row: Vec<u16> = (0..channels)
            .flat_map(|channel| {
                let clusters = &clusters;
                (0..fields).map(move |field| {
                    let context = if field < grouped {
                        field * per_field + usize::from(clusters[field * channels + channel])
                    } else {
                        grouped * per_field + field - grouped
                    };
                    context as u16
                })
            })
            .collect();
        // Four states take symbols in turn: a pattern of whole groups keeps each group within one pattern.
        let repeats = 4 / gcd(row.len(), 4);
        SequenceTables {
            float,
            channels,
            clusters,
            learned,
            tables,
            contexts: row.repeat(repeats),
        }
    }

    fn row_len(float: ChannelFloat, channels: usize) -> usize {
        assert!(
            (1..=crate::channels::MAX_CHANNELS as usize).contains(&channels),
            "{channels} channels"
        );
        channels * float.element_size()
    }

    /// Tables of a format and channel count: one per cluster of each grouped field, one per other field.
    fn context_count(float: ChannelFloat, channels: usize) -> usize {
        float.grouped_count() * cluster_count(channels) + float.stream_count()
            - float.grouped_count()
    }

    /// Appends the tables, to be stored once for the sequence: the format (its index in
    /// [`ChannelFloat::ALL`]), `u16 LE` the channel count, `u32 LE` the length of the rest before it was
    /// coded, then as one block: the cluster of each channel of each grouped field (a byte each), then the
    /// learned tables (each as in a tANS block; the clusters of each grouped field, then the other fields).
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut tables = self.clusters.clone();
        for table in &self.learned {
            table.write(&mut tables);
        }
        out.push(self.float.index());
        out.extend_from_slice(&(self.channels as u16).to_le_bytes());
        out.extend_from_slice(&(tables.len() as u32).to_le_bytes());
        encode_block_lz(&tables, Preference::Size, out);
    }

    /// Reads tables written by [`SequenceTables::write`] for pages of `channels`-element rows of `float`;
    /// returns them and the bytes they took.
    pub fn read(
        float: ChannelFloat,
        channels: usize,
        bytes: &[u8],
    ) -> Result<(SequenceTables, usize), Error> {
        Self::row_len(float, channels);
        let head = take(bytes, 0, 7, "sequence table header")?;
        if head[0] != float.index()
            || usize::from(u16::from_le_bytes([head[1], head[2]])) != channels
        {
            return Err(Error::InvalidTable(
                "sequence tables for another format or channel count",
            ));
        }
        let contexts = Self::context_count(float, channels);
        let map_len = float.grouped_count() * channels;
        let stored_len = u32::from_le_bytes(head[3..7].try_into().expect("4 bytes")) as usize;
        if stored_len > map_len + contexts * MAX_TABLE_LEN {
            return Err(Error::InvalidTable(
                "sequence tables longer than they can be",
            ));
        }
        let mut stored = vec![0; stored_len];
        let len = 7 + decode_block(&bytes[7..], &mut stored)?;
        let clusters = take(&stored, 0, map_len, "channel clusters")?.to_vec();
        if clusters
            .iter()
            .any(|&c| usize::from(c) >= cluster_count(channels))
        {
            return Err(Error::InvalidTable("a channel in a cluster past the last"));
        }
        let mut learned = Vec::with_capacity(contexts);
        let mut at = map_len;
        while learned.len() < contexts {
            let (table, table_len) = Frequencies::read(&stored[at..])?;
            learned.push(table);
            at += table_len;
        }
        if at != stored.len() {
            return Err(Error::InvalidTable(
                "sequence tables of the wrong context count",
            ));
        }
        Ok((
            SequenceTables::from_learned(float, channels, clusters, learned),
            len,
        ))
    }

    /// Appends the coded `page` (whole rows) to `out` and returns true, or returns false and leaves `out` as
    /// it was if the page has a symbol the tables cannot code.
    ///
    /// # Panics
    /// If `page` is not whole rows.
    pub fn encode(&self, page: &[u8], scratch: &mut PageScratch, out: &mut Vec<u8>) -> bool {
        let row_len = Self::row_len(self.float, self.channels);
        assert!(page.len().is_multiple_of(row_len), "a page of whole rows");
        scratch.split(self.float, page);
        scratch.interleave();
        self.tables.encode(&scratch.symbols, &self.contexts, out)
    }

    /// Restores a page coded by [`SequenceTables::encode`] into `out`, which must be exactly its length.
    pub fn decode(
        &self,
        payload: &[u8],
        out: &mut [u8],
        scratch: &mut PageScratch,
    ) -> Result<(), Error> {
        let row_len = Self::row_len(self.float, self.channels);
        if !out.len().is_multiple_of(row_len) {
            return Err(Error::ValueAlignment {
                len: out.len(),
                value_size: row_len,
            });
        }
        let fields = self.float.stream_count();
        scratch
            .symbols
            .resize(out.len() / self.float.element_size() * fields, 0);
        self.tables
            .decode(payload, &self.contexts, &mut scratch.symbols)?;
        scratch.deinterleave(fields);
        // At most three fields: views on the stack, no allocation per page.
        let mut views: [&[u8]; 3] = [&[]; 3];
        for (view, field) in views.iter_mut().zip(&scratch.fields) {
            *view = field;
        }
        merge_fields(self.float, &views[..fields], out);
        Ok(())
    }
}

impl PageScratch {
    /// Splits `values` into its field streams.
    fn split(&mut self, float: ChannelFloat, values: &[u8]) {
        let elements = values.len() / float.element_size();
        self.fields.resize_with(float.stream_count(), Vec::new);
        for field in &mut self.fields {
            field.resize(elements, 0);
        }
        let mut fields: [&mut [u8]; 3] = Default::default();
        for (field, stream) in fields.iter_mut().zip(&mut self.fields) {
            *field = stream;
        }
        split_fields(float, values, &mut fields[..float.stream_count()]);
    }

    /// Lays the field streams out element by element: the symbol order of a coded page.
    fn interleave(&mut self) {
        let fields = self.fields.len();
        self.symbols.resize(self.fields[0].len() * fields, 0);
        for (field, stream) in self.fields.iter().enumerate() {
            for (symbol, &value) in self.symbols[field..].iter_mut().step_by(fields).zip(stream) {
                *symbol = value;
            }
        }
    }

    /// Inverse of [`PageScratch::interleave`], for `fields` fields.
    fn deinterleave(&mut self, fields: usize) {
        let elements = self.symbols.len() / fields;
        self.fields.resize_with(fields, Vec::new);
        for stream in &mut self.fields {
            stream.resize(elements, 0);
        }
        match &mut self.fields[..] {
            [a, b] => Self::deinterleave_into(&self.symbols, [a, b]),
            [a, b, c] => Self::deinterleave_into(&self.symbols, [a, b, c]),
            other => unreachable!("{} fields", other.len()),
        }
    }

    /// With the field count a constant, the loop keeps every stream's position in a register.
    fn deinterleave_into<const FIELDS: usize>(symbols: &[u8], streams: [&mut Vec<u8>; FIELDS]) {
        let mut streams = streams.map(|stream| stream.iter_mut());
        for element in symbols.chunks_exact(FIELDS) {
            for (stream, &symbol) in streams.iter_mut().zip(element) {
                if let Some(slot) = stream.next() {
                    *slot = symbol;
                }
            }
        }
    }
}

/// Clusters of channels per grouped field. Channels with their own scale are few, so a handful of tables
/// catches nearly all the gain of one per channel; and few tables stay in the L1 cache while a page switches
/// among them symbol by symbol (one per channel made decoding wait on L2 at every symbol).
const CHANNEL_CLUSTERS: usize = 16;

/// Rounds of reassigning channels to the cluster that codes them in the fewest bits, at most: tables are
/// learned once per sequence, so rounds are cheap.
const CLUSTER_ROUNDS: usize = 8;

fn cluster_count(channels: usize) -> usize {
    channels.min(CHANNEL_CLUSTERS)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of `channels` BF16 values whose exponent depends on the channel and sign on the row.
    fn bf16_rows(rows: usize, channels: usize, seed: u32) -> Vec<u8> {
        (0..rows * channels)
            .flat_map(|i| {
                let channel = (i % channels) as u32;
                let noise = (i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 20;
                let exponent = 118 + channel % 7 + noise % 3;
                let value = ((noise & 1) << 15) | (exponent << 7) | (noise >> 4 & 0x7f);
                (value as u16).to_le_bytes()
            })
            .collect()
    }

    #[test]
    fn pages_round_trip_with_learned_tables() {
        for (float, channels) in [
            (ChannelFloat::Bf16, 12),
            (ChannelFloat::Bf16, 3),
            (ChannelFloat::F16, 5),
        ] {
            let tables = SequenceTables::learn(float, channels, &bf16_rows(256, channels, 1));
            let mut written = Vec::new();
            tables.write(&mut written);
            let (read, len) = SequenceTables::read(float, channels, &written).unwrap();
            assert_eq!(len, written.len());
            let mut scratch = PageScratch::default();
            for rows in [1, 2, 7, 16] {
                let page = bf16_rows(rows, channels, 2);
                let mut payload = Vec::new();
                assert!(
                    tables.encode(&page, &mut scratch, &mut payload),
                    "{float:?} {rows}"
                );
                let mut restored = vec![0; page.len()];
                read.decode(&payload, &mut restored, &mut scratch).unwrap();
                assert_eq!(restored, page, "{float:?} {channels} {rows}");
            }
        }
    }

    #[test]
    fn learned_tables_beat_a_table_per_page() {
        let channels = 64;
        let tables =
            SequenceTables::learn(ChannelFloat::Bf16, channels, &bf16_rows(256, channels, 1));
        let page = bf16_rows(16, channels, 3);
        let mut shared = Vec::new();
        assert!(tables.encode(&page, &mut PageScratch::default(), &mut shared));
        let mut own = Vec::new();
        crate::encode_chunk(
            crate::Layout::Bf16,
            &page,
            Preference::Size,
            &mut crate::Scratch::default(),
            &mut own,
        );
        assert!(
            shared.len() * 10 < own.len() * 9,
            "{} against {}",
            shared.len(),
            own.len()
        );
    }

    #[test]
    fn a_symbol_never_seen_refuses_the_page() {
        let channels = 4;
        let tables = SequenceTables::learn(ChannelFloat::F8E4M3, channels, &[0x38; 64]);
        let mut payload = vec![7];
        assert!(!tables.encode(
            &[0x38, 0x38, 0x38, 0xb8],
            &mut PageScratch::default(),
            &mut payload
        ));
        assert_eq!(payload, [7]);
        assert!(tables.encode(&[0x38; 8], &mut PageScratch::default(), &mut payload));
    }

    #[test]
    fn damaged_pages_and_tables_are_errors_or_wrong_bytes_never_panics() {
        let channels = 8;
        let tables =
            SequenceTables::learn(ChannelFloat::Bf16, channels, &bf16_rows(64, channels, 1));
        let mut written = Vec::new();
        tables.write(&mut written);
        assert!(SequenceTables::read(ChannelFloat::F16, channels, &written).is_err());
        assert!(SequenceTables::read(ChannelFloat::Bf16, channels + 1, &written).is_err());
        assert!(SequenceTables::read(ChannelFloat::F8E4M3, channels, &written).is_err());
        for cut in 0..written.len() {
            assert!(SequenceTables::read(ChannelFloat::Bf16, channels, &written[..cut]).is_err());
        }
        let page = bf16_rows(16, channels, 5);
        let mut payload = Vec::new();
        assert!(tables.encode(&page, &mut PageScratch::default(), &mut payload));
        let mut out = vec![0; page.len()];
        let mut scratch = PageScratch::default();
        for at in 0..payload.len() {
            let mut damaged = payload.clone();
            damaged[at] ^= 0x10;
            let _ = tables.decode(&damaged, &mut out, &mut scratch);
            let _ = tables.decode(&payload[..at], &mut out, &mut scratch);
        }
        assert!(tables
            .decode(&payload, &mut out[..3], &mut scratch)
            .is_err());
    }
}
