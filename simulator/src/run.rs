//! Running a scenario against a server, on the scenario's engine.
//!
//! [`run_target`] is for a server that is already running somewhere (it resolves the name
//! and probes the server first); [`run_in_process`] for a server this process started
//! (compare, the labs); [`run`] for an address whose server is already known. All three
//! hand the clients to an engine ([`crate::engine`]) and turn what it measured into a
//! [`Report`]. A scenario's background populations ([`crate::attack`]) start before the
//! clients and stop after them.

use std::net::SocketAddr;

use server_core::RunningServer;

use crate::attack::Attack;
use crate::client::Plan;
use crate::engine::{self, threads::Spawner};
use crate::report::Report;
use crate::scenario::Scenario;
use crate::target::{self, ServerInfo};
use crate::SimError;

/// Runs `scenario` against a server that is already running at `target` (host:port):
/// resolves it, probes it (one sentence and an error if nothing listens there, before any
/// load is sent; its `/stats` enables the prediction), and runs.
pub fn run_target(target: &str, scenario: &Scenario) -> Result<Report, SimError> {
    let addr = target::resolve(target)?;
    let info = target::probe(addr, target)?;
    run(addr, target, scenario, info.as_ref())
}

/// Runs `scenario` against `addr`. `info` (from [`target::probe`]) enables the
/// prediction.
pub fn run(
    addr: SocketAddr,
    target: &str,
    scenario: &Scenario,
    info: Option<&ServerInfo>,
) -> Result<Report, SimError> {
    let watch = (scenario.watch_server && info.is_some())
        .then_some(crate::watch::Source::Remote { addr, target });
    let attack = attack(addr, scenario)?;
    let (finished, watched) =
        crate::watch::during(watch, || engine::run(Plan::new(addr, target, scenario)));
    let background = attack.map(Attack::stop).unwrap_or_default();
    let mut report = Report::new(target, info, scenario, finished?);
    report.server_series = watched;
    report.background = background;
    Ok(report)
}

/// Runs `scenario` against a server running in this process, whose `/stats` it reads
/// directly. Such a server holds the other end of every connection in this process, which
/// the check on open files counts.
pub fn run_in_process(server: &RunningServer, scenario: &Scenario) -> Result<Report, SimError> {
    let addr = server.addr();
    let info = ServerInfo::from(server.context().snapshot());
    let mut plan = Plan::new(addr, &addr.to_string(), scenario);
    plan.in_process = true;
    let watch = scenario
        .watch_server
        .then_some(crate::watch::Source::InProcess(server.context()));
    let attack = attack(addr, scenario)?;
    let (finished, watched) = crate::watch::during(watch, || engine::run(plan));
    let background = attack.map(Attack::stop).unwrap_or_default();
    let mut report = Report::new(&addr.to_string(), Some(&info), scenario, finished?);
    report.server_series = watched;
    report.background = background;
    Ok(report)
}

/// Starts the scenario's background populations, if it has any, and returns once they
/// hold their connections.
fn attack(addr: SocketAddr, scenario: &Scenario) -> Result<Option<Attack>, SimError> {
    if scenario.background.is_empty() {
        return Ok(None);
    }
    crate::attack::start(addr, &scenario.background).map(Some)
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
    let finished = engine::threads::run(Plan::new(addr, target, scenario), spawn)?;
    Ok(Report::new(target, info, scenario, finished))
}
