//! The outputs of a grade: Gradescope's `results.json` has the fields Gradescope reads,
//! JUnit XML is well-formed with a suite per series, Autolab's last line is its scores,
//! and text ends in one verdict line. Made from a grade written here, so that every
//! status (passed, failed, skipped, a pass rate over repetitions) and text that XML must
//! escape are covered without a server.

use std::time::Duration;

use grader::{CheckResult, Grade, Leaderboard};

fn check(name: &str, passes: u32, runs: u32, skipped: Option<&str>, message: &str) -> CheckResult {
    CheckResult {
        name: name.to_owned(),
        series: name.chars().next().unwrap_or('?'),
        weight: 4.0,
        required: true,
        runs,
        passes,
        skipped: skipped.map(str::to_owned),
        message: message.to_owned(),
    }
}

fn sample() -> Grade {
    let checks = vec![
        check(
            "A.get-root",
            2,
            2,
            None,
            "GET / answered \"HTTP/1.1 200 OK\"",
        ),
        check(
            "C.overtake",
            1,
            2,
            None,
            "the echo <finished> after the sleep & so on",
        ),
        check(
            "E.sigterm",
            0,
            0,
            Some("only a server the grader starts"),
            "",
        ),
    ];
    Grade {
        subject: "python3 starter.py {addr}".to_owned(),
        expect: "pool:4".to_owned(),
        score: checks.iter().map(CheckResult::score).sum(),
        max_score: checks.iter().map(CheckResult::max_score).sum(),
        checks,
        leaderboard: Leaderboard {
            rate: 40.0,
            served_fraction: Some(0.975),
            p99_ms: Some(12.5),
        },
        elapsed: Duration::from_millis(6500),
    }
}

#[test]
fn gradescope_results_have_the_fields_gradescope_reads() {
    let grade = sample();
    let json: serde_json::Value =
        serde_json::from_str(&grader::output::gradescope(&grade)).expect("JSON");
    assert_eq!(json["score"].as_f64(), Some(6.0));
    let tests = json["tests"].as_array().expect("tests[]");
    assert_eq!(tests.len(), 3);
    for test in tests {
        assert!(test["name"].is_string(), "{test}");
        assert!(test["score"].is_number(), "{test}");
        assert!(test["max_score"].is_number(), "{test}");
        assert!(test["output"].is_string(), "{test}");
        assert!(
            test["tags"].as_array().is_some_and(|t| t.len() == 1),
            "{test}"
        );
        assert!(
            ["visible", "hidden", "after_due_date", "after_published"]
                .contains(&test["visibility"].as_str().unwrap_or("")),
            "{test}"
        );
    }
    assert_eq!(tests[1]["score"].as_f64(), Some(2.0));
    assert_eq!(tests[1]["max_score"].as_f64(), Some(4.0));
    assert_eq!(tests[1]["tags"][0], "C");
    assert!(tests[1]["output"]
        .as_str()
        .unwrap_or("")
        .contains("1 of 2 runs"));
    assert_eq!(tests[2]["max_score"].as_f64(), Some(0.0));
    let board = json["leaderboard"].as_array().expect("leaderboard");
    assert!(board
        .iter()
        .all(|e| e["name"].is_string() && e["value"].is_number()));
    assert_eq!(board[0]["value"].as_f64(), Some(0.975));
    assert_eq!(board[1]["value"].as_f64(), Some(12.5));
}

/// Checks that `xml` is well-formed enough for a JUnit reader: after the declaration,
/// every tag closes in order, attribute values are quoted, and no `<` or bare `&` is left
/// in text. Returns the names of the elements opened, in order.
fn well_formed(xml: &str) -> Vec<String> {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("the XML declaration");
    let mut open: Vec<String> = Vec::new();
    let mut seen = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find('<') {
        let text = &rest[..start];
        assert!(!text.contains('>'), "a stray > in {text:?}");
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "a bare & in {text:?}"
            );
        }
        let end = rest[start..].find('>').expect("a tag that ends") + start;
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "a < inside the tag {tag:?}");
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in {tag:?}"
        );
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                open.pop().as_deref(),
                Some(name),
                "closing {name} out of order"
            );
        } else {
            let name = tag
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_end_matches('/');
            seen.push(name.to_owned());
            if !tag.ends_with('/') {
                open.push(name.to_owned());
            }
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "never closed: {open:?}");
    assert!(rest.trim().is_empty());
    seen
}

#[test]
fn junit_is_well_formed_with_a_suite_per_series() {
    let xml = grader::output::junit(&sample());
    let elements = well_formed(&xml);
    assert_eq!(elements.iter().filter(|e| *e == "testsuites").count(), 1);
    assert_eq!(elements.iter().filter(|e| *e == "testsuite").count(), 3);
    assert_eq!(elements.iter().filter(|e| *e == "testcase").count(), 3);
    assert_eq!(elements.iter().filter(|e| *e == "failure").count(), 1);
    assert_eq!(elements.iter().filter(|e| *e == "skipped").count(), 1);
    assert!(xml.contains("&lt;finished&gt;") && xml.contains("&amp; so on"));
}

#[test]
fn autolab_ends_in_its_scores_and_text_in_a_verdict() {
    let grade = sample();
    let autolab = grader::output::autolab(&grade);
    let last = autolab.trim_end().lines().last().expect("a last line");
    let json: serde_json::Value = serde_json::from_str(last).expect("JSON");
    assert_eq!(json["scores"]["A.get-root"].as_f64(), Some(4.0));
    assert_eq!(json["scores"]["C.overtake"].as_f64(), Some(2.0));
    let text = grader::output::text(&grade);
    let verdict = text.trim_end().lines().last().expect("a verdict");
    assert!(
        verdict.starts_with("FAILED: required check(s) failed: C.overtake"),
        "{verdict}"
    );
    assert!(verdict.contains("score 6 / 8"), "{verdict}");
    assert!(text.contains("FAIL C.overtake [1/2 runs]"), "{text}");
    let html = grader::output::html(&grade);
    assert!(html.contains("&lt;finished&gt;"));
}
