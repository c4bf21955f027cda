//! What the commands print: a line per file on stderr for people, one JSON document on stdout for scripts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use tenzip::{Inspection, SegmentKind, Summary};

/// One file's outcome.
#[derive(Debug, Serialize)]
pub struct FileReport {
    input: String,
    output: String,
    input_bytes: u64,
    output_bytes: u64,
    ratio: f64,
    seconds: f64,
}

/// Which side of an operation holds the compressed bytes, so that `ratio` is always compressed / original.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    Compress,
    Restore,
}

impl FileReport {
    pub fn new(input: &Path, output: &Path, summary: &Summary, direction: Direction) -> FileReport {
        let (compressed, original) = match direction {
            Direction::Compress => (summary.output_bytes, summary.input_bytes),
            Direction::Restore => (summary.input_bytes, summary.output_bytes),
        };
        FileReport {
            input: input.display().to_string(),
            output: output.display().to_string(),
            input_bytes: summary.input_bytes,
            output_bytes: summary.output_bytes,
            ratio: ratio(compressed, original),
            seconds: summary.seconds,
        }
    }
}

#[derive(Debug, Serialize)]
struct FailureReport {
    input: String,
    error: String,
}

/// Collects outcomes and prints them as the command's flags ask.
pub struct Reporter {
    command: &'static str,
    quiet: bool,
    json: bool,
    successes: Vec<FileReport>,
    failures: Vec<FailureReport>,
}

#[derive(Serialize)]
struct JsonSummary<'a> {
    command: &'static str,
    ok: bool,
    input_bytes: u64,
    output_bytes: u64,
    ratio: f64,
    seconds: f64,
    files: &'a [FileReport],
    failures: &'a [FailureReport],
}

impl Reporter {
    pub fn new(command: &'static str, quiet: bool, json: bool) -> Reporter {
        Reporter {
            command,
            quiet,
            json,
            successes: Vec::new(),
            failures: Vec::new(),
        }
    }

    pub fn success(&mut self, report: FileReport) {
        if !self.quiet && !self.json {
            let verb = if self.command == "verify" {
                "OK"
            } else {
                &report.output
            };
            eprintln!(
                "{}: {:.2}% ({} => {}, {verb}) in {:.2} s, {:.0} MB/s",
                report.input,
                report.ratio * 100.0,
                human_bytes(report.input_bytes),
                human_bytes(report.output_bytes),
                report.seconds,
                report.input_bytes.max(report.output_bytes) as f64 / 1e6 / report.seconds.max(1e-9),
            );
        }
        self.successes.push(report);
    }

    pub fn failure(&mut self, input: &Path, err: &anyhow::Error) {
        eprintln!("tenzip: {err:#}");
        self.failures.push(FailureReport {
            input: input.display().to_string(),
            error: format!("{err:#}"),
        });
    }

    /// Prints the JSON summary if asked; returns whether every file succeeded.
    pub fn finish(self) -> bool {
        let ok = self.failures.is_empty();
        if self.json {
            let input_bytes: u64 = self.successes.iter().map(|r| r.input_bytes).sum();
            let output_bytes: u64 = self.successes.iter().map(|r| r.output_bytes).sum();
            let (compressed, original) = match self.command {
                "compress" => (output_bytes, input_bytes),
                _ => (input_bytes, output_bytes),
            };
            let summary = JsonSummary {
                command: self.command,
                ok,
                input_bytes,
                output_bytes,
                ratio: ratio(compressed, original),
                // Not `sum()`, whose empty float sum is -0.0, printed as such.
                seconds: self.successes.iter().fold(0.0, |sum, r| sum + r.seconds),
                files: &self.successes,
                failures: &self.failures,
            };
            print_json(&summary);
        }
        ok
    }
}

#[derive(Serialize)]
struct InspectJson<'a> {
    file: String,
    format: &'a str,
    source_bytes: u64,
    stored_bytes: u64,
    ratio: f64,
    writer: &'a str,
    /// Totals per dtype and layout, largest first.
    groups: Vec<GroupJson>,
    /// Every segment, in file order.
    segments: Vec<SegmentJson<'a>>,
}

/// The segments of one dtype (or one non-tensor kind: "header", "bytes") and layout, totalled.
#[derive(Serialize)]
struct GroupJson {
    dtype: String,
    layout: String,
    segments: usize,
    bytes: u64,
    stored_bytes: u64,
    ratio: f64,
}

