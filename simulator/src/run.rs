//! Running a scenario: every client on a thread of its own, all starting together.
//!
//! The clients wait at a [`StartGate`] until all exist, then run to their own end (every
//! blocking call a client makes is bounded by its deadline). Their records go to the
//! ledger and become a [`Report`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::client::{self, ClientRecord, Plan};
use crate::gate::StartGate;
use crate::report::Report;
use crate::scenario::Scenario;
use crate::target::{self, ServerInfo};
use crate::SimError;

/// A client's whole life, to run on its own thread.
pub type ClientJob = Box<dyn FnOnce() -> ClientRecord + Send>;

/// Starts a thread named `name` running `job`.
pub type Spawner<'a> = &'a mut dyn FnMut(String, ClientJob) -> io::Result<JoinHandle<ClientRecord>>;

/// Runs `scenario` against a server that is already running at `target` (host:port):
/// resolves it, probes it (one sentence and an error if nothing listens there, before any
/// load is sent; its `/stats` enables the prediction), and runs.
pub fn run_target(target: &str, scenario: &Scenario) -> Result<Report, SimError> {
    let addr = target::resolve(target)?;
    let info = target::probe(addr, target)?;
    run(addr, target, scenario, info.as_ref())
}

/// Runs `scenario` against `addr`: starts every client on its own thread, releases them
/// together, waits for all of them, and reports. `info` (from [`target::probe`]) enables
/// the prediction.
pub fn run(
    addr: SocketAddr,
    target: &str,
    scenario: &Scenario,
    info: Option<&ServerInfo>,
) -> Result<Report, SimError> {
    run_with(addr, target, scenario, info, &mut |name, job| {
        std::thread::Builder::new()
            .name(name)
            .stack_size(256 * 1024)
            .spawn(job)
    })
}

/// [`run`], with the threads started by `spawn` (a test can make it fail).
pub fn run_with(
    addr: SocketAddr,
    target: &str,
    scenario: &Scenario,
    info: Option<&ServerInfo>,
    spawn: Spawner,
) -> Result<Report, SimError> {
    let gate = Arc::new(StartGate::new());
    let shared = Arc::new(scenario.clone());
    let mut threads = Vec::with_capacity(scenario.clients);
    for id in 1..=scenario.clients {
        let (waiting, plan_scenario, host) =
            (Arc::clone(&gate), Arc::clone(&shared), target.to_owned());
        let job: ClientJob = Box::new(move || {
            // Waits until every client thread exists, so that all start together.
            if !waiting.wait() {
                return ClientRecord::new(id);
            }
            let plan = Plan {
                addr,
                host,
                scenario: &plan_scenario,
            };
            client::run(id, &plan, Instant::now())
        });
        match spawn(format!("client-{id}"), job) {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                // Releases the threads already waiting, so they return at once, and waits
                // for them before reporting.
                gate.call_off();
                for thread in threads {
                    let _ = thread.join();
                }
                return Err(SimError::Threads(format!(
                    "the system refused to start client {id} of {}: {e}",
                    scenario.clients
                )));
            }
        }
    }
    tracing::info!("{} clients will connect to {target} ...", scenario.clients);
    gate.go();
    let start = Instant::now();
    let mut clients = Vec::with_capacity(threads.len());
    let mut panicked = false;
    for thread in threads {
        // Each client ends by itself: every blocking call it makes is bounded.
        match thread.join() {
            Ok(record) => clients.push(record),
            Err(_) => panicked = true,
        }
    }
    if panicked {
        return Err(SimError::Threads("a client thread panicked".into()));
    }
    Ok(Report::new(
        target,
        info,
        scenario,
        clients,
        start.elapsed(),
    ))
}
