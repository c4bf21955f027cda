//! `cargo xtask bench [--runs N] [--zstd19] [--no-zipnn] [--quick] [--fast] [FILES...]`: tenzip beside zstd
//! and ZipNN. `--fast` measures `tenzip compress --fast` and writes `bench-fast.md` / `.json` instead.
//!
//! For each file (default: every safetensors and GGUF file of the corpus that `../shared/corpus/fetch.sh` makes), in
//! one run: tenzip's ratio and compress / decompress MB/s at one thread and at all threads (in-process,
//! memory to memory, medians of N runs), its peak RSS (the CLI under `/usr/bin/time`), zstd -3 and ZipNN
//! (per tensor, one thread and all threads) from a Python venv the harness makes, and the per-tensor
//! order-0 limit from `../shared/corpus/measure.py`. MB/s count original bytes. Writes
//! `bench-results/bench.md` and `bench.json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::Value;
use tenzip::{CompressOptions, Container, DecompressOptions, Plan, Preference};

use crate::{corpus_dir, root};

struct Args {
    runs: usize,
    /// tenzip alone: no references, no limit, no RSS (for quick iteration).
    quick: bool,
    zstd19: bool,
    zipnn: bool,
    /// tenzip favours restore speed (`compress --fast`).
    fast: bool,
    files: Vec<PathBuf>,
}

fn parse_args(args: &[String]) -> anyhow::Result<Args> {
    let mut parsed = Args {
        runs: 5,
        quick: false,
        zstd19: false,
        zipnn: true,
        fast: false,
        files: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => parsed.runs = args.next().context("--runs needs a number")?.parse()?,
            "--zstd19" => parsed.zstd19 = true,
            "--quick" => parsed.quick = true,
            "--no-zipnn" => parsed.zipnn = false,
            "--fast" => parsed.fast = true,
            flag if flag.starts_with('-') => bail!("unknown flag {flag}"),
            file => parsed.files.push(PathBuf::from(file)),
        }
    }
    if parsed.files.is_empty() {
        for sub in ["real", "derived"] {
            let Ok(entries) = std::fs::read_dir(corpus_dir().join(sub)) else {
                continue;
            };
            parsed
                .files
                .extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
        }
        parsed.files.retain(|p| {
            p.extension()
                .is_some_and(|e| e == "safetensors" || e == "gguf")
        });
        parsed.files.sort();
        if parsed.files.is_empty() {
            bail!(
                "no files given and no corpus at {}: run ../shared/corpus/fetch.sh",
                corpus_dir().display()
            );
        }
    }
    Ok(parsed)
}

#[derive(Serialize)]
struct Speed {
    compress_mbps: f64,
    decompress_mbps: f64,
}

