//! Labs 1 and 2: the sequential server and the lecture's patient and impatient clients.

use std::fmt::Write as _;

use super::*;

/// Lab 1's entry in the list of labs ([`super::all`]).
pub(super) const LAB1: Lab = Lab {
    id: 1,
    title: "The sequential server and five patient clients",
    sheet: "labs/01-sequential-patient-clients.md",
    targets: &["single"],
    run: lab1,
};

pub(super) fn lab1(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let flags = Servers::default();
    let hold = env.lecture(5.0);
    let mut checks = Vec::new();
    for (timeout, expected, why) in [
        (
            15.0,
            3usize,
            "the 4th client is answered only after three 5 s holds, so at 15 s plus the hand-over time, never before: a deadline of 15 s counted from the common start always misses it",
        ),
        (
            14.0,
            3,
            "answers at 0, 5, 10, 15 s; the 4th is 1 s too late",
        ),
        (
            16.0,
            4,
            "the 4th is answered at 15 s, 1 s early; the 5th would need 20 s",
        ),
    ] {
        let scenario = Scenario::get(5, "/", env.lecture(timeout), hold);
        let (report, _) = measure(env, "single", &flags, flags.server_args(&scenario), &scenario)?;
        let mut c = served_check("single", &scenario, &report, &[expected], why);
        let _ = write!(c.measured, "; {}", answers(&report));
        checks.push(c);
    }

    // The lecture's own clock: each blocking call of its client gets a fresh 15 s, so the
    // 4th client's deadline is 15 s after *its* request, a little after the common start.
    // Its answer then lands within a few milliseconds of that deadline, on one side or the
    // other: the lecture's "4 served" is this knife edge falling the lucky way.
    let timeout = env.lecture(15.0);
    let scenario = Scenario::get(5, "/", timeout, hold).with_clock(DeadlineClock::PerCall);
    let (report, _) = measure(
        env,
        "single",
        &flags,
        flags.server_args(&scenario),
        &scenario,
    )?;
    let mut c = served_check(
        "single",
        &scenario,
        &report,
        &[3, 4],
        "the 4th client is answered 15 s after the start plus the hand-over time, and its own 15 s began when it sent its request, a little after the start: which of the two is later decides, so either count is right; the lecture saw 4",
    );
    c.what = format!("{} (the lecture's per-call clock)", c.what);
    let _ = write!(c.measured, "; {}", answers(&report));
    checks.push(c);
    Ok(checks)
}

/// Lab 2's entry in the list of labs ([`super::all`]).
pub(super) const LAB2: Lab = Lab {
    id: 2,
    title: "Impatient clients, long holds: one served",
    sheet: "labs/02-impatient-clients.md",
    targets: &["single"],
    run: lab2,
};

pub(super) fn lab2(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let scenario = Scenario::get(5, "/", env.lecture(5.0), env.lecture(30.0));
    Ok(vec![served_step(
        env,
        "single",
        &Servers::default(),
        &scenario,
        &[1],
        "the first client holds the only thread for 30 s; the others give up after 5 s",
    )?])
}
