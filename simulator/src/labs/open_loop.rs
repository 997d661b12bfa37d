//! Labs 13 to 15: load the way users bring it. Closed loops against open loops, the
//! latency a closed loop cannot see (coordinated omission), and the knee of a sweep.
//!
//! A closed loop is a fixed number of clients, each sending its next request when the
//! last is answered: wrk, ab, and the lecture's clients. An open loop is a schedule of
//! requests that arrive whether or not earlier ones were answered: users on the Internet.
//! The difference decides what a measurement can show.
//!
//! * Lab 13: a closed loop cannot overload a server. When the server slows down, its
//!   clients slow down with it, and by Little's law (`N = X·R`) the latency it measures is
//!   the number of clients divided by the server's rate: it says more about the load
//!   generator than about the server. An open loop at the same rate sees each request's
//!   own work; past capacity it sees the queue grow by `λ − μ` every second.
//! * Lab 14: a closed loop also hides a stall. While the server is stuck, each client has
//!   one request waiting and sends nothing else, so the stall is a handful of samples among
//!   thousands: the generator *coordinated* with the server and *omitted* what users would
//!   have seen. An open loop times each request from the moment it was due (corrected) and
//!   counts every request that arrived during the stall as having waited for it.
//! * Lab 15: the knee, the highest rate at which at least 99% of requests meet their
//!   deadline, found by a sweep of open-loop steps and compared with `P / D` (slots ÷ work
//!   per request), the capacity the arithmetic predicts. And what a closed-loop tool would
//!   not report: a pool over more keep-alive connections than workers has no knee at all.
//!
//! The open-loop steps always run on the event-driven engine, whose dispatcher sends each
//! request when it is due (see [`LabEnv::scenario`]).

use std::fmt::Write as _;

use super::event_loop::{calibrated_prime, factorise_after};
use super::*;
use crate::measure::sweep::{self, SweepSpec};
use loadgen::scenario::{Arrivals, OpenLoop, WhenBusy};
use loadgen::units::micros;

/// A pool of 4 workers with keep-alive off: each response closes its connection, so a
/// worker serves one request at a time, not one client for as long as it stays: four
/// request slots, whatever the number of connections. The backlog of 1024 holds every
/// connection that waits for a worker, so none is dropped and retried a second later
/// (lab 7), and the short shutdown timeout keeps an overloaded step from delaying the next.
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
/// `connections`, each request with `timeout` from the moment it is due. Arrivals are
/// evenly spaced (constant), so that every queue the lab sees is the server's, not the
/// schedule's bursts; a request due while every connection is busy waits for one
/// (`--when-busy queue`), its wait counted in its corrected latency.
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
            // Constant arrivals draw nothing at random; the seed fixes the schedule anyway,
            // so a changed arrival kind would still repeat run after run.
            seed: 1,
            stages: Default::default(),
        }),
        ..Scenario::get(connections, path, timeout, Duration::ZERO)
    }
}

/// A closed-loop scenario: `clients` sending `path` back to back for `length`, each request
/// with `timeout` from the moment its cycle began.
fn closed(clients: usize, path: &str, length: Duration, timeout: Duration) -> Scenario {
    Scenario {
        load: Load::Duration(length),
        ..Scenario::get(clients, path, timeout, Duration::ZERO)
    }
}

/// A latency in microseconds, for people.
fn ms(us: u64) -> String {
    human_us(us)
}

/// Lab 13's entry in the list of labs ([`super::all`]).
/// The question before running: the closed loop runs at about 200 requests a second;
/// how long does each of its requests take, and the open loop's at three quarters of
/// that rate, and at 250 a second?
pub(super) const LAB13: Lab = Lab {
    id: 13,
    title: "Open against closed: the same load, latencies orders of magnitude apart",
    sheet: "labs/13-open-against-closed.md",
    targets: &[],
    run: lab13,
};

/// Lab 13: the same pool under a closed loop, an open loop at three quarters of the rate
/// the closed loop reached, and an open loop a quarter past the pool's capacity.
///
/// In its HTML report (`--report`): the three latency spectra: the closed loop's flat half
/// second, the open loop's 20 ms, and past capacity a spectrum that climbs through the
/// whole run.
pub(super) fn lab13(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let lab = Lab13::new(env);
    let (closed_check, x, closed_p50) = lab.closed_loop_step(env)?;
    let mut checks = vec![closed_check];
    checks.push(lab.open_loop_step(env, x, closed_p50)?);
    checks.push(lab.overload_step(env)?);
    Ok(checks)
}

