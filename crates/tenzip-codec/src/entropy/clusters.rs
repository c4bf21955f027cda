//! A stream of equal parts coded as a few clusters of alike parts, each cluster one block (mode 8).
//!
//! A per-channel stream (one part per channel) coded with one table per part decodes at short-block speed:
//! whisper's token embedding has 384 channels, so a chunk of 4096 rows is 384 tANS blocks of 4096 symbols
//! for its exponents and as many for its signs, each building a table, none long enough for rANS. Yet the
//! channels fall into a few families (one scale, one sign balance), so a few dozen tables keep nearly all of
//! the gain, and the clusters they code are long: rANS, at twice tANS's speed either way (on that
//! embedding, 16 clusters of exponents carry 2.6% more entropy than 384 tables, which themselves cost more
//! than that). Short streams, where a table per part costs little, keep up to one per part.
//!
//! Body: `parts: u32`, `clusters: u16`, the cluster of each part (`u8` each), then one block per cluster, in
//! cluster order, coding the parts of that cluster one after another in part order.

use super::{
    encode_block_counted, encode_block_parts, estimated_block_len, rans, take, Block, Preference,
};
use crate::Error;
use std::cell::RefCell;

/// Of the cluster counts tried, the smallest whose estimated size is within this factor of the smallest
/// size is taken: fewer, longer clusters decode faster.
const SIZE_TOLERANCE: f64 = 1.01;

/// A cluster too short for rANS decodes at half its speed with tANS: it must be this much smaller (as a
/// factor on its estimated size) to be preferred to longer clusters.
const TANS_SPEED_PENALTY: f64 = 1.03;

/// The most clusters a block may have: a part's cluster is one byte.
pub(crate) const MAX_CLUSTERS: usize = 256;

/// In the cost model, a cluster takes this share of each symbol's probability from the whole field: a
/// symbol its parts never show costs many bits there, not infinitely many.
const FIELD_SHARE: f64 = 1.0 / 64.0;

/// Cluster counts up to this many are summed from one pass over the parts (see [`Grouping::of`]); long
/// streams stop below it.
const SUMMED_CLUSTERS: usize = 64;

/// Rounds of moving parts between the clusters of a block: most of the gain comes in the first two.
const BLOCK_ROUNDS: usize = 2;

/// Clusters are refined only up to this many: a round weighs every part against every cluster, and finer
/// clusters (short streams of few parts each) gain little from it.
const REFINED_CLUSTERS: usize = 64;

/// Which cluster each part of a stream is in, and each cluster's histogram.
pub(crate) struct Grouping {
    /// The cluster of each part; every cluster has at least one part.
    pub(crate) assignment: Vec<u8>,
    /// The histogram of each cluster's parts together.
    pub(crate) histograms: Vec<[u32; 256]>,
}

