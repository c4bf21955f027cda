//! `cargo xtask bounded-memory [--size GIB] [--dir DIR]`: peak memory and throughput of the CLI on a
//! checkpoint far larger than the chunks in flight (20 GiB by default), beside the in-memory path on 1 GiB.
//!
//! Writes a BF16 safetensors file of weight-like values (one tensor per GiB), compresses it with the CLI under
//! `/usr/bin/time`, deletes it, restores it (the restore checks every chunk's checksum),
//! and reports peak RSS and MB/s for both. Needs about 1.7x the size in free disk. Not part of CI.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use tenzip::{CompressOptions, Container, DecompressOptions, Plan};

const GIB: u64 = 1 << 30;
/// The repeating unit of the generated data. Order-0 coding sees no difference between repeats.
const BLOCK: usize = 64 << 20;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut size_gib = 20u64;
    let mut dir = crate::root().join("target/bounded-memory");
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--size" => size_gib = args.next().context("--size GIB")?.parse()?,
            "--dir" => dir = PathBuf::from(args.next().context("--dir DIR")?),
            other => bail!("unknown argument {other:?}"),
        }
    }
    std::fs::create_dir_all(&dir)?;
    let cli = crate::bench::build_cli()?;
    let block = weight_like_bf16(BLOCK);

    let in_memory = in_memory_speed(&block)?;
    // The same 1 GiB through the CLI, from the page cache: the cost of streaming itself, without disk.
    let cached = cli_round_trip(&cli, &dir, 1, &block)?;
    let big = cli_round_trip(&cli, &dir, size_gib, &block)?;

    let row = |name: &str, gib: u64, rss: f64, seconds: f64| {
        format!(
            "| {name} | {gib} GiB | {rss:.0} | {:.0} |\n",
            (gib * GIB) as f64 / 1e6 / seconds
        )
    };
    let report = [
        format!(
            "Measured by `cargo xtask bounded-memory --size {size_gib}` ({} threads); ratio {:.4}.\n\n",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            big.ratio
        ),
        "| run | size | peak RSS MiB | MB/s |\n|---|---|---|---|\n".to_owned(),
        row("CLI compress, file on disk", size_gib, big.compress.0, big.compress.1),
        row("CLI decompress, file on disk", size_gib, big.decompress.0, big.decompress.1),
        row("CLI compress, file in the page cache", 1, cached.compress.0, cached.compress.1),
        row("CLI decompress, file in the page cache", 1, cached.decompress.0, cached.decompress.1),
        format!("| in memory compress | 1 GiB | - | {:.0} |\n", in_memory.0),
        format!("| in memory decompress | 1 GiB | - | {:.0} |\n", in_memory.1),
    ]
    .concat();
    print!("{report}");
    let results = crate::root().join("bench-results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(results.join("bounded-memory.md"), report)?;
    Ok(())
}

/// Peak RSS (MiB) and seconds of the CLI's compress and decompress of one generated checkpoint.
struct CliRun {
    compress: (f64, f64),
    decompress: (f64, f64),
    ratio: f64,
}

/// Writes a checkpoint of `size_gib`, compresses it, deletes it, restores it, and cleans up.
fn cli_round_trip(cli: &Path, dir: &Path, size_gib: u64, block: &[u8]) -> anyhow::Result<CliRun> {
    let original = dir.join("big.safetensors");
    let packed = dir.join("big.safetensors.tzp");
    eprintln!(
        "bounded-memory: writing {size_gib} GiB to {}",
        original.display()
    );
    write_checkpoint(&original, size_gib, block)?;
    let compress = timed_rss(cli, &["compress", "-q", "-f", "-o"], &packed, &original)?;
    let ratio = std::fs::metadata(&packed)?.len() as f64 / (size_gib * GIB) as f64;
    std::fs::remove_file(&original)?;
    let decompress = timed_rss(cli, &["decompress", "-q", "-f", "-o"], &original, &packed)?;
    std::fs::remove_file(&original)?;
    std::fs::remove_file(&packed)?;
    Ok(CliRun {
        compress,
        decompress,
        ratio,
    })
}

