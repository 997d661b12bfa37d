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
//!
//! # How a lab is built
//!
//! Every lab is an experiment with a prediction made before it runs. The prediction comes
//! from the architecture, not from a previous measurement: a server with `P` threads that
//! each serve one client at a time, clients that each keep a thread for `O`, so client `k`
//! is answered after `⌊k/P⌋·O`; a queue that grows by `λ − μ` every second when requests
//! arrive faster than they leave; a loop that computes reads no socket meanwhile. A check
//! passes when the measurement lands where the arithmetic says, with margins wide enough
//! for a busy two-core machine, so that a failure means the model (or the server) is
//! wrong, not that the machine was slow.
//!
//! A lab is a function from a [`LabEnv`] to a list of [`Check`]s. Its steps are built from
//! the helpers of this module:
//!
//! * `measure` starts an architecture in this process with the given settings (or finds
//!   the student's `--target`), runs one scenario against it, stops it, and returns the
//!   report and the server's `/stats` afterwards;
//! * `served_step` and `served_check` do the most common step of the lecture's
//!   experiments: so many clients at once, how many are served before their deadline;
//! * `run_against` runs a scenario against a server the lab started itself, for the labs
//!   that must do something to the server while the clients run (kill a process, send a
//!   request that crashes a handler, read its queues);
//! * `process_figures` reads this process's memory and threads, which is how a lab
//!   measures what an in-process server costs: the difference before and during a run.
//!
//! Each lab module opens with the experiment it reproduces, the arithmetic of its
//! prediction and what to look at; each step says what it measures and why the expected
//! result follows from the architecture.
//!
//! # Margins
//!
//! How strict a check is follows from what decides its number:
//!
//! * **the architecture alone**: served counts, threads started, processes replaced,
//!   requests that found their client gone. These are exact, and a count that sits on a
//!   deadline's knife edge lists both values it may take (lab 1);
//! * **the architecture and the clock**: rates, latencies, waits. These hold on a busy
//!   two-core machine shared with the load generator, so the check allows what noise can
//!   do (a rate 30% low, a wait half or one and a half times the prediction) but never
//!   what a different architecture would do (a wait of the wrong order of magnitude);
//! * **the machine alone**: how fast one queue is against another, how much faster more
//!   CPUs compute. These are printed for the student to compare on an idle machine, and
//!   not judged (labs 6 and 10).
//!
//! The output prints each check as `ok` or `FAIL` with what was measured and what was
//! expected, and the command exits non-zero when any check fails.

mod accepts;
mod async_runtimes;
mod backlog;
mod completion;
mod designs;
mod distance;
mod event_loop;
mod heavy;
mod hostile;
mod open_loop;
mod pipeline;
mod pools;
mod queues;
mod sequential;
pub mod shared_state;

pub use pipeline::SEMIPRIME;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use server_core::queue::{self, QueueKind};
use server_core::Snapshot;
use server_core::{RunningServer, ServerArgs};

use crate::measure;
use crate::report::Report;
use crate::servers::Servers;
use crate::target::{self, ServerInfo};
use crate::SimError;
use loadgen::scenario::{DeadlineClock, Engine, Load, RequestSpec, Scenario};
use loadgen::units::human_us;

/// How a lab is run: how fast the lecture's clock goes, against which server, on which
/// engine, and whether its runs are kept for an HTML report.
#[derive(Debug)]
pub struct LabEnv {
    /// Lecture seconds to real seconds (`--scale`). Every duration the lecture names goes
    /// through [`LabEnv::lecture`], so a lab's arithmetic holds at any scale: only the
    /// absolute times shrink, and with them the run's length. Durations the lecture does
    /// not name (a lab's own margins, the kernel's retry) are not scaled.
    pub scale: f64,
    /// A server the student started, instead of in-process servers.
    pub target: Option<String>,
    /// The engine that runs the clients. Every lab gives the same result on both; the
    /// open-loop steps of labs 13 to 15 always run on the event-driven engine, the only
    /// one that has them.
    pub engine: Engine,
    /// Keep every run's report (and watch the server during it), for the lab's HTML
    /// report (`--report`).
    pub record: bool,
    /// The runs kept so far. Behind a mutex because labs take the environment by shared
    /// reference, and a few run steps on several threads.
    runs: parking_lot::Mutex<Vec<Report>>,
}

