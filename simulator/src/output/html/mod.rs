//! The HTML report (`--report FILE.html`): a run, a comparison, a sweep or a lab as one
//! self-contained page that a person can look at.
//!
//! Tables of numbers say what happened; the lecture tells its story as logs on a timeline:
//! who connected when, who was served when, who gave up. This module draws that story. A
//! page is one file with its charts as inline SVG (written by [`svg`]) and its style inline:
//! no script, no web font, no request to any other host, so it opens offline and can be
//! mailed or attached to coursework.
//!
//! What a run's page shows, section by section ([`sections`]): the outcome and the
//! prediction beside it; each client's timeline (a Gantt chart, the lecture's log as a
//! picture); the latency distribution on a "nines" axis with the deadline marked; the run
//! over time (load runs); the server's queues and busy threads over time, when the target is
//! a servelab server whose `/stats` was watched during the run; a replay of the timeline and
//! the queues (uncovered from left to right at the run's pace by a CSS animation, paused by
//! a checkbox: still no script); fairness between clients; and the settings, the machine,
//! the commit and the command that reproduce it.

pub mod sections;
pub mod svg;

use std::fmt::Write as _;
use std::path::Path;

use crate::labs::{Check, Lab, LabEnv};
use crate::measure::sweep::SweepReport;
use crate::report::Report;
use crate::SimError;
use loadgen::scenario::Scenario;
use svg::escape;

/// Where a page came from: the command, the code and the machine that made it.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// The command line, as a shell would take it back.
    pub command: String,
    /// The commit the simulator was built from (`unknown` outside a git checkout).
    pub commit: String,
    /// CPUs and kernel.
    pub machine: String,
    /// When the page was written (UTC, RFC 3339).
    pub written: String,
}