#[derive(Serialize)]
struct FileResult {
    file: String,
    bytes: u64,
    tenzip_ratio: f64,
    tenzip_1_thread: Speed,
    tenzip_all_threads: Speed,
    tenzip_peak_rss_mib: Option<(f64, f64)>,
    order0_limit_per_tensor: Option<f64>,
    reference: Value,
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    if let [flag, rest @ ..] = args {
        if flag == "--kv" {
            return crate::kv::bench(rest.first().map(Path::new));
        }
    }
    let args = parse_args(args)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if args.quick {
        eprintln!("bench --quick: tenzip only");
    }
    let python = if args.quick {
        PathBuf::new()
    } else {
        reference_python(args.zipnn)?
    };
    let binary = if args.quick {
        PathBuf::new()
    } else {
        build_cli()?
    };
    let mut results = Vec::new();
    for file in &args.files {
        eprintln!("bench: {}", file.display());
        let bytes = std::fs::read(file).with_context(|| file.display().to_string())?;
        let preference = if args.fast {
            Preference::Speed
        } else {
            Preference::Size
        };
        let (ratio, one) = time_tenzip(&bytes, 1, preference, args.runs)?;
        let (_, all) = time_tenzip(&bytes, threads, preference, args.runs)?;
        if args.quick {
            println!(
                "{}: {ratio:.4}  1T {:.0} / {:.0} MB/s  {threads}T {:.0} / {:.0} MB/s",
                file.display(),
                one.compress_mbps,
                one.decompress_mbps,
                all.compress_mbps,
                all.decompress_mbps
            );
            continue;
        }
        let mut reference_cmd = Command::new(&python);
        reference_cmd
            .arg(root().join("xtask/bench/reference.py"))
            .arg(file)
            .args([
                "--runs",
                &args.runs.to_string(),
                "--threads",
                &format!("1,{threads}"),
            ]);
        if args.zstd19 {
            reference_cmd.arg("--zstd19");
        }
        if !args.zipnn {
            reference_cmd.arg("--no-zipnn");
        }
        let reference = json_output(&mut reference_cmd)?;
        results.push(FileResult {
            file: file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            bytes: bytes.len() as u64,
            tenzip_ratio: ratio,
            tenzip_1_thread: one,
            tenzip_all_threads: all,
            tenzip_peak_rss_mib: peak_rss(&binary, file, args.fast),
            order0_limit_per_tensor: order0_limit(&python, file),
            reference,
        });
    }
    if args.quick {
        return Ok(());
    }
    let markdown = markdown(&results, threads, &args);
    println!("{markdown}");
    let out_dir = root().join("bench-results");
    std::fs::create_dir_all(&out_dir)?;
    let name = if args.fast { "bench-fast" } else { "bench" };
    std::fs::write(out_dir.join(format!("{name}.md")), &markdown)?;
    std::fs::write(
        out_dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&results)?,
    )?;
    eprintln!("wrote {}", out_dir.join(format!("{name}.md")).display());
    Ok(())
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Ratio, and median compress / decompress MB/s of the library, memory to memory (the output buffer is
/// allocated once, outside the timing, as a file system's page cache would be).
fn time_tenzip(
    file: &[u8],
    threads: usize,
    preference: Preference,
    runs: usize,
) -> anyhow::Result<(f64, Speed)> {
    let options = CompressOptions {
        threads,
        preference,
        ..CompressOptions::default()
    };
    let plan = Plan::new(file, false)?;
    let mut packed = Vec::with_capacity(file.len() + (1 << 20));
    let mut compress_s = Vec::new();
    for _ in 0..runs {
        packed.clear();
        let started = Instant::now();
        packed = tenzip::compress(file, &plan, &options, packed)?.0;
        compress_s.push(started.elapsed().as_secs_f64());
    }
    let container = Container::open(&packed)?;
    let decompress_options = DecompressOptions {
        threads,
        ..DecompressOptions::default()
    };
    // The in-place restore: every chunk decoded in parallel straight into the output buffer.
    let mut restored = vec![0; file.len()];
    let mut decompress_s = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        tenzip::decompress_into(&container, &decompress_options, &mut restored)?;
        decompress_s.push(started.elapsed().as_secs_f64());
    }
    if restored != file {
        bail!("tenzip round trip failed");
    }
    let mb = file.len() as f64 / 1e6;
    let speed = Speed {
        compress_mbps: mb / median(compress_s),
        decompress_mbps: mb / median(decompress_s),
    };
    Ok((packed.len() as f64 / file.len() as f64, speed))
}

pub(crate) fn build_cli() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["build", "--release", "-q", "--bin", "tenzip"])
        .status()?;
    if !status.success() {
        bail!("building tenzip failed");
    }
    Ok(root().join("target/release/tenzip"))
}