impl LabEnv {
    /// A lab run at `scale`, against `target` (or in-process servers), on `engine`; its
    /// runs are kept only once `record` is set.
    pub fn new(scale: f64, target: Option<String>, engine: Engine) -> LabEnv {
        LabEnv {
            scale,
            target,
            engine,
            record: false,
            runs: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// `scenario` as this lab run runs it (on its engine). An open loop keeps the
    /// event-driven engine, the only one with a dispatcher that sends requests on a
    /// schedule.
    pub fn scenario(&self, scenario: &Scenario) -> Scenario {
        match scenario.load {
            Load::Rate(_) => scenario.clone(),
            _ => scenario.clone().on(self.engine),
        }
    }

    /// Keeps `report` for the lab's HTML report, when one was asked for. The lock is held
    /// only for the push; a step on another thread that finishes at the same moment waits
    /// that long.
    fn keep(&self, report: &Report) {
        if self.record {
            self.runs.lock().push(report.clone());
        }
    }

    /// The runs kept, in the order they ran: the lab's HTML report draws each of them
    /// (timelines, latency, the server's own figures) below the checks.
    pub fn recorded(&self) -> Vec<Report> {
        self.runs.lock().clone()
    }

    /// `seconds` of lecture time, scaled. The labs write the lecture's own numbers (a 5 s
    /// hold, a 15 s timeout) and let this turn them into the run's.
    pub fn lecture(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds * self.scale)
    }
}

/// One measured fact beside what the lecture (or the arithmetic) expects.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// The step in a line: the architecture, its settings and the scenario.
    pub what: String,
    /// What was measured, in words and numbers, including what the verdict did not use
    /// (so that a student can see more than pass or fail).
    pub measured: String,
    /// The expectation and its reason, in the words of the lab's sheet.
    pub expected: String,
    /// Whether the measurement lands within the margins the expectation allows.
    pub agrees: bool,
}

/// A lab: its number, title, sheet, and how to run it.
#[derive(Debug)]
pub struct Lab {
    /// The lab's number, as `simulator lab <id>` takes it.
    pub id: u32,
    /// The question the lab answers, in a line.
    pub title: &'static str,
    /// The lab's sheet, from the repository's root: what to predict before running, and why.
    pub sheet: &'static str,
    /// The architectures whose steps can run against `--target`, a server the student
    /// started. Empty for labs that start their own servers with changing settings, or
    /// that act on the server during a run (kill a process, read its queues in-process).
    pub targets: &'static [&'static str],
    /// The lab itself: its steps, each measured and checked.
    run: fn(&LabEnv) -> Result<Vec<Check>, SimError>,
}