impl Provenance {
    /// This process's provenance.
    pub fn here() -> Provenance {
        let command = std::env::args()
            .map(|a| shell_word(&a))
            .collect::<Vec<_>>()
            .join(" ");
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_else(|_| std::env::consts::OS.to_owned());
        Provenance {
            command,
            commit: option_env!("SERVELAB_COMMIT")
                .unwrap_or("unknown")
                .to_owned(),
            machine: format!("{cpus} CPUs, {} kernel {kernel}", std::env::consts::OS),
            written: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }
}

/// `word` quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

const STYLE: &str = "
body { font-family: sans-serif; max-width: 1100px; margin: 1.5em auto; padding: 0 1em; color: #212121; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #e0e0e0; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #e0e0e0; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.agrees { color: #2e7d32; font-weight: bold; } .disagrees { color: #c62828; font-weight: bold; }
.legend span { margin-right: 1em; white-space: nowrap; font-size: 0.9em; }
.legend i { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em; vertical-align: -0.1em; }
.note { color: #616161; font-size: 0.9em; } pre { background: #f5f5f5; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
svg.chart { max-width: 100%; height: auto; display: block; margin: 0.4em 0; }
details { margin: 0.6em 0; } summary { cursor: pointer; font-weight: bold; }
.replay label { cursor: pointer; font-size: 0.9em; }
.replay .veil { transform-box: fill-box; transform-origin: right center; animation: replay-uncover linear infinite; }
.replay .cursor { animation: replay-cursor linear infinite; }
.replay .pause:checked ~ svg .moving { animation-play-state: paused; }
@keyframes replay-uncover { 0% { transform: scaleX(1); } 90%, 100% { transform: scaleX(0); } }
@keyframes replay-cursor { 0% { transform: translateX(0); } 90%, 100% { transform: translateX(var(--travel)); } }
@media (prefers-reduced-motion: reduce) { .replay .moving { animation-play-state: paused; } }
";

/// A whole page around `body`.
fn page(title: &str, body: &str, provenance: &Provenance) -> String {
    let mut out = String::with_capacity(body.len() + 4096);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\" />\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(title)
    );
    out.push_str(body);
    let _ = write!(
        out,
        "<h2>Reproduce</h2>\n<table>\n<tr><th>command</th><td><code>{}</code></td></tr>\n<tr><th>commit</th><td><code>{}</code></td></tr>\n<tr><th>machine</th><td>{}</td></tr>\n<tr><th>written</th><td>{}</td></tr>\n</table>\n<p class=\"note\">Written by servelab's simulator. Everything on this page is in this one file.</p>\n</body>\n</html>\n",
        escape(&provenance.command),
        escape(&provenance.commit),
        escape(&provenance.machine),
        escape(&provenance.written)
    );
    out
}

/// The page of one run (`simulator run`, `simulator merge`).
pub fn run_page(report: &Report, provenance: &Provenance) -> String {
    let title = report
        .to_text()
        .lines()
        .next()
        .unwrap_or("a run")
        .to_owned();
    let mut body = format!("<h1>{}</h1>\n", escape(&title));
    body.push_str(&sections::run_sections(report, ""));
    body.push_str(&sections::settings(report));
    page(&title, &body, provenance)
}

/// The page of a comparison (`simulator compare`): the architectures side by side on
/// shared axes, then each one's run.
pub fn compare_page(scenario: &Scenario, reports: &[Report], provenance: &Provenance) -> String {
    let title = crate::output::text::compare_text(scenario, reports)
        .lines()
        .next()
        .unwrap_or("a comparison")
        .to_owned();
    let mut body = format!("<h1>{}</h1>\n", escape(&title));
    body.push_str(&sections::comparison(reports));
    for (i, report) in reports.iter().enumerate() {
        let name = report.architecture.as_deref().unwrap_or(&report.target);
        let _ = write!(
            body,
            "<details>\n<summary>{}: {}/{} served</summary>\n{}</details>\n",
            escape(name),
            report.summary.served,
            report.summary.clients,
            sections::run_sections(report, &format!("-{}", i + 1))
        );
    }
    if let Some(first) = reports.first() {
        body.push_str(&sections::comparison_settings(first));
    }
    page(&title, &body, provenance)
}

/// The page of a sweep (`simulator sweep`): goodput and the fraction in time against the
/// offered rate, with each architecture's knee.
pub fn sweep_page(reports: &[SweepReport], provenance: &Provenance) -> String {
    let title = "Sweep: the highest rate still served in time".to_owned();
    let mut body = format!("<h1>{}</h1>\n", escape(&title));
    body.push_str(&sections::sweep(reports));
    page(&title, &body, provenance)
}

/// The page of a lab (`simulator lab`): its checks, then every run it measured.
pub fn lab_page(
    lab: &Lab,
    env: &LabEnv,
    checks: &[Check],
    runs: &[Report],
    provenance: &Provenance,
) -> String {
    let title = format!("Lab {}: {}", lab.id, lab.title);
    let mut body = format!(
        "<h1>{}</h1>\n<p>Sheet: <code>{}</code>; scale {} (one lecture second lasts {}).</p>\n",
        escape(&title),
        escape(lab.sheet),
        env.scale,
        humantime::format_duration(std::time::Duration::from_millis(
            (1000.0 * env.scale).round() as u64
        ))
    );
    body.push_str(&sections::checks(checks));
    if !runs.is_empty() {
        body.push_str("<h2>The runs</h2>\n");
    }
    for (i, report) in runs.iter().enumerate() {
        let title = report.to_text().lines().next().unwrap_or("").to_owned();
        let _ = write!(
            body,
            "<details{}>\n<summary>Run {}: {}</summary>\n{}</details>\n",
            if runs.len() <= 3 { " open" } else { "" },
            i + 1,
            escape(&title),
            sections::run_sections(report, &format!("-{}", i + 1))
        );
    }
    page(&title, &body, provenance)
}

/// Writes `html` to `path`, and says so on stderr.
pub fn write(path: &Path, html: &str) -> Result<(), SimError> {
    std::fs::write(path, html).map_err(|source| SimError::Write {
        path: path.to_owned(),
        source,
    })?;
    eprintln!(
        "wrote {} ({} KiB)",
        path.display(),
        html.len().div_ceil(1024)
    );
    Ok(())
}
