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
        unsafe { memmap2::Mmap::map(&file) }.map(Input::Mapped)
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