impl Lab {
    /// Runs the lab in `env`. With `--target`, only a lab that can measure the student's
    /// server runs, and only its steps for that server's architecture: a lab whose steps
    /// all belong to other architectures measured nothing, and says which server it needs.
    pub fn run(&self, env: &LabEnv) -> Result<Vec<Check>, SimError> {
        let Some(target) = &env.target else {
            // The lab starts its own servers: every step runs.
            return (self.run)(env);
        };
        // A lab that changes a server's settings between steps (a backlog of 1, then 1024)
        // cannot ask that of a server someone else started.
        if self.targets.is_empty() {
            return Err(SimError::Usage(format!(
                "lab {} starts its own servers (it changes their settings between runs); run it without --target",
                self.id
            )));
        }
        let checks = (self.run)(env)?;
        if checks.is_empty() {
            // No step matched the target's architecture: nothing was measured.
            let addr = target::resolve(target)?;
            // Asks the target what it runs, to say what the lab needed instead.
            let running = target::probe(addr, target)?.map(|i| i.architecture);
            let wanted: Vec<&str> = self.targets.to_vec();
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

/// Every lab, in order. Each lab's entry (its number, title, sheet and the architectures it
/// can measure with `--target`) is a constant beside the lab's code, so adding a lab is a
/// module with its constant and one line here.
pub fn all() -> Vec<Lab> {
    vec![
        sequential::LAB1,
        sequential::LAB2,
        pools::LAB3,
        pools::LAB4,
        heavy::LAB5,
        pipeline::LAB6,
        backlog::LAB7,
        pools::LAB8,
        shared_state::LAB9,
        queues::LAB10,
        event_loop::LAB11,
        event_loop::LAB12,
        open_loop::LAB13,
        open_loop::LAB14,
        open_loop::LAB15,
        designs::LAB16,
        designs::LAB17,
        designs::LAB18,
        hostile::LAB19,
        async_runtimes::LAB23,
        async_runtimes::LAB24,
        completion::LAB25,
        accepts::LAB26,
        distance::LAB27,
    ]
}

/// Finds lab `id`, or says which command lists the labs there are.
pub fn find(id: u32) -> Result<Lab, SimError> {
    all().into_iter().find(|lab| lab.id == id).ok_or_else(|| {
        SimError::Usage(format!(
            "there is no lab {id}; `simulator lab --list` lists them"
        ))
    })
}

/// A check of a number against an expectation. `agrees` is computed by the lab from the
/// raw numbers; `measured` is how they are shown.
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
///
/// In-process, each step gets a fresh server with exactly the settings of `flags` and
/// `args`, so that no step inherits another's queue, threads or idle connections; the
/// call blocks until the run is over and the server has stopped. Against a target, the
/// server is the student's: this checks that it is the architecture the step needs, runs
/// the scenario, and reads its `/stats` over HTTP afterwards.
fn measure(
    env: &LabEnv,
    arch: &str,
    flags: &Servers,
    args: ServerArgs,
    scenario: &Scenario,
) -> Result<(Report, Snapshot), SimError> {
    if let Some(target) = &env.target {
        let addr = target::resolve(target)?;
        // Blocks for one request to the target's `/stats`: which architecture runs there.
        let info = target::probe(addr, target)?;
        // A step measured on the wrong architecture would check the wrong arithmetic: the
        // student is told which server to start instead.
        let running = info.as_ref().map(|i| i.architecture.clone());
        let wanted = arch;
        if running.as_deref() != Some(wanted) {
            return Err(SimError::Usage(format!(
                "this step needs a {wanted} server, but {target} runs {}; start one with `cargo run --release -p {wanted}`",
                running.as_deref().unwrap_or("something that is not servelab")
            )));
        }
        // Blocks until every client has finished (each is bounded by its deadline).
        let report = measure::run(
            addr,
            target,
            &env.scenario(scenario),
            info.as_ref(),
            env.record,
        )?;
        env.keep(&report);
        // The target's counters count every run since it started, the student's earlier
        // ones included; the labs that run against a target read only what the scenario
        // alone decides (served counts, their own latencies).
        let stats = target::probe(addr, target)?
            .map(|i| i.snapshot)
            .ok_or_else(|| SimError::Usage(format!("{target} stopped answering /stats")))?;
        return Ok((report, stats));
    }
    let server = flags.start(arch, args)?;
    let result = run_against(env, &server, scenario);
    // The server is stopped even when the run failed; its own failure to stop is reported
    // before the run's, since a server that cannot stop would spoil the next step too.
    stop(server)?;
    result
}

/// This process's resident memory (bytes) and thread count, from `/proc/self/status`
/// (Linux; zeros elsewhere). A lab with in-process servers measures a server's cost as the
/// change in these.
///
/// An in-process server's threads and memory are this process's, so the difference
/// between a reading before the clients connect and one while they are held is what
/// holding them cost, server and client ends together. Resident memory counts the pages
/// actually touched: a thread's stack is megabytes of reserved address space but costs
/// only the few pages it used, which is why a thread per idle client costs tens of KiB,
/// not megabytes.
fn process_figures() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // A line such as `VmRSS:     12345 kB`: the number after the field's name.
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

/// Stops an in-process server of a lab. Blocks until its threads have ended, which its
/// shutdown timeout bounds: connections still busy then are closed, not waited for.
fn stop(server: RunningServer) -> Result<(), SimError> {
    server.stop().map_err(SimError::server)
}

/// Runs `scenario` against `server`, which the lab started itself, and returns the report
/// and the server's `/stats` afterwards (read in-process, without a request). Blocks until
/// every client has finished.
fn run_against(
    env: &LabEnv,
    server: &RunningServer,
    scenario: &Scenario,
) -> Result<(Report, Snapshot), SimError> {
    let report = measure::run_in_process(server, &env.scenario(scenario), env.record)?;
    env.keep(&report);
    Ok((report, server.context().snapshot()))
}

/// The answers of a scenario run in the order they came, for people: "answers at 390µs,
/// 501.2ms, 1.00s, 1.50s (late); 1 client gave up with none".
///
/// The served count says how many; these times say why. A queue shows as answers one
/// occupancy apart, and a client on the boundary as an answer a hair past its deadline,
/// marked late.
fn answers(report: &Report) -> String {
    let mut times: Vec<(u64, bool)> = report
        .clients
        .iter()
        .filter_map(|c| {
            c.complete_us
                .map(|t| (t, c.outcome == loadgen::outcome::Outcome::Served))
        })
        .collect();
    // In the order they came, late ones marked: a served client's answer is in time by
    // definition, any other answer was late.
    times.sort_unstable();
    let mut text = format!(
        "answers at {}",
        times
            .iter()
            .map(|(t, served)| format!("{}{}", human_us(*t), if *served { "" } else { " (late)" }))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // The clients with no answer at all gave up first (or were refused, or reset).
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

/// Runs a "who is served" scenario and checks the served count against `expected`: the
/// lecture's experiment in one call. `expected` lists every count the arithmetic allows
/// (two when a completion falls on the deadline's knife edge), and `why` is the arithmetic
/// in words.
fn served_step(
    env: &LabEnv,
    arch: &str,
    flags: &Servers,
    scenario: &Scenario,
    expected: &[usize],
    why: &str,
) -> Result<Check, SimError> {
    let (report, _) = measure(env, arch, flags, flags.server_args(scenario), scenario)?;
    Ok(served_check(arch, scenario, &report, expected, why))
}

/// The check of a "who is served" run: the scenario in the lecture's terms (clients,
/// request, timeout, hold), the served count with the timeouts beside it, and the
/// simulator's own prediction when the server published its capacity.
fn served_check(
    arch: &str,
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
            "{}: {} clients, {}{}, timeout {}, hold {}{}",
            arch,
            scenario.clients,
            scenario.request.line(),
            match scenario.load {
                Load::Requests(k) if k > 1 => format!(" × {k}"),
                _ => String::new(),
            },
            humantime::format_duration(scenario.timeout),
            humantime::format_duration(scenario.hold),
            if scenario.link.is_active() {
                format!(", {}", scenario.link.describe())
            } else {
                String::new()
            }
        ),
        // The served count, the clients that timed out (connecting or waiting for service),
        // and the simulator's own prediction with its verdict: two independent witnesses,
        // the lab's arithmetic and the model's.
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
        // Exact counts: a "who is served" experiment either follows the queue or not, and
        // a count on a knife edge lists both of its possible values.
        expected.contains(&s.served),
    )
}

/// With `--target`, multi-server labs run only the step for the target's architecture: the
/// others would measure the wrong server. Asks the target's `/stats` (one request) for
/// each step.
fn skip_for_target(env: &LabEnv, arch: &str) -> Result<bool, SimError> {
    let Some(target) = &env.target else {
        return Ok(false);
    };
    let addr = target::resolve(target)?;
    let running = target::probe(addr, target)?.map(|i| i.architecture);
    Ok(running.as_deref() != Some(arch))
}
