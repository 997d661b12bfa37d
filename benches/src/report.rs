//! The comparison report: criterion's results from `target/criterion`, as Markdown.
//!
//! Criterion stores one directory per benchmark, and in its `new/` subdirectory two files
//! this module reads: `benchmark.json` (the group, the function and the parameter, here the
//! workload, the architecture and the number of clients) and `estimates.json` (the median
//! time per iteration and its confidence interval, in nanoseconds). Every benchmark
//! declares one element per iteration, so one over the time per iteration is the rate:
//! requests per second for the end-to-end groups, operations per second for the
//! micro-benchmarks.
//!
//! `docs/benchmarks.md` is partly written by hand. The generated parts sit between marker
//! comments (`<!-- criterion:begin -->` … `<!-- criterion:end -->`, and the same for
//! `peers`), and [`splice`] replaces only what is between them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{Workload, CONCURRENCY};

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not the JSON criterion writes: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("found no criterion results under {0}; run `cargo bench` first")]
    NoResults(PathBuf),
    #[error("{path} has no `<!-- {section}:begin -->` … `<!-- {section}:end -->` markers to write between")]
    NoMarkers { path: PathBuf, section: String },
}

/// One benchmark's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// The criterion group: a workload, or a micro-benchmark family.
    pub group: String,
    /// The function: an architecture, or a variant.
    pub function: String,
    /// The parameter: the number of clients (absent for the micro-benchmarks).
    pub parameter: Option<String>,
    /// Median time per iteration, and the lower and upper ends of its confidence interval,
    /// in nanoseconds.
    pub median_ns: f64,
    pub lower_ns: f64,
    pub upper_ns: f64,
    /// The confidence level of that interval, e.g. 0.95.
    pub confidence: f64,
}

impl Estimate {
    /// Iterations (requests) per second at the median.
    pub fn rate(&self) -> f64 {
        1e9 / self.median_ns
    }

    /// The confidence interval as rates: (slowest, fastest).
    pub fn rate_interval(&self) -> (f64, f64) {
        (1e9 / self.upper_ns, 1e9 / self.lower_ns)
    }
}

/// The file in the criterion directory where the end-to-end benchmark notes its mode
/// (`quick` or `full`) and the commit it measured, one per line.
pub const RUN_NOTE: &str = "servelab-run.txt";

/// The current commit, short, marked when files other than this report differ from it.
pub fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".to_string();
    };
    // The report itself is excluded: writing it must not mark the numbers as uncommitted.
    let dirty = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ":/",
        ":(exclude,top)docs/benchmarks.md",
    ])
    .is_some_and(|changes| !changes.is_empty());
    if dirty {
        format!("{head} with uncommitted changes")
    } else {
        head
    }
}

/// Where criterion writes its results: `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`,
/// else `target/criterion` in the workspace.
pub fn default_criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("criterion")
}

/// Reads every benchmark result under `dir`.
pub fn load(dir: &Path) -> Result<Vec<Estimate>, ReportError> {
    let mut found = Vec::new();
    collect(dir, &mut found)?;
    if found.is_empty() {
        return Err(ReportError::NoResults(dir.to_path_buf()));
    }
    found.sort_by(|a, b| {
        (&a.group, &a.function, &a.parameter).cmp(&(&b.group, &b.function, &b.parameter))
    });
    Ok(found)
}

