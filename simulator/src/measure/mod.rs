//! Measuring servers: a scenario against one server, or against several in turn.
//!
//! [`run_target`] is for a server that is already running somewhere (it resolves the name
//! and probes the server first); [`run_in_process`] for a server this process started;
//! [`run`] for an address whose server is already known; [`compare`] and
//! [`compare_targets`] for several servers one after another. All of them hand the clients
//! to `loadgen`'s engine, with the progress line watching, and turn what it measured into a
//! [`Report`]. A scenario's background populations start before the clients and stop after
//! them. With `watch`, the server's own `/stats` is sampled during the run ([`crate::watch`])
//! for the HTML report's charts.

pub mod sweep;

use std::net::SocketAddr;
use std::sync::mpsc;

use loadgen::attack::{self, Attack};
use loadgen::client::Plan;
use loadgen::engine::{self, threads::Spawner};
use loadgen::Scenario;
use server_core::RunningServer;

use crate::live;
use crate::predict;
use crate::report::Report;
use crate::servers::Servers;
use crate::target::{self, ServerInfo};
use crate::watch::{self, Source};
use crate::SimError;

/// Runs `scenario` against a server that is already running at `target` (host:port):
/// resolves it, probes it (one sentence and an error if nothing listens there, before any
/// load is sent; its `/stats` enables the prediction), and runs.
pub fn run_target(target: &str, scenario: &Scenario, watch: bool) -> Result<Report, SimError> {
    let addr = target::resolve(target)?;
    let info = target::probe(addr, target)?;
    run(addr, target, scenario, info.as_ref(), watch)
}

/// Runs `scenario` against `addr`. `info` (from [`target::probe`]) enables the
/// prediction and, with `watch`, the sampling of the server's `/stats`.
pub fn run(
    addr: SocketAddr,
    target: &str,
    scenario: &Scenario,
    info: Option<&ServerInfo>,
    watch: bool,
) -> Result<Report, SimError> {
    // The live view shows the server's `/stats` too, report or not.
    let source =
        ((watch || live::asked()) && info.is_some()).then_some(Source::Remote { addr, target });
    let plan = Plan::new(addr, target, scenario);
    let name = match info {
        Some(info) => format!("{} at {target}", info.architecture),
        None => target.to_owned(),
    };
    measured(plan, &name, target, info, scenario, source, watch)
}

/// Runs `scenario` against a server running in this process, whose `/stats` it reads
/// directly. Such a server holds the other end of every connection in this process, which
/// the check on open files counts.
pub fn run_in_process(
    server: &RunningServer,
    scenario: &Scenario,
    watch: bool,
) -> Result<Report, SimError> {
    let addr = server.addr();
    let target = addr.to_string();
    let info = ServerInfo::from(server.context().snapshot());
    let mut plan = Plan::new(addr, &target, scenario);
    plan.in_process = true;
    let source = (watch || live::asked()).then_some(Source::InProcess(server.context()));
    let name = info.architecture.clone();
    measured(plan, &name, &target, Some(&info), scenario, source, watch)
}

/// Runs `plan` against `target` with the background populations around it and the server
/// watched from `source`, and reports it; the report keeps the server's readings if `keep`
/// (a report was asked for). The run is watched by the progress line, or by the live view
/// (`--live`), which shows the server as `name` and the prediction from `info` beside the
/// measurement.
fn measured(
    plan: Plan,
    name: &str,
    target: &str,
    info: Option<&ServerInfo>,
    scenario: &Scenario,
    source: Option<Source<'_>>,
    keep: bool,
) -> Result<Report, SimError> {
    let predicted = predicted_in_words(info, scenario);
    let attack = background(plan.addr, scenario)?;
    // The live view's feed of the server's readings: unbounded, and drained by the view
    // five times a second, so it holds two or three readings at most.
    let (tap, readings) = mpsc::channel();
    let mut monitor = live::monitor(name, scenario, predicted, Some(readings));
    let (finished, watched) =
        watch::during(source, Some(tap), || engine::run(plan, monitor.as_mut()));
    drop(monitor);
    let background = attack.map(Attack::stop).unwrap_or_default();
    let mut report = Report::new(target, info, scenario, finished?);
    if keep {
        report.server_series = watched;
    }
    report.background = background;
    Ok(report)
}

/// The prediction for `scenario` against the server `info` describes, in the words the
/// live view shows beside the measurement: "2 served", "3 to 4 served", "850 req/s".
/// `None` for a server the model does not know, and for a shard (which predicts nothing:
/// the merge predicts the whole run).
fn predicted_in_words(info: Option<&ServerInfo>, scenario: &Scenario) -> Option<String> {
    if scenario.shard.is_some() {
        return None;
    }
    let prediction = predict::predict(info?, scenario)?;
    match (prediction.served_text(), prediction.per_second) {
        (Some(served), _) => Some(format!("{served} served")),
        (None, Some(rate)) => Some(format!("{rate:.0} req/s")),
        (None, None) => None,
    }
}

/// Starts the scenario's background populations, if it has any, and returns once they
/// hold their connections.
fn background(addr: SocketAddr, scenario: &Scenario) -> Result<Option<Attack>, SimError> {
    if scenario.background.is_empty() {
        return Ok(None);
    }
    Ok(Some(attack::start(addr, &scenario.background)?))
}

/// [`run`] on the thread-per-client engine, with the client threads started by `spawn`
/// (a test can make it fail).
pub fn run_with(
    addr: SocketAddr,
    target: &str,
    scenario: &Scenario,
    info: Option<&ServerInfo>,
    spawn: Spawner,
) -> Result<Report, SimError> {
    let finished = engine::threads::run(Plan::new(addr, target, scenario), spawn, &mut ())?;
    Ok(Report::new(target, info, scenario, finished))
}

/// Runs `scenario` against each architecture of `servers`, one after another, skipping
/// any this machine cannot run.
pub fn compare(
    scenario: &Scenario,
    servers: &Servers,
    watch: bool,
) -> Result<Vec<Report>, SimError> {
    let mut reports = Vec::new();
    for arch in &servers.archs {
        // An architecture this machine cannot run (io-uring where io_uring is forbidden) is
        // skipped, with one line on standard error saying why.
        if let Err(why) = crate::servers::entry(arch)?.available() {
            eprintln!("{arch}: skipped: {why}");
            continue;
        }
        reports.push(run_one(arch, scenario, servers, watch)?);
    }
    Ok(reports)
}

/// Runs `scenario` against servers that are already running, one after another: servers
/// in containers, on other machines, or started by hand (see [`run_target`]).
pub fn compare_targets(
    scenario: &Scenario,
    targets: &[String],
    watch: bool,
) -> Result<Vec<Report>, SimError> {
    targets
        .iter()
        .map(|target| run_target(target, scenario, watch))
        .collect()
}

/// Runs `scenario` against one in-process server of architecture `arch`.
pub fn run_one(
    arch: &str,
    scenario: &Scenario,
    servers: &Servers,
    watch: bool,
) -> Result<Report, SimError> {
    let server = servers.start(arch, servers.server_args(scenario))?;
    let report = run_in_process(&server, scenario, watch);
    // Stops accepting, lets requests in flight finish, joins the server's threads.
    server.stop().map_err(SimError::server)?;
    report
}
