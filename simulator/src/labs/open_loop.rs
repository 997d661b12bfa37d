//! Labs 13 to 15: load the way users bring it. Closed loops against open loops, the
//! latency a closed loop cannot see (coordinated omission), and the knee of a sweep.

use std::fmt::Write as _;

use super::event_loop::{calibrated_prime, factorise_after};
use super::*;
use crate::measure::sweep::{self, SweepSpec};
use loadgen::scenario::{Arrivals, OpenLoop, WhenBusy};
use loadgen::units::micros;

/// A pool of 4 workers with keep-alive off: each response closes its connection, so a
/// worker serves one request at a time, not one client for as long as it stays: four
/// request slots, whatever the number of connections.
fn request_pool() -> (Servers, ServerArgs) {
    let flags = Servers::only("prefork-pool").with("workers", 4);
    let args = ServerArgs {
        keep_alive_timeout: Duration::ZERO,
        backlog: 1024,
        shutdown_timeout: Duration::from_secs(2),
        ..ServerArgs::default()
    };
    (flags, args)
}

/// An open-loop scenario: `rate` requests per second of `path` for `length`, carried by
/// `connections`, each request with `timeout` from the moment it is due.
fn open(
    connections: usize,
    path: &str,
    rate: f64,
    length: Duration,
    timeout: Duration,
) -> Scenario {
    Scenario {
        load: Load::Rate(OpenLoop {
            rate,
            duration: length,
            arrivals: Arrivals::Constant,
            when_busy: WhenBusy::Queue,
            seed: 1,
        }),
        ..Scenario::get(connections, path, timeout, Duration::ZERO)
    }
}

/// A closed-loop scenario: `clients` sending `path` back to back for `length`.
fn closed(clients: usize, path: &str, length: Duration, timeout: Duration) -> Scenario {
    Scenario {
        load: Load::Duration(length),
        ..Scenario::get(clients, path, timeout, Duration::ZERO)
    }
}

fn ms(us: u64) -> String {
    human_us(us)
}

/// Lab 13's entry in the list of labs ([`super::all`]).
pub(super) const LAB13: Lab = Lab {
    id: 13,
    title: "Open against closed: the same load, latencies orders of magnitude apart",
    sheet: "labs/13-open-against-closed.md",
    targets: &[],
    run: lab13,
};

pub(super) fn lab13(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let (flags, args) = request_pool();
    let work = Duration::from_millis(20);
    let capacity = 4.0 / work.as_secs_f64();
    let length = env.lecture(30.0);
    let patience = Duration::from_secs(30);
    let clients = 100;
    let path = "/sleep/20";

    let (shut, _) = measure(
        env,
        "prefork-pool",
        &flags,
        args.clone(),
        &closed(clients, path, length, patience),
    )?;
    let x = shut.throughput.as_ref().map_or(0.0, |t| t.per_second);
    let little = clients as f64 / x.max(1e-9);
    let closed_p50 = shut.latency_us.p50;
    let mut checks = vec![check(
        format!("closed loop: {clients} clients, {path} back to back for {}, against a pool of 4 request slots", humantime::format_duration(length)),
        format!("{x:.0} requests/s; p50 {}, p99 {}", ms(closed_p50), ms(shut.latency_us.p99)),
        format!(
            "the pool's capacity, 4 ÷ 20 ms = {capacity:.0}/s, and by Little's law each request spends {clients} clients ÷ X ≈ {} in the system: the clients wait for each other",
            human_us(micros(Duration::from_secs_f64(little.min(3600.0))))
        ),
        x > capacity * 0.7
            && x < capacity * 1.1
            && (closed_p50 as f64) > little * 1e6 * 0.5
            && (closed_p50 as f64) < little * 1e6 * 1.5,
    )];

    // Three quarters of what the closed loop reached: close enough to be the same load, far
    // enough from the knee that a busy CI machine's jitter does not build a queue.
    let below = (0.75 * x).round().max(1.0);
    let (open_run, _) = measure(
        env,
        "prefork-pool",
        &flags,
        args.clone(),
        &open(clients, path, below, length, patience),
    )?;
    let open_p50 = open_run.latency_us.p50;
    checks.push(check(
        format!("open loop: {below:.0} requests/s (0.75 × the closed loop's rate) on {clients} connections"),
        format!(
            "p50 {}, p99 {} (corrected); closed-loop p50 ÷ open-loop p50 = {:.0}",
            ms(open_p50),
            ms(open_run.latency_us.p99),
            closed_p50 as f64 / open_p50.max(1) as f64
        ),
        "three quarters of the load, but requests arrive on their own schedule and find a slot free: each takes about its 20 ms, an order of magnitude below the closed loop's wait",
        open_p50 < 60_000 && closed_p50 >= open_p50 * 5,
    ));

    let above = (1.25 * capacity).round();
    let (over, _) = measure(
        env,
        "prefork-pool",
        &flags,
        args,
        &open(clients, path, above, length, patience),
    )?;
    let served = over.throughput.as_ref().map_or(0.0, |t| t.per_second);
    // The backlog grows by (λ − μ) every second; the last requests wait for all of it.
    let backlog = (above - capacity) / capacity * length.as_secs_f64();
    checks.push(check(
        format!("open loop: {above:.0} requests/s, a quarter above capacity"),
        format!(
            "served {served:.0}/s; p50 {}, p99 {} (corrected)",
            ms(over.latency_us.p50),
            ms(over.latency_us.p99)
        ),
        format!(
            "the pool still serves only {capacity:.0}/s, and the rest queue: the wait grows through the run, to about (λ − μ) ÷ μ × {} = {} by its end. A closed loop can never show this: its clients slow down instead",
            humantime::format_duration(length),
            human_us(micros(Duration::from_secs_f64(backlog)))
        ),
        served < capacity * 1.1 && (over.latency_us.p99 as f64) > backlog * 1e6 * 0.4,
    ));
    Ok(checks)
}

