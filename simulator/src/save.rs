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

use std::path::{Path, PathBuf};

use crate::report::Report;
use crate::tally::{percentile_spectrum, Row};
use crate::SimError;

/// Writes `report`'s files into `dir` (created if needed) and returns their paths.
pub fn save(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, SimError> {
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, &e))?;
    let mut files = vec![
        (
            "report.json",
            serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        ),
        ("clients.csv", report.to_csv()),
        ("series.csv", series_csv(&report.series)),
        ("latency.hlog", report.interval_log.clone()),
    ];
    if let Some((corrected, uncorrected)) = &report.histograms {
        files.push(("corrected.hgrm", percentile_spectrum(corrected)));
        files.push(("uncorrected.hgrm", percentile_spectrum(uncorrected)));
    }
    let mut written = Vec::with_capacity(files.len());
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| failed(&path, &e))?;
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

fn failed(path: &Path, e: &std::io::Error) -> SimError {
    SimError::Output(format!("could not write {}: {e}", path.display()))
}
