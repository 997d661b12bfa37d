//! The grader is itself tested: every mutant is graded through `grader::grade`, as a course
//! would grade a student's binary (`Subject::Command`, the grader starts it on a free port
//! and stops it with SIGTERM), and the check that must catch its defect fails with a
//! message; the correct variant of the same design passes the same check, so that the
//! failure is the defect's and not the check's.
//!
//! Each grade runs only the checks it is about (a spec of its own), which keeps the suite
//! to seconds per mutant. The grades run one at a time (a lock): several checks judge what
//! finishes first, and two grades at once on a small machine would only make them slower.

use std::sync::{Mutex, MutexGuard};

use grader::{Expect, Grade, Options, Spec, Subject};

/// One grade at a time in this test binary.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A test that failed while holding the lock poisons it; the next one may still run.
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Series A: the load before E.descriptors in the tests that need one.
const SERIES_A: [&str; 6] = [
    "A.get-root",
    "A.routes",
    "A.keep-alive",
    "A.pipelining",
    "A.body",
    "A.hostile",
];

/// A spec that runs only `checks`, each required and worth a point.
fn spec_of(checks: &[&str]) -> Spec {
    let mut text = String::from("[checks]\n");
    for check in checks {
        text.push_str(&format!(
            "\"{check}\" = {{ weight = 1, required = true }}\n"
        ));
    }
    Spec::from_toml(&text).expect("the check names are the contract's")
}

/// Grades `mutant KIND` with only `checks`, as a server of design `expect`.
fn grade(kind: &str, expect: &str, checks: &[&str]) -> Grade {
    let _turn = one_at_a_time();
    let command = format!("{} {kind} --addr {{addr}}", env!("CARGO_BIN_EXE_mutant"));
    let mut options = Options::new(Subject::Command(command));
    options.expect = Some(expect.parse::<Expect>().expect("a valid --expect"));
    options.spec = spec_of(checks);
    grader::grade(&options).unwrap_or_else(|e| panic!("mutant {kind} could not be graded: {e}"))
}

/// The grade's line for `check`, which must have run (not skipped).
fn result<'g>(grade: &'g Grade, check: &str) -> &'g grader::CheckResult {
    let result = grade
        .check(check)
        .unwrap_or_else(|| panic!("{check} is not in the grade of {}", grade.subject));
    assert!(
        result.skipped.is_none(),
        "{check} was skipped for {}: {:?}",
        grade.subject,
        result.skipped
    );
    result
}

/// `mutant KIND` fails `check`, with a message that says why: it names `reason`, a word of
/// what the defect breaks (so that a mutant failing for another reason, a crash say, is
/// not taken for caught).
fn assert_caught(kind: &str, expect: &str, check: &str, reason: &str) {
    let grade = grade(kind, expect, &[check]);
    let result = result(&grade, check);
    assert!(
        !result.passed(),
        "mutant {kind} passed {check}, which must catch it: {}",
        result.message
    );
    assert!(
        result.message.to_lowercase().contains(reason),
        "{check} failed mutant {kind}, but its message does not say {reason:?}: {}",
        result.message
    );
    assert!(
        !grade.passed(),
        "mutant {kind}: a failed required check fails the grade"
    );
    println!("mutant {kind}: {check} FAIL: {}", result.message);
}

/// The correct variant `kind` passes every one of `checks`.
fn assert_passes(kind: &str, expect: &str, checks: &[&str]) {
    let grade = grade(kind, expect, checks);
    for check in checks {
        let result = result(&grade, check);
        assert!(
            result.passed(),
            "the correct variant `mutant {kind}` fails {check}: {}",
            result.message
        );
    }
}

// The controls: the correct designs pass every check that catches a mutant built from them.

#[test]
fn the_starter_passes_the_checks_its_mutants_fail() {
    // Series A is also the load E.descriptors compares against.
    let mut checks: Vec<&str> = SERIES_A.to_vec();
    checks.extend(["B.slowloris", "E.descriptors", "E.sigterm"]);
    assert_passes("none", "sequential", &checks);
}

#[test]
fn a_thread_per_connection_passes_the_checks_its_mutants_fail() {
    assert_passes(
        "per-connection",
        "per-connection",
        &["A.hostile", "C.overtake", "C.counter"],
    );
}

#[test]
fn a_bounded_pool_passes_the_burst() {
    assert_passes("pool", "pool:4", &["D.burst"]);
}

// The mutants, each caught by its check.

#[test]
fn keep_alive_ignored_is_caught_by_a_keep_alive() {
    assert_caught(
        "keep-alive-ignored",
        "sequential",
        "A.keep-alive",
        "connection",
    );
}

#[test]
fn answers_held_until_close_are_caught_by_a_keep_alive() {
    assert_caught(
        "answers-held-until-close",
        "sequential",
        "A.keep-alive",
        "closed its side",
    );
}

#[test]
fn pipelined_out_of_order_is_caught_by_a_pipelining() {
    assert_caught(
        "pipelined-out-of-order",
        "sequential",
        "A.pipelining",
        "order",
    );
}

#[test]
fn content_length_unchecked_is_caught_by_a_body() {
    assert_caught("content-length-unchecked", "sequential", "A.body", "body");
}

#[test]
fn panic_on_bad_header_is_caught_by_a_hostile() {
    assert_caught(
        "panic-on-bad-header",
        "per-connection",
        "A.hostile",
        "precise status",
    );
}

#[test]
fn slowloris_vulnerable_is_caught_by_b_slowloris() {
    assert_caught(
        "slowloris-vulnerable",
        "sequential",
        "B.slowloris",
        "slow clients",
    );
}

#[test]
fn blocking_accept_loop_is_caught_by_c_overtake() {
    assert_caught(
        "blocking-accept-loop",
        "per-connection",
        "C.overtake",
        "one request at a time",
    );
}

#[test]
fn unsynchronised_counter_is_caught_by_c_counter() {
    assert_caught(
        "unsynchronised-counter",
        "per-connection",
        "C.counter",
        "lost",
    );
}

#[test]
fn unbounded_queue_is_caught_by_d_burst() {
    assert_caught("unbounded-queue", "pool:4", "D.burst", "turn away");
}

#[test]
fn fd_leak_per_connection_is_caught_by_e_descriptors() {
    // E.descriptors compares before and after the load of the other series: series A's
    // some thirty connections are that load here.
    let mut checks: Vec<&str> = SERIES_A.to_vec();
    checks.push("E.descriptors");
    let grade = grade("fd-leak-per-connection", "sequential", &checks);
    let result = result(&grade, "E.descriptors");
    assert!(
        !result.passed(),
        "mutant fd-leak-per-connection passed E.descriptors: {}",
        result.message
    );
    assert!(
        result.message.contains("descriptors"),
        "E.descriptors failed mutant fd-leak-per-connection, but its message does not say so: {}",
        result.message
    );
    println!(
        "mutant fd-leak-per-connection: E.descriptors FAIL: {}",
        result.message
    );
}

#[test]
fn sigterm_ignored_is_caught_by_e_sigterm() {
    assert_caught("sigterm-ignored", "sequential", "E.sigterm", "sigterm");
}
