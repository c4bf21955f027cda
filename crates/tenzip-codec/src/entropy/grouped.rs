//! Grouped blocks: a stream coded in groups by the symbol at the same position of an earlier *context*
//! stream, one block per context symbol: order-1 coding across two streams.
//!
//! The f16 scales of quantized blocks need it: their high byte (exponent and top mantissa bits) and low
//! byte are far from independent, because a tensor's scales take only a few hundred distinct values. Coding
//! the low byte given the high one takes the pair from `H(high) + H(low)` down to `H(high, low)`, three bits
//! a scale on real Q8_0 weights.
//!
//! Body: for each context symbol that occurs, in ascending order, one block coding the stream's symbols at
//! the positions of that context symbol, in stream order. Group lengths are not stored: the decoder counts
//! them in the context stream it already has.

use super::{histogram, Block, Preference};
use crate::Error;

/// Where each context symbol's group starts when a stream is regrouped by `context`.
fn group_starts(context: &[u8]) -> [usize; 256] {
    let counts = histogram(context);
    let mut starts = [0; 256];
    let mut next = 0;
    for (start, &count) in starts.iter_mut().zip(&counts) {
        *start = next;
        next += count as usize;
    }
    starts
}

/// Appends the grouped body coding `symbols` given `context` (the same length) to `out`.
pub(crate) fn encode(
    symbols: &[u8],
    context: &[u8],
    preference: Preference,
    out: &mut Vec<u8>,
    regroup: &mut Vec<u8>,
) {
    debug_assert_eq!(symbols.len(), context.len());
    let counts = histogram(context);
    let mut next = group_starts(context);
    regroup.clear();
    regroup.resize(symbols.len(), 0);
    for (&symbol, &context) in symbols.iter().zip(context) {
        let slot = &mut next[usize::from(context)];
        regroup[*slot] = symbol;
        *slot += 1;
    }
    let mut start = 0;
    for &count in counts.iter().filter(|&&count| count > 0) {
        let end = start + count as usize;
        super::encode_block(&regroup[start..end], preference, out);
        start = end;
    }
}

/// Decodes a grouped body into `out`, given the `context` stream it was grouped by.
pub(crate) fn decode(
    body: &[u8],
    context: &[u8],
    out: &mut [u8],
    regroup: &mut Vec<u8>,
) -> Result<(), Error> {
    if context.len() != out.len() {
        return Err(Error::RawLength {
            got: context.len(),
            expected: out.len(),
        });
    }
    let counts = histogram(context);
    regroup.clear();
    regroup.resize(out.len(), 0);
    let mut rest = body;
    let mut start = 0;
    for &count in counts.iter().filter(|&&count| count > 0) {
        let end = start + count as usize;
        let (block, used) = Block::parse(rest)?;
        block.decode_nested(&mut regroup[start..end])?;
        rest = &rest[used..];
        start = end;
    }
    if !rest.is_empty() {
        return Err(Error::TrailingBytes(rest.len()));
    }
    let mut next = group_starts(context);
    for (symbol, &context) in out.iter_mut().zip(context) {
        let slot = &mut next[usize::from(context)];
        *symbol = regroup[*slot];
        *slot += 1;
    }
    Ok(())
}