/// Lab 13's setting, the same for its three runs: 100 connections asking `/sleep/20` of a
/// pool of 4 request slots for 30 lecture seconds, with a patience no request nears.
struct Lab13 {
    /// The pool of 4 workers, and its settings (keep-alive off: four request slots).
    flags: Servers,
    args: ServerArgs,
    /// The pool's capacity μ: 4 slots ÷ 20 ms = 200 requests per second.
    capacity: f64,
    /// How long each run offers its load: 30 lecture seconds.
    length: Duration,
    /// Each request's deadline, far beyond any wait in the lab, so that every request is
    /// answered and measured, however late.
    patience: Duration,
    /// The closed loop's clients, and the open loops' connections.
    clients: usize,
    /// Every request: 20 ms of the worker's time, asleep.
    path: &'static str,
}

impl Lab13 {
    /// The setting at `env`'s scale.
    fn new(env: &LabEnv) -> Lab13 {
        let (flags, args) = request_pool();
        let work = Duration::from_millis(20);
        Lab13 {
            flags,
            args,
            capacity: 4.0 / work.as_secs_f64(),
            length: env.lecture(30.0),
            patience: Duration::from_secs(30),
            clients: 100,
            path: "/sleep/20",
        }
    }

    /// The closed loop: 100 clients back to back. The pool serves its capacity, and by
    /// Little's law (`N = X·R`) each request spends `N / X` = 100 ÷ 200/s = 0.5 s in the
    /// system, because there are always 100 of them. Returns the check, the rate `X` the
    /// loop reached, and its p50.
    fn closed_loop_step(&self, env: &LabEnv) -> Result<(Check, f64, u64), SimError> {
        let (clients, path, length, capacity) =
            (self.clients, self.path, self.length, self.capacity);
        // Blocks for the run's 30 lecture seconds.
        let (shut, _) = measure(
            env,
            "prefork-pool",
            &self.flags,
            self.args.clone(),
            &closed(clients, path, length, self.patience),
        )?;
        // Little's law is applied to the rate the loop measured, not to the capacity, so the
        // expected wait holds however fast this machine ran the pool.
        let x = shut.throughput.as_ref().map_or(0.0, |t| t.per_second);
        let little = clients as f64 / x.max(1e-9);
        let closed_p50 = shut.latency_us.p50;
        let check = check(
            format!("closed loop: {clients} clients, {path} back to back for {}, against a pool of 4 request slots", humantime::format_duration(length)),
            format!("{x:.0} requests/s; p50 {}, p99 {}", ms(closed_p50), ms(shut.latency_us.p99)),
            format!(
                "the pool's capacity, 4 ÷ 20 ms = {capacity:.0}/s, and by Little's law each request spends {clients} clients ÷ X ≈ {} in the system: the clients wait for each other",
                human_us(micros(Duration::from_secs_f64(little.min(3600.0))))
            ),
            // The rate within 30% below and 10% above the capacity; the p50 within half
            // of Little's prediction either way.
            x > capacity * 0.7
                && x < capacity * 1.1
                && (closed_p50 as f64) > little * 1e6 * 0.5
                && (closed_p50 as f64) < little * 1e6 * 1.5,
        );
        Ok((check, x, closed_p50))
    }

    /// The open loop at three quarters of the closed loop's rate `x`: the same load, but
    /// requests arrive on their own schedule, find a slot free, and leave after their own
    /// 20 ms. Nobody is in the system unless their own request is, so the p50 is about the
    /// work itself, far below the closed loop's `closed_p50`.
    fn open_loop_step(&self, env: &LabEnv, x: f64, closed_p50: u64) -> Result<Check, SimError> {
        let (clients, path, length) = (self.clients, self.path, self.length);
        // Three quarters of what the closed loop reached: close enough to be the same load,
        // far enough from the knee that a busy CI machine's jitter does not build a queue.
        let below = (0.75 * x).round().max(1.0);
        // Blocks for the run; every request is answered long before its patience runs out.
        let (open_run, _) = measure(
            env,
            "prefork-pool",
            &self.flags,
            self.args.clone(),
            &open(clients, path, below, length, self.patience),
        )?;
        let open_p50 = open_run.latency_us.p50;
        Ok(check(
            format!("open loop: {below:.0} requests/s (0.75 × the closed loop's rate) on {clients} connections"),
            format!(
                "p50 {}, p99 {} (corrected); closed-loop p50 ÷ open-loop p50 = {:.0}",
                ms(open_p50),
                ms(open_run.latency_us.p99),
                closed_p50 as f64 / open_p50.max(1) as f64
            ),
            "three quarters of the load, but requests arrive on their own schedule and find a slot free: each takes about its 20 ms, an order of magnitude below the closed loop's wait",
            // Under 60 ms (three times the work), and at least 5× below the closed loop's.
            open_p50 < 60_000 && closed_p50 >= open_p50 * 5,
        ))
    }

