//! A grade in the formats courses use.
//!
//! * [`text`]: a line per check (`PASS`, `FAIL` or `SKIP`, its name, its message, and its
//!   pass rate over repetitions), then one verdict line with the score;
//! * [`json()`]: the [`Grade`] itself;
//! * [`gradescope`]: Gradescope's `results.json`: `score`, `tests[]` (`name`, `score`,
//!   `max_score`, `output`, `tags` = the series, `visibility`) and a `leaderboard`
//!   (served fraction and p99 at the open loop's fixed rate);
//! * [`autolab`]: Autolab reads the last line of the output as `{"scores": {...}}`;
//! * [`junit`]: JUnit XML, a `testsuite` per series, for CI systems;
//! * [`html`]: one self-contained page of the failing checks (`--report FILE.html`).
//!
//! Every function returns the whole text; the caller writes it where it should go.

use std::fmt::Write as _;

use serde_json::json;

use crate::{CheckResult, Grade};

/// The grade as text, ending in one verdict line.
pub fn text(grade: &Grade) -> String {
    let mut out = format!("grading {} as {}\n\n", grade.subject, grade.expect);
    let width = grade.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for check in &grade.checks {
        let rate = if check.runs > 1 {
            format!(" [{}/{} runs]", check.passes, check.runs)
        } else {
            String::new()
        };
        let said = check.skipped.as_deref().unwrap_or(&check.message);
        let _ = writeln!(
            out,
            "{} {:width$}{rate}  {said}",
            check.status(),
            check.name
        );
    }
    let failed: Vec<&str> = grade
        .checks
        .iter()
        .filter(|c| c.required && c.skipped.is_none() && !c.passed())
        .map(|c| c.name.as_str())
        .collect();
    let verdict = if failed.is_empty() {
        "PASSED: every required check passed".to_owned()
    } else {
        format!("FAILED: required check(s) failed: {}", failed.join(", "))
    };
    let _ = writeln!(
        out,
        "\n{verdict}; score {} / {} ({:.1} s)",
        points(grade.score),
        points(grade.max_score),
        grade.elapsed.as_secs_f64()
    );
    out
}

/// A score with at most two decimals, without trailing zeros.
fn points(x: f64) -> String {
    let text = format!("{x:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The grade as JSON.
pub fn json(grade: &Grade) -> String {
    serde_json::to_string_pretty(grade).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// A check's output for people: its status, its message, its pass rate.
fn output_of(check: &CheckResult) -> String {
    let said = check.skipped.as_deref().unwrap_or(&check.message);
    if check.runs > 1 {
        format!(
            "{} ({} of {} runs passed): {said}",
            check.status(),
            check.passes,
            check.runs
        )
    } else {
        format!("{}: {said}", check.status())
    }
}

/// Gradescope's `results.json`.
pub fn gradescope(grade: &Grade) -> String {
    let tests: Vec<serde_json::Value> = grade
        .checks
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "score": c.score(),
                "max_score": c.max_score(),
                "output": output_of(c),
                "tags": [c.series.to_string()],
                "visibility": "visible",
            })
        })
        .collect();
    let board = &grade.leaderboard;
    let document = json!({
        "score": grade.score,
        "output": text(grade),
        "execution_time": grade.elapsed.as_secs_f64(),
        "tests": tests,
        "leaderboard": [
            { "name": "served fraction", "value": board.served_fraction.unwrap_or(0.0) },
            { "name": "p99 ms", "value": board.p99_ms.unwrap_or(0.0), "order": "asc" },
        ],
    });
    serde_json::to_string_pretty(&document).unwrap_or_default()
}

/// Autolab's output: the text, then a last line `{"scores": {...}}`.
pub fn autolab(grade: &Grade) -> String {
    let scores: serde_json::Map<String, serde_json::Value> = grade
        .checks
        .iter()
        .map(|c| (c.name.clone(), json!(c.score())))
        .collect();
    format!("{}{}\n", text(grade), json!({ "scores": scores }))
}

/// Escapes text for XML and HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: a testsuite per series, a testcase per check.
pub fn junit(grade: &Grade) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let failures = grade
        .checks
        .iter()
        .filter(|c| c.skipped.is_none() && !c.passed())
        .count();
    let _ = writeln!(
        out,
        "<testsuites name=\"grade {}\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">",
        escape(&grade.subject),
        grade.checks.len(),
        grade.elapsed.as_secs_f64()
    );
    for series in ['A', 'B', 'C', 'D', 'E'] {
        let checks: Vec<&CheckResult> =
            grade.checks.iter().filter(|c| c.series == series).collect();
        if checks.is_empty() {
            continue;
        }
        let failed = checks
            .iter()
            .filter(|c| c.skipped.is_none() && !c.passed())
            .count();
        let skipped = checks.iter().filter(|c| c.skipped.is_some()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{series}\" tests=\"{}\" failures=\"{failed}\" skipped=\"{skipped}\">",
            checks.len()
        );
        for check in checks {
            let _ = write!(
                out,
                "    <testcase classname=\"grade.{series}\" name=\"{}\"",
                escape(&check.name)
            );
            match (&check.skipped, check.passed()) {
                (Some(why), _) => {
                    let _ = writeln!(
                        out,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        escape(why)
                    );
                }
                (None, true) => out.push_str("/>\n"),
                (None, false) => {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        escape(&check.message),
                        escape(&output_of(check))
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// One self-contained HTML page: the verdict, then the failing checks with their messages,
/// then the others.
pub fn html(grade: &Grade) -> String {
    let mut rows = String::new();
    let mut ordered: Vec<&CheckResult> = grade.checks.iter().collect();
    // Failing checks first, then skipped, then passed.
    ordered.sort_by_key(|c| match c.status() {
        "FAIL" => 0,
        "SKIP" => 1,
        _ => 2,
    });
    for check in ordered {
        let _ = writeln!(
            rows,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td></tr>",
            check.status().to_lowercase(),
            check.status(),
            escape(&check.name),
            points(check.score()),
            points(check.max_score()),
            escape(check.skipped.as_deref().unwrap_or(&check.message))
        );
    }
    let verdict = if grade.passed() { "passed" } else { "failed" };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>grade of {subject}</title>\n<style>\nbody{{font-family:sans-serif;margin:2em;max-width:70em}}\ntable{{border-collapse:collapse}}td{{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}}\ntr.fail td:first-child{{background:#f6c6c6}}tr.pass td:first-child{{background:#c8eec8}}tr.skip td:first-child{{background:#eee}}\n</style></head><body>\n<h1>{subject}: {verdict}, {score} / {max}</h1>\n<p>graded as <code>{expect}</code> in {secs:.1} s</p>\n<table>\n<tr><th>status</th><th>check</th><th>points</th><th>what happened</th></tr>\n{rows}</table>\n</body></html>\n",
        subject = escape(&grade.subject),
        score = points(grade.score),
        max = points(grade.max_score),
        expect = escape(&grade.expect),
        secs = grade.elapsed.as_secs_f64(),
    )
}