fn collect(dir: &Path, found: &mut Vec<Estimate>) -> Result<(), ReportError> {
    let read_err = |source| ReportError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let new = dir.join("new");
    if new.join("benchmark.json").is_file() && new.join("estimates.json").is_file() {
        found.push(read_estimate(&new)?);
        return Ok(());
    }
    let mut entries = std::fs::read_dir(dir)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        // Criterion's own HTML report directory holds no results.
        if path.is_dir() && entry.file_name() != "report" {
            collect(&path, found)?;
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ReportError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn read_estimate(new: &Path) -> Result<Estimate, ReportError> {
    let bench_path = new.join("benchmark.json");
    let estimates_path = new.join("estimates.json");
    let bench = read_json(&bench_path)?;
    let estimates = read_json(&estimates_path)?;
    let text = |v: &Value, key: &str, path: &Path| {
        v[key]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ReportError::Format {
                path: path.to_path_buf(),
                reason: format!("no string `{key}`"),
            })
    };
    let number = |pointer: &str| {
        estimates
            .pointer(pointer)
            .and_then(Value::as_f64)
            .ok_or_else(|| ReportError::Format {
                path: estimates_path.clone(),
                reason: format!("no number at {pointer}"),
            })
    };
    Ok(Estimate {
        group: text(&bench, "group_id", &bench_path)?,
        function: text(&bench, "function_id", &bench_path)
            .or_else(|_| text(&bench, "title", &bench_path))?,
        parameter: bench["value_str"].as_str().map(str::to_string),
        median_ns: number("/median/point_estimate")?,
        lower_ns: number("/median/confidence_interval/lower_bound")?,
        upper_ns: number("/median/confidence_interval/upper_bound")?,
        confidence: number("/median/confidence_interval/confidence_level")?,
    })
}

/// A rate with thin spaces between thousands, to one decimal place below 100.
pub fn human_rate(rate: f64) -> String {
    if rate < 100.0 {
        return format!("{rate:.1}");
    }
    let digits = format!("{:.0}", rate);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// A duration in nanoseconds, in the unit that reads best.
pub fn human_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// The generated section: one table per workload (rows: clients; columns: architectures)
/// and one for the micro-benchmarks.
pub fn to_markdown(estimates: &[Estimate]) -> String {
    let mut out = String::new();
    let by_key: BTreeMap<(&str, &str, &str), &Estimate> = estimates
        .iter()
        .map(|e| {
            (
                (
                    e.group.as_str(),
                    e.function.as_str(),
                    e.parameter.as_deref().unwrap_or(""),
                ),
                e,
            )
        })
        .collect();
    let confidence = estimates.first().map_or(0.95, |e| e.confidence);
    // The registry's architectures, in its order (the lecture's).
    let architectures = architectures::names();
    let _ = writeln!(
        out,
        "Each cell: median requests per second, its ratio to the best architecture in that row, \
         and the {:.0} % confidence interval of the median.\n",
        confidence * 100.0
    );
    for workload in Workload::ALL {
        workload_table(&mut out, workload, &architectures, &by_key);
    }
    micro_table(&mut out, estimates, confidence);
    out
}

/// One workload's table: a row per number of clients that has any result, a column per
/// architecture. Nothing when no architecture ran the workload.
fn workload_table(
    out: &mut String,
    workload: Workload,
    architectures: &[&str],
    by_key: &BTreeMap<(&str, &str, &str), &Estimate>,
) {
    let rows: Vec<_> = CONCURRENCY
        .iter()
        .map(|clients| {
            let clients = clients.to_string();
            let cells: Vec<Option<&Estimate>> = architectures
                .iter()
                .map(|arch| {
                    by_key
                        .get(&(workload.name(), *arch, clients.as_str()))
                        .copied()
                })
                .collect();
            (clients, cells)
        })
        .filter(|(_, cells)| cells.iter().any(Option::is_some))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "### `{}`: {}\n", workload.name(), workload.describe());
    let _ = writeln!(out, "| clients | {} |", architectures.join(" | "));
    let _ = writeln!(out, "|---:|{}", "---:|".repeat(architectures.len()));
    for (clients, cells) in rows {
        let _ = writeln!(out, "{}", workload_row(&clients, &cells));
    }
    out.push('\n');
}

/// One row of a workload's table: each architecture's rate (in bold for the best of the
/// row), its ratio to the best, and its confidence interval; a dash where it did not run.
fn workload_row(clients: &str, cells: &[Option<&Estimate>]) -> String {
    let best = cells
        .iter()
        .flatten()
        .map(|e| e.rate())
        .fold(0.0_f64, f64::max);
    let mut line = format!("| {clients} |");
    for cell in cells {
        match cell {
            Some(e) => {
                let (lo, hi) = e.rate_interval();
                let ratio = e.rate() / best;
                let rate = human_rate(e.rate());
                let rate = if ratio >= 0.999 {
                    format!("**{rate}**")
                } else {
                    rate
                };
                let _ = write!(
                    line,
                    " {rate} ({ratio:.2}×)<br>{}–{} |",
                    human_rate(lo),
                    human_rate(hi)
                );
            }
            None => line.push_str(" – |"),
        }
    }
    line
}

/// The micro-benchmarks (every group that is not a workload): median time, rate, and the
/// interval of the time. Nothing when there are none.
fn micro_table(out: &mut String, estimates: &[Estimate], confidence: f64) {
    let micro: Vec<&Estimate> = estimates
        .iter()
        .filter(|e| !Workload::ALL.iter().any(|w| w.name() == e.group))
        .collect();
    if micro.is_empty() {
        return;
    }
    let _ = writeln!(out, "### Micro-benchmarks\n");
    let _ = writeln!(
        out,
        "| group | benchmark | median time | per second | {:.0} % interval of the time |",
        confidence * 100.0
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for e in micro {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} – {} |",
            e.group,
            e.function,
            human_ns(e.median_ns),
            human_rate(e.rate()),
            human_ns(e.lower_ns),
            human_ns(e.upper_ns)
        );
    }
    out.push('\n');
}

