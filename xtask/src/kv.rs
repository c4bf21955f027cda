//! K/V caches: `cargo xtask kv-capture` records real ones, `cargo xtask bench --kv` measures tenzip on them.
//!
//! The capture runs SmolLM2-135M-Instruct (the corpus GGUF, dequantized by `transformers`, CPU) on a licence text
//! from Debian's common-licenses and dumps every layer's keys and values in BF16, F16 and FP8 E4M3
//! (`xtask/kv/capture.py`). It also cuts the small committed fixture `fixtures/kv/` from the capture.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use tenzip::kv::{KvDtype, KvPages};
use tenzip::{CompressOptions, Container, Plan};
use tenzip_codec::Layout;
use tenzip_safetensors::{serialize, Header, OwnedTensor, Padding, TensorData};

use crate::root;

/// Where captures go unless `--out` says otherwise: outside the repository, never committed.
fn default_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tenzip-kv")
}

const TEXT: &str = "/usr/share/common-licenses/GPL-3";
/// The layers and tokens cut into the committed fixture: a few hundred KB.
const FIXTURE_LAYERS: [usize; 2] = [0, 15];
const FIXTURE_TOKENS: u64 = 128;

pub fn capture(args: &[String]) -> anyhow::Result<()> {
    let mut out = default_dir();
    let mut tokens = 2048;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = PathBuf::from(args.next().context("--out DIR")?),
            "--tokens" => tokens = args.next().context("--tokens N")?.parse()?,
            other => bail!("unknown argument {other:?}"),
        }
    }
    let model = crate::corpus_dir().join("real/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() {
        bail!(
            "{} is missing: run ../shared/corpus/fetch.sh",
            model.display()
        );
    }
    let python = crate::python::venv(
        "bench-venv",
        &[
            "numpy",
            "torch",
            "transformers",
            "accelerate",
            "gguf",
            "safetensors",
        ],
    )?;
    let status = Command::new(python)
        .arg(root().join("xtask/kv/capture.py"))
        .arg(&model)
        .arg(TEXT)
        .arg(&out)
        .args(["--tokens", &tokens.to_string()])
        .status()?;
    if !status.success() {
        bail!("capture.py failed");
    }
    for name in ["bf16", "fp8-e4m3"] {
        let file = std::fs::read(out.join(format!("kv-{name}.safetensors")))?;
        let fixture = root().join(format!("fixtures/kv/kv-small.{name}.safetensors"));
        std::fs::create_dir_all(fixture.parent().expect("in fixtures/kv"))?;
        std::fs::write(&fixture, fixture_slice(&file)?)?;
        println!("wrote {}", fixture.display());
    }
    Ok(())
}

/// The first tokens of a few layers of a capture, with their FP8 scales, as a small safetensors file.
fn fixture_slice(file: &[u8]) -> anyhow::Result<Vec<u8>> {
    let header = Header::parse(file)?;
    let mut kept: Vec<OwnedTensor> = Vec::new();
    for layer in FIXTURE_LAYERS {
        for kind in ["key", "value", "key_scale", "value_scale"] {
            let name = format!("layers.{layer}.{kind}");
            let Some(tensor) = header.tensors.iter().find(|t| t.name == name) else {
                continue;
            };
            let bytes = &file[tensor.range.start as usize..tensor.range.end as usize];
            let (shape, bytes) = match tensor.shape.as_slice() {
                [tokens, rest @ ..] if *tokens > FIXTURE_TOKENS => {
                    let row = bytes.len() as u64 / tokens;
                    let mut shape = vec![FIXTURE_TOKENS];
                    shape.extend_from_slice(rest);
                    (shape, bytes[..(row * FIXTURE_TOKENS) as usize].to_vec())
                }
                _ => (tensor.shape.clone(), bytes.to_vec()),
            };
            kept.push(OwnedTensor {
                name,
                dtype: tensor.dtype,
                shape,
                bytes,
            });
        }
    }
    let tensors: Vec<TensorData> = kept.iter().map(OwnedTensor::as_data).collect();
    let metadata = BTreeMap::from([(
        "source".to_owned(),
        format!(
            "cargo xtask kv-capture: SmolLM2-135M-Instruct on GPL-3, layers {FIXTURE_LAYERS:?}, first {FIXTURE_TOKENS} tokens, [tokens, kv_heads, head_dim]"
        ),
    )]);
    Ok(serialize(&tensors, Some(&metadata), Padding::Align8))
}

/// One row of the K/V table.
struct KvRow {
    file: String,
    kind: &'static str,
    bytes: u64,
    flat_limit: f64,
    tenzip: f64,
    zstd3: f64,
    /// Per page size, per [`LEARNING`].
    page_ratio: [[f64; 3]; 2],
    page_decode_gbps: [[f64; 3]; 2],
}

