use thiserror::Error;

/// Why a `.tzp` file cannot be read. Each rule of `FORMAT.md` has its own variant.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than preamble plus footer.
    #[error("file is {len} bytes, too short to be a .tzp container")]
    TooShort {
        /// The file's length.
        len: u64,
    },
    /// The first bytes are not [`MAGIC`](crate::MAGIC).
    #[error("not a .tzp file (wrong magic bytes)")]
    NotTzp,
    /// Written by a later version of tenzip.
    #[error("container version is {got}, this tenzip reads version {supported}")]
    UnsupportedVersion {
        /// The file's version.
        got: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The footer is missing: the file was cut short or its end overwritten.
    #[error("container footer is missing: the file is truncated or its end is damaged")]
    NoFooter,
    /// The manifest's position lies outside the file.
    #[error("manifest at offset {offset} with length {len} lies outside the payload area")]
    ManifestBounds {
        /// Declared offset.
        offset: u64,
        /// Declared length.
        len: u64,
    },
    /// The manifest's checksum does not match.
    #[error("manifest checksum mismatch: the manifest is damaged")]
    ManifestChecksum,
    /// The manifest does not inflate (or inflates past the size limit).
    #[error("manifest does not inflate: {0}")]
    ManifestDeflate(String),
    /// The manifest is not valid JSON of the expected shape.
    /// The JSON error is in the message, not reported as a source, which a printed chain of sources
    /// would repeat.
    #[error("manifest is not valid: {0}")]
    ManifestJson(serde_json::Error),
    /// The manifest's numbers contradict one another or the file.
    #[error("manifest is inconsistent: {0}")]
    Inconsistent(String),
}
