//! Command-line flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Lossless compression for neural-network checkpoints.
///
/// tenzip splits every tensor value into its fields (sign, exponent, mantissa), entropy-codes each stream
/// on its own, and restores the original file byte for byte.
#[derive(Debug, Parser)]
#[command(name = "tenzip", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "\
Examples:
  tenzip compress model.safetensors          writes model.safetensors.tzp, keeps the input
  tenzip decompress model.safetensors.tzp    restores model.safetensors, byte for byte
  tenzip verify model.safetensors.tzp        decodes everything and checks every checksum
  tenzip inspect model.safetensors.tzp       per-tensor sizes, ratios and layouts
  tenzip compress -T 4 --json *.safetensors  four threads, a JSON summary on stdout
  tenzip compress -r ~/models/llama           every safetensors and GGUF file in the folder tree
  tenzip decompress -r ~/models/llama         restores every .tzp file in it

Exit codes: 0 success, 1 an operation failed, 2 bad usage.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compress safetensors and GGUF files (or model folders) into .tzp files.
    #[command(
        after_help = "Examples:\n  tenzip compress -o out.tzp model.safetensors\n  \
                            tenzip compress --all -r Llama-3.2-1B/   every file of a Hugging Face model folder\n  \
                            tenzip compress --fast model.safetensors   faster restores, a slightly larger file"
    )]
    Compress(CompressArgs),
    /// Restore the original files from .tzp files.
    #[command(after_help = "Example: tenzip decompress --rm model.safetensors.tzp")]
    Decompress(DecompressArgs),
    /// Decode .tzp files and check every checksum, writing nothing. Exit 0 if all are intact.
    #[command(after_help = "Example: tenzip verify *.tzp")]
    Verify(VerifyArgs),
    /// Write single tensors out of a .tzp file, decoding only their chunks.
    #[command(
        after_help = "Examples:\n  tenzip extract model.safetensors.tzp lm_head.weight -o out/\n  \
                            tenzip extract model.safetensors.tzp a.weight b.weight --safetensors part.safetensors"
    )]
    Extract(ExtractArgs),
    /// Show what a .tzp file holds: per tensor name, dtype, shape, bytes, stored bytes, ratio and layout.
    #[command(
        after_help = "Example: tenzip inspect --json model.safetensors.tzp | jq '.segments[0]'"
    )]
    Inspect(InspectArgs),
    /// Measure a safetensors or GGUF file without writing anything: per dtype and field, the entropy, the
    /// order-0 limit and the ratio tenzip reaches.
    #[command(after_help = "Examples:\n  tenzip analyze model.safetensors\n  \
                            tenzip analyze --plot plots/ model.gguf   exponent histograms and ratio per tensor as SVG")]
    Analyze(AnalyzeArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  tenzip completions bash > ~/.local/share/bash-completion/completions/tenzip\n  \
                            tenzip completions zsh > ~/.zfunc/_tenzip"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Flags of every command that codes data.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Worker threads (0: one per core).
    #[arg(short = 'T', long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Walk folders given as inputs into their subfolders too.
    #[arg(short, long)]
    pub recursive: bool,
}

/// Flags of the commands that write files.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Overwrite existing output files.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Delete each input once its output is written and verified.
    #[arg(long = "rm", conflicts_with = "keep")]
    pub remove_input: bool,
    /// Keep the inputs (the default; accepted for zstd compatibility).
    #[arg(short = 'k', long)]
    pub keep: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct CompressArgs {
    /// Files to compress, or folders: their safetensors and GGUF files (and with --all, every other file).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// In folders, also compress files that are not safetensors or GGUF (config, tokenizer), as opaque bytes.
    #[arg(long)]
    pub all: bool,
    /// Output file (one input only). Default: the input's name with .tzp added.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Store any file as opaque bytes instead of parsing it as safetensors.
    #[arg(long)]
    pub generic: bool,
    /// Original bytes per independently coded chunk, e.g. 256K or 4M.
    #[arg(long, default_value = "1M", value_parser = parse_size, value_name = "BYTES")]
    pub chunk_size: usize,
    /// Favour restore speed: no per-channel tables (they decode one symbol a value and transpose it back;
    /// channels at their own scale get an exponent offset each instead: whisper's BF16 file restores 1.7x
    /// as fast, 1.5 points larger), FP8 E4M3 codes two by two (one symbol to decode per two bytes), and
    /// Huffman wherever ANS saves under 2% of a stream of medium length (long streams, whose 64-lane rANS
    /// decodes as fast as Huffman, are coded as by default). Files grow a few hundredths of a point, FP8
    /// weights about 0.6, tensors with channels of their own (a token embedding) about 3 points.
    #[arg(long)]
    pub fast: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct DecompressArgs {
    /// .tzp files to restore, or folders holding them.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output file (one input only). Default: the input's name without .tzp.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// .tzp files to check, or folders holding them.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// The .tzp file.
    pub file: PathBuf,
    /// Tensors to write.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Folder for the raw tensor files (named after the tensors, '/' replaced by '_'). Default: here.
    #[arg(short, long, value_name = "DIR", conflicts_with = "safetensors")]
    pub output: Option<PathBuf>,
    /// Write one safetensors file holding the named tensors instead of raw files.
    #[arg(long, value_name = "OUT")]
    pub safetensors: Option<PathBuf>,
    /// Overwrite existing files.
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// .tzp files to describe.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// safetensors or GGUF files to measure.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write pictures (SVG) into this folder: exponent histograms per dtype, ratio per tensor.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Worker threads (0: one per core).
    #[arg(short = 'T', long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Print JSON on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `4096`, `256K`, `1M`, `1MiB`: binary multiples.
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size"))?;
    let shift = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("{text:?}: unknown unit (use K, M or G)")),
    };
    let size = number
        .checked_shl(shift)
        .filter(|&size| size >> shift == number)
        .ok_or("size too large")?;
    if !(1..=64 << 20).contains(&size) {
        return Err(format!(
            "{text:?}: chunk size must be between 1 byte and 64M"
        ));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256K"), Ok(256 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1T").is_err());
        assert!(parse_size("65M").is_err());
    }

    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