/// Page sizes, in tokens, of the page-by-page measurement.
const PAGE_TOKENS: [usize; 2] = [16, 256];
/// Tokens of a sequence that its tables are first learned from: a prefill's worth.
const LEARN_TOKENS: usize = 256;
/// How often the "relearned" pages learn new tables, from the tokens since the last learning (keys drift
/// along a sequence: RoPE turns each channel pair at its own rate).
const RELEARN_TOKENS: usize = 512;
/// How the bench's pages get their tables, in the order of the report's columns.
const LEARNING: [Learning; 3] = [
    Learning::OwnTables,
    Learning::Once,
    Learning::Every(RELEARN_TOKENS),
];

/// Where a page's tables come from.
#[derive(Clone, Copy)]
enum Learning {
    /// Each page its own.
    OwnTables,
    /// Learned from the first [`LEARN_TOKENS`] tokens of the sequence.
    Once,
    /// Learned from the first [`LEARN_TOKENS`], then every so many tokens from those before.
    Every(usize),
}

pub fn bench(dir: Option<&Path>) -> anyhow::Result<()> {
    let dir = dir.map_or_else(default_dir, Path::to_owned);
    let mut rows = Vec::new();
    for (name, dtype) in [
        ("bf16", KvDtype::Bf16),
        ("f16", KvDtype::F16),
        ("fp8-e4m3", KvDtype::F8E4M3),
    ] {
        let path = dir.join(format!("kv-{name}.safetensors"));
        let file = std::fs::read(&path)
            .with_context(|| format!("{}: run `cargo xtask kv-capture` first", path.display()))?;
        let header = Header::parse(&file)?;
        let packed = {
            let plan = Plan::new(&file, false)?;
            tenzip::compress(&file[..], &plan, &CompressOptions::default(), Vec::new())?.0
        };
        let container = Container::open(&packed)?;
        for kind in ["key", "value"] {
            eprintln!("bench --kv: {name} {kind}");
            let tensors: Vec<_> = header
                .tensors
                .iter()
                .filter(|t| t.name.ends_with(&format!(".{kind}")))
                .collect();
            let data: Vec<u8> = tensors
                .iter()
                .flat_map(|t| {
                    file[t.range.start as usize..t.range.end as usize]
                        .iter()
                        .copied()
                })
                .collect();
            let bytes = data.len() as u64;
            let stored: u64 = container
                .manifest()
                .segments
                .iter()
                .filter(|s| {
                    s.name
                        .as_deref()
                        .is_some_and(|n| n.ends_with(&format!(".{kind}")))
                })
                .map(|s| s.stored_len())
                .sum();
            let flat = match dtype {
                KvDtype::Bf16 => Layout::Bf16,
                KvDtype::F16 => Layout::F16,
                KvDtype::F8E4M3 => Layout::F8E4M3,
            };
            let flat_limit: f64 = tensors
                .iter()
                .map(|t| flat_entropy(flat, &file[t.range.start as usize..t.range.end as usize]))
                .sum();
            let shape = &tensors[0].shape;
            let (kv_heads, head_dim) = (shape[1] as usize, shape[2] as usize);
            let mut page_ratio = [[0.0; 3]; 2];
            let mut page_decode_gbps = [[0.0; 3]; 2];
            for (slot, tokens) in PAGE_TOKENS.into_iter().enumerate() {
                for (tables, learn) in LEARNING.into_iter().enumerate() {
                    let shape = PageShape {
                        dtype,
                        kv_heads,
                        head_dim,
                        tokens,
                        learn,
                    };
                    let (ratio, gbps) = pages(shape, &tensors, &file);
                    page_ratio[slot][tables] = ratio;
                    page_decode_gbps[slot][tables] = gbps;
                }
            }
            rows.push(KvRow {
                file: format!("kv-{name}"),
                kind,
                bytes,
                flat_limit: flat_limit / bytes as f64,
                tenzip: stored as f64 / bytes as f64,
                zstd3: zstd3(&data)? as f64 / bytes as f64,
                page_ratio,
                page_decode_gbps,
            });
        }
    }
    let mut report = format!(
        "Measured by `cargo xtask bench --kv` on {} (one thread for pages). Ratio = compressed / original. \
         Pages: \"own\" codes each page with its own tables; \"seq\" with tables learned from the first {LEARN_TOKENS} \
         tokens of each layer's sequence; \"relearned\" learns again every {RELEARN_TOKENS} tokens from the tokens \
         before (as a server can: from pages already written); tables included.\n\n\
         | cache | tensors | bytes | flat order-0 limit | tenzip file | zstd -3 | 16-token pages own / seq / relearned | 256-token pages own / seq / relearned | decode GB/s 16 own / seq / relearned | decode GB/s 256 own / seq / relearned |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        dir.display()
    );
    let triple = |values: [f64; 3], digits: usize| -> String {
        values.map(|v| format!("{v:.digits$}")).join(" / ")
    };
    for row in &rows {
        report += &format!(
            "| {} | {} | {} | {:.4} | {:.4} | {:.4} | {} | {} | {} | {} |\n",
            row.file,
            row.kind,
            row.bytes,
            row.flat_limit,
            row.tenzip,
            row.zstd3,
            triple(row.page_ratio[0], 4),
            triple(row.page_ratio[1], 4),
            triple(row.page_decode_gbps[0], 2),
            triple(row.page_decode_gbps[1], 2),
        );
    }
    print!("{report}");
    let results = root().join("bench-results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(results.join("kv.md"), report)?;
    Ok(())
}

/// Order-0 entropy in bytes of `bytes` under the flat split of `layout` (one table per stream).
fn flat_entropy(layout: Layout, bytes: &[u8]) -> f64 {
    let split = layout
        .split(layout.split_count() - 1)
        .expect("the flat layouts' last split is their field split");
    let mut streams = vec![Vec::new(); split.stream_count()];
    split.split(bytes, &mut streams, &mut Vec::new());
    streams
        .iter()
        .map(|stream| {
            let histogram = tenzip_codec::entropy::histogram(stream);
            let total = stream.len() as f64;
            histogram
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| f64::from(c) * (total / f64::from(c)).log2())
                .sum::<f64>()
                / 8.0
        })
        .sum()
}

