//! The lecture's experiments as one-command labs: `simulator lab <id>`.
//!
//! Each lab has a sheet in `labs/` (goal, command, a question to answer before running,
//! the expected result with its reason, a variation). Running it starts the servers it
//! needs in this process (or uses `--target`, a server the student started in another
//! terminal), measures, and prints each check as measured / expected / agrees. The command
//! exits non-zero when a check disagrees, so CI runs every lab.
//!
//! Time is scaled: with `--scale 0.1` (the default) one lecture second lasts 100 ms, so
//! every lab finishes in seconds; `--scale 1` replays the lecture's own timing. Kernel
//! timings (the ~1 s SYN retry of lab 7) are not scaled: the kernel does not know.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::queue::{self, QueueKind};
use protocol::{RunningServer, ServerArgs};

use crate::compare::{Arch, ServerFlags};
use crate::predict::ServerInfo;
use crate::report::{self, human_us, Report};
use crate::scenario::{DeadlineClock, Load, RequestSpec, Scenario};
use crate::SimError;

/// How a lab is run.
pub struct LabEnv {
    /// Lecture seconds to real seconds.
    pub scale: f64,
    /// A server the student started, instead of in-process servers.
    pub target: Option<String>,
}

impl LabEnv {
    /// `seconds` of lecture time, scaled.
    pub fn lecture(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds * self.scale)
    }
}

/// One measured fact beside what the lecture (or the arithmetic) expects.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub what: String,
    pub measured: String,
    pub expected: String,
    pub agrees: bool,
}

/// A lab: its number, title, sheet, and how to run it.
pub struct Lab {
    pub id: u32,
    pub title: &'static str,
    pub sheet: &'static str,
    /// The architectures whose steps can run against `--target`, a server the student
    /// started. Empty for labs that start their own servers with changing settings.
    pub targets: &'static [Arch],
    run: fn(&LabEnv) -> Result<Vec<Check>, SimError>,
}

impl Lab {
    pub fn run(&self, env: &LabEnv) -> Result<Vec<Check>, SimError> {
        let Some(target) = &env.target else {
            return (self.run)(env);
        };
        if self.targets.is_empty() {
            return Err(SimError::Usage(format!(
                "lab {} starts its own servers (it changes their settings between runs); run it without --target",
                self.id
            )));
        }
        let checks = (self.run)(env)?;
        if checks.is_empty() {
            // No step matched the target's architecture: nothing was measured.
            let addr = report::resolve(target)?;
            let running = report::probe(addr, target)?.map(|i| i.architecture);
            let wanted: Vec<&str> = self
                .targets
                .iter()
                .map(|a| crate::compare::arch_name(*a))
                .collect();
            return Err(SimError::Usage(format!(
                "lab {} needs a {} server, but {target} runs {}",
                self.id,
                wanted.join(" or "),
                running
                    .as_deref()
                    .unwrap_or("something that is not servelab")
            )));
        }
        Ok(checks)
    }
}

/// Every lab, in order.
pub fn all() -> Vec<Lab> {
    vec![
        Lab {
            id: 1,
            title: "The sequential server and five patient clients",
            sheet: "labs/01-sequential-patient-clients.md",
            targets: &[Arch::Single],
            run: lab1,
        },
        Lab {
            id: 2,
            title: "Impatient clients, long holds: one served",
            sheet: "labs/02-impatient-clients.md",
            targets: &[Arch::Single],
            run: lab2,
        },
        Lab {
            id: 3,
            title: "Thread-per-connection and a pre-fork pool of 8: all served",
            sheet: "labs/03-threads-serve-everyone.md",
            targets: &[Arch::ThreadPerConn, Arch::PreforkPool],
            run: lab3,
        },
        Lab {
            id: 4,
            title: "A pool of 4: the fifth client is handled after it left",
            sheet: "labs/04-pool-of-four.md",
            targets: &[],
            run: lab4,
        },
        Lab {
            id: 5,
            title: "Heavy requests: 2 of 5 on the sequential server, all on the others",
            sheet: "labs/05-heavy-requests.md",
            targets: &[
                Arch::Single,
                Arch::PreforkPool,
                Arch::Pipeline,
                Arch::ThreadPerConn,
            ],
            run: lab5,
        },
        Lab {
            id: 6,
            title: "The pipeline's bottleneck: CPU-bound and I/O-bound handlers",
            sheet: "labs/06-pipeline-bottleneck.md",
            targets: &[],
            run: lab6,
        },
        Lab {
            id: 7,
            title: "The listen backlog: 1 against 1024",
            sheet: "labs/07-listen-backlog.md",
            targets: &[],
            run: lab7,
        },
        Lab {
            id: 8,
            title: "Keep-alive timeout: idle clients and a pool",
            sheet: "labs/08-keep-alive-timeout.md",
            targets: &[],
            run: lab8,
        },
        Lab {
            id: 9,
            title: "Shared state: every worker reports the last client",
            sheet: "labs/09-shared-state.md",
            targets: &[],
            run: lab9,
        },
        Lab {
            id: 10,
            title: "Queues: the lecture's condvar queue against crossbeam",
            sheet: "labs/10-queues.md",
            targets: &[],
            run: lab10,
        },
    ]
}

