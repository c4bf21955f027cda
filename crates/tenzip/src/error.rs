use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// An error that names the file it concerns; its [`ErrorKind`] says what is wrong.
///
/// Its message is whole: it includes the kind's message, which includes the message of what caused it. So
/// neither reports a [`source`](std::error::Error::source): a caller that prints the chain of sources (as
/// anyhow's `{:#}` does) would print each message again. [`Error::kind`] gives the kind.
#[derive(Debug, Error)]
#[error("{}: {kind}", path.display())]
pub struct Error {
    path: PathBuf,
    kind: ErrorKind,
}

impl Error {
    pub(crate) fn new(path: &Path, kind: impl Into<ErrorKind>) -> Error {
        Error {
            path: path.to_owned(),
            kind: kind.into(),
        }
    }

    /// The file the error concerns.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

/// What went wrong, independent of which file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The input looks like safetensors but breaks a rule of the format.
    #[error("invalid safetensors file: {0} (pass --generic to store it as opaque bytes)")]
    Safetensors(tenzip_safetensors::Error),
    /// The input looks like GGUF but its header cannot be read.
    #[error("invalid GGUF file: {0} (pass --generic to store it as opaque bytes)")]
    Gguf(tenzip_gguf::Error),
    /// The input is in no format tenzip reads.
    #[error(
        "neither a safetensors nor a GGUF file (pass --generic to store any file as opaque bytes)"
    )]
    UnknownFormat,
    /// The input is a `.tzp` file already.
    #[error("already a .tzp file (decompress it, or pass --generic to store it as opaque bytes)")]
    AlreadyTzp,
    /// The `.tzp` file's framing or manifest is invalid.
    #[error("{0}")]
    Container(tenzip_container::Error),
    /// The manifest names a layout this version does not know.
    #[error(
        "segment {segment} uses layout {layout:?}, which this version of tenzip does not know"
    )]
    UnknownLayout {
        /// The segment's description.
        segment: String,
        /// The layout name.
        layout: String,
    },
    /// A chunk's payload does not decode.
    #[error("chunk {chunk} of {segment} is corrupt: {cause}")]
    Codec {
        /// The segment's description.
        segment: String,
        /// Index of the chunk within the segment.
        chunk: usize,
        /// The decoder's complaint.
        cause: tenzip_codec::Error,
    },
    /// Decoded bytes do not match their recorded checksum.
    #[error("checksum mismatch in {0}: the file is damaged")]
    Checksum(String),
    /// No tensor of that name is in the file.
    #[error("no tensor named {0:?}")]
    NoSuchTensor(String),
    /// The output exists and overwriting was not asked for.
    #[error("already exists (pass -f to overwrite)")]
    OutputExists,
}

/// `From` for the errors of the format and container crates, each kept in its variant's message rather than
/// reported as a source (see [`Error`]): thiserror's `#[from]` would make it one.
macro_rules! kind_from {
    ($($variant:ident($error:ty)),* $(,)?) => {$(
        impl From<$error> for ErrorKind {
            fn from(err: $error) -> ErrorKind {
                ErrorKind::$variant(err)
            }
        }
    )*};
}

kind_from!(
    Safetensors(tenzip_safetensors::Error),
    Gguf(tenzip_gguf::Error),
    Container(tenzip_container::Error),
);