impl SegmentJson<'_> {
    /// The group a segment is totalled in: its dtype, or its kind for segments that are not tensors.
    fn group_key(&self) -> (String, String) {
        let dtype = self.dtype.map_or_else(
            || format!("({:?})", self.kind).to_lowercase(),
            str::to_owned,
        );
        (dtype, self.layout.to_owned())
    }
}

/// Totals of `segments` per dtype and layout, largest first.
fn groups(segments: &[SegmentJson]) -> Vec<GroupJson> {
    let mut totals: BTreeMap<(String, String), (usize, u64, u64)> = BTreeMap::new();
    for segment in segments {
        let total = totals.entry(segment.group_key()).or_default();
        total.0 += 1;
        total.1 += segment.bytes;
        total.2 += segment.stored_bytes;
    }
    let mut groups: Vec<GroupJson> = totals
        .into_iter()
        .map(|((dtype, layout), (count, bytes, stored))| GroupJson {
            dtype,
            layout,
            segments: count,
            bytes,
            stored_bytes: stored,
            ratio: ratio(stored, bytes),
        })
        .collect();
    groups.sort_by_key(|group| std::cmp::Reverse(group.bytes));
    groups
}

#[derive(Serialize)]
struct SegmentJson<'a> {
    kind: SegmentKind,
    name: Option<&'a str>,
    dtype: Option<&'a str>,
    shape: Option<&'a [u64]>,
    offset: u64,
    bytes: u64,
    stored_bytes: u64,
    ratio: f64,
    layout: &'a str,
    route: Option<&'a str>,
    chunks: usize,
    /// Chunks per coding: split and stream modes, `"fields tans+raw"`.
    codings: &'a BTreeMap<String, usize>,
}

impl SegmentJson<'_> {
    /// The coding most chunks used, e.g. "fields tans+raw".
    fn coding(&self) -> &str {
        self.codings
            .iter()
            .max_by_key(|(_, &count)| count)
            .map_or("-", |(coding, _)| coding)
    }
}

pub fn print_inspection(path: &Path, inspection: &Inspection, json: bool) {
    use Align::{Left, Right};
    let manifest = &inspection.manifest;
    let segments: Vec<SegmentJson> = manifest
        .segments
        .iter()
        .zip(&inspection.codings)
        .map(|(segment, codings)| SegmentJson {
            kind: segment.kind,
            name: segment.name.as_deref(),
            dtype: segment.dtype.as_deref(),
            shape: segment.shape.as_deref(),
            offset: segment.offset,
            bytes: segment.len,
            stored_bytes: segment.stored_len(),
            ratio: ratio(segment.stored_len(), segment.len),
            layout: &segment.layout,
            route: segment.route.as_deref(),
            chunks: segment.chunks.len(),
            codings,
        })
        .collect();
    let report = InspectJson {
        file: path.display().to_string(),
        format: &manifest.source.format,
        source_bytes: manifest.source.len,
        stored_bytes: inspection.container_len,
        ratio: ratio(inspection.container_len, manifest.source.len),
        writer: &manifest.writer,
        groups: groups(&segments),
        segments,
    };
    if json {
        print_json(&report);
        return;
    }
    let mut out = String::new();
    out += &format!(
        "{}: {} file, {} => {} ({:.2}%), written by {}\n",
        report.file,
        report.format,
        human_bytes(report.source_bytes),
        human_bytes(report.stored_bytes),
        report.ratio * 100.0,
        report.writer
    );
    let mut groups = Table::new(&[
        ("dtype", Left),
        ("layout", Left),
        ("segments", Right),
        ("bytes", Right),
        ("stored", Right),
        ("ratio", Right),
    ]);
    for group in &report.groups {
        groups.row([
            group.dtype.clone(),
            group.layout.clone(),
            group.segments.to_string(),
            group.bytes.to_string(),
            group.stored_bytes.to_string(),
            format!("{:.2}%", group.ratio * 100.0),
        ]);
    }
    out += "\n";
    out += &groups.render("");
    // The tensors' columns line up across sections.
    let mut tensors = Table::untitled(&[Left, Left, Right, Right, Right, Left, Left]);
    // One section per dtype and layout, largest first; tensors by size within it.
    let mut sections = Vec::new();
    for group in &report.groups {
        let heading = format!(
            "\n{} {}: {} segment{}, {} => {} ({:.2}%)\n",
            group.dtype,
            group.layout,
            group.segments,
            if group.segments == 1 { "" } else { "s" },
            human_bytes(group.bytes),
            human_bytes(group.stored_bytes),
            group.ratio * 100.0
        );
        let mut members: Vec<&SegmentJson> = report
            .segments
            .iter()
            .filter(|segment| segment.group_key() == (group.dtype.clone(), group.layout.clone()))
            .collect();
        members.sort_by_key(|segment| std::cmp::Reverse(segment.bytes));
        let first = tensors.rows.len();
        for segment in members {
            let name = segment.name.map_or_else(
                || format!("({:?} at {})", segment.kind, segment.offset).to_lowercase(),
                str::to_owned,
            );
            let shape = segment
                .shape
                .map_or_else(String::new, |shape| format!("{shape:?}"));
            tensors.row([
                name,
                shape,
                segment.bytes.to_string(),
                segment.stored_bytes.to_string(),
                format!("{:.2}%", segment.ratio * 100.0),
                segment.coding().to_owned(),
                segment.route.unwrap_or("-").to_owned(),
            ]);
        }
        sections.push((heading, first..tensors.rows.len()));
    }
    for (heading, rows) in sections {
        out += &heading;
        out += &tensors.render_rows("  ", rows);
    }
    write_stdout(&out);
}

