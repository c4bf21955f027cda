//! A progress bar on stderr for long operations: shown only on a terminal, never with `-q` or `--json`.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tenzip::Progress;

use crate::args::RunArgs;

/// Files smaller than this finish before a bar would be worth drawing.
const MIN_BYTES: u64 = 64 << 20;
const REDRAW: Duration = Duration::from_millis(100);

/// Runs `operation` with a fresh progress counter, drawing a bar for `input` while it runs.
pub fn show<T>(
    run: &RunArgs,
    input: &Path,
    total: u64,
    operation: impl FnOnce(Progress) -> T,
) -> T {
    let progress = Progress::new();
    if run.quiet || run.json || total < MIN_BYTES || !std::io::stderr().is_terminal() {
        return operation(progress);
    }
    let bar = ProgressBar::new(total)
        .with_message(input.display().to_string())
        .with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                bar.set_position(progress.bytes());
                std::thread::sleep(REDRAW);
            }
        });
        let result = operation(progress.clone());
        done.store(true, Ordering::Relaxed);
        result
    });
    bar.finish_and_clear();
    result
}
