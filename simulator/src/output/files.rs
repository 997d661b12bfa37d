//! A run's files, for tools and for people who plot (`--save DIR`).
//!
//! One directory per run (per architecture, for `compare` and `sweep`):
//!
//! | file | what |
//! |---|---|
//! | `report.json` | the whole report, as `--format json` prints it (schema: `docs/schema/report-v1.schema.json`) |
//! | `clients.csv` | one row per client (per connection, in open-loop runs) |
//! | `series.csv` | one row per second: sent, completed, served, errors, dropped, p50, p99, max |
//! | `latency.hlog` | HdrHistogram interval log, one histogram per second tagged `corrected` and `uncorrected` |
//! | `corrected.hgrm`, `uncorrected.hgrm` | the whole run's percentile spectrum, the text HdrHistogram's plotter reads |
//! | `server.json` | the server's `/stats` before the run, when it is servelab's |
//!
//! A shard of a run (`--shard I/N`) writes into `DIR/shard-I-of-N`, so that all shards
//! can save into one directory (a volume they share) and `simulator merge DIR` finds them.
//! A shard that cannot run writes `failed.json` there instead, saying why, so that the
//! merge can name it.

use std::path::{Path, PathBuf};

use crate::report::Report;
use crate::report::{ShardFailure, FAILED_FILE};
use crate::SimError;
use loadgen::scenario::Shard;
use loadgen::tally::hlog::percentile_spectrum;
use loadgen::tally::Row;

/// Where a run's files go: `dir` itself, or for a shard its own directory inside `dir`.
pub fn run_dir(dir: &Path, shard: Option<Shard>) -> PathBuf {
    match shard {
        Some(s) => dir.join(format!("shard-{}-of-{}", s.index, s.count)),
        None => dir.to_owned(),
    }
}

/// Writes `failed.json` for a shard that could not run, into its directory inside `dir`.
pub fn save_failure(dir: &Path, shard: Shard, error: &SimError) -> Result<PathBuf, SimError> {
    let dir = run_dir(dir, Some(shard));
    std::fs::create_dir_all(&dir).map_err(|e| failed(&dir, e))?;
    let path = dir.join(FAILED_FILE);
    let failure = ShardFailure {
        shard,
        error: error.to_string(),
    };
    let text = serde_json::to_string_pretty(&failure).unwrap_or_default() + "\n";
    std::fs::write(&path, text).map_err(|e| failed(&path, e))?;
    Ok(path)
}

/// Writes `report`'s files into `dir` (created if needed) and returns their paths.
pub fn save(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, SimError> {
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    // A failure left by an earlier attempt of this shard is stale once it has run.
    let _ = std::fs::remove_file(dir.join(FAILED_FILE));
    let mut files = vec![
        (
            "report.json",
            serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        ),
        ("clients.csv", report.to_csv()),
        ("series.csv", series_csv(&report.series)),
        ("latency.hlog", report.interval_log.clone()),
    ];
    if let Some(server) = &report.server {
        files.push((
            "server.json",
            serde_json::to_string_pretty(server).unwrap_or_default() + "\n",
        ));
    }
    if let Some((corrected, uncorrected)) = &report.histograms {
        files.push(("corrected.hgrm", percentile_spectrum(corrected)));
        files.push(("uncorrected.hgrm", percentile_spectrum(uncorrected)));
    }
    let mut written = Vec::with_capacity(files.len());
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| failed(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// The time series as CSV, one row per second, with a header.
pub fn series_csv(rows: &[Row]) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    if rows.is_empty() {
        // The header alone, so that an empty series is still a valid table.
        let _ = out.write_record([
            "second",
            "sent",
            "completed",
            "served",
            "errors",
            "dropped",
            "p50_us",
            "p99_us",
            "max_us",
        ]);
    }
    for row in rows {
        let _ = out.serialize(row);
    }
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn failed(path: &Path, source: std::io::Error) -> SimError {
    SimError::Write {
        path: path.to_owned(),
        source,
    }
}