/// Finds lab `id`.
pub fn find(id: u32) -> Result<Lab, SimError> {
    all().into_iter().find(|lab| lab.id == id).ok_or_else(|| {
        SimError::Usage(format!(
            "there is no lab {id}; `simulator lab --list` lists them"
        ))
    })
}

/// The printed result of a lab.
pub fn to_text(lab: &Lab, env: &LabEnv, checks: &[Check]) -> String {
    let mut out = format!(
        "lab {}: {} (scale {}: one lecture second = {})\nsheet: {}\n\n",
        lab.id,
        lab.title,
        env.scale,
        humantime::format_duration(Duration::from_millis((1000.0 * env.scale).round() as u64)),
        lab.sheet
    );
    for check in checks {
        let _ = writeln!(
            out,
            "{} {}\n    measured: {}\n    expected: {}",
            if check.agrees { "ok  " } else { "FAIL" },
            check.what,
            check.measured,
            check.expected
        );
    }
    let failed = checks.iter().filter(|c| !c.agrees).count();
    let _ = writeln!(
        out,
        "\n{}",
        if failed == 0 {
            format!("all {} checks agree with the expected result", checks.len())
        } else {
            format!(
                "{failed} of {} checks DISAGREE with the expected result",
                checks.len()
            )
        }
    );
    out
}

/// A check of a number against an expectation.
fn check(
    what: impl Into<String>,
    measured: impl std::fmt::Display,
    expected: impl Into<String>,
    agrees: bool,
) -> Check {
    Check {
        what: what.into(),
        measured: measured.to_string(),
        expected: expected.into(),
        agrees,
    }
}

/// Starts `arch` in-process, or finds the student's `--target`, runs `scenario`, and
/// returns the report and the server's `/stats` afterwards.
fn measure(
    env: &LabEnv,
    arch: Arch,
    flags: &ServerFlags,
    args: ServerArgs,
    scenario: &Scenario,
) -> Result<(Report, serde_json::Value), SimError> {
    if let Some(target) = &env.target {
        let addr = report::resolve(target)?;
        let info = report::probe(addr, target)?;
        let running = info.as_ref().map(|i| i.architecture.clone());
        let wanted = crate::compare::arch_name(arch);
        if running.as_deref() != Some(wanted) {
            return Err(SimError::Usage(format!(
                "this step needs a {wanted} server, but {target} runs {}; start one with `cargo run --release -p {wanted}`",
                running.as_deref().unwrap_or("something that is not servelab")
            )));
        }
        let report = report::run(addr, target, scenario, info.as_ref())?;
        let stats = report::probe(addr, target)?
            .map(|i| i.stats)
            .unwrap_or_default();
        return Ok((report, stats));
    }
    let server = flags.start(arch, args)?;
    let result = run_against(&server, scenario);
    server.stop().map_err(SimError::Server)?;
    result
}