impl Grouping {
    /// Groups parts with histograms `parts` (of a stream `scale` times as long as they count) into clusters
    /// of parts with near means, cut into equal counts. The count is tried in powers of two, then one per
    /// part, each priced by [`weighed_len`] (tables, and a penalty for clusters too short for rANS), until
    /// a count prices above the best so far; the smallest within [`SIZE_TOLERANCE`] of the best is taken.
    /// Long streams take a few dozen clusters; short ones, where a table per part costs little, up to one
    /// per part.
    pub(crate) fn of(parts: &[[u32; 256]], scale: f64) -> Grouping {
        let most = parts.len().min(MAX_CLUSTERS);
        let order = by_mean(parts);
        let counts = std::iter::successors(Some(1), |&count| Some(count * 2))
            .take_while(|&count| count < most)
            .chain([most]);
        // The counts up to `summed` (a power of two) come from one pass over the parts: each run of a
        // power-of-two cut is two runs of the next, so coarser levels are sums of pairs of finer ones.
        let summed = 1 << most.min(SUMMED_CLUSTERS).ilog2();
        let mut levels = vec![sums(parts, &seed(&order, summed), summed)];
        while levels.last().expect("one level").len() > 1 {
            let finer = levels.last().expect("one level");
            let coarser = finer
                .chunks_exact(2)
                .map(|pair| std::array::from_fn(|symbol| pair[0][symbol] + pair[1][symbol]))
                .collect();
            levels.push(coarser);
        }
        let mut priced: Vec<(usize, f64)> = Vec::new();
        let mut best = f64::INFINITY;
        for count in counts {
            let size = framing_len(count, parts.len())
                + if count == parts.len() {
                    weighed_len(parts, scale)
                } else if count <= summed {
                    weighed_len(&levels[(summed / count).ilog2() as usize], scale)
                } else {
                    weighed_len(&sums(parts, &seed(&order, count), count), scale)
                };
            priced.push((count, size));
            if size > best {
                break;
            }
            best = size;
        }
        let count = priced
            .iter()
            .filter(|&&(_, size)| size <= best * SIZE_TOLERANCE)
            .map(|&(count, _)| count)
            .min()
            .expect("the best is within tolerance of itself");
        if count == parts.len() {
            return Grouping {
                assignment: (0..count).map(|part| part as u8).collect(),
                histograms: parts.to_vec(),
            };
        }
        Grouping::seeded(parts, &order, count)
    }

    /// `count` clusters of equal part counts, in `order`.
    fn seeded(parts: &[[u32; 256]], order: &[usize], count: usize) -> Grouping {
        let assignment = seed(order, count);
        let histograms = sums(parts, &assignment, count);
        Grouping {
            assignment,
            histograms,
        }
    }

    /// Moves parts to the clusters that code them in the fewest bits, a few rounds; clusters left empty are
    /// dropped and the others renumbered in order.
    fn refine(mut self, parts: &[[u32; 256]]) -> Grouping {
        let count = self.histograms.len();
        if count > REFINED_CLUSTERS {
            return self;
        }
        refine(
            parts,
            &mut self.assignment,
            count,
            FIELD_SHARE,
            BLOCK_ROUNDS,
        );
        let mut renumbered = [None; MAX_CLUSTERS];
        let mut kept = 0;
        for cluster in self.assignment.iter_mut() {
            *cluster = *renumbered[usize::from(*cluster)].get_or_insert_with(|| {
                kept += 1;
                kept - 1
            });
        }
        self.histograms = sums(parts, &self.assignment, kept as usize);
        self
    }

    /// The estimated coded size of the stream, its clusters each one block.
    pub(crate) fn estimated_len(&self, scale: f64) -> f64 {
        let blocks: f64 = self
            .histograms
            .iter()
            .map(|histogram| estimated_block_len(histogram, scale))
            .sum();
        blocks + framing_len(self.cluster_count(), self.assignment.len())
    }

    fn cluster_count(&self) -> usize {
        self.histograms.len()
    }
}

/// Bytes `count` clusters of `parts` parts take beyond their blocks: none for one (a plain block), the part
/// count for one per part (mode 6), else the counts and a byte per part (mode 8), which on a K/V page of 16
/// tokens is a sixth of what its exponents code in.
fn framing_len(count: usize, parts: usize) -> f64 {
    match count {
        1 => 0.0,
        _ if count == parts => 4.0,
        _ => 6.0 + parts as f64,
    }
}

/// The estimated coded size of clusters with `histograms`, each too short for rANS weighed by
/// [`TANS_SPEED_PENALTY`].
fn weighed_len(histograms: &[[u32; 256]], scale: f64) -> f64 {
    histograms
        .iter()
        .map(|histogram| {
            let len = estimated_block_len(histogram, scale);
            let symbols = super::histogram::total(histogram) as f64 * scale;
            if rans::pays_for_its_states(len as usize, symbols as usize) {
                len
            } else {
                len * TANS_SPEED_PENALTY
            }
        })
        .sum()
}

