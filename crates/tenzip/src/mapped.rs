//! Read-only memory maps of input files: the one place with `unsafe` in this crate.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;

/// A read-only view of a whole file.
pub(crate) enum Input {
    Mapped(memmap2::Mmap),
    /// Zero-length files cannot be mapped.
    Empty,
}

impl Input {
    pub(crate) fn open(path: &Path) -> io::Result<Input> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(Input::Empty);
        }
        // SAFETY: the map is read-only and private to this process. Another process truncating or
        // rewriting the file while it is mapped could change the bytes under us (or raise SIGBUS); that
        // is the accepted risk of every mmap-based tool (ripgrep, zstd --mmap). It cannot produce a wrong
        // restore: compression checksums each chunk as it codes it, and restores check those checksums
        // and the whole-file hash before an output gets its final name.
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        // Read front to back: ask for generous read-ahead. Only a hint; failure changes nothing.
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(Input::Mapped(map))
    }
}

impl crate::Source for Input {
    fn bytes(&self) -> &[u8] {
        self
    }

    /// Drops the pages of `range` from this process's memory, so that reading a file larger than RAM front
    /// to back keeps only the chunks in flight resident. The pages stay in the page cache; a later read
    /// faults them back in.
    fn release(&self, range: std::ops::Range<usize>) {
        let Input::Mapped(map) = self else {
            return;
        };
        if range.is_empty() || range.end > map.len() {
            return;
        }
        // SAFETY:
        // 1. The range lies within the map (checked above); memmap2 widens its start down to a page boundary,
        //    which stays within the map.
        // 2. The map is a read-only mapping of a file. MADV_DONTNEED on it only unmaps pages: the next access
        //    maps the same file bytes again, so every `&[u8]` into the map (including into the released
        //    range or the part of a page shared with the next chunk) keeps reading the same contents. No
        //    private or anonymous memory is discarded.
        // 3. Concurrent changes to the file by another process are the risk accepted in `Input::open`, and
        //    are caught by the checksums in the same way.
        // Failure only means the pages stay resident.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len())
        };
    }
}

impl AsRef<[u8]> for Input {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Deref for Input {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Input::Mapped(map) => map,
            Input::Empty => &[],
        }
    }
}
