//! Lab 6: the pipeline's bottleneck, for I/O-bound and CPU-bound handlers.

use std::time::Duration;

use super::*;

/// The pipeline's queues after a run: mean waits of (connections, requests) in µs.
fn stage_waits(stats: &Snapshot) -> (f64, f64) {
    let wait = |name: &str| stats.queue(name).map_or(0.0, |q| q.mean_wait_us);
    (wait("connections"), wait("requests"))
}

/// The semiprime of the CPU-bound workload: 300007 × 300017, about 150 000 trial divisions.
pub const SEMIPRIME: u64 = 90_007_200_119;

/// Lab 6's entry in the list of labs ([`super::all`]).
pub(super) const LAB6: Lab = Lab {
    id: 6,
    title: "The pipeline's bottleneck: CPU-bound and I/O-bound handlers",
    sheet: "labs/06-pipeline-bottleneck.md",
    targets: &[],
    run: lab6,
};

pub(super) fn lab6(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let mut checks = Vec::new();
    let pipeline = |handlers: u32| Servers::default().with("handlers", handlers);
    let args = ServerArgs::default();

    // I/O-bound: 8 clients each sleeping one lecture second.
    let sleep = format!("/sleep/{}", env.lecture(1.0).as_millis());
    let io = Scenario::get(8, &sleep, env.lecture(30.0), Duration::ZERO);
    let (one, one_stats) = measure(env, "pipeline", &pipeline(1), args.clone(), &io)?;
    let (eight, _) = measure(env, "pipeline", &pipeline(8), args.clone(), &io)?;
    let (conn_wait, req_wait) = stage_waits(&one_stats);
    checks.push(check(
        "I/O-bound /sleep, 1 handler: where requests wait",
        format!(
            "requests queue {}, connections queue {}",
            human_us(req_wait as u64),
            human_us(conn_wait as u64)
        ),
        "the requests queue: the single handler is the bottleneck",
        req_wait > conn_wait,
    ));
    checks.push(check(
        "I/O-bound /sleep: time for 8 clients with 1 handler, then 8 handlers",
        format!(
            "{} ms, then {} ms",
            one.summary.elapsed_ms, eight.summary.elapsed_ms
        ),
        "8 handlers at least 3× faster: sleeping handlers need threads, not CPUs",
        eight.summary.elapsed_ms * 3 <= one.summary.elapsed_ms,
    ));

    // CPU-bound: a closed-loop load of /factor.
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
        busy_peak(&one_stats) == 1 && busy_peak(&many_stats) >= 2 && one.summary.served > 0 && many.summary.served > 0,
    ));
    Ok(checks)
}
