//! The grader is itself tested: every registered architecture is graded in-process with
//! the shipped spec and earns the score its design implies (the table in
//! `docs/grading.md`), a design graded under a false claim fails the check that catches
//! the claim, and `simulator grade` exits 0, 1 or 2 as documented.
//!
//! The architectures are graded one after another in one test: the checks measure order
//! and time, and hygiene reads this process's `/proc`, so nothing else may run meanwhile.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use grader::{Options, Spec, Subject};
use simulator::servers::{claim_of_registered, Registered};

/// Held by every test here: grades measure order and time, and in-process hygiene reads
/// this process's `/proc`, so no two may run at once.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A test that failed while holding the lock poisons it; the next may still run.
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// An architecture, its claim, and its checks that do not pass, with their status.
type Row = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// What each architecture claims with its defaults, and the checks that do not pass in
/// its grade (all others pass): the built-in table of docs/grading.md.
const TABLE: [Row; 11] = [
    ("single", "sequential", &[("C.idle-and-active", "SKIP")]),
    ("thread-per-conn", "per-connection", &[]),
    ("prefork-pool", "workers:8", &[]),
    ("thread-per-request", "per-connection", &[]),
    ("pipeline", "workers:4", &[]),
    ("combined-delegation", "per-connection", &[]),
    ("process-pipeline", "workers:2", &[]),
    ("event-loop", "event-loop", &[]),
    ("async-work-stealing", "async", &[]),
    ("async-per-core", "async", &[]),
    ("io-uring", "event-loop", &[]),
];

/// The status of every check of `name`'s grade that the table expects.
fn expected_status(exceptions: &[(&str, &str)], check: &str) -> &'static str {
    match exceptions.iter().find(|(c, _)| *c == check) {
        Some((_, "SKIP")) => "SKIP",
        Some((_, "FAIL")) => "FAIL",
        // An in-process server has no process of its own to send SIGTERM.
        None if check == "E.sigterm" => "SKIP",
        _ => "PASS",
    }
}