/// Column indices in order of their mean symbol: channels of one scale have their exponents in one place.
fn by_mean(columns: &[[u32; 256]]) -> Vec<usize> {
    let mean = |column: &[u32; 256]| -> f64 {
        // Integer sums: they vectorise, where a chain of float additions waits on each one. Below 2^24
        // symbols (every part of a chunk) no product or sum reaches 2^32, and 32-bit lanes multiply where
        // x86-64 has no vector multiply of 64-bit ones: in 64 bits these means took 3% of the compression
        // of whisper's token embedding, in 32 bits 1%.
        let total = super::histogram::total(column);
        let weighted = if total < 1 << 24 {
            let weighted: u32 = (0u32..).zip(column).map(|(symbol, &c)| symbol * c).sum();
            u64::from(weighted)
        } else {
            (0u64..)
                .zip(column)
                .map(|(symbol, &c)| symbol * u64::from(c))
                .sum()
        };
        weighted as f64 / total.max(1) as f64
    };
    let means: Vec<f64> = columns.iter().map(mean).collect();
    let mut order: Vec<usize> = (0..columns.len()).collect();
    order.sort_by(|&a, &b| means[a].total_cmp(&means[b]));
    order
}

/// Each column's cluster when `order` is cut into `count` runs of equal length.
fn seed(order: &[usize], count: usize) -> Vec<u8> {
    let mut assignment = vec![0u8; order.len()];
    for (rank, &column) in order.iter().enumerate() {
        assignment[column] = (rank * count / order.len()) as u8;
    }
    assignment
}

/// The histogram of each of `count` clusters.
fn sums(columns: &[[u32; 256]], assignment: &[u8], count: usize) -> Vec<[u32; 256]> {
    let mut sums = vec![[0u32; 256]; count];
    for (column, &cluster) in columns.iter().zip(assignment) {
        for (sum, &c) in sums[usize::from(cluster)].iter_mut().zip(column) {
            *sum += c;
        }
    }
    sums
}

/// Groups `columns` (the histogram of each) into `count` clusters: seeded by the mean symbol, then refined
/// for `rounds` at most (see [`refine`]). Returns each column's cluster and each cluster's histogram (the
/// whole field's for a cluster left empty).
pub(crate) fn cluster(
    columns: &[[u32; 256]],
    count: usize,
    field_share: f64,
    rounds: usize,
) -> (Vec<u8>, Vec<[u32; 256]>) {
    assert!(
        (1..=MAX_CLUSTERS).contains(&count),
        "1 to {MAX_CLUSTERS} clusters"
    );
    let mut assignment = seed(&by_mean(columns), count);
    let whole_field = refine(columns, &mut assignment, count, field_share, rounds);
    let histograms = sums(columns, &assignment, count)
        .into_iter()
        .map(|sum| {
            if sum.iter().any(|&c| c > 0) {
                sum
            } else {
                whole_field
            }
        })
        .collect();
    (assignment, histograms)
}

