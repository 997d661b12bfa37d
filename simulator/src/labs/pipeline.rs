//! Lab 6: the pipeline's bottleneck, for I/O-bound and CPU-bound handlers.
//!
//! The pipeline splits serving into stages joined by queues: receivers read requests from
//! connections (fed by the `connections` queue), handlers compute the answers (fed by the
//! `requests` queue), senders write them back. A stage with fewer threads than its work
//! needs is the bottleneck, and the queue in front of it is where requests wait: every
//! other stage is idle most of the time. The server's `/stats` publishes each queue's mean
//! wait, so the lab finds the bottleneck by reading where the time went.
//!
//! Two kinds of work tell apart what a handler needs:
//!
//! * `/sleep` (I/O-bound): a sleeping handler holds a thread but no CPU, so 8 handlers
//!   finish 8 one-second sleeps in about one second where 1 handler needs eight: threads
//!   are the resource, and the lab expects at least 3× (of the ideal 8×, for noise).
//! * `/factor` (CPU-bound): a computing handler needs a CPU. More handlers than CPUs do
//!   not help, and the clients share the same CPUs, so the gain is at most the number of
//!   CPUs. What the lab can judge on any machine is that several handlers computed at once
//!   (the handler group's `busy_peak`); the rates it prints for people to compare.
//!
//! With one handler, requests wait in the `requests` queue in both cases. More receivers
//! or senders would change nothing here; they matter for slow or idle clients (lab 8, 19).

use std::time::Duration;

use super::*;

/// The pipeline's queues after a run: mean waits of (connections, requests) in µs. The
/// larger one is in front of the bottleneck stage. A queue the server does not have reads
/// as 0, so a renamed queue shows as a failed check rather than a panic.
fn stage_waits(stats: &Snapshot) -> (f64, f64) {
    let wait = |name: &str| stats.queue(name).map_or(0.0, |q| q.mean_wait_us);
    (wait("connections"), wait("requests"))
}

/// The semiprime of the CPU-bound workload: 300007 × 300017, about 150 000 trial divisions.
pub const SEMIPRIME: u64 = 90_007_200_119;

/// Lab 6's entry in the list of labs ([`super::all`]).
/// The question before running: with one handler, in which queue do requests wait,
/// and what do more handlers buy for sleeping work and for computing work?
pub(super) const LAB6: Lab = Lab {
    id: 6,
    title: "The pipeline's bottleneck: CPU-bound and I/O-bound handlers",
    sheet: "labs/06-pipeline-bottleneck.md",
    targets: &[],
    run: lab6,
};

/// Lab 6: where requests wait in the pipeline, and what more handlers buy, for sleeping
/// handlers and for computing ones.
///
/// In its HTML report (`--report`): inside the server, the requests queue filling while the
/// handlers stay busy and the receivers do not: the bottleneck is the stage whose threads
/// are all busy.
pub(super) fn lab6(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let mut checks = io_bound(env)?;
    checks.extend(cpu_bound(env)?);
    Ok(checks)
}

/// The pipeline with `handlers` handler threads and its other stages at their defaults.
fn pipeline(handlers: u32) -> Servers {
    Servers::default().with("handlers", handlers)
}

/// The I/O-bound steps: where sleeping requests wait with 1 handler, and how much faster 8
/// handlers are.
fn io_bound(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let mut checks = Vec::new();
    let args = ServerArgs::default();
    // I/O-bound: 8 clients each sleeping one lecture second. One handler serves them one
    // after the other (8 s); eight serve them at once (1 s). The 30 s deadline is far from
    // both, so every client is served and only the elapsed time differs.
    let sleep = format!("/sleep/{}", env.lecture(1.0).as_millis());
    let io = Scenario::get(8, &sleep, env.lecture(30.0), Duration::ZERO);
    // Each `measure` starts a fresh pipeline and blocks until the 8 clients are answered.
    let (one, one_stats) = measure(env, "pipeline", &pipeline(1), args.clone(), &io)?;
    let (eight, _) = measure(env, "pipeline", &pipeline(8), args, &io)?;
    let (conn_wait, req_wait) = stage_waits(&one_stats);
    checks.push(check(
        "I/O-bound /sleep, 1 handler: where requests wait",
        format!(
            "requests queue {}, connections queue {}",
            human_us(req_wait as u64),
            human_us(conn_wait as u64)
        ),
        "the requests queue: the single handler is the bottleneck",
        // The requests queue waited longer than the connections queue: the receivers keep
        // up, the handler does not.
        req_wait > conn_wait,
    ));
    checks.push(check(
        "I/O-bound /sleep: time for 8 clients with 1 handler, then 8 handlers",
        format!(
            "{} ms, then {} ms",
            one.summary.elapsed_ms, eight.summary.elapsed_ms
        ),
        "8 handlers at least 3× faster: sleeping handlers need threads, not CPUs",
        // 8× is the ideal (eight sleeps at once); 3× leaves room for a busy machine.
        eight.summary.elapsed_ms * 3 <= one.summary.elapsed_ms,
    ));
    Ok(checks)
}

/// The CPU-bound steps: where computing requests wait with 1 handler, and how many handlers
/// compute at once with more of them.
fn cpu_bound(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let mut checks = Vec::new();
    let args = ServerArgs::default();
    // CPU-bound: a closed-loop load of /factor. Four clients keep four requests in the
    // pipeline at all times for 10 lecture seconds, so a handler is never short of work;
    // with 1 handler only one computes, with twice as many handlers as CPUs (at least 4)
    // every request can be computing, as far as free CPUs allow.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let cpu = Scenario {
        load: Load::Duration(env.lecture(10.0)),
        ..Scenario::get(
            4,
            &format!("/factor/{SEMIPRIME}"),
            Duration::from_secs(5),
            Duration::ZERO,
        )
    };
    let handlers = u32::try_from(cpus).unwrap_or(1).max(2) * 2;
    let (one, one_stats) = measure(env, "pipeline", &pipeline(1), args.clone(), &cpu)?;
    let (many, many_stats) = measure(env, "pipeline", &pipeline(handlers), args, &cpu)?;
    let (conn_wait, req_wait) = stage_waits(&one_stats);
    let rate = |r: &Report| r.throughput.as_ref().map_or(0.0, |t| t.per_second);
    // The most handlers that were computing at the same moment during the run.
    let busy_peak = |stats: &Snapshot| stats.thread_group("handler").map_or(0, |g| g.busy_peak);
    checks.push(check(
        "CPU-bound /factor, 1 handler: where requests wait",
        format!(
            "requests queue {}, connections queue {}",
            human_us(req_wait as u64),
            human_us(conn_wait as u64)
        ),
        "the requests queue: the handler is the bottleneck",
        req_wait > conn_wait,
    ));
    checks.push(check(
        format!("CPU-bound /factor: handlers computing at once, with 1 handler, then {handlers} handlers on {cpus} CPUs"),
        format!(
            "at most {} at once, then {} at once; {:.0} then {:.0} requests/s",
            busy_peak(&one_stats),
            busy_peak(&many_stats),
            rate(&one),
            rate(&many)
        ),
        "1, then several: with more handlers the 4 clients' requests are computed in parallel. How much faster that is depends on free CPUs (the clients share them too), so the rates are reported, not judged: compare them on an idle machine",
        // One handler never computes two at once; more handlers do, at least two at some
        // moment, whatever the machine's load. Both runs must have served something.
        busy_peak(&one_stats) == 1 && busy_peak(&many_stats) >= 2 && one.summary.served > 0 && many.summary.served > 0,
    ));
    Ok(checks)
}
