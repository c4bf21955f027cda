//! `cargo xtask gen-fixtures [--check]`: the small files in `fixtures/`.
//!
//! Synthetic edge cases are generated from code here and are always checked. The real slice (a few tensors
//! of all-MiniLM-L6-v2, Apache-2.0) is cut from the corpus and checked only when the corpus is present.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use tenzip_safetensors::{serialize, Header, Padding, TensorData};
use tenzip_types::Dtype;

use crate::{corpus_dir, root};

/// Tensors of the real slice: small enough to keep `fixtures/` to a few MB, varied enough to matter.
const MINILM_SLICE: [&str; 6] = [
    "embeddings.LayerNorm.weight",
    "embeddings.position_ids",
    "encoder.layer.0.attention.self.query.bias",
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.0.attention.output.dense.weight",
    "encoder.layer.0.output.LayerNorm.weight",
];

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => bail!("usage: cargo xtask gen-fixtures [--check]"),
    };
    let dir = root().join("fixtures");
    let mut files = edge_case_files();
    let corpus_file = corpus_dir().join("real/all-MiniLM-L6-v2.fp32.safetensors");
    if corpus_file.exists() {
        files.extend(minilm_slices(&corpus_file)?);
    } else {
        eprintln!(
            "corpus absent ({}): the MiniLM slices are left as they are",
            corpus_file.display()
        );
    }
    let mut stale = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(&name);
        if check {
            if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
                stale.push(name);
            }
        } else {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {} ({} bytes)", path.display(), bytes.len());
        }
    }
    if !stale.is_empty() {
        bail!(
            "fixtures out of date: {}; run `cargo xtask gen-fixtures`",
            stale.join(", ")
        );
    }
    Ok(())
}

/// Float bit patterns that break naive codecs: signed zeros, infinities, NaNs with payloads, subnormals.
const F32_SPECIALS: [u32; 14] = [
    0x0000_0000,
    0x8000_0000,
    0x7f80_0000,
    0xff80_0000,
    0x7fc0_0000,
    0x7f80_0001,
    0xffc1_2345,
    0x0000_0001,
    0x807f_ffff,
    0x0080_0000,
    0x7f7f_ffff,
    0x3f80_0000,
    0xbf80_0000,
    0x7fff_ffff,
];
const F16_SPECIALS: [u16; 14] = [
    0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe34, 0x0001, 0x83ff, 0x0400, 0x7bff, 0x3c00,
    0xbc00, 0x7fff,
];
const BF16_SPECIALS: [u16; 14] = [
    0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffc1, 0x0001, 0x807f, 0x0080, 0x7f7f, 0x3f80,
    0xbf80, 0x7fff,
];

struct OwnedTensor {
    name: String,
    dtype: Dtype,
    shape: Vec<u64>,
    bytes: Vec<u8>,
}

impl OwnedTensor {
    fn new(name: &str, dtype: Dtype, shape: &[u64], bytes: Vec<u8>) -> Self {
        OwnedTensor {
            name: name.to_owned(),
            dtype,
            shape: shape.to_vec(),
            bytes,
        }
    }

    fn borrow(&self) -> TensorData<'_> {
        TensorData {
            name: &self.name,
            dtype: self.dtype,
            shape: &self.shape,
            bytes: &self.bytes,
        }
    }
}

/// Deterministic weight-like values: a sum of uniforms (roughly Gaussian) scaled like a weight matrix.
fn weights(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..count)
        .map(|_| ((0..4).map(|_| uniform()).sum::<f32>() - 2.0) * 0.05)
        .collect()
}

