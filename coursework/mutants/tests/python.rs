//! The Python starter and Python's own `http.server`, graded over the wire like any
//! student's binary (`Subject::Command`). The starter speaks servelab's protocol and must
//! pass series A; `http.server` was never written for it, and the grader must say so.
//!
//! Both need `python3`; without it each test says why it skipped and passes.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use grader::{Expect, Grade, Options, Spec, Subject};

/// The directory of the Python files, `coursework/python`.
fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../python")
}

/// Whether `python3` runs here; prints the reason when it does not.
fn have_python() -> bool {
    let found = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        println!("skipped: python3 is not installed, so the Python servers cannot be graded");
    }
    found
}

/// Grades `python3 SCRIPT --addr {addr}` with `spec`, as a sequential design.
fn grade(script: &str, spec: Spec) -> Grade {
    let script = python_dir().join(script);
    let command = format!("python3 {} --addr {{addr}}", script.display());
    let mut options = Options::new(Subject::Command(command));
    options.expect = Some(Expect::Sequential);
    options.spec = spec;
    grader::grade(&options).unwrap_or_else(|e| panic!("{script:?} could not be graded: {e}"))
}

/// Every check's line, for a failure message.
fn report(grade: &Grade) -> String {
    grade
        .checks
        .iter()
        .map(|c| format!("{} {}: {}", c.status(), c.name, c.message))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_python_starter_passes_series_a_over_the_wire() {
    if !have_python() {
        return;
    }
    let spec = Spec::from_toml(
        "[checks]\n\
         \"A.get-root\" = { weight = 4, required = true }\n\
         \"A.routes\" = { weight = 4, required = true }\n\
         \"A.keep-alive\" = { weight = 4, required = true }\n\
         \"A.pipelining\" = { weight = 3, required = true }\n\
         \"A.body\" = { weight = 3, required = true }\n\
         \"A.hostile\" = { weight = 4, required = true }\n\
         \"C.overtake\" = { weight = 5, required = true }\n\
         \"E.sigterm\" = { weight = 3, required = true }\n",
    )
    .expect("a valid spec");
    let grade = grade("starter.py", spec);
    println!("{}", report(&grade));
    for check in &grade.checks {
        assert!(
            check.passed(),
            "the Python starter fails {}: {}\n\n{}",
            check.name,
            check.message,
            report(&grade)
        );
    }
}

#[test]
fn python_http_server_fails_the_protocol() {
    if !have_python() {
        return;
    }
    // `python3 -m http.server --bind HOST PORT`, given `--addr` by a tiny wrapper.
    let grade = grade("stdlib_http_server.py", Spec::default().only("A."));
    println!("{}", report(&grade));
    // It has no /echo, /sleep or /stats (501 for POST, 404 for the rest) ...
    for check in ["A.routes", "A.body"] {
        let result = grade.check(check).expect("series A was graded");
        assert!(
            !result.passed() && !result.message.is_empty(),
            "http.server passes {check}, which it cannot: {}",
            report(&grade)
        );
    }
    // ... and answers in HTTP/1.0, closing the connection after every answer.
    let keep_alive = grade.check("A.keep-alive").expect("series A was graded");
    assert!(!keep_alive.passed(), "{}", report(&grade));
    assert!(!grade.passed(), "http.server must fail the grade");
}