fn run_against(
    server: &RunningServer,
    scenario: &Scenario,
) -> Result<(Report, serde_json::Value), SimError> {
    let addr: SocketAddr = server.addr();
    let info = ServerInfo::from_stats(server.context().snapshot());
    let report = report::run(addr, &addr.to_string(), scenario, info.as_ref())?;
    Ok((report, server.context().snapshot()))
}

/// The answers of a scenario run in the order they came, for people: "answers at 390µs,
/// 501.2ms, 1.00s, 1.50s (late); 1 client gave up with none".
fn answers(report: &Report) -> String {
    let mut times: Vec<(u64, bool)> = report
        .clients
        .iter()
        .filter_map(|c| {
            c.complete_us
                .map(|t| (t, c.outcome == crate::client::Outcome::Served))
        })
        .collect();
    times.sort_unstable();
    let mut text = format!(
        "answers at {}",
        times
            .iter()
            .map(|(t, served)| format!("{}{}", human_us(*t), if *served { "" } else { " (late)" }))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let none = report.clients.len() - times.len();
    if none > 0 {
        let _ = write!(
            text,
            "; {none} client{} gave up with none",
            if none == 1 { "" } else { "s" }
        );
    }
    text
}

/// Runs a "who is served" scenario and checks the served count against `expected`.
fn served_step(
    env: &LabEnv,
    arch: Arch,
    flags: &ServerFlags,
    scenario: &Scenario,
    expected: &[usize],
    why: &str,
) -> Result<Check, SimError> {
    let (report, _) = measure(env, arch, flags, flags.server_args(scenario), scenario)?;
    Ok(served_check(arch, scenario, &report, expected, why))
}

fn served_check(
    arch: Arch,
    scenario: &Scenario,
    report: &Report,
    expected: &[usize],
    why: &str,
) -> Check {
    let s = &report.summary;
    let expected_text = expected
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(" or ");
    check(
        format!(
            "{}: {} clients, {}, timeout {}, hold {}",
            crate::compare::arch_name(arch),
            scenario.clients,
            scenario.request.line(),
            humantime::format_duration(scenario.timeout),
            humantime::format_duration(scenario.hold)
        ),
        format!(
            "{}/{} served ({} timed out){}",
            s.served,
            s.clients,
            s.service_timeout + s.connect_timeout,
            report
                .prediction
                .as_ref()
                .map(|_| format!("; {}", report.verdict()))
                .unwrap_or_default()
        ),
        format!("{expected_text} served: {why}"),
        expected.contains(&s.served),
    )
}

fn lab1(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let flags = ServerFlags::default();
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
        let (report, _) = measure(env, Arch::Single, &flags, flags.server_args(&scenario), &scenario)?;
        let mut c = served_check(Arch::Single, &scenario, &report, &[expected], why);
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
        Arch::Single,
        &flags,
        flags.server_args(&scenario),
        &scenario,
    )?;
    let mut c = served_check(
        Arch::Single,
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

fn lab2(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let scenario = Scenario::get(5, "/", env.lecture(5.0), env.lecture(30.0));
    Ok(vec![served_step(
        env,
        Arch::Single,
        &ServerFlags::default(),
        &scenario,
        &[1],
        "the first client holds the only thread for 30 s; the others give up after 5 s",
    )?])
}

fn lab3(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let scenario = Scenario::get(5, "/", env.lecture(5.0), env.lecture(30.0));
    let flags = ServerFlags::default();
    let mut checks = Vec::new();
    for arch in [Arch::ThreadPerConn, Arch::PreforkPool] {
        if skip_for_target(env, arch)? {
            continue;
        }
        checks.push(served_step(
            env,
            arch,
            &flags,
            &scenario,
            &[5],
            "every client gets its own thread (8 workers ≥ 5 clients)",
        )?);
    }
    Ok(checks)
}

/// With `--target`, multi-server labs run only the step for the target's architecture.
fn skip_for_target(env: &LabEnv, arch: Arch) -> Result<bool, SimError> {
    let Some(target) = &env.target else {
        return Ok(false);
    };
    let addr = report::resolve(target)?;
    let running = report::probe(addr, target)?.map(|i| i.architecture);
    Ok(running.as_deref() != Some(crate::compare::arch_name(arch)))
}

fn lab4(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let hold = env.lecture(30.0);
    let timeout = env.lecture(5.0);
    let scenario = Scenario::get(5, "/", timeout, hold);
    let flags = ServerFlags {
        workers: 4,
        ..ServerFlags::default()
    };
    let server = flags.start(Arch::PreforkPool, flags.server_args(&scenario))?;
    let (report, _) = run_against(&server, &scenario)?;
    // The fifth connection still sits in the queue until a holder leaves and frees a
    // worker. Wait (bounded) until a worker has taken it, then read the queue's figures.
    let ctx = Arc::clone(server.context());
    let deadline = Instant::now() + hold + Duration::from_secs(5);
    while ctx.snapshot()["queues"][0]["depth"] != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let snapshot = ctx.snapshot();
    let queue = snapshot["queues"][0].clone();
    let left = snapshot["requests"]["client_left"].as_u64().unwrap_or(0);
    server.stop().map_err(SimError::Server)?;
    let pushed = queue["pushed"].as_u64().unwrap_or(0);
    // Four connections were taken at once; the whole queue wait is the fifth's.
    let fifth_waited = Duration::from_micros(
        (queue["mean_wait_us"].as_f64().unwrap_or(0.0) * pushed as f64) as u64,
    );
    Ok(vec![
        served_check(Arch::PreforkPool, &scenario, &report, &[4], "4 workers each hold a client for 30 s; the 5th waits in the queue and gives up after 5 s"),
        check(
            "the 5th connection's time in the queue before a worker took it",
            humantime::format_duration(Duration::from_millis(u64::try_from(fifth_waited.as_millis()).unwrap_or(0))),
            format!(
                "about the hold ({}), long after its client left at {}",
                humantime::format_duration(hold),
                humantime::format_duration(timeout)
            ),
            pushed == 5 && fifth_waited >= hold.mul_f64(0.8) && fifth_waited > timeout,
        ),
        check(
            "what the worker found when it finally took the 5th connection",
            format!("/stats requests.client_left = {left}"),
            "the client had left: the server logs \"left before the server could handle it\" and does not count it as served",
            left == 1,
        ),
    ])
}

fn lab5(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    // The lecture gives no processing delay; 4 s is the middle of the range (10/3, 5) s
    // that makes its result, 2 of 5, come out with a 10 s timeout. The request is the
    // lecture's: a 36-byte UUID, echoed after the delay.
    let delay = env.lecture(4.0);
    let scenario = Scenario::new(
        5,
        RequestSpec::heavy(delay),
        env.lecture(10.0),
        Duration::ZERO,
    );
    let flags = ServerFlags::default();
    let mut checks = Vec::new();
    for (arch, expected, why) in [
        (
            Arch::Single,
            2,
            "one request at a time: replies at 4 and 8 s; the third would need 12 s",
        ),
        (Arch::PreforkPool, 5, "8 workers: all five at once"),
        (
            Arch::Pipeline,
            5,
            "4 handlers: four at 4 s, the fifth at 8 s",
        ),
        (
            Arch::ThreadPerConn,
            5,
            "a thread per client: all five at 4 s",
        ),
    ] {
        if skip_for_target(env, arch)? {
            continue;
        }
        checks.push(served_step(env, arch, &flags, &scenario, &[expected], why)?);
    }
    Ok(checks)
}

/// The pipeline's queues after a run: mean waits of (connections, requests) in µs.
fn stage_waits(stats: &serde_json::Value) -> (f64, f64) {
    let wait = |i: usize| stats["queues"][i]["mean_wait_us"].as_f64().unwrap_or(0.0);
    (wait(0), wait(1))
}

/// The semiprime of the CPU-bound workload: 300007 × 300017, about 150 000 trial divisions.
pub const SEMIPRIME: u64 = 90_007_200_119;

fn lab6(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let mut checks = Vec::new();
    let pipeline = |handlers| ServerFlags {
        handlers,
        ..ServerFlags::default()
    };
    let args = ServerArgs::default();

    // I/O-bound: 8 clients each sleeping one lecture second.
    let sleep = format!("/sleep/{}", env.lecture(1.0).as_millis());
    let io = Scenario::get(8, &sleep, env.lecture(30.0), Duration::ZERO);
    let (one, one_stats) = measure(env, Arch::Pipeline, &pipeline(1), args.clone(), &io)?;
    let (eight, _) = measure(env, Arch::Pipeline, &pipeline(8), args.clone(), &io)?;
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
    let (one, one_stats) = measure(env, Arch::Pipeline, &pipeline(1), args.clone(), &cpu)?;
    let (many, many_stats) = measure(env, Arch::Pipeline, &pipeline(handlers), args, &cpu)?;
    let (conn_wait, req_wait) = stage_waits(&one_stats);
    let rate = |r: &Report| r.throughput.as_ref().map_or(0.0, |t| t.per_second);
    let busy_peak = |stats: &serde_json::Value| {
        stats["threads"]
            .as_array()
            .and_then(|groups| groups.iter().find(|g| g["role"] == "handler"))
            .and_then(|g| g["busy_peak"].as_u64())
            .unwrap_or(0)
    };
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

fn lab7(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let _ = env;
    // Not scaled: the retry interval is the kernel's.
    let scenario = Scenario::get(10, "/sleep/20", Duration::from_secs(5), Duration::ZERO);
    let flags = ServerFlags::default();
    let mut checks = Vec::new();
    for backlog in [1u32, 1024] {
        let args = ServerArgs {
            backlog,
            ..flags.server_args(&scenario)
        };
        let (report, _) = measure(env, Arch::Single, &flags, args, &scenario)?;
        let late = report
            .clients
            .iter()
            .filter(|c| c.connect_us.is_some_and(|us| us >= 900_000))
            .count();
        let slowest = report
            .clients
            .iter()
            .filter_map(|c| c.connect_us)
            .max()
            .unwrap_or(0);
        let (expected, agrees) = if backlog == 1 {
            ("several clients connect about 1 s late: the full backlog dropped their SYN and their kernel retried", late >= 3)
        } else {
            (
                "every client connects at once: the backlog holds them all",
                late == 0,
            )
        };
        checks.push(check(
            format!("single with backlog {backlog}: 10 clients at once"),
            format!(
                "{late} clients connected after ≥ 0.9 s; slowest connect {}",
                human_us(slowest)
            ),
            expected,
            agrees && report.summary.served == 10,
        ));
    }

    // The same late connects under the two clocks. Five clients, each wanting 300 ms of the
    // sequential server, a 1.5 s deadline, and the lecture's backlog of 1: two or three
    // connect at once, the others' SYNs are dropped and retried about 1 s later.
    let scenario = Scenario::get(5, "/sleep/300", Duration::from_millis(1500), Duration::ZERO);
    let args = ServerArgs {
        backlog: 1,
        ..flags.server_args(&scenario)
    };
    let (common, _) = measure(env, Arch::Single, &flags, args.clone(), &scenario)?;
    let per_call = scenario.clone().with_clock(DeadlineClock::PerCall);
    let (own, _) = measure(env, Arch::Single, &flags, args, &per_call)?;
    let late = |r: &Report| {
        r.clients
            .iter()
            .filter(|c| c.connect_us.is_some_and(|us| us >= 900_000))
            .count()
    };
    // Under the common clock, only clients that connected late can miss the deadline.
    let missed_only_late = common.clients.iter().all(|c| {
        c.outcome == crate::client::Outcome::Served || c.connect_us.is_some_and(|us| us >= 900_000)
    });
    checks.push(check(
        "backlog 1, 5 clients of GET /sleep/300, deadline 1.5 s from the common start (servelab's clock)",
        format!(
            "{}/5 served; {} connected ≥ 0.9 s late; {}",
            common.summary.served,
            late(&common),
            answers(&common)
        ),
        "3 or 4 served: the late connectors are answered at 1.3 s and later, and their deadline was running while their kernel waited to retry the SYN",
        (3..=4).contains(&common.summary.served) && late(&common) >= 1 && missed_only_late,
    ));
    checks.push(check(
        "the same with a deadline of 1.5 s per call (the lecture's clock: settimeout on the socket)",
        format!(
            "{}/5 served; {} connected ≥ 0.9 s late",
            own.summary.served,
            late(&own)
        ),
        "all 5 served: a late connector's clock starts again when it sends its request, so the second it lost connecting does not count",
        own.summary.served == 5 && late(&own) >= 1,
    ));
    Ok(checks)
}

fn lab8(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let scenario = Scenario::get(4, "/", env.lecture(10.0), env.lecture(30.0));
    let flags = ServerFlags {
        workers: 2,
        ..ServerFlags::default()
    };
    let mut checks = Vec::new();
    for (keep_alive, expected, why) in [
        (
            60.0,
            2,
            "2 workers, each held by an idle client for 30 s; the other 2 clients give up",
        ),
        (
            2.0,
            4,
            "the server closes idle connections after 2 s, freeing the workers in time",
        ),
    ] {
        let args = ServerArgs {
            keep_alive_timeout: env.lecture(keep_alive),
            ..flags.server_args(&scenario)
        };
        let (report, _) = measure(env, Arch::PreforkPool, &flags, args, &scenario)?;
        let mut c = served_check(Arch::PreforkPool, &scenario, &report, &[expected], why);
        c.what = format!(
            "{} (keep-alive timeout {})",
            c.what,
            humantime::format_duration(env.lecture(keep_alive))
        );
        checks.push(c);
    }
    Ok(checks)
}

fn lab9(_env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let clients = shared_state::lecture_clients();
    let buggy = shared_state::serve_with_shared_current_client(&clients);
    let fixed = shared_state::serve_with_per_connection_address(&clients);
    let last = clients.last().map(ToString::to_string).unwrap_or_default();
    let reported = |logs: &[String]| {
        logs.iter()
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    let buggy_addrs = reported(&buggy);
    let fixed_addrs = reported(&fixed);
    let expected_fixed: Vec<String> = clients.iter().map(ToString::to_string).collect();
    let mut sorted_fixed = fixed_addrs.clone();
    sorted_fixed.sort();
    Ok(vec![
        check(
            "one shared \"current client\" behind a Mutex: each worker logs who it served",
            buggy_addrs.join(", "),
            format!("all five report {last}, the last client accepted"),
            buggy_addrs.iter().all(|a| *a == last) && buggy_addrs.len() == clients.len(),
        ),
        check(
            "the address moved into each worker: each logs who it served",
            fixed_addrs.join(", "),
            "five different addresses, one per client",
            sorted_fixed == expected_fixed,
        ),
    ])
}

fn lab10(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let mut checks = Vec::new();
    // In isolation: one producer hands 200 000 items to 4 consumers through a queue of 64.
    let items = 200_000u64;
    let mut rates = Vec::new();
    for kind in [QueueKind::Crossbeam, QueueKind::Condvar] {
        let (tx, rx) = queue::bounded::<u64>("bench", 64, kind);
        let started = Instant::now();
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || std::iter::from_fn(|| rx.pop()).fold(0u64, |n, _| n + 1))
            })
            .collect();
        drop(rx);
        for i in 0..items {
            let _ = tx.push(i);
        }
        drop(tx);
        let received: u64 = consumers.into_iter().map(|c| c.join().unwrap_or(0)).sum();
        let rate = items as f64 / started.elapsed().as_secs_f64();
        rates.push(rate);
        checks.push(check(
            format!("{kind:?} queue: 1 producer, 4 consumers, {items} hand-offs"),
            format!("{received} received, {rate:.0} hand-offs/s"),
            "every item delivered exactly once",
            received == items,
        ));
    }
    // In the server: new connection per request, so every request crosses the queue.
    let scenario = Scenario {
        load: Load::Duration(env.lecture(5.0)),
        ..Scenario::get(8, "/", Duration::from_secs(2), Duration::ZERO)
    };
    for kind in [QueueKind::Crossbeam, QueueKind::Condvar] {
        let flags = ServerFlags {
            queue_impl: kind,
            ..ServerFlags::default()
        };
        let args = ServerArgs {
            keep_alive_timeout: Duration::ZERO,
            ..ServerArgs::default()
        };
        let (report, stats) = measure(env, Arch::PreforkPool, &flags, args, &scenario)?;
        let t = report.throughput.clone();
        checks.push(check(
            format!("prefork-pool with the {kind:?} queue, keep-alive off: 8 clients"),
            format!(
                "{:.0} requests/s, {} failed, {} connections through the queue (mean wait {})",
                t.as_ref().map_or(0.0, |t| t.per_second),
                t.as_ref().map_or(0, |t| t.failed),
                stats["queues"][0]["pushed"],
                human_us(stats["queues"][0]["mean_wait_us"].as_f64().unwrap_or(0.0) as u64)
            ),
            "every request served: a hand-off costs microseconds, a connection far more, so the queue choice barely shows",
            t.as_ref().is_some_and(|t| t.failed == 0 && t.requests > 0),
        ));
    }
    // The two queues' speeds are reported, not judged: with one producer and four
    // consumers crossbeam is usually ahead, but by how much depends on how the threads are
    // scheduled, and on a busy machine either can win a run (see the sheet).
    if let (Some(first), Some(rate)) = (checks.first_mut(), rates.get(1)) {
        let _ = write!(
            first.measured,
            "; condvar {rate:.0} hand-offs/s, crossbeam ÷ condvar = {:.2}",
            rates[0] / rate.max(1.0)
        );
    }
    Ok(checks)
}

/// Lab 9: the lecture's shared-state bug in its logical form, and the fix.
///
/// The lecture's threaded servers kept the client's address in one global variable,
/// `client_addr`, written by the main thread at every accept and read by the workers when
/// they log. Thirty seconds into the service every worker read it, and every worker
/// reported the last client. Rust rejects an unsynchronised global written by one thread
/// and read by others (a data race), but it cannot stop a program from *sharing* the wrong
/// thing correctly: a "current client" behind a Mutex compiles, never races, and is still
/// wrong. The fix is the same as in the lecture's object-oriented version: each worker
/// owns its own client's address.
pub mod shared_state {
    use std::net::SocketAddr;
    use std::sync::{Arc, Barrier, Mutex};

    /// The five client addresses of the lecture's Figure 4.8.
    pub fn lecture_clients() -> Vec<SocketAddr> {
        (40429..=40433)
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .collect()
    }

    /// The bug. The main thread "accepts" each client by storing its address in the shared
    /// `current_client` and starts a worker. Each worker serves (here: waits at a barrier
    /// until every client has been accepted, as the lecture's 30-second hold guaranteed),
    /// then logs who it served by reading `current_client`.
    pub fn serve_with_shared_current_client(clients: &[SocketAddr]) -> Vec<String> {
        // Shared by the main thread and every worker: that is the bug.
        let current_client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let service_over = Arc::new(Barrier::new(clients.len() + 1));
        let workers: Vec<_> = clients
            .iter()
            .map(|addr| {
                *current_client.lock().unwrap_or_else(|e| e.into_inner()) = Some(*addr);
                let (current_client, service_over) =
                    (Arc::clone(&current_client), Arc::clone(&service_over));
                std::thread::spawn(move || {
                    // Blocks until every client has been accepted (the service time).
                    service_over.wait();
                    let who = *current_client.lock().unwrap_or_else(|e| e.into_inner());
                    format!(
                        "finished using service: client {}",
                        who.map(|a| a.to_string()).unwrap_or_default()
                    )
                })
            })
            .collect();
        service_over.wait();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    }

    /// The fix: the address is moved into the worker that serves that client.
    pub fn serve_with_per_connection_address(clients: &[SocketAddr]) -> Vec<String> {
        let service_over = Arc::new(Barrier::new(clients.len() + 1));
        let workers: Vec<_> = clients
            .iter()
            .map(|addr| {
                let (addr, service_over) = (*addr, Arc::clone(&service_over));
                std::thread::spawn(move || {
                    service_over.wait();
                    format!("finished using service: client {addr}")
                })
            })
            .collect();
        service_over.wait();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    }
}