/// Moves each column to the cluster whose distribution codes it in the fewest bits, for `rounds` at most or
/// until none moves; a cluster's distribution takes `field_share` of its probabilities from the whole
/// field's (an empty cluster's is the field's). Returns the whole field's histogram.
fn refine(
    columns: &[[u32; 256]],
    assignment: &mut [u8],
    count: usize,
    field_share: f64,
    rounds: usize,
) -> [u32; 256] {
    let whole_field = sums(columns, &vec![0; columns.len()], 1)[0];
    // Each column's symbols that occur, with their counts: a few dozen of the 256.
    let occurring: Vec<Vec<(usize, u32)>> = columns
        .iter()
        .map(|column| {
            (0..256)
                .filter(|&s| column[s] > 0)
                .map(|s| (s, column[s]))
                .collect()
        })
        .collect();
    let field_total = super::histogram::total(&whole_field) as f64;
    for _ in 0..rounds {
        // Bits per symbol under each cluster's distribution, mixed with the field's.
        let costs: Vec<[f64; 256]> = sums(columns, assignment, count)
            .iter()
            .map(|sum| {
                let histogram = if sum.iter().any(|&c| c > 0) {
                    sum
                } else {
                    &whole_field
                };
                let total = super::histogram::total(histogram) as f64;
                std::array::from_fn(|symbol| {
                    let p = (1.0 - field_share) * f64::from(histogram[symbol]) / total
                        + field_share * f64::from(whole_field[symbol]) / field_total;
                    if p > 0.0 {
                        -p.log2()
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        // The same bits by symbol, the clusters side by side: a column's bits in every cluster then add up in
        // one pass over its symbols, each step a vector of independent sums (a sum per cluster, each a chain
        // of dependent additions, took a tenth of whisper F16's compression).
        let mut by_symbol = vec![0.0; 256 * count];
        for (cluster, cost) in costs.iter().enumerate() {
            for (symbol, &bits) in cost.iter().enumerate() {
                by_symbol[symbol * count + cluster] = bits;
            }
        }
        let mut bits = vec![0.0; count];
        let mut moved = false;
        for (column, slot) in occurring.iter().zip(assignment.iter_mut()) {
            bits.fill(0.0);
            for &(symbol, c) in column {
                let c = f64::from(c);
                let costs = &by_symbol[symbol * count..(symbol + 1) * count];
                for (total, &cost) in bits.iter_mut().zip(costs) {
                    *total += c * cost;
                }
            }
            let best = (0..count)
                .min_by(|&a, &b| bits[a].total_cmp(&bits[b]))
                .expect("at least one cluster") as u8;
            moved |= best != *slot;
            *slot = best;
        }
        if !moved {
            break;
        }
    }
    whole_field
}

thread_local! {
    /// Each thread's room for one cluster's parts side by side: gathered before coding, decoded before they
    /// are scattered. It grows and never shrinks: a fresh buffer per block would be first-touched every time.
    static CLUSTER_ROOM: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Each thread's histograms of the parts of a stream, 1 KiB a part, kept for the same reason.
    static PART_HISTOGRAMS: RefCell<Vec<[u32; 256]>> = const { RefCell::new(Vec::new()) };
}

/// Appends a block coding `symbols`, `parts` equal non-empty parts, with one code per cluster of alike parts
/// (mode 8); or, where one cluster per part is wanted, one per part (mode 6); or, where one cluster is, one
/// code for the whole stream.
pub(crate) fn encode(symbols: &[u8], parts: usize, preference: Preference, out: &mut Vec<u8>) {
    assert!(
        parts > 0 && !symbols.is_empty() && symbols.len().is_multiple_of(parts),
        "whole, non-empty parts"
    );
    let part_len = symbols.len() / parts;
    PART_HISTOGRAMS.with_borrow_mut(|part_histograms| {
        count_parts(symbols, parts, part_histograms);
        let mut grouping = Grouping::of(part_histograms, 1.0);
        match grouping.cluster_count() {
            1 => {}
            count if count == parts => return encode_block_parts(symbols, parts, preference, out),
            _ => grouping = grouping.refine(part_histograms),
        }
        // One cluster, from the start or left by the refinement: a plain block, with no assignment to store.
        if grouping.cluster_count() == 1 {
            return encode_block_counted(symbols, &grouping.histograms[0], preference, out);
        }
        let parts_u32 = u32::try_from(parts).expect("fewer than 2^32 parts");
        let clusters_u16 = grouping.cluster_count() as u16;
        super::write_block(out, super::Mode::Clusters, |body| {
            body.extend_from_slice(&parts_u32.to_le_bytes());
            body.extend_from_slice(&clusters_u16.to_le_bytes());
            body.extend_from_slice(&grouping.assignment);
            CLUSTER_ROOM.with_borrow_mut(|room| {
                for (cluster, histogram) in grouping.histograms.iter().enumerate() {
                    room.clear();
                    for (part, _) in symbols
                        .chunks_exact(part_len)
                        .zip(&grouping.assignment)
                        .filter(|(_, &of)| usize::from(of) == cluster)
                    {
                        room.extend_from_slice(part);
                    }
                    encode_block_counted(room, histogram, preference, body);
                }
            });
        });
    });
}

/// The estimated coded size of `symbols`, `parts` equal parts of a stream `scale` times as long, grouped as
/// [`encode`] groups them before it refines the clusters.
pub(crate) fn estimated_len(symbols: &[u8], parts: usize, scale: f64) -> f64 {
    PART_HISTOGRAMS.with_borrow_mut(|part_histograms| {
        count_parts(symbols, parts, part_histograms);
        Grouping::of(part_histograms, scale).estimated_len(scale)
    })
}

/// Counts the histogram of each of `parts` equal parts of `symbols` into `histograms`, four parts at a time:
/// four tables that never wait on one another's increments, each part's whole histogram (counting one part
/// into four tables and summing them, as [`super::histogram()`] does, costs more than counting on parts of a
/// few thousand symbols).
fn count_parts(symbols: &[u8], parts: usize, histograms: &mut Vec<[u32; 256]>) {
    histograms.clear();
    histograms.resize(parts, [0; 256]);
    let part_len = symbols.len() / parts;
    // Bits (signs, split from their values): each part's ones are its sum, which vectorises.
    if symbols.iter().fold(0u8, |widest, &symbol| widest | symbol) <= 1 {
        for (histogram, part) in histograms.iter_mut().zip(symbols.chunks_exact(part_len)) {
            let ones = part.iter().map(|&bit| u32::from(bit)).sum::<u32>();
            histogram[1] = ones;
            histogram[0] = part_len as u32 - ones;
        }
        return;
    }
    let mut quads = histograms.chunks_exact_mut(4);
    for (quad, block) in (&mut quads).zip(symbols.chunks_exact(4 * part_len)) {
        let [first, second, third, fourth] = quad else {
            unreachable!("chunks of four")
        };
        let (a, rest) = block.split_at(part_len);
        let (b, rest) = rest.split_at(part_len);
        let (c, d) = rest.split_at(part_len);
        for (((&a, &b), &c), &d) in a.iter().zip(b).zip(c).zip(d) {
            first[usize::from(a)] += 1;
            second[usize::from(b)] += 1;
            third[usize::from(c)] += 1;
            fourth[usize::from(d)] += 1;
        }
    }
    let counted = parts / 4 * 4;
    for (histogram, part) in quads
        .into_remainder()
        .iter_mut()
        .zip(symbols[counted * part_len..].chunks_exact(part_len))
    {
        *histogram = super::histogram(part);
    }
}

/// Decodes a clusters body into `out`, the whole stream.
pub(crate) fn decode(body: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let header = take(body, 0, 6, "cluster counts")?;
    let parts = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let clusters = usize::from(u16::from_le_bytes([header[4], header[5]]));
    if parts == 0 || out.is_empty() || !out.len().is_multiple_of(parts) {
        return Err(Error::Parts {
            parts,
            len: out.len(),
        });
    }
    if clusters == 0 || clusters > parts.min(MAX_CLUSTERS) {
        return Err(Error::Clusters { clusters, parts });
    }
    let assignment = take(body, 6, parts, "cluster of each part")?;
    let mut members = [0usize; MAX_CLUSTERS];
    for &cluster in assignment {
        members[usize::from(cluster)] += 1;
    }
    if assignment
        .iter()
        .any(|&cluster| usize::from(cluster) >= clusters)
        || members[..clusters].contains(&0)
    {
        return Err(Error::Clusters { clusters, parts });
    }
    let part_len = out.len() / parts;
    let mut rest = &body[6 + parts..];
    for (cluster, &count) in members[..clusters].iter().enumerate() {
        let (block, used) = Block::parse(rest)?;
        rest = &rest[used..];
        let in_cluster = |part: &usize| usize::from(assignment[*part]) == cluster;
        let first = (0..parts)
            .find(in_cluster)
            .expect("every cluster has parts");
        if assignment[first..first + count]
            .iter()
            .all(|&of| usize::from(of) == cluster)
        {
            // Consecutive parts decode in place.
            block.decode_nested(&mut out[first * part_len..(first + count) * part_len])?;
            continue;
        }
        CLUSTER_ROOM.with_borrow_mut(|room| -> Result<(), Error> {
            let room = crate::chunk::room(room, count * part_len);
            block.decode_nested(room)?;
            let targets = out
                .chunks_exact_mut(part_len)
                .zip(assignment)
                .filter(|(_, &of)| usize::from(of) == cluster);
            for ((target, _), decoded) in targets.zip(room.chunks_exact(part_len)) {
                target.copy_from_slice(decoded);
            }
            Ok(())
        })?;
    }
    if !rest.is_empty() {
        return Err(Error::TrailingBytes(rest.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_symbols::{generator, weighted};
    use super::*;

    /// `parts` parts of `part_len` symbols from `families` distributions, the part's family its index modulo
    /// the family count.
    fn families(parts: usize, part_len: usize, families: &[&[u32]], seed: u64) -> Vec<u8> {
        (0..parts)
            .flat_map(|part| {
                weighted(
                    families[part % families.len()],
                    part_len,
                    seed + part as u64,
                )
            })
            .collect()
    }

    fn round_trip(symbols: &[u8], parts: usize) -> Vec<u8> {
        let mut coded = Vec::new();
        encode(symbols, parts, Preference::Size, &mut coded);
        let mut decoded = vec![0; symbols.len()];
        super::super::decode_block(&coded, &mut decoded).expect("decodes");
        assert_eq!(decoded, symbols);
        // A clusters block has two clusters at least (body: parts, then the cluster count).
        if coded[0] == super::super::Mode::Clusters as u8 {
            assert!(
                u16::from_le_bytes([coded[9], coded[10]]) >= 2,
                "one cluster in mode 8"
            );
        }
        coded
    }

    #[test]
    fn alike_parts_share_a_cluster() {
        let low: &[u32] = &[50, 30, 15, 5];
        let high: &[u32] = &[0, 0, 0, 0, 0, 0, 0, 0, 5, 15, 30, 50];
        let mut histograms = Vec::new();
        count_parts(&families(12, 4096, &[low, high], 1), 12, &mut histograms);
        let (assignment, _) = cluster(&histograms, 2, FIELD_SHARE, 8);
        for (part, &cluster) in assignment.iter().enumerate() {
            assert_eq!(cluster, assignment[part % 2], "part {part}");
        }
        assert_ne!(assignment[0], assignment[1]);
    }

    #[test]
    fn the_cluster_count_follows_the_coded_size() {
        let grouping = |shapes: &[&[u32]], parts, part_len| {
            let mut histograms = Vec::new();
            count_parts(
                &families(parts, part_len, shapes, 2),
                parts,
                &mut histograms,
            );
            Grouping::of(&histograms, 1.0)
        };
        let low: &[u32] = &[50, 30, 15, 5];
        let high: &[u32] = &[0, 0, 0, 0, 0, 0, 0, 0, 5, 15, 30, 50];
        // One distribution: one table, however long.
        assert_eq!(grouping(&[low], 64, 4096).cluster_count(), 1);
        // Two: two clusters, each part with its family.
        for (parts, part_len) in [(8, 1024), (64, 16384)] {
            let two = grouping(&[low, high], parts, part_len);
            assert_eq!(two.cluster_count(), 2, "{parts} x {part_len}");
            for (part, &cluster) in two.assignment.iter().enumerate() {
                assert_eq!(cluster, two.assignment[part % 2]);
            }
        }
        // Each part its own distribution (the peak one symbol further each time): as many tables as pay,
        // none empty.
        let peaks: Vec<Vec<u32>> = (0..32)
            .map(|peak| (0..40).map(|s| if s == peak { 90 } else { 1 }).collect())
            .collect();
        let shapes: Vec<&[u32]> = peaks.iter().map(Vec::as_slice).collect();
        let many = grouping(&shapes, 32, 8192);
        assert!(
            many.cluster_count() >= 16,
            "{} clusters",
            many.cluster_count()
        );
        for cluster in 0..many.cluster_count() as u8 {
            assert!(many.assignment.contains(&cluster));
        }
    }

    #[test]
    fn clustered_streams_round_trip_and_name_their_mode() {
        // Three families over 96 parts: a table per part would cost more than it saves.
        let families_of: [&[u32]; 3] = [&[50, 30, 15, 5], &[0, 0, 0, 5, 15, 30, 50], &[1; 40]];
        let symbols = families(96, 4096, &families_of, 3);
        let coded = round_trip(&symbols, 96);
        assert_eq!(
            Block::parse(&coded).unwrap().0.mode(),
            super::super::Mode::Clusters
        );
        // Short streams and single parts take the other forms.
        round_trip(&symbols[..96 * 16], 96);
        round_trip(&symbols[..8192], 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Any mix of families over any number of parts, long enough for several clusters or not.
        #[test]
        fn any_parts_round_trip(
            parts in 1usize..80,
            part_len in 1usize..6000,
            family_of in proptest::collection::vec(0usize..5, 80),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let shapes: [&[u32]; 5] = [
                &[50, 30, 15, 5],
                &[0, 0, 0, 5, 15, 30, 50],
                &[1; 40],
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 90, 10],
                &[1; 256],
            ];
            let symbols: Vec<u8> = (0..parts)
                .flat_map(|part| weighted(shapes[family_of[part]], part_len, seed + part as u64))
                .collect();
            round_trip(&symbols, parts);
        }
    }

    #[test]
    fn corrupt_cluster_headers_are_errors() {
        let families_of: [&[u32]; 2] = [&[50, 30, 15, 5], &[0, 0, 0, 5, 15, 30, 50]];
        let symbols = families(32, 16384, &families_of, 4);
        let mut coded = Vec::new();
        encode(&symbols, 32, Preference::Size, &mut coded);
        assert_eq!(
            Block::parse(&coded).unwrap().0.mode(),
            super::super::Mode::Clusters
        );
        let mut out = vec![0; symbols.len()];
        // Body offsets after the 5-byte block header: parts at 5, clusters at 9, the assignment at 11.
        let mut next = generator(5);
        for (at, value) in [
            (9, 0u8),  // no clusters
            (9, 33),   // more clusters than parts
            (11, 200), // a part in a cluster past the last
            (5, 7),    // parts that do not divide the stream
        ] {
            let mut corrupt = coded.clone();
            corrupt[at] = value;
            assert!(
                super::super::decode_block(&corrupt, &mut out).is_err(),
                "byte {at} = {value}"
            );
        }
        // One cluster left without parts.
        let mut corrupt = coded.clone();
        let clusters = usize::from(u16::from_le_bytes([coded[9], coded[10]]));
        let last = (clusters - 1) as u8;
        for byte in &mut corrupt[11..11 + 32] {
            if *byte == last {
                *byte = 0;
            }
        }
        assert!(super::super::decode_block(&corrupt, &mut out).is_err());
        // Random damage anywhere is an error or a different stream, never a panic.
        for _ in 0..200 {
            let mut corrupt = coded.clone();
            let at = next() as usize % corrupt.len();
            corrupt[at] ^= 1 << (next() % 8);
            let _ = super::super::decode_block(&corrupt, &mut out);
        }
    }
}