/// Replaces what lies between `<!-- {section}:begin -->` and `<!-- {section}:end -->` in
/// `document` with `content`.
pub fn splice(document: &str, section: &str, content: &str) -> Option<String> {
    let begin = format!("<!-- {section}:begin -->");
    let end = format!("<!-- {section}:end -->");
    let start = document.find(&begin)? + begin.len();
    let stop = start + document[start..].find(&end)?;
    let mut out = String::with_capacity(document.len() + content.len());
    out.push_str(&document[..start]);
    out.push('\n');
    out.push_str(content.trim_end());
    out.push_str("\n\n");
    out.push_str(&document[stop..]);
    Some(out)
}

/// Writes `content` into the `section` of the Markdown file at `path`.
pub fn write_section(path: &Path, section: &str, content: &str) -> Result<(), ReportError> {
    let document = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let updated = splice(&document, section, content).ok_or_else(|| ReportError::NoMarkers {
        path: path.to_path_buf(),
        section: section.to_string(),
    })?;
    std::fs::write(path, updated).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(group: &str, function: &str, parameter: &str, median_ns: f64) -> Estimate {
        Estimate {
            group: group.into(),
            function: function.into(),
            parameter: Some(parameter.into()),
            median_ns,
            lower_ns: median_ns * 0.9,
            upper_ns: median_ns * 1.1,
            confidence: 0.95,
        }
    }

    #[test]
    fn the_table_marks_the_best_and_gives_ratios() {
        let table = to_markdown(&[
            estimate("hello", "single", "1", 40_000.0),
            estimate("hello", "pipeline", "1", 20_000.0),
        ]);
        assert!(table.contains("### `hello`"), "{table}");
        // 20 µs per request is 50 000 requests per second, the best of the row.
        assert!(table.contains("**50\u{202f}000** (1.00×)"), "{table}");
        assert!(table.contains("25\u{202f}000 (0.50×)"), "{table}");
        // The architectures without results are shown as missing, not dropped.
        assert!(table.contains("| 1 | 25\u{202f}000 (0.50×)"), "{table}");
        assert!(table.contains(" – | "), "{table}");
        assert!(!table.contains("### `io`"), "{table}");
    }

    #[test]
    fn splice_replaces_only_the_section() {
        let doc = "intro\n<!-- peers:begin -->\nold\n<!-- peers:end -->\noutro\n";
        let out = splice(doc, "peers", "new table").expect("markers");
        assert_eq!(
            out,
            "intro\n<!-- peers:begin -->\nnew table\n\n<!-- peers:end -->\noutro\n"
        );
        assert!(splice(doc, "criterion", "x").is_none());
    }

    #[test]
    fn reads_what_criterion_writes() {
        let dir = std::env::temp_dir().join(format!("servelab-report-{}", std::process::id()));
        let new = dir.join("hello").join("single").join("64").join("new");
        std::fs::create_dir_all(&new).expect("temp dir");
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"hello","function_id":"single","value_str":"64","throughput":{"Elements":1},"full_id":"hello/single/64","directory_name":"hello/single/64","title":"hello/single/64"}"#,
        )
        .expect("write");
        std::fs::write(
            new.join("estimates.json"),
            r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":3.0},"point_estimate":2.0,"standard_error":0.1},
               "median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":25000.0,"upper_bound":50000.0},"point_estimate":40000.0,"standard_error":0.1},
               "median_abs_dev":null,"slope":null,"std_dev":null}"#,
        )
        .expect("write");
        let found = load(&dir).expect("load");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(found.len(), 1);
        let e = &found[0];
        assert_eq!((e.group.as_str(), e.function.as_str()), ("hello", "single"));
        assert_eq!(e.parameter.as_deref(), Some("64"));
        assert_eq!(e.rate(), 25_000.0);
        assert_eq!(e.rate_interval(), (20_000.0, 40_000.0));
    }

    #[test]
    fn an_empty_directory_is_an_error_that_says_what_to_do() {
        let dir = std::env::temp_dir().join(format!("servelab-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let err = load(&dir).expect_err("no results");
        std::fs::remove_dir_all(&dir).ok();
        assert!(err.to_string().contains("run `cargo bench` first"), "{err}");
    }
}