/// How [`pages`] cuts and codes a cache.
struct PageShape {
    dtype: KvDtype,
    kv_heads: usize,
    head_dim: usize,
    /// Tokens per page.
    tokens: usize,
    /// Where the pages' tables come from.
    learn: Learning,
}

/// Ratio and single-thread decode GB/s of every tensor (one layer's sequence) cut into pages, tables
/// included.
fn pages(shape: PageShape, tensors: &[&tenzip_types::TensorEntry], file: &[u8]) -> (f64, f64) {
    let element = match shape.dtype {
        KvDtype::F8E4M3 => 1,
        _ => 2,
    };
    let token_len = shape.kv_heads * shape.head_dim * element;
    let page_len = shape.tokens * token_len;
    let mut sequences = Vec::new();
    let (mut original, mut stored) = (0usize, 0usize);
    for tensor in tensors {
        let bytes = &file[tensor.range.start as usize..tensor.range.end as usize];
        let mut codec = KvPages::new(shape.dtype, shape.kv_heads, shape.head_dim);
        // Each page, after the tables learned just before it (if any).
        let mut coded: Vec<(Option<Vec<u8>>, Vec<u8>, usize)> = Vec::new();
        let mut learned_at = 0;
        for (index, page) in bytes.chunks(page_len).enumerate() {
            let at = index * page_len;
            let source = match shape.learn {
                Learning::OwnTables => None,
                Learning::Once | Learning::Every(_) if index == 0 => {
                    Some(&bytes[..(LEARN_TOKENS * token_len).min(bytes.len())])
                }
                Learning::Every(tokens) if at - learned_at >= tokens * token_len => {
                    Some(&bytes[learned_at..at])
                }
                Learning::Once | Learning::Every(_) => None,
            };
            let tables = source.map(|source| {
                if index > 0 {
                    learned_at = at;
                }
                codec.learn(source);
                let mut tables = Vec::new();
                codec.write_tables(&mut tables);
                stored += tables.len();
                tables
            });
            let mut payload = Vec::new();
            codec.compress(page, &mut payload);
            original += page.len();
            stored += payload.len();
            coded.push((tables, payload, page.len()));
        }
        sequences.push(coded);
    }
    let mut out = vec![0u8; page_len];
    let started = Instant::now();
    for coded in &sequences {
        let mut codec = KvPages::new(shape.dtype, shape.kv_heads, shape.head_dim);
        for (tables, payload, len) in coded {
            if let Some(tables) = tables {
                codec.read_tables(tables).expect("own tables read");
            }
            codec
                .decompress(payload, &mut out[..*len])
                .expect("own pages decode");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    (
        stored as f64 / original as f64,
        original as f64 / 1e9 / seconds,
    )
}

/// Bytes of `data` after `zstd -3`.
fn zstd3(data: &[u8]) -> anyhow::Result<usize> {
    let mut child = Command::new("zstd")
        .args(["-3", "-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running zstd (install the zstd package)")?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output()?;
    writer.join().expect("writer thread")?;
    if !output.status.success() {
        bail!("zstd failed");
    }
    Ok(output.stdout.len())
}
