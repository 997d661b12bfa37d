//! Everything the program leaves behind: the report on stdout as text, CSV or JSON, the
//! files of `--save`, and the HTML report. (The progress line is [`crate::progress`].)
//!
//! * [`text`]: one run's report, the comparison table, a sweep, a lab, for people;
//! * [`csv`]: one row per client (or per sweep step), for spreadsheets;
//! * JSON is the [`Report`](crate::Report) itself, serialized (its schema is `docs/schema/`);
//! * [`files`]: the directory `--save` writes, and what a failed shard leaves;
//! * [`html`]: one self-contained page with charts;
//! * [`frames`]: the timeline as numbered SVG stills (`--frames DIR`), for slides.
//!
//! Stdout holds only the report; what the program says about itself (files written,
//! progress, logs) goes to stderr, so `simulator ... --format json | jq` always works.

pub mod csv;
pub mod files;
pub mod frames;
pub mod html;
pub mod text;

use std::io::Write as _;
use std::path::PathBuf;

/// The format of the report on stdout.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Csv,
}

/// Writes `text` to stdout. A reader that went away (`simulator ... | head`) ends the
/// program quietly, as it ends any Unix filter; any other failure to write is one sentence
/// and status 1.
pub fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("simulator: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// Writes `value` to stdout as pretty JSON and a line break.
pub fn print_json(value: &impl serde::Serialize) {
    // Serializing plain data with string keys cannot fail.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    print(&text);
}

/// Says on stderr which files were written (stdout keeps only the report).
pub fn saved(files: &[PathBuf]) {
    for file in files {
        eprintln!("wrote {}", file.display());
    }
}