/// Lab 14's entry in the list of labs ([`super::all`]).
pub(super) const LAB14: Lab = Lab {
    id: 14,
    title: "Coordinated omission: which p99 is the truth?",
    sheet: "labs/14-coordinated-omission.md",
    targets: &[],
    run: lab14,
};

pub(super) fn lab14(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let (prime, alone) = calibrated_prime(Duration::from_millis(250));
    let stall = micros(alone);
    let length = env.lecture(20.0);
    let patience = Duration::from_secs(30);
    let flags = Servers::only("event-loop")
        .with("reactors", 1)
        .with("offload", "off");
    let rate = 1000.0;
    let mut checks = Vec::new();
    for (name, scenario) in [
        ("closed loop: 8 clients", closed(8, "/", length, patience)),
        (
            "open loop: 1000 requests/s on 8 connections",
            open(8, "/", rate, length, patience),
        ),
    ] {
        let server = flags.start("event-loop", ServerArgs::default())?;
        // The stall: a factorisation on the only loop, a quarter into the run.
        let heavy = factorise_after(server.addr(), prime, length / 4);
        let result = run_against(env, &server, &scenario);
        let heavy = heavy
            .join()
            .map_err(|_| SimError::Panicked("the heavy client"))?;
        stop(server)?;
        let (report, _) = result?;
        let took = micros(heavy?);
        let l = &report.latency_us;
        let mut measured = format!(
            "p50 {}, p99 {}, max {} of {} requests; the stall lasted {}",
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
            l.samples,
            ms(took)
        );
        match &report.latency_uncorrected_us {
            None => checks.push(check(
                format!("{name}, GET / through a {} stall of the event loop", ms(stall)),
                measured,
                "the p99 stays small: each client had one request stuck in the stall, and sent nothing while it waited, so the stall is a handful of samples among thousands (coordinated omission)",
                l.p99 < took / 4 && l.max >= took / 2,
            )),
            Some(u) => {
                let _ = write!(
                    measured,
                    "; uncorrected p50 {}, p99 {}",
                    ms(u.p50),
                    ms(u.p99)
                );
                checks.push(check(
                    format!("{name}, the same stall"),
                    measured,
                    "timed from their actual send (uncorrected), the requests that waited for a connection look fast and the p99 hides the stall too; timed from when they were due (corrected), every request that arrived during the stall waited, and the p99 shows it: this is what users saw",
                    u.p99 < took / 4 && l.p99 >= took / 2,
                ));
            }
        }
    }
    Ok(checks)
}

/// Lab 15's entry in the list of labs ([`super::all`]).
pub(super) const LAB15: Lab = Lab {
    id: 15,
    title: "The knee: the highest rate served in time, measured and predicted",
    sheet: "labs/15-the-knee.md",
    targets: &[],
    run: lab15,
};

pub(super) fn lab15(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let step = env.lecture(5.0);
    let spec = |connections: usize, rates: Vec<f64>| SweepSpec {
        scenario: open(
            connections,
            "/sleep/20",
            1.0,
            step,
            Duration::from_millis(50),
        ),
        rates,
        step,
        goal: 0.99,
        refine: 3,
    };
    let mut checks = Vec::new();
    for (arch, flags, connections, why) in [
        (
            "prefork-pool",
            Servers::only("prefork-pool").with("workers", 4),
            4,
            "4 workers, each request 20 ms: 4 ÷ 20 ms = 200/s; a little more, and the queue grows until requests miss the 50 ms deadline",
        ),
        (
            "thread-per-conn",
            Servers::only("thread-per-conn"),
            8,
            "a thread per connection, so the 8 connections are the limit: 8 ÷ 20 ms = 400/s",
        ),
    ] {
        let report = sweep::sweep_in_process(&flags, &spec(connections, Vec::new()))?
            .pop()
            .ok_or_else(|| SimError::Lab(format!("{arch} was not swept")))?;
        let ratio = match (report.knee_per_second, report.predicted_per_second) {
            (Some(k), Some(p)) => k / p,
            _ => 0.0,
        };
        checks.push(check(
            format!("sweep of {arch} over {connections} connections, GET /sleep/20, deadline 50ms"),
            format!(
                "knee {}; predicted {}; ratio {ratio:.2} ({} steps)",
                report
                    .knee_per_second
                    .map_or("none".into(), |k| format!("{k:.0}/s")),
                report
                    .predicted_per_second
                    .map_or("none".into(), |p| format!("{p:.0}/s")),
                report.steps.len()
            ),
            format!("a knee within 20% of the prediction: {why}"),
            (0.8..=1.2).contains(&ratio),
        ));
    }
    // What wrk would not tell: more connections than workers, with keep-alive.
    let report = sweep::sweep_in_process(
        &Servers::only("prefork-pool").with("workers", 4),
        &spec(8, vec![50.0, 100.0]),
    )?
    .pop()
    .ok_or_else(|| SimError::Lab("prefork-pool was not swept".into()))?;
    let best = report.steps.iter().map(|s| s.in_time).fold(0.0, f64::max);
    checks.push(check(
        "sweep of prefork-pool over 8 connections at 50 and 100 requests/s, far below its 200/s",
        format!(
            "at most {:.0}% of requests in time; knee {}",
            best * 100.0,
            report
                .knee_per_second
                .map_or("none".into(), |k| format!("{k:.0}/s"))
        ),
        "no knee at any rate: a worker keeps its connection between requests (keep-alive), so 4 of the 8 connections are served and the requests on the other 4 wait until they give up",
        report.knee_per_second.is_none() && best < 0.75,
    ));
    Ok(checks)
}
