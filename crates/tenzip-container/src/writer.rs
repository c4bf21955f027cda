use std::io::{self, Write};

use crate::{Checksum, Manifest, END_MAGIC, FORMAT_VERSION, MAGIC, PREAMBLE_LEN};

/// Writes a `.tzp` container front to back: preamble, payloads as they come, then manifest and footer.
#[derive(Debug)]
pub struct Writer<W: Write> {
    inner: W,
    position: u64,
}

impl<W: Write> Writer<W> {
    /// Starts a container by writing its preamble.
    pub fn new(mut inner: W) -> io::Result<Writer<W>> {
        inner.write_all(&MAGIC)?;
        inner.write_all(&FORMAT_VERSION.to_le_bytes())?;
        inner.write_all(&0u32.to_le_bytes())?; // Reserved flags; readers require zero.
        Ok(Writer {
            inner,
            position: PREAMBLE_LEN,
        })
    }

    /// Appends one chunk payload; returns its offset, to record in the manifest.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<u64> {
        let offset = self.position;
        self.inner.write_all(payload)?;
        self.position += payload.len() as u64;
        Ok(offset)
    }

    /// Writes the manifest and the footer; returns the inner writer (not flushed to disk: that is the
    /// caller's job).
    pub fn finish(self, manifest: &Manifest) -> io::Result<W> {
        let json = serde_json::to_vec(manifest).map_err(io::Error::other)?;
        // Chunk tables repeat the same keys thousands of times: DEFLATE shrinks the manifest about sixfold.
        self.finish_with_manifest_bytes(&miniz_oxide::deflate::compress_to_vec(&json, 9))
    }

    /// Writes `manifest` (already deflated) and the footer that frames it. Tests use it directly to frame
    /// malformed manifests correctly.
    pub(crate) fn finish_with_manifest_bytes(mut self, manifest: &[u8]) -> io::Result<W> {
        self.inner.write_all(manifest)?;
        self.inner.write_all(&self.position.to_le_bytes())?;
        self.inner
            .write_all(&(manifest.len() as u64).to_le_bytes())?;
        self.inner
            .write_all(&Checksum::of(manifest).0.to_le_bytes())?;
        self.inner.write_all(&END_MAGIC)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}