    /// The open loop a quarter past capacity: λ = 250/s against μ = 200/s. The pool still
    /// serves μ, and the other 50 a second pile up: the queue grows by `λ − μ` every second,
    /// so the last requests wait about `(λ − μ) ÷ μ × length` = 0.75 s, and the wait would
    /// grow without limit for as long as the load lasted.
    fn overload_step(&self, env: &LabEnv) -> Result<Check, SimError> {
        let (clients, path, length, capacity) =
            (self.clients, self.path, self.length, self.capacity);
        let above = (1.25 * capacity).round();
        // Blocks for the run, which ends on time: requests still queued or in flight at
        // its end are counted as unfinished, not waited for.
        let (over, _) = measure(
            env,
            "prefork-pool",
            &self.flags,
            self.args.clone(),
            &open(clients, path, above, length, self.patience),
        )?;
        let served = over.throughput.as_ref().map_or(0.0, |t| t.per_second);
        // The backlog grows by (λ − μ) every second; the last requests wait for all of it.
        let backlog = (above - capacity) / capacity * length.as_secs_f64();
        Ok(check(
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
            // The p99 is one of the last requests: at least 40% of the predicted final wait
            // (the run's last requests are cut short by its end, and the pool may run a
            // little above 200/s).
            served < capacity * 1.1 && (over.latency_us.p99 as f64) > backlog * 1e6 * 0.4,
        ))
    }
}

/// Lab 14's entry in the list of labs ([`super::all`]).
/// The question before running: a stall of about a third of a second in a 2 s run;
/// what p99 does the closed loop report, and the open loop, corrected and uncorrected?
pub(super) const LAB14: Lab = Lab {
    id: 14,
    title: "Coordinated omission: which p99 is the truth?",
    sheet: "labs/14-coordinated-omission.md",
    targets: &[],
    run: lab14,
};

/// Lab 14: one stall of the event loop, measured by a closed loop and by an open loop with
/// its two latencies.
///
/// In its HTML report (`--report`): the open-loop run's two lines: the uncorrected latency
/// stays low while the corrected one shows the stall every request due during it waited
/// through.
pub(super) fn lab14(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    // The stall: a factorisation of at least a quarter of a second on this machine (the
    // next prime up takes about three times as long, so at most three quarters) on the
    // only loop, which computes it instead of reading sockets (`--offload off`).
    let (prime, alone) = calibrated_prime(Duration::from_millis(250));
    let stall = micros(alone);
    let length = env.lecture(20.0);
    let patience = Duration::from_secs(30);
    let flags = Servers::only("event-loop")
        .with("reactors", 1)
        .with("offload", "off");
    // 1000 requests a second on 8 connections: during a stall of a third of a second, some
    // 300 requests come due, and every one of them waits for the stall to end.
    let rate = 1000.0;
    let mut checks = Vec::new();
    for (name, scenario) in [
        ("closed loop: 8 clients", closed(8, "/", length, patience)),
        (
            "open loop: 1000 requests/s on 8 connections",
            open(8, "/", rate, length, patience),
        ),
    ] {
        checks.push(through_the_stall(
            env, &flags, name, &scenario, prime, stall,
        )?);
    }
    Ok(checks)
}

/// One load (`name`, `scenario`) against a fresh event loop (`flags`) that stalls a
/// quarter into the run, computing `/factor/{prime}` (`stall` µs alone), and the check of
/// what its latency shows of the stall.
fn through_the_stall(
    env: &LabEnv,
    flags: &Servers,
    name: &str,
    scenario: &Scenario,
    prime: u64,
    stall: u64,
) -> Result<Check, SimError> {
    // The run's length: the stall comes a quarter into it.
    let length = scenario.planned_length();
    let server = flags.start("event-loop", ServerArgs::default())?;
    // The stall: a factorisation on the only loop, a quarter into the run.
    let heavy = factorise_after(server.addr(), prime, length / 4);
    // Blocks for the run's 20 lecture seconds; the stall falls inside it.
    let result = run_against(env, &server, scenario);
    // Waits for the heavy client's answer, in long before the run's end.
    let heavy = heavy
        .join()
        .map_err(|_| SimError::Panicked("the heavy client"))?;
    stop(server)?;
    let (report, _) = result?;
    let took = micros(heavy?.took);
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
        // The closed loop has one latency: each client's request stuck in the stall is one
        // sample, 8 in all among many thousands. The p99 misses them; the max shows one.
        None => Ok(check(
            format!("{name}, GET / through a {} stall of the event loop", ms(stall)),
            measured,
            "the p99 stays small: each client had one request stuck in the stall, and sent nothing while it waited, so the stall is a handful of samples among thousands (coordinated omission)",
            // The stall happened (the slowest request waited at least half of it) and the
            // percentile hid it (under a quarter of it).
            l.p99 < took / 4 && l.max >= took / 2,
        )),
        // The open loop has both. Uncorrected (from the actual send), a request that waited
        // for a free connection during the stall was sent after it and answered at once:
        // fast. Corrected (from when it was due), it waited for the stall: the p99 shows it,
        // because a fifth or so of the run's requests came due while it lasted.
        Some(u) => {
            let _ = write!(
                measured,
                "; uncorrected p50 {}, p99 {}",
                ms(u.p50),
                ms(u.p99)
            );
            Ok(check(
                format!("{name}, the same stall"),
                measured,
                "timed from their actual send (uncorrected), the requests that waited for a connection look fast and the p99 hides the stall too; timed from when they were due (corrected), every request that arrived during the stall waited, and the p99 shows it: this is what users saw",
                // The same run, two clocks: the uncorrected p99 under a quarter of the stall,
                // the corrected one at least half of it.
                u.p99 < took / 4 && l.p99 >= took / 2,
            ))
        }
    }
}

