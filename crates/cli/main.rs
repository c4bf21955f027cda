//! The `tenzip` command: a thin layer that turns flags into library calls and results into reports.
//! Exit codes: 0 success, 1 an operation failed, 2 bad usage.

mod args;
mod inputs;
mod plot;
mod progress;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use rayon::prelude::*;
use tenzip::{CompressOptions, DecompressOptions, Preference, Summary};

use args::{
    AnalyzeArgs, Cli, Command, CompressArgs, DecompressArgs, ExtractArgs, InspectArgs, RunArgs,
    VerifyArgs,
};
use inputs::{Input, Wanted};
use report::{Direction, FileReport, Reporter};

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// The conventional exit status after SIGINT (128 + 2).
const EXIT_INTERRUPTED: i32 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Interrupted mid-file: delete the temporary output, leave the input and every finished output alone.
    // If the handler cannot be installed, the temporary files are still never under a final name.
    let _ = ctrlc::set_handler(|| {
        tenzip::remove_partial_outputs();
        std::process::exit(EXIT_INTERRUPTED);
    });
    let result = match cli.command {
        Command::Compress(args) => compress(args),
        Command::Decompress(args) => decompress(args),
        Command::Verify(args) => verify(args),
        Command::Extract(args) => Ok(extract(args)),
        Command::Inspect(args) => inspect(args),
        Command::Analyze(args) => Ok(analyze(args)),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "tenzip", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tenzip: {err:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Files at least this long (original bytes) are coded one at a time with every thread; shorter ones run side
/// by side with one thread each, so that a model folder of shards and small files keeps every core busy. A
/// shorter file alone takes every thread too: it had one (whisper's 75 MB file restored at one thread's speed
/// whatever `-T` said). Two files that share out the threads would share one engine pool instead, which is
/// kept per thread count.
const SHARED_FILE_LEN: u64 = 64 << 20;

/// Runs `operation` on each input (given the threads it may use) and reports each, in input order; a
/// failure does not stop the others. The exit code is 1 if any failed.
fn run_each(
    command: &'static str,
    run: &RunArgs,
    inputs: &[Input],
    original_len: impl Fn(&Path) -> u64,
    operation: impl Fn(&Input, usize, &progress::Bars) -> anyhow::Result<FileReport> + Sync,
) -> ExitCode {
    let sizes: Vec<u64> = inputs
        .iter()
        .map(|input| original_len(&input.path))
        .collect();
    let bars = progress::Bars::new(run, &sizes);
    let threads = match run.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let (large, small): (Vec<usize>, Vec<usize>) =
        (0..inputs.len()).partition(|&index| threads == 1 || sizes[index] >= SHARED_FILE_LEN);
    let threads_each = if small.len() == 1 { threads } else { 1 };
    let mut results: Vec<Option<anyhow::Result<FileReport>>> =
        inputs.iter().map(|_| None).collect();
    for index in large {
        results[index] = Some(operation(&inputs[index], threads, &bars));
    }
    let side_by_side = || -> Vec<(usize, anyhow::Result<FileReport>)> {
        small
            .par_iter()
            .map(|&index| (index, operation(&inputs[index], threads_each, &bars)))
            .collect()
    };
    let small_results = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(side_by_side),
        Err(_) => side_by_side(),
    };
    for (index, result) in small_results {
        results[index] = Some(result);
    }
    drop(bars);
    let mut reporter = Reporter::new(command, run.quiet, run.json);
    for (input, result) in inputs.iter().zip(results) {
        match result.expect("every input ran") {
            Ok(report) => reporter.success(report),
            Err(err) => reporter.failure(&input.path, &err),
        }
    }
    if reporter.finish() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// The inputs of a command, folders expanded; says on stderr how many files in folders were left alone.
fn expand_inputs(paths: &[PathBuf], wanted: Wanted, run: &RunArgs) -> anyhow::Result<Vec<Input>> {
    let (inputs, skipped) = inputs::expand(paths, wanted, run.recursive)?;
    if skipped > 0 && !run.quiet && !run.json {
        let files = if skipped == 1 { "file" } else { "files" };
        eprintln!(
            "tenzip: left {skipped} other {files} in the folders as they are (--all to include them)"
        );
    }
    if inputs.is_empty() {
        bail!(
            "no files to work on in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(inputs)
}

/// `-o` names one output, so it makes sense with one input only.
fn check_single_output(output: &Option<PathBuf>, inputs: &[Input]) -> anyhow::Result<()> {
    if output.is_some() && inputs.len() > 1 {
        bail!(
            "-o/--output needs exactly one input file, got {}",
            inputs.len()
        );
    }
    Ok(())
}

fn compress(args: CompressArgs) -> anyhow::Result<ExitCode> {
    let inputs = expand_inputs(
        &args.files,
        Wanted::Originals { all: args.all },
        &args.write.run,
    )?;
    check_single_output(&args.output, &inputs)?;
    let options = CompressOptions {
        chunk_size: args.chunk_size,
        generic: args.generic,
        overwrite: args.write.force,
        preference: if args.fast {
            Preference::Speed
        } else {
            Preference::Size
        },
        ..CompressOptions::default()
    };
    Ok(run_each(
        "compress",
        &args.write.run,
        &inputs,
        |input| std::fs::metadata(input).map_or(0, |m| m.len()),
        |input, threads, bars| {
            let Input {
                path: input,
                generic,
            } = input;
            let input = input.as_path();
            let output = args
                .output
                .clone()
                .unwrap_or_else(|| with_extension_added(input, "tzp"));
            let total = std::fs::metadata(input).map_or(0, |m| m.len());
            let summary = bars.show(input, total, |progress| {
                let options = CompressOptions {
                    progress,
                    threads,
                    generic: options.generic || *generic,
                    ..options.clone()
                };
                tenzip::compress_file(input, &output, &options)
            })?;
            if args.write.remove_input {
                let verify = DecompressOptions {
                    threads,
                    ..DecompressOptions::default()
                };
                tenzip::verify_file(&output, &verify)
                    .context("not removing the input: the output did not verify")?;
                remove_input(input)?;
            }
            Ok(FileReport::new(
                input,
                &output,
                &summary,
                Direction::Compress,
            ))
        },
    ))
}

fn decompress(args: DecompressArgs) -> anyhow::Result<ExitCode> {
    let inputs = expand_inputs(&args.files, Wanted::Containers, &args.write.run)?;
    check_single_output(&args.output, &inputs)?;
    let options = DecompressOptions {
        overwrite: args.write.force,
        ..DecompressOptions::default()
    };
    Ok(run_each(
        "decompress",
        &args.write.run,
        &inputs,
        restored_len,
        |input, threads, bars| {
            let input = input.path.as_path();
            let output = match &args.output {
                Some(output) => output.clone(),
                None => without_tzp_extension(input)?,
            };
            // The restore is checked against every checksum before it gets its name, so --rm needs no re-read.
            let total = restored_len(input);
            let summary = bars.show(input, total, |progress| {
                let options = DecompressOptions {
                    progress,
                    threads,
                    ..options.clone()
                };
                tenzip::decompress_file(input, &output, &options)
            })?;
            if args.write.remove_input {
                remove_input(input)?;
            }
            Ok(FileReport::new(
                input,
                &output,
                &summary,
                Direction::Restore,
            ))
        },
    ))
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let inputs = expand_inputs(&args.files, Wanted::Containers, &args.run)?;
    Ok(run_each(
        "verify",
        &args.run,
        &inputs,
        restored_len,
        |input, threads, bars| {
            let input = input.path.as_path();
            let summary: Summary = bars.show(input, restored_len(input), |progress| {
                let options = DecompressOptions {
                    progress,
                    threads,
                    ..DecompressOptions::default()
                };
                tenzip::verify_file(input, &options)
            })?;
            Ok(FileReport::new(input, input, &summary, Direction::Restore))
        },
    ))
}

fn extract(args: ExtractArgs) -> ExitCode {
    let written = || -> anyhow::Result<()> {
        let archive = tenzip::Archive::open(&args.file)?;
        if let Some(out) = &args.safetensors {
            let names: Vec<&str> = args.names.iter().map(String::as_str).collect();
            archive.write_safetensors(&names, out, args.force)?;
            return Ok(());
        }
        let dir = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for name in &args.names {
            // Tensor names often contain '/', which must not reach the file system as a path.
            let file_name = name.replace(['/', '\\'], "_");
            if file_name.is_empty() || file_name == "." || file_name == ".." {
                bail!("tensor name {name:?} cannot be used as a file name");
            }
            archive.write_tensor(name, &dir.join(file_name), args.force)?;
        }
        Ok(())
    };
    match written() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tenzip: {err:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for input in &args.files {
        match tenzip::inspect_file(input) {
            Ok(inspection) => report::print_inspection(input, &inspection, args.json),
            Err(err) => {
                eprintln!("tenzip: {err:#}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn analyze(args: AnalyzeArgs) -> ExitCode {
    let options = CompressOptions {
        threads: args.threads,
        ..CompressOptions::default()
    };
    let mut failed = false;
    for input in &args.files {
        let analysed = || -> anyhow::Result<()> {
            let analysis = tenzip::analyze_file(input, &options)?;
            let pictures = match &args.plot {
                Some(dir) => plot::write_all(&analysis, input, dir)?,
                None => Vec::new(),
            };
            report::print_analysis(input, &analysis, &pictures, args.json);
            Ok(())
        };
        if let Err(err) = analysed() {
            eprintln!("tenzip: {err:#}");
            failed = true;
        }
    }
    if failed {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// The size a `.tzp` file restores to, for the progress bar (0 if its manifest cannot be read: the
/// operation itself then reports why).
fn restored_len(input: &Path) -> u64 {
    tenzip::Archive::open(input).map_or(0, |archive| archive.manifest().source.len)
}

/// Deletes an input whose output has been written and verified (`--rm`).
fn remove_input(input: &Path) -> anyhow::Result<()> {
    std::fs::remove_file(input).with_context(|| format!("cannot remove {}", input.display()))
}

/// `model.safetensors` -> `model.safetensors.tzp`.
fn with_extension_added(path: &Path, extension: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

/// `model.safetensors.tzp` -> `model.safetensors`.
fn without_tzp_extension(path: &Path) -> anyhow::Result<PathBuf> {
    match path.extension() {
        Some(extension) if extension == "tzp" => Ok(path.with_extension("")),
        _ => bail!(
            "{}: does not end in .tzp; name the output with -o",
            path.display()
        ),
    }
}