fn print_json(value: &impl Serialize) {
    let mut text = serde_json::to_string_pretty(value).expect("reports serialize");
    text.push('\n');
    write_stdout(&text);
}

/// Writes to stdout; a closed pipe (`tenzip inspect x.tzp | head`) is not an error.
fn write_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("tenzip: cannot write to stdout: {err}");
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[derive(Serialize)]
struct AnalysisJson<'a> {
    file: String,
    format: &'a str,
    bytes: u64,
    stored_bytes: u64,
    ratio: f64,
    dtypes: Vec<DtypeJson<'a>>,
    fields: Vec<FieldJson<'a>>,
    tensors: Vec<TensorJson<'a>>,
    plots: Vec<String>,
}

#[derive(Serialize)]
struct DtypeJson<'a> {
    dtype: &'a str,
    layout: &'a str,
    tensors: usize,
    bytes: u64,
    stored_bytes: u64,
    ratio: f64,
    /// Order-0 limit of the layout, per tensor, tables not counted.
    limit_ratio: f64,
}

#[derive(Serialize)]
struct FieldJson<'a> {
    dtype: &'a str,
    layout: &'a str,
    split: &'a str,
    stream: &'a str,
    symbols: u64,
    entropy_bits: f64,
    limit_bytes: f64,
}

#[derive(Serialize)]
struct TensorJson<'a> {
    name: &'a str,
    dtype: &'a str,
    bytes: u64,
    stored_bytes: u64,
    ratio: f64,
}