#[test]
fn every_architecture_earns_the_grade_its_design_implies() {
    let _one_at_a_time = one_at_a_time();
    let mut failures = Vec::new();
    for (name, claim, exceptions) in TABLE {
        let entry = architectures::find(name).expect("registered");
        if let Err(why) = entry.available() {
            eprintln!("{name}: skipped: {why}");
            continue;
        }
        let expect = claim_of_registered(entry).expect("starts and states its capacity");
        assert_eq!(expect.to_string(), claim, "{name}'s claim");
        let options = Options {
            expect: Some(expect),
            ..Options::new(Subject::InProcess(Box::new(Registered(entry))))
        };
        let grade = grader::grade(&options).expect("graded");
        eprintln!("{}", grader::output::text(&grade));
        for check in &grade.checks {
            let wanted = expected_status(exceptions, &check.name);
            if check.status() != wanted {
                failures.push(format!(
                    "{name} {}: {} (expected {wanted}): {}",
                    check.name,
                    check.status(),
                    check.skipped.as_deref().unwrap_or(&check.message)
                ));
            }
        }
        assert!(grade.passed(), "{name}: {failures:#?}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A grade of `name` under the claim `expect`, with only the checks named.
fn grade_claimed(name: &str, expect: &str, checks: &[&str]) -> grader::Grade {
    let entry = architectures::find(name).expect("registered");
    let spec = Spec::default();
    let spec = Spec {
        checks: spec
            .checks
            .into_iter()
            .filter(|c| checks.contains(&c.name.as_str()))
            .collect(),
    };
    let options = Options {
        expect: Some(expect.parse().expect("a claim")),
        spec,
        ..Options::new(Subject::InProcess(Box::new(Registered(entry))))
    };
    grader::grade(&options).expect("graded")
}

#[test]
fn a_false_claim_fails_the_check_that_catches_it() {
    let _one_at_a_time = one_at_a_time();
    // The sequential server claimed to be concurrent: the echo does not overtake.
    let grade = grade_claimed("single", "per-connection", &["C.overtake", "D.burst"]);
    let overtake = grade.check("C.overtake").expect("ran");
    assert_eq!(overtake.status(), "FAIL");
    assert!(
        overtake.message.contains("one request at a time"),
        "{}",
        overtake.message
    );
    assert_eq!(grade.check("D.burst").map(|c| c.status()), Some("FAIL"));
    assert!(!grade.passed());
    // A concurrent server claimed to be sequential: the echo overtakes.
    let grade = grade_claimed("thread-per-conn", "sequential", &["C.overtake"]);
    assert_eq!(grade.check("C.overtake").map(|c| c.status()), Some("FAIL"));
    // A pool of 8 that makes clients wait claimed to turn them away.
    let grade = grade_claimed("prefork-pool", "pool:8", &["D.burst"]);
    let burst = grade.check("D.burst").expect("ran");
    assert_eq!(burst.status(), "FAIL");
    assert!(burst.message.contains("turn away"), "{}", burst.message);
}

fn simulator(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_simulator"))
        .arg("grade")
        .args(args)
        .output()
        .expect("the simulator runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("servelab-grade-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir.join(name)
}

#[test]
fn bad_input_is_one_sentence_and_exit_status_2() {
    let _one_at_a_time = one_at_a_time();
    let unknown = scratch("unknown.toml");
    std::fs::write(&unknown, "[checks]\n\"C.overtaek\" = { weight = 1 }\n").expect("written");
    let unknown = unknown.to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 5] = [
        (&["--server", "/nonexistent/server --addr {addr}"], "exited"),
        (&["--server", "sleep 30"], "{addr}"),
        (&["--target", "127.0.0.1:1"], "nothing is listening"),
        (&["single", "--spec", &unknown], "\"C.overtaek\""),
        (&["single", "--expect", "pool:zero"], "pool:N"),
    ];
    for (args, says) in cases {
        let output = simulator(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn a_failed_grade_exits_1_and_a_passed_one_0() {
    let _one_at_a_time = one_at_a_time();
    let spec = scratch("overtake.toml");
    std::fs::write(
        &spec,
        "[checks]\n\"C.overtake\" = { weight = 5, required = true }\n",
    )
    .expect("written");
    let spec = spec.to_string_lossy().into_owned();
    let failed = simulator(&["thread-per-conn", "--expect", "sequential", "--spec", &spec]);
    assert_eq!(failed.status.code(), Some(1));
    let text = String::from_utf8_lossy(&failed.stdout);
    assert!(text.contains("FAIL C.overtake"), "{text}");
    assert!(
        text.contains("FAILED: required check(s) failed: C.overtake"),
        "{text}"
    );

    let report = scratch("report.html");
    let results = scratch("results.json");
    let passed = simulator(&[
        "thread-per-conn",
        "--spec",
        &spec,
        "--format",
        "gradescope",
        "--output",
        &results.to_string_lossy(),
        "--report",
        &report.to_string_lossy(),
    ]);
    assert_eq!(
        passed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&results).expect("written")).expect("JSON");
    assert_eq!(json["score"], 5.0);
    assert_eq!(json["tests"][0]["name"], "C.overtake");
    let html = std::fs::read_to_string(&report).expect("written");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("C.overtake"));
}

#[test]
fn a_command_is_started_on_a_free_port_and_stopped_with_sigterm() {
    let _one_at_a_time = one_at_a_time();
    // The single server's binary, beside the simulator's when the workspace is built
    // (`cargo test --workspace`, as CI runs it).
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_simulator")).with_file_name("single");
    if !binary.exists() {
        eprintln!(
            "skipped: {} is not built (run cargo test --workspace)",
            binary.display()
        );
        return;
    }
    let spec = Spec::default();
    let wanted = ["A.get-root", "C.overtake", "E.descriptors", "E.sigterm"];
    let options = Options {
        expect: Some(grader::Expect::Sequential),
        spec: Spec {
            checks: spec
                .checks
                .into_iter()
                .filter(|c| wanted.contains(&c.name.as_str()))
                .collect(),
        },
        ..Options::new(Subject::Command(format!(
            "{} --addr {{addr}} --log quiet",
            binary.display()
        )))
    };
    let grade = grader::grade(&options).expect("graded");
    for check in &grade.checks {
        assert_eq!(check.status(), "PASS", "{}: {}", check.name, check.message);
    }
    assert_eq!(grade.checks.len(), wanted.len());
    assert!(grade.passed());
}