/// One tensor set per float dtype, plus integer and bool tensors.
fn edge_case_tensors() -> Vec<OwnedTensor> {
    let mut tensors = Vec::new();
    /// Little-endian bytes of a value in the tensor's dtype.
    type Encode = fn(f32) -> Vec<u8>;
    let floats: [(&str, Dtype, Vec<Vec<u8>>, Encode); 3] = [
        (
            "f32",
            Dtype::F32,
            F32_SPECIALS
                .iter()
                .map(|v| v.to_le_bytes().to_vec())
                .collect(),
            |v| v.to_le_bytes().to_vec(),
        ),
        (
            "f16",
            Dtype::F16,
            F16_SPECIALS
                .iter()
                .map(|v| v.to_le_bytes().to_vec())
                .collect(),
            |v| half::f16::from_f32(v).to_bits().to_le_bytes().to_vec(),
        ),
        (
            "bf16",
            Dtype::BF16,
            BF16_SPECIALS
                .iter()
                .map(|v| v.to_le_bytes().to_vec())
                .collect(),
            |v| half::bf16::from_f32(v).to_bits().to_le_bytes().to_vec(),
        ),
    ];
    for (prefix, dtype, specials, encode) in floats {
        let count = specials.len() as u64;
        tensors.push(OwnedTensor::new(
            &format!("{prefix}.specials"),
            dtype,
            &[count],
            specials.concat(),
        ));
        tensors.push(OwnedTensor::new(
            &format!("{prefix}.zeros"),
            dtype,
            &[10, 100],
            vec![0; 1000 * dtype.bits() as usize / 8],
        ));
        tensors.push(OwnedTensor::new(
            &format!("{prefix}.constant"),
            dtype,
            &[777],
            encode(0.5).repeat(777),
        ));
        tensors.push(OwnedTensor::new(
            &format!("{prefix}.empty"),
            dtype,
            &[0, 16],
            Vec::new(),
        ));
        tensors.push(OwnedTensor::new(
            &format!("{prefix}.scalar"),
            dtype,
            &[],
            encode(-3.25),
        ));
        let values: Vec<u8> = weights(5000, dtype.bits())
            .into_iter()
            .flat_map(encode)
            .collect();
        tensors.push(OwnedTensor::new(
            &format!("{prefix}.weights"),
            dtype,
            &[50, 100],
            values,
        ));
    }
    let positions: Vec<u8> = (0..512i64).flat_map(i64::to_le_bytes).collect();
    tensors.push(OwnedTensor::new(
        "i64.positions",
        Dtype::I64,
        &[1, 512],
        positions,
    ));
    tensors.push(OwnedTensor::new(
        "i32.negative",
        Dtype::I32,
        &[3],
        [-1i32, i32::MIN, 7]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    ));
    tensors.push(OwnedTensor::new(
        "u8.bytes",
        Dtype::U8,
        &[256],
        (0..=255).collect(),
    ));
    tensors.push(OwnedTensor::new(
        "bool.mask",
        Dtype::Bool,
        &[9],
        vec![1, 0, 0, 1, 1, 1, 0, 0, 1],
    ));
    tensors.push(OwnedTensor::new(
        "f64.values",
        Dtype::F64,
        &[2],
        [f64::NAN, -0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    ));
    tensors
}

fn edge_case_files() -> Vec<(String, Vec<u8>)> {
    let tensors = edge_case_tensors();
    let borrowed: Vec<TensorData> = tensors.iter().map(OwnedTensor::borrow).collect();
    let metadata = BTreeMap::from([
        ("format".to_owned(), "pt".to_owned()),
        ("note".to_owned(), "ünïcödé ✓ 模型 🚀 \"quoted\"".to_owned()),
    ]);
    vec![
        (
            "edge-cases.safetensors".into(),
            serialize(&borrowed, Some(&metadata), Padding::Align8),
        ),
        (
            "edge-cases-unpadded.safetensors".into(),
            serialize(&borrowed, Some(&metadata), Padding::Spaces(0)),
        ),
        (
            "edge-cases-pad13.safetensors".into(),
            serialize(&borrowed, None, Padding::Spaces(13)),
        ),
        (
            "empty.safetensors".into(),
            serialize(&[], None, Padding::Spaces(0)),
        ),
    ]
}

/// The MiniLM slice in F32 (as shipped), F16 and BF16 (round to nearest even, as `derive.py` does).
fn minilm_slices(corpus_file: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let file = std::fs::read(corpus_file)?;
    let header = Header::parse(&file).with_context(|| corpus_file.display().to_string())?;
    let picked: Vec<_> = MINILM_SLICE
        .iter()
        .map(|name| {
            header
                .tensors
                .iter()
                .find(|t| t.name == *name)
                .with_context(|| format!("{name} missing"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut files = Vec::new();
    for (suffix, dtype) in [
        ("f32", Dtype::F32),
        ("f16", Dtype::F16),
        ("bf16", Dtype::BF16),
    ] {
        let tensors: Vec<OwnedTensor> = picked
            .iter()
            .map(|entry| {
                let bytes = &file[entry.range.start as usize..entry.range.end as usize];
                if entry.dtype != Dtype::F32 {
                    return OwnedTensor::new(
                        &entry.name,
                        entry.dtype,
                        &entry.shape,
                        bytes.to_vec(),
                    );
                }
                let converted = bytes
                    .chunks_exact(4)
                    .flat_map(|b| {
                        let value = f32::from_le_bytes(b.try_into().expect("4 bytes"));
                        match dtype {
                            Dtype::F16 => {
                                half::f16::from_f32(value).to_bits().to_le_bytes().to_vec()
                            }
                            Dtype::BF16 => {
                                half::bf16::from_f32(value).to_bits().to_le_bytes().to_vec()
                            }
                            _ => b.to_vec(),
                        }
                    })
                    .collect();
                OwnedTensor::new(&entry.name, dtype, &entry.shape, converted)
            })
            .collect();
        let borrowed: Vec<TensorData> = tensors.iter().map(OwnedTensor::borrow).collect();
        let metadata = BTreeMap::from([("format".to_owned(), "pt".to_owned())]);
        files.push((
            format!("minilm-slice.{suffix}.safetensors"),
            serialize(&borrowed, Some(&metadata), Padding::Align8),
        ));
    }
    Ok(files)
}
