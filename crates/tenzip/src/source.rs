//! What the engine reads from: bytes that can let go of the parts already consumed.

use std::ops::Range;

/// The bytes of a file being compressed or restored. The engine reads them front to back, chunk by chunk,
/// and calls [`Source::release`] on each range as it is done with it, so that a memory-mapped file larger
/// than RAM does not stay resident: peak memory follows the chunks in flight, not the file.
pub trait Source: Sync {
    /// The whole file.
    fn bytes(&self) -> &[u8];

    /// `range` of [`Source::bytes`] will not be read again by this operation. The default keeps everything.
    fn release(&self, range: Range<usize>) {
        let _ = range;
    }
}

impl Source for [u8] {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl Source for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl<S: Source + ?Sized> Source for &S {
    fn bytes(&self) -> &[u8] {
        (**self).bytes()
    }

    fn release(&self, range: Range<usize>) {
        (**self).release(range);
    }
}