/// BF16 values like trained weights: exponents clustered a little below 1.0, mantissas uniform.
fn weight_like_bf16(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len / 2)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Exponent 117..=124 with a roughly geometric spread, like |w| ~ 0.01.
            let exponent = 124 - (state >> 32).trailing_zeros().min(7) as u16;
            let bits = ((state >> 8) as u16 & 0x8000) | exponent << 7 | (state as u16 & 0x7f);
            bits.to_le_bytes()
        })
        .collect()
}

/// A safetensors file of `size_gib` BF16 tensors of one GiB each, `block` repeated as their data.
fn write_checkpoint(path: &Path, size_gib: u64, block: &[u8]) -> anyhow::Result<()> {
    let entries: Vec<String> = (0..size_gib)
        .map(|i| {
            format!(
                "\"w{i}\":{{\"dtype\":\"BF16\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                GIB / 2,
                i * GIB,
                (i + 1) * GIB
            )
        })
        .collect();
    let mut header = format!("{{{}}}", entries.join(",")).into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = BufWriter::with_capacity(8 << 20, std::fs::File::create(path)?);
    out.write_all(&(header.len() as u64).to_le_bytes())?;
    out.write_all(&header)?;
    for _ in 0..size_gib * GIB / block.len() as u64 {
        out.write_all(block)?;
    }
    out.into_inner()?.sync_all()?;
    Ok(())
}

/// Peak RSS in MiB and wall seconds of `cli args output input`.
fn timed_rss(cli: &Path, args: &[&str], output: &Path, input: &Path) -> anyhow::Result<(f64, f64)> {
    let result = Command::new("/usr/bin/time")
        .args(["-f", "%M %e"])
        .arg(cli)
        .args(args)
        .arg(output)
        .arg(input)
        .output()
        .context("running /usr/bin/time (install the `time` package)")?;
    let stderr = String::from_utf8_lossy(&result.stderr);
    if !result.status.success() {
        bail!("{} {args:?} failed: {stderr}", cli.display());
    }
    let last = stderr.lines().last().context("no timing output")?;
    let mut fields = last.split_whitespace();
    let kib: f64 = fields.next().context("no RSS")?.parse()?;
    let seconds: f64 = fields.next().context("no time")?.parse()?;
    Ok((kib / 1024.0, seconds))
}

/// MB/s of compress and decompress of a 1 GiB checkpoint held in memory, through the same engine.
fn in_memory_speed(block: &[u8]) -> anyhow::Result<(f64, f64)> {
    let header = format!(
        "{{\"w\":{{\"dtype\":\"BF16\",\"shape\":[{}],\"data_offsets\":[0,{GIB}]}}}}",
        GIB / 2
    );
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    for _ in 0..GIB as usize / block.len() {
        file.extend_from_slice(block);
    }
    let plan = Plan::new(&file, false)?;
    let started = Instant::now();
    let output = Vec::with_capacity(file.len());
    let packed = tenzip::compress(&file[..], &plan, &CompressOptions::default(), output)?.0;
    let compress_s = started.elapsed().as_secs_f64();
    let container = Container::open(&packed)?;
    // The same ordered, streaming restore the CLI runs, into a buffer touched beforehand so that page faults
    // are not counted: what differs from the CLI is the file system alone.
    let mut restored = vec![1u8; file.len()];
    let started = Instant::now();
    tenzip::decompress(
        &container,
        &DecompressOptions::default(),
        std::io::Cursor::new(&mut restored[..]),
    )?;
    let decompress_s = started.elapsed().as_secs_f64();
    if restored != file {
        bail!("in-memory round trip failed");
    }
    let mb = file.len() as f64 / 1e6;
    Ok((mb / compress_s, mb / decompress_s))
}
