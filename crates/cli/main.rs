//! The `tenzip` command: a thin layer that turns flags into library calls and results into reports.
//! Exit codes: 0 success, 1 an operation failed, 2 bad usage.

mod args;
mod progress;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use tenzip::{CompressOptions, DecompressOptions, Summary};

use args::{
    Cli, Command, CompressArgs, DecompressArgs, ExtractArgs, InspectArgs, RunArgs, VerifyArgs,
};
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
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tenzip: {err:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Runs `operation` on each input, reporting each; the exit code is 1 if any failed.
fn run_each(
    command: &'static str,
    run: &RunArgs,
    inputs: &[PathBuf],
    mut operation: impl FnMut(&Path) -> anyhow::Result<FileReport>,
) -> ExitCode {
    let mut reporter = Reporter::new(command, run.quiet, run.json);
    for input in inputs {
        match operation(input) {
            Ok(report) => reporter.success(report),
            Err(err) => reporter.failure(input, &err),
        }
    }
    if reporter.finish() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// `-o` names one output, so it makes sense with one input only.
fn check_single_output(output: &Option<PathBuf>, inputs: &[PathBuf]) -> anyhow::Result<()> {
    if output.is_some() && inputs.len() > 1 {
        bail!(
            "-o/--output needs exactly one input file, got {}",
            inputs.len()
        );
    }
    Ok(())
}

fn compress(args: CompressArgs) -> anyhow::Result<ExitCode> {
    check_single_output(&args.output, &args.files)?;
    let options = CompressOptions {
        chunk_size: args.chunk_size,
        threads: args.write.run.threads,
        generic: args.generic,
        overwrite: args.write.force,
        ..CompressOptions::default()
    };
    Ok(run_each(
        "compress",
        &args.write.run,
        &args.files,
        |input| {
            let output = args
                .output
                .clone()
                .unwrap_or_else(|| with_extension_added(input, "tzp"));
            let total = std::fs::metadata(input).map_or(0, |m| m.len());
            let summary = progress::show(&args.write.run, input, total, |progress| {
                let options = CompressOptions {
                    progress,
                    ..options.clone()
                };
                tenzip::compress_file(input, &output, &options)
            })?;
            if args.write.remove_input {
                let verify = DecompressOptions {
                    threads: args.write.run.threads,
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
    check_single_output(&args.output, &args.files)?;
    let options = DecompressOptions {
        threads: args.write.run.threads,
        overwrite: args.write.force,
        ..DecompressOptions::default()
    };
    Ok(run_each(
        "decompress",
        &args.write.run,
        &args.files,
        |input| {
            let output = match &args.output {
                Some(output) => output.clone(),
                None => without_tzp_extension(input)?,
            };
            // The restore is checked against every checksum before it gets its name, so --rm needs no re-read.
            let total = restored_len(input);
            let summary = progress::show(&args.write.run, input, total, |progress| {
                let options = DecompressOptions {
                    progress,
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
    let options = DecompressOptions {
        threads: args.run.threads,
        ..DecompressOptions::default()
    };
    Ok(run_each("verify", &args.run, &args.files, |input| {
        let summary: Summary = progress::show(&args.run, input, restored_len(input), |progress| {
            let options = DecompressOptions {
                progress,
                ..options.clone()
            };
            tenzip::verify_file(input, &options)
        })?;
        Ok(FileReport::new(input, input, &summary, Direction::Restore))
    }))
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