pub fn print_analysis(
    path: &Path,
    analysis: &tenzip::Analysis,
    plots: &[std::path::PathBuf],
    json: bool,
) {
    use Align::{Left, Right};
    let report = AnalysisJson {
        file: path.display().to_string(),
        format: analysis.format,
        bytes: analysis.file_len,
        stored_bytes: analysis.compressed_len,
        ratio: ratio(analysis.compressed_len, analysis.file_len),
        dtypes: analysis
            .dtypes
            .iter()
            .map(|d| DtypeJson {
                dtype: &d.dtype,
                layout: &d.layout,
                tensors: d.tensors,
                bytes: d.bytes,
                stored_bytes: d.stored_bytes,
                ratio: ratio(d.stored_bytes, d.bytes),
                limit_ratio: if d.bytes == 0 {
                    1.0
                } else {
                    d.limit_bytes / d.bytes as f64
                },
            })
            .collect(),
        fields: analysis
            .fields
            .iter()
            .map(|f| FieldJson {
                dtype: &f.dtype,
                layout: &f.layout,
                split: f.split,
                stream: &f.stream,
                symbols: f.symbols,
                entropy_bits: f.entropy_bits,
                limit_bytes: f.limit_bytes,
            })
            .collect(),
        tensors: analysis
            .tensors
            .iter()
            .map(|t| TensorJson {
                name: &t.name,
                dtype: &t.dtype,
                bytes: t.bytes,
                stored_bytes: t.stored_bytes,
                ratio: ratio(t.stored_bytes, t.bytes),
            })
            .collect(),
        plots: plots.iter().map(|p| p.display().to_string()).collect(),
    };
    if json {
        print_json(&report);
        return;
    }
    let mut out = format!(
        "{}: {} file, {} => {} ({:.2}%) with tenzip, nothing written\n\n",
        report.file,
        report.format,
        human_bytes(report.bytes),
        human_bytes(report.stored_bytes),
        report.ratio * 100.0
    );
    let mut dtypes = Table::new(&[
        ("dtype", Left),
        ("layout", Left),
        ("tensors", Right),
        ("bytes", Right),
        ("tenzip", Right),
        ("order-0 limit", Right),
    ]);
    for d in &report.dtypes {
        dtypes.row([
            d.dtype.to_owned(),
            d.layout.to_owned(),
            d.tensors.to_string(),
            d.bytes.to_string(),
            format!("{:.2}%", d.ratio * 100.0),
            format!("{:.2}%", d.limit_ratio * 100.0),
        ]);
    }
    if dtypes.rows.is_empty() {
        // A file without tensors, or stored whole as bytes (a big-endian GGUF file), has no rows.
        out += "no tensors to show (the file has none, or is stored whole as bytes)\n";
    } else {
        out += &dtypes.render("");
    }
    let mut fields = Table::new(&[
        ("dtype", Left),
        ("layout", Left),
        ("split", Left),
        ("stream", Left),
        ("symbols", Right),
        ("bits/symbol", Right),
        ("limit bytes", Right),
    ]);
    for f in &report.fields {
        fields.row([
            f.dtype.to_owned(),
            f.layout.to_owned(),
            f.split.to_owned(),
            f.stream.to_owned(),
            f.symbols.to_string(),
            format!("{:.3}", f.entropy_bits),
            format!("{:.0}", f.limit_bytes),
        ]);
    }
    if !fields.rows.is_empty() {
        out += "\n";
        out += &fields.render("");
    }
    for plot in &report.plots {
        out += &format!("wrote {plot}\n");
    }
    write_stdout(&out);
}

/// A text table whose columns are as wide as their widest cell, so that long layout, stream and tensor
/// names do not push the columns after them out of line.
struct Table {
    /// Each column's title (empty in an untitled table) and alignment.
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

#[derive(Clone, Copy)]
enum Align {
    /// Names.
    Left,
    /// Numbers.
    Right,
}

impl Table {
    fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    fn untitled(alignments: &[Align]) -> Table {
        Table::new(
            &alignments
                .iter()
                .map(|&align| ("", align))
                .collect::<Vec<_>>(),
        )
    }

    fn row<const N: usize>(&mut self, cells: [String; N]) {
        debug_assert_eq!(N, self.columns.len());
        self.rows.push(cells.into());
    }

    /// The titles (unless untitled) and every row, each line starting with `indent`.
    fn render(&self, indent: &str) -> String {
        let titles: Vec<String> = self
            .columns
            .iter()
            .map(|(title, _)| title.to_string())
            .collect();
        let widths = self.widths();
        let rows = self.rows.iter().map(|row| self.line(indent, row, &widths));
        if titles.iter().all(String::is_empty) {
            rows.collect()
        } else {
            std::iter::once(self.line(indent, &titles, &widths))
                .chain(rows)
                .collect()
        }
    }

    /// The rows in `rows`, laid out with the widths of the whole table.
    fn render_rows(&self, indent: &str, rows: std::ops::Range<usize>) -> String {
        let widths = self.widths();
        self.rows[rows]
            .iter()
            .map(|row| self.line(indent, row, &widths))
            .collect()
    }

    fn line(&self, indent: &str, cells: &[String], widths: &[usize]) -> String {
        let mut line = indent.to_owned();
        for ((cell, &(_, align)), &width) in cells.iter().zip(&self.columns).zip(widths) {
            match align {
                Align::Left => line += &format!("{cell:<width$} "),
                Align::Right => line += &format!("{cell:>width$} "),
            }
        }
        line.truncate(line.trim_end().len());
        line + "\n"
    }

    /// The widest cell of each column, its title included.
    fn widths(&self) -> Vec<usize> {
        (0..self.columns.len())
            .map(|index| {
                self.rows
                    .iter()
                    .map(|row| row[index].chars().count())
                    .fold(self.columns[index].0.chars().count(), usize::max)
            })
            .collect()
    }
}
