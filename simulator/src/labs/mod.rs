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

mod async_runtimes;
mod backlog;
mod designs;
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

/// How a lab is run.
#[derive(Debug)]
pub struct LabEnv {
    /// Lecture seconds to real seconds.
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
    pub fn new(scale: f64, target: Option<String>, engine: Engine) -> LabEnv {
        LabEnv {
            scale,
            target,
            engine,
            record: false,
            runs: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// `scenario` as this lab run runs it (on its engine).
    pub fn scenario(&self, scenario: &Scenario) -> Scenario {
        match scenario.load {
            Load::Rate(_) => scenario.clone(),
            _ => scenario.clone().on(self.engine),
        }
    }

    /// Keeps `report` for the lab's HTML report, when one was asked for.
    fn keep(&self, report: &Report) {
        if self.record {
            self.runs.lock().push(report.clone());
        }
    }

    /// The runs kept, in the order they ran.
    pub fn recorded(&self) -> Vec<Report> {
        self.runs.lock().clone()
    }

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
#[derive(Debug)]
pub struct Lab {
    pub id: u32,
    pub title: &'static str,
    pub sheet: &'static str,
    /// The architectures whose steps can run against `--target`, a server the student
    /// started. Empty for labs that start their own servers with changing settings.
    pub targets: &'static [&'static str],
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
            let addr = target::resolve(target)?;
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
    arch: &str,
    flags: &Servers,
    args: ServerArgs,
    scenario: &Scenario,
) -> Result<(Report, Snapshot), SimError> {
    if let Some(target) = &env.target {
        let addr = target::resolve(target)?;
        let info = target::probe(addr, target)?;
        let running = info.as_ref().map(|i| i.architecture.clone());
        let wanted = arch;
        if running.as_deref() != Some(wanted) {
            return Err(SimError::Usage(format!(
                "this step needs a {wanted} server, but {target} runs {}; start one with `cargo run --release -p {wanted}`",
                running.as_deref().unwrap_or("something that is not servelab")
            )));
        }
        let report = measure::run(
            addr,
            target,
            &env.scenario(scenario),
            info.as_ref(),
            env.record,
        )?;
        env.keep(&report);
        let stats = target::probe(addr, target)?
            .map(|i| i.snapshot)
            .ok_or_else(|| SimError::Usage(format!("{target} stopped answering /stats")))?;
        return Ok((report, stats));
    }
    let server = flags.start(arch, args)?;
    let result = run_against(env, &server, scenario);
    stop(server)?;
    result
}

/// This process's resident memory (bytes) and thread count, from `/proc/self/status`
/// (Linux; zeros elsewhere). A lab with in-process servers measures a server's cost as the
/// change in these.
fn process_figures() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
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

/// Stops an in-process server of a lab.
fn stop(server: RunningServer) -> Result<(), SimError> {
    server.stop().map_err(SimError::server)
}

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
fn answers(report: &Report) -> String {
    let mut times: Vec<(u64, bool)> = report
        .clients
        .iter()
        .filter_map(|c| {
            c.complete_us
                .map(|t| (t, c.outcome == loadgen::outcome::Outcome::Served))
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
    arch: &str,
    flags: &Servers,
    scenario: &Scenario,
    expected: &[usize],
    why: &str,
) -> Result<Check, SimError> {
    let (report, _) = measure(env, arch, flags, flags.server_args(scenario), scenario)?;
    Ok(served_check(arch, scenario, &report, expected, why))
}

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
            "{}: {} clients, {}, timeout {}, hold {}",
            arch,
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

/// With `--target`, multi-server labs run only the step for the target's architecture.
fn skip_for_target(env: &LabEnv, arch: &str) -> Result<bool, SimError> {
    let Some(target) = &env.target else {
        return Ok(false);
    };
    let addr = target::resolve(target)?;
    let running = target::probe(addr, target)?.map(|i| i.architecture);
    Ok(running.as_deref() != Some(arch))
}