/// Lab 15's entry in the list of labs ([`super::all`]).
/// The question before running: what knee does `P / D` give for each server, and what
/// happens to a pool of 4 over 8 keep-alive connections at a quarter of its capacity?
pub(super) const LAB15: Lab = Lab {
    id: 15,
    title: "The knee: the highest rate served in time, measured and predicted",
    sheet: "labs/15-the-knee.md",
    targets: &[],
    run: lab15,
};

/// Lab 15: sweeps of the pool and of thread-per-connection, each knee against its
/// prediction, then the pool over more connections than workers.
///
/// In its HTML report (`--report`): the checks only; `simulator sweep --report` draws
/// goodput and the fraction in time against the offered rate, each knee marked.
pub(super) fn lab15(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    // Each rate is offered for 5 lecture seconds (half a second at the default scale). At
    // 10% over 200/s the queue grows by 20 requests a second, which adds 0.1 s of wait
    // every second, so requests miss the 50 ms deadline within the step.
    let step = env.lecture(5.0);
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
        checks.push(knee_step(arch, &flags, sweep_spec(step, connections, Vec::new()), connections, why)?);
    }
    checks.push(no_knee_step(step)?);
    Ok(checks)
}

/// Lab 15's sweep over `connections`: `GET /sleep/20` with a 50 ms deadline, each rate
/// offered for `step`; `rates` empty to let the sweep choose them.
fn sweep_spec(step: Duration, connections: usize, rates: Vec<f64>) -> SweepSpec {
    SweepSpec {
        scenario: open(
            connections,
            "/sleep/20",
            1.0,
            step,
            Duration::from_millis(50),
        ),
        rates,
        step,
        // The knee: the highest rate at which 99% of requests meet their deadline. With
        // no rates given, the sweep first steps around the predicted capacity, then takes
        // three bisection steps between the last rate that passed and the first that
        // failed.
        goal: 0.99,
        refine: 3,
        ramp: None,
    }
}

/// Sweeps `arch` (started with `flags`) over `connections` and checks its knee against the
/// capacity the arithmetic predicts, `why` being that arithmetic in words.
fn knee_step(
    arch: &str,
    flags: &Servers,
    spec: SweepSpec,
    connections: usize,
    why: &str,
) -> Result<Check, SimError> {
    // Blocks for every step of the sweep, each against a server in this process.
    let report = sweep::sweep_in_process(flags, &spec)?
        .pop()
        .ok_or_else(|| SimError::Lab(format!("{arch} was not swept")))?;
    // Measured knee ÷ predicted capacity: within 20% either way. The prediction is an
    // upper bound (hand-overs cost time), and the bisection finds the knee to within
    // its last step.
    let ratio = match (report.knee_per_second, report.predicted_per_second) {
        (Some(k), Some(p)) => k / p,
        _ => 0.0,
    };
    Ok(check(
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
    ))
}

/// What wrk would not tell: more connections than workers, with keep-alive. A worker keeps
/// its connection between requests, so 4 of the 8 connections are served and the requests
/// on the other 4 wait in the queue until their deadline, at any rate: half the requests
/// at most are in time, and there is no knee. A closed-loop tool reports a healthy rate
/// from the 4 lucky connections.
fn no_knee_step(step: Duration) -> Result<Check, SimError> {
    let report = sweep::sweep_in_process(
        &Servers::only("prefork-pool").with("workers", 4),
        &sweep_spec(step, 8, vec![50.0, 100.0]),
    )?
    .pop()
    .ok_or_else(|| SimError::Lab("prefork-pool was not swept".into()))?;
    // The better of the two rates: even that one has about half its requests in time (the
    // check's bound of three quarters is a margin for a busy machine, not a prediction).
    let best = report.steps.iter().map(|s| s.in_time).fold(0.0, f64::max);
    Ok(check(
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
    ))
}
