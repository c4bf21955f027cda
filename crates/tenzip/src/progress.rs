//! Progress of long operations, for whoever wants to show it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A count of original bytes processed so far, shared between an operation (which advances it as chunks
/// are written out) and a display that polls it. The library draws nothing itself.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// A new counter at zero.
    pub fn new() -> Progress {
        Progress::default()
    }

    /// Original bytes processed so far.
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn advance(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Two handles are equal when they share one counter.
impl PartialEq for Progress {
    fn eq(&self, other: &Progress) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Progress {}
