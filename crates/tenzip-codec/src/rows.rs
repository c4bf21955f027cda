//! Repeated rows: a chunk whose rows repeat (layer 0 of a K/V cache holds one row per distinct token, since
//! it depends on nothing else) is coded as a row table plus the distinct rows, which then get the usual
//! per-chunk split. Only per-channel layouts, whose values are rows, look for repeats.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::{Error, Layout};

/// Rows shorter than this are not worth hashing.
const MIN_ROW_LEN: usize = 64;
/// At least one row in this many must be a repeat for the row table to pay for itself.
const MIN_REPEAT_SHARE: usize = 8;

/// A chunk's rows as references into its distinct rows.
pub(crate) struct RepeatedRows {
    /// For each row, the index of its distinct row, as a `u32` LE.
    pub(crate) references: Vec<u8>,
    /// The distinct rows, in order of first appearance.
    pub(crate) distinct: Vec<u8>,
}

impl RepeatedRows {
    /// The distinct rows and references of `values`, if `layout` codes rows and enough of them repeat.
    pub(crate) fn find(layout: Layout, values: &[u8]) -> Option<RepeatedRows> {
        let row_len = layout.value_size();
        if !matches!(layout, Layout::Channels { .. }) || row_len < MIN_ROW_LEN {
            return None;
        }
        let rows = values.len() / row_len;
        if !repeats_early(values, row_len) {
            return None;
        }
        let mut first_seen: FxHashMap<&[u8], u32> =
            FxHashMap::with_capacity_and_hasher(rows, Default::default());
        let mut references = Vec::with_capacity(rows * 4);
        let mut distinct = Vec::new();
        for row in values.chunks_exact(row_len) {
            let next = first_seen.len() as u32;
            let index = *first_seen.entry(row).or_insert_with(|| {
                distinct.extend_from_slice(row);
                next
            });
            references.extend_from_slice(&index.to_le_bytes());
        }
        let repeats = rows - first_seen.len();
        (repeats > 0 && repeats * MIN_REPEAT_SHARE >= rows).then_some(RepeatedRows {
            references,
            distinct,
        })
    }
}

/// Rows looked at before hashing a whole chunk: in a chunk whose rows repeat enough to pay, some of the
/// first ones already do, and weight matrices, whose rows never repeat, cost only this much.
const PROBE_ROWS: usize = 256;

/// Whether any of the first [`PROBE_ROWS`] rows repeats an earlier one.
fn repeats_early(values: &[u8], row_len: usize) -> bool {
    let mut seen = FxHashSet::with_capacity_and_hasher(PROBE_ROWS, Default::default());
    values
        .chunks_exact(row_len)
        .take(PROBE_ROWS)
        .any(|row| !seen.insert(row))
}

/// Writes the rows that `references` name from `distinct` into `out`, checking every reference.
pub(crate) fn expand(
    references: &[u8],
    distinct: &[u8],
    row_len: usize,
    out: &mut [u8],
) -> Result<(), Error> {
    let distinct_rows = distinct.len() / row_len;
    for (row, reference) in out
        .chunks_exact_mut(row_len)
        .zip(references.chunks_exact(4))
    {
        let index = u32::from_le_bytes(reference.try_into().expect("4 bytes")) as usize;
        if index >= distinct_rows {
            return Err(Error::RowReference {
                index,
                rows: distinct_rows,
            });
        }
        row.copy_from_slice(&distinct[index * row_len..(index + 1) * row_len]);
    }
    Ok(())
}
