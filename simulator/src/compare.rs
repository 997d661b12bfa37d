//! `simulator compare`: the same scenario against several servers, one after another.
//!
//! Either every registered architecture (or those chosen with `--archs`) started in this
//! process on an ephemeral loopback port, each stopped before the next starts so that they
//! never compete for the CPU, or servers that are already running (`--target`). An
//! architecture this machine cannot run (io-uring where io_uring is forbidden) is skipped,
//! with one line on standard error saying why.

use crate::report::Report;
use crate::scenario::Scenario;
use crate::servers::Servers;
use crate::{run, SimError};

/// Runs `scenario` against each architecture of `servers`, one after another.
pub fn compare(scenario: &Scenario, servers: &Servers) -> Result<Vec<Report>, SimError> {
    let mut reports = Vec::new();
    for arch in &servers.archs {
        if let Err(why) = crate::servers::entry(arch)?.available() {
            eprintln!("{arch}: skipped: {why}");
            continue;
        }
        reports.push(run_one(arch, scenario, servers)?);
    }
    Ok(reports)
}

/// Runs `scenario` against servers that are already running, one after another: servers
/// in containers, on other machines, or started by hand (see [`run::run_target`]).
pub fn compare_targets(scenario: &Scenario, targets: &[String]) -> Result<Vec<Report>, SimError> {
    targets
        .iter()
        .map(|target| run::run_target(target, scenario))
        .collect()
}

/// Runs `scenario` against one in-process server of architecture `arch`.
pub fn run_one(arch: &str, scenario: &Scenario, servers: &Servers) -> Result<Report, SimError> {
    let server = servers.start(arch, servers.server_args(scenario))?;
    let report = run::run_in_process(&server, scenario);
    // Stops accepting, lets requests in flight finish, joins the server's threads.
    server.stop().map_err(|e| SimError::Server(e.to_string()))?;
    report
}
