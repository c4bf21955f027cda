//! Pictures for `tenzip analyze --plot DIR`: plain SVG written by hand, readable in any browser.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tenzip::{Analysis, ExponentHistogram};

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 420.0;
const MARGIN: f64 = 60.0;
/// Colours for series, by dtype order.
const PALETTE: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// Writes every picture of `analysis` into `dir` and returns their paths.
pub fn write_all(analysis: &Analysis, source: &Path, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stem = source
        .file_name()
        .map_or_else(|| "file".into(), |name| name.to_string_lossy().into_owned());
    let mut written = Vec::new();
    for histogram in &analysis.exponents {
        let path = dir.join(format!("{stem}.exponents-{}.svg", histogram.dtype));
        std::fs::write(&path, exponent_histogram(&stem, histogram))
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    let path = dir.join(format!("{stem}.ratio-per-tensor.svg"));
    std::fs::write(&path, ratio_per_tensor(&stem, analysis))
        .with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    Ok(written)
}

fn svg_open(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        WIDTH / 2.0,
        escape(title)
    )
}

/// Axes with `ticks` labelled on y (value, label) and a caption for each axis.
fn axes(out: &mut String, y_ticks: &[(f64, String)], x_caption: &str, y_caption: &str) {
    let (left, bottom, right, top) = (MARGIN, HEIGHT - MARGIN, WIDTH - 20.0, 40.0);
    let _ = writeln!(
        out,
        "<path d=\"M{left} {top} V{bottom} H{right}\" stroke=\"black\" fill=\"none\"/>"
    );
    for (fraction, label) in y_ticks {
        let y = bottom - fraction * (bottom - top);
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" x2=\"{right}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>",
            left - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>",
        (left + right) / 2.0,
        HEIGHT - 16.0,
        escape(x_caption),
        (top + bottom) / 2.0,
        (top + bottom) / 2.0,
        escape(y_caption)
    );
}

/// Bars: the share of values with each exponent, over the normal exponents that hold at least 0.01% of the
/// values. Exponent 0 (zeros and subnormals) is given in the title: plotted, it would stretch the axis over
/// dozens of empty bins.
fn exponent_histogram(stem: &str, histogram: &ExponentHistogram) -> String {
    let total: u64 = histogram.counts.iter().sum();
    let visible = |&count: &u64| count > 0 && count * 10_000 >= total;
    let normal = &histogram.counts[1..];
    let first = normal.iter().position(visible).map_or(0, |index| index + 1);
    let last = normal
        .iter()
        .rposition(visible)
        .map_or(0, |index| index + 1);
    let peak =
        histogram.counts.iter().copied().max().unwrap_or(0).max(1) as f64 / total.max(1) as f64;
    let zeros = histogram.counts.first().copied().unwrap_or(0) as f64 / total.max(1) as f64;
    let mut out = svg_open(&format!(
        "{stem}: exponents of {} values ({:.2}% zero or subnormal)",
        histogram.dtype,
        zeros * 100.0
    ));
    let ticks: Vec<(f64, String)> = (0..=4)
        .map(|i| {
            let share = peak * f64::from(i) / 4.0;
            (f64::from(i) / 4.0, format!("{:.1}%", share * 100.0))
        })
        .collect();
    axes(&mut out, &ticks, "biased exponent", "share of values");
    let bins = last - first + 1;
    let plot_width = WIDTH - 20.0 - MARGIN;
    let bar = plot_width / bins as f64;
    let (bottom, top) = (HEIGHT - MARGIN, 40.0);
    for (offset, &count) in histogram.counts[first..=last].iter().enumerate() {
        let share = count as f64 / total.max(1) as f64;
        let height = share / peak * (bottom - top);
        let x = MARGIN + offset as f64 * bar;
        let _ = writeln!(
            out,
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{height:.2}\" fill=\"{}\">\
             <title>exponent {}: {count} values</title></rect>",
            x + bar * 0.1,
            bottom - height,
            bar * 0.8,
            PALETTE[0],
            first + offset
        );
        let label_every = bins.div_ceil(16);
        if offset % label_every == 0 {
            let _ = writeln!(
                out,
                "<text x=\"{:.2}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                bottom + 16.0,
                first + offset
            );
        }
    }
    out + "</svg>\n"
}

/// Dots: each tensor's stored / original size, in file order, coloured by dtype.
fn ratio_per_tensor(stem: &str, analysis: &Analysis) -> String {
    let mut out = svg_open(&format!(
        "{stem}: stored / original size per tensor, in file order"
    ));
    let ticks: Vec<(f64, String)> = (0..=5)
        .map(|i| (f64::from(i) / 5.0, format!("{:.1}", f64::from(i) * 0.2)))
        .collect();
    axes(&mut out, &ticks, "tensor (file order)", "ratio");
    let dtypes: Vec<&str> = analysis.dtypes.iter().map(|d| d.dtype.as_str()).collect();
    let colour = |dtype: &str| {
        let index = dtypes.iter().position(|&d| d == dtype).unwrap_or(0);
        PALETTE[index % PALETTE.len()]
    };
    let (bottom, top) = (HEIGHT - MARGIN, 40.0);
    let plot_width = WIDTH - 20.0 - MARGIN;
    let count = analysis.tensors.len().max(1) as f64;
    for (index, tensor) in analysis.tensors.iter().enumerate() {
        // Tensors of a few values are framing more than data; their ratios say nothing about the model.
        if tensor.bytes < 64 {
            continue;
        }
        let ratio = (tensor.stored_bytes as f64 / tensor.bytes as f64).min(1.0);
        let x = MARGIN + (index as f64 + 0.5) / count * plot_width;
        let y = bottom - ratio * (bottom - top);
        let _ = writeln!(
            out,
            "<circle cx=\"{x:.2}\" cy=\"{y:.2}\" r=\"3\" fill=\"{}\"><title>{} ({}): {ratio:.4}</title></circle>",
            colour(&tensor.dtype),
            escape(&tensor.name),
            tensor.dtype
        );
    }
    for (index, dtype) in dtypes.iter().enumerate() {
        let y = 48.0 + index as f64 * 16.0;
        let _ = writeln!(
            out,
            "<circle cx=\"{}\" cy=\"{y}\" r=\"4\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            WIDTH - 120.0,
            colour(dtype),
            WIDTH - 110.0,
            y + 4.0,
            escape(dtype)
        );
    }
    out + "</svg>\n"
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
