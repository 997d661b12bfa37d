//! Lab 7: the listen backlog, and the two deadline clocks under late connects.
//!
//! The backlog is the kernel's queue of connections that completed the TCP handshake but
//! that the server has not accepted yet (`listen(2)`'s argument). A sequential server
//! accepts one connection, serves it, and only then accepts the next, so while it serves,
//! every other client waits in that queue. The lecture's server asks for a backlog of 1.
//! What happens to the clients that do not fit is the kernel's business, and it is not
//! what a student expects: Linux does not refuse them, it drops their SYN, and the client's
//! kernel sends it again about a second later (the initial retransmission timeout). So a
//! client that found the queue full connects about 1 s late, and its connect time in the
//! report jumps from microseconds to about a second. With a backlog of 1024 everyone
//! connects at once and simply waits in the queue.
//!
//! That lost second is where the two deadline clocks part. On servelab's clock a client's
//! deadline counts from the common start, so the second its kernel spent waiting to retry
//! is part of its wait. On the lecture's clock (`settimeout(T)` on the socket: every
//! blocking call gets a fresh `T`) the wait for the answer starts only when the request is
//! sent, after the late connect, so the lost second does not count. That is why the
//! lecture, with its `listen(1)` server, saw every client served where servelab's default
//! clock serves fewer.
//!
//! This lab is not time-scaled: the retry interval is the kernel's, and the kernel does not
//! know the lecture's scale.

use std::time::Duration;

use super::*;

/// Lab 7's entry in the list of labs ([`super::all`]).
/// The question before running: with a backlog of 1, where do the other clients wait,
/// what does their connect time show, and which deadline clock forgives a slow connect?
pub(super) const LAB7: Lab = Lab {
    id: 7,
    title: "The listen backlog: 1 against 1024",
    sheet: "labs/07-listen-backlog.md",
    targets: &[],
    run: lab7,
};

/// A connect that took this long (µs) was a SYN the full backlog dropped and the client's
/// kernel sent again: a connect on loopback otherwise takes microseconds, and the kernel's
/// first retry comes after about a second.
const LATE_CONNECT_US: u64 = 900_000;

/// Lab 7: ten clients against backlogs of 1 and 1024, then five clients on the two clocks
/// with a backlog of 1.
///
/// In its HTML report (`--report`): rows that spend most of their time waiting to connect:
/// their SYN was dropped, and they are not even connected when the others are served.
pub(super) fn lab7(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let flags = Servers::default();
    let mut checks = Vec::new();
    for backlog in [1u32, 1024] {
        checks.push(backlog_step(env, &flags, backlog)?);
    }
    checks.extend(clocks_step(env, &flags)?);
    Ok(checks)
}

/// The clients of `report` that connected about a second late: their first SYN was
/// dropped.
fn late_connects(report: &Report) -> usize {
    report
        .clients
        .iter()
        .filter(|c| c.connect_us.is_some_and(|us| us >= LATE_CONNECT_US))
        .count()
}

/// Ten clients at once, each asking for 20 ms of the sequential server, with a generous
/// 5 s deadline, against `backlog`. Every client is served in the end either way; what
/// differs is when they connect.
fn backlog_step(env: &LabEnv, flags: &Servers, backlog: u32) -> Result<Check, SimError> {
    // Not scaled: the retry interval is the kernel's.
    let scenario = Scenario::get(10, "/sleep/20", Duration::from_secs(5), Duration::ZERO);
    let args = ServerArgs {
        backlog,
        ..flags.server_args(&scenario)
    };
    // Blocks until all ten are answered: 10 × 20 ms of work, plus a second for those
    // whose SYN had to be sent again.
    let (report, _) = measure(env, "single", flags, args, &scenario)?;
    let late = late_connects(&report);
    let slowest = report
        .clients
        .iter()
        .filter_map(|c| c.connect_us)
        .max()
        .unwrap_or(0);
    // With a backlog of 1 Linux keeps two completed connections waiting (it allows one
    // more than the backlog), so of ten clients most must be late; the check asks for at
    // least three, a wide margin for how fast the server empties the queue while the SYNs
    // arrive.
    let (expected, agrees) = if backlog == 1 {
        ("several clients connect about 1 s late: the full backlog dropped their SYN and their kernel retried", late >= 3)
    } else {
        (
            "every client connects at once: the backlog holds them all",
            late == 0,
        )
    };
    Ok(check(
        format!("single with backlog {backlog}: 10 clients at once"),
        format!(
            "{late} clients connected after ≥ 0.9 s; slowest connect {}",
            human_us(slowest)
        ),
        expected,
        agrees && report.summary.served == 10,
    ))
}

/// The same late connects under the two clocks. Five clients, each wanting 300 ms of the
/// sequential server, a 1.5 s deadline, and the lecture's backlog of 1: two or three
/// connect at once, the others' SYNs are dropped and retried about 1 s later.
///
/// The early ones are answered at 0.3, 0.6 (and 0.9) s. A late connector joins the queue at
/// about 1 s and is answered at 1.3 s or later: on servelab's clock that is close to or
/// past its 1.5 s deadline (its lost second counted), on the lecture's clock it is well
/// within a fresh 1.5 s that began when it sent its request.
fn clocks_step(env: &LabEnv, flags: &Servers) -> Result<Vec<Check>, SimError> {
    let scenario = Scenario::get(5, "/sleep/300", Duration::from_millis(1500), Duration::ZERO);
    let args = ServerArgs {
        backlog: 1,
        ..flags.server_args(&scenario)
    };
    // Two runs of a fresh server each: servelab's clock, then the lecture's.
    let (common, _) = measure(env, "single", flags, args.clone(), &scenario)?;
    let per_call = scenario.clone().with_clock(DeadlineClock::PerCall);
    let (own, _) = measure(env, "single", flags, args, &per_call)?;
    // Under the common clock, only clients that connected late can miss the deadline.
    let missed_only_late = common.clients.iter().all(|c| {
        c.outcome == loadgen::outcome::Outcome::Served
            || c.connect_us.is_some_and(|us| us >= LATE_CONNECT_US)
    });
    Ok(vec![
        check(
            "backlog 1, 5 clients of GET /sleep/300, deadline 1.5 s from the common start (servelab's clock)",
            format!(
                "{}/5 served; {} connected ≥ 0.9 s late; {}",
                common.summary.served,
                late_connects(&common),
                answers(&common)
            ),
            "3 or 4 served: the late connectors are answered at 1.3 s and later, and their deadline was running while their kernel waited to retry the SYN",
            (3..=4).contains(&common.summary.served)
                && late_connects(&common) >= 1
                && missed_only_late,
        ),
        check(
            "the same with a deadline of 1.5 s per call (the lecture's clock: settimeout on the socket)",
            format!(
                "{}/5 served; {} connected ≥ 0.9 s late",
                own.summary.served,
                late_connects(&own)
            ),
            "all 5 served: a late connector's clock starts again when it sends its request, so the second it lost connecting does not count",
            own.summary.served == 5 && late_connects(&own) >= 1,
        ),
    ])
}