/// Peak RSS in MiB of the CLI compressing and then decompressing `file` (to a temporary folder).
fn peak_rss(binary: &Path, file: &Path, fast: bool) -> Option<(f64, f64)> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("tenzip-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let packed = dir.join("bench.tzp");
    let restored = dir.join("bench.out");
    let rss = |args: &[&std::ffi::OsStr]| -> Option<f64> {
        let output = Command::new(time)
            .arg("-f")
            .arg("%M")
            .arg(binary)
            .args(args)
            .output()
            .ok()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let kib: f64 = stderr.lines().last()?.trim().parse().ok()?;
        Some(kib / 1024.0)
    };
    let mut compress_args: Vec<&std::ffi::OsStr> = vec![
        "compress".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "-o".as_ref(),
        packed.as_os_str(),
        file.as_os_str(),
    ];
    if fast {
        compress_args.push("--fast".as_ref());
    }
    let compress = rss(&compress_args);
    let decompress = rss(&[
        "decompress".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "-o".as_ref(),
        restored.as_os_str(),
        packed.as_os_str(),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    Some((compress?, decompress?))
}

/// `measure.py`'s per-tensor order-0 limit of the exponent | sign+mantissa split, when the corpus tools exist.
fn order0_limit(python: &Path, file: &Path) -> Option<f64> {
    let measure = root().join("../shared/corpus/measure.py");
    if !measure.exists() {
        return None;
    }
    let json = std::env::temp_dir().join(format!("tenzip-measure-{}.json", std::process::id()));
    let status = Command::new(python)
        .arg(&measure)
        .arg(file)
        .args(["--no-zstd", "--no-zipnn", "--no-stream", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    let report: Value = serde_json::from_slice(&std::fs::read(&json).ok()?).ok()?;
    let _ = std::fs::remove_file(&json);
    status
        .success()
        .then(|| report[0]["entropy"]["limit_frac_per_tensor"].as_f64())
        .flatten()
}

fn json_output(command: &mut Command) -> anyhow::Result<Value> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The Python that runs the references: `TENZIP_BENCH_PYTHON`, or a venv in `target/bench-venv` that the
/// harness creates and fills from PyPI (ZipNN pulls in torch: the first run takes a while).
fn reference_python(zipnn: bool) -> anyhow::Result<PathBuf> {
    if let Some(python) = std::env::var_os("TENZIP_BENCH_PYTHON").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(python));
    }
    // ml-dtypes for ../shared/corpus/measure.py (the order-0 limits).
    let mut packages = vec!["numpy", "zstandard", "ml-dtypes"];
    if zipnn {
        packages.extend(["zipnn==0.5.4", "torch"]);
    }
    crate::python::venv("bench-venv", &packages)
}

fn markdown(results: &[FileResult], threads: usize, args: &Args) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let runs = args.runs;
    // The flags that shape the table, as they were given.
    let flags: String = [
        (args.zstd19, " --zstd19"),
        (!args.zipnn, " --no-zipnn"),
        (args.fast, " --fast"),
    ]
    .iter()
    .filter(|(given, _)| *given)
    .map(|(_, flag)| *flag)
    .collect();
    let mut out = format!(
        "Measured by `cargo xtask bench --runs {runs}{flags}` on {cpu}, {threads} threads, {rustc}. Ratio = compressed / original; \
         MB/s of original bytes, medians of {runs} runs, memory to memory; \"1T\" one thread, \"{threads}T\" all threads.\n\n"
    );
    out += &format!(
        "| file | tenzip | order-0 limit | ZipNN | zstd -3 | zstd -19 | tenzip 1T comp / decomp MB/s | ZipNN 1T | zstd -3 1T | tenzip {threads}T | ZipNN {threads}T | tenzip peak RSS MiB (comp / decomp) |\n"
    );
    out += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    let num = |value: &Value| {
        value
            .as_f64()
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"))
    };
    let speed = |value: &Value| match (
        value["compress_MBps"].as_f64(),
        value["decompress_MBps"].as_f64(),
    ) {
        (Some(c), Some(d)) => format!("{c:.0} / {d:.0}"),
        _ => "-".to_owned(),
    };
    for r in results {
        let zipnn = &r.reference["zipnn"];
        out += &format!(
            "| {} | {:.4} | {} | {} | {} | {} | {:.0} / {:.0} | {} | {} | {:.0} / {:.0} | {} | {} |\n",
            r.file,
            r.tenzip_ratio,
            r.order0_limit_per_tensor
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.4}")),
            num(&zipnn["1"]["ratio"]),
            num(&r.reference["zstd3"]["ratio"]),
            num(&r.reference["zstd19"]["ratio"]),
            r.tenzip_1_thread.compress_mbps,
            r.tenzip_1_thread.decompress_mbps,
            speed(&zipnn["1"]),
            speed(&r.reference["zstd3"]),
            r.tenzip_all_threads.compress_mbps,
            r.tenzip_all_threads.decompress_mbps,
            speed(&zipnn[threads.to_string().as_str()]),
            r.tenzip_peak_rss_mib
                .map_or_else(|| "-".to_owned(), |(c, d)| format!("{c:.0} / {d:.0}")),
        );
    }
    out
}
