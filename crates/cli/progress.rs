//! Progress bars on stderr for long operations: one per large file and, for several files, one for all of
//! them. Shown only on a terminal, never with `-q` or `--json`.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tenzip::Progress;

use crate::args::RunArgs;

/// Files smaller than this finish before a bar would be worth drawing.
const MIN_BYTES: u64 = 64 << 20;
const REDRAW: Duration = Duration::from_millis(100);
const TEMPLATE: &str = "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}";

/// The bars of one command run over all its files.
pub struct Bars {
    /// `None` when nothing is drawn.
    multi: Option<MultiProgress>,
    /// The bar over all files, for runs of several files.
    total: Option<ProgressBar>,
    /// Original bytes of the files finished so far.
    finished: AtomicU64,
}

impl Bars {
    /// Bars for a run over files of `sizes` original bytes each.
    pub fn new(run: &RunArgs, sizes: &[u64]) -> Bars {
        let sum: u64 = sizes.iter().sum();
        let drawn = !run.quiet && !run.json && sum >= MIN_BYTES && std::io::stderr().is_terminal();
        let multi = drawn.then(MultiProgress::new);
        let total = multi
            .as_ref()
            .filter(|_| sizes.len() > 1)
            .map(|multi| multi.add(bar(sum, format!("{} files", sizes.len()))));
        Bars {
            multi,
            total,
            finished: AtomicU64::new(0),
        }
    }

    /// Runs `operation` on `input` (`size` original bytes) with a fresh progress counter, drawing its bar if
    /// it is large, and advancing the total.
    pub fn show<T>(&self, input: &Path, size: u64, operation: impl FnOnce(Progress) -> T) -> T {
        let progress = Progress::new();
        let Some(multi) = self.multi.as_ref().filter(|_| size >= MIN_BYTES) else {
            let result = operation(progress);
            self.file_done(size);
            return result;
        };
        let file_bar = multi.add(bar(size, input.display().to_string()));
        let done = AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    file_bar.set_position(progress.bytes());
                    if let Some(total) = &self.total {
                        total
                            .set_position(self.finished.load(Ordering::Relaxed) + progress.bytes());
                    }
                    std::thread::sleep(REDRAW);
                }
            });
            let result = operation(progress.clone());
            done.store(true, Ordering::Relaxed);
            result
        });
        file_bar.finish_and_clear();
        multi.remove(&file_bar);
        self.file_done(size);
        result
    }

    fn file_done(&self, size: u64) {
        let finished = self.finished.fetch_add(size, Ordering::Relaxed) + size;
        if let Some(total) = &self.total {
            total.set_position(finished);
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Some(total) = &self.total {
            total.finish_and_clear();
        }
    }
}

fn bar(len: u64, message: String) -> ProgressBar {
    ProgressBar::new(len).with_message(message).with_style(
        ProgressStyle::with_template(TEMPLATE)
            .expect("a valid template")
            .progress_chars("=> "),
    )
}
