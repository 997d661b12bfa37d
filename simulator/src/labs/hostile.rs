//! Lab 19: hostile clients. Every architecture against the same background of slow and
//! idle connections, with twenty ordinary clients in the foreground: who keeps serving
//! them, and what holding the attackers costs in threads and memory.

use super::*;
use loadgen::attack::{self, Behaviour, Population};

/// The background every architecture faces: 450 connections, each sending (or reading) a
/// few bytes a second, 350 of them with a request that never completes.
const MIX: [(usize, Behaviour); 4] = [
    (200, Behaviour::SlowHeaders),
    (100, Behaviour::SlowBody),
    (50, Behaviour::SlowRead),
    (100, Behaviour::Idle),
];

/// The foreground: ordinary clients, each wanting `/` within a second.
const FOREGROUND: usize = 20;

/// What one architecture did under the attack.
struct Outcome {
    served: usize,
    threads: u64,
    bytes: u64,
    background: Vec<attack::PopulationLedger>,
}

/// Runs the foreground against `arch` with the attack in the background, and counts the
/// threads and memory the process gained while it held the attackers.
fn under_attack(env: &LabEnv, arch: &str) -> Result<Outcome, SimError> {
    let background: Vec<Population> = MIX
        .iter()
        .map(|&(clients, behaviour)| Population {
            clients,
            behaviour,
            every: attack::DEFAULT_EVERY,
        })
        .collect();
    let server = Servers::default().start(arch, ServerArgs::default())?;
    let (rss_before, threads_before) = process_figures();
    let measured = attack::start(server.addr(), &background)
        .map_err(SimError::from)
        .and_then(|attack| {
            let scenario = Scenario::get(FOREGROUND, "/", Duration::from_secs(1), Duration::ZERO);
            let ran = crate::measure::run_in_process(&server, &env.scenario(&scenario), env.record);
            // Read while the attackers are still held: what they cost the server.
            let (rss_during, threads_during) = process_figures();
            let ledgers = attack.stop();
            let mut report = ran?;
            report.background = ledgers;
            env.keep(&report);
            Ok(Outcome {
                served: report.summary.served,
                // Less the attacker's own thread.
                threads: threads_during.saturating_sub(threads_before + 1),
                bytes: rss_during.saturating_sub(rss_before),
                background: report.background,
            })
        });
    stop(server)?;
    measured
}

/// What the lab expects of each design, and whether `o` meets it.
fn expectation(arch: &str, o: &Outcome) -> (String, bool) {
    let hostile: u64 = MIX.iter().map(|(n, _)| *n as u64).sum();
    let all = o.served == FOREGROUND;
    match arch {
        "thread-per-conn" | "combined-delegation" => (
            format!("all {FOREGROUND} served, paying a thread per hostile connection (about {hostile} more)"),
            all && o.threads >= hostile * 7 / 10,
        ),
        "thread-per-request" => (
            format!("all {FOREGROUND} served; a thread for every connection whose request has begun (the 350 slow ones, not the 100 idle)"),
            all && o.threads >= 200 && o.threads < hostile + 50,
        ),
        "event-loop" | "async-work-stealing" | "async-per-core" => (
            format!("all {FOREGROUND} served with no new thread: a slow connection is a socket and a state machine (in a task, for the async servers)"),
            all && o.threads <= 4,
        ),
        _ => (
            "at most 2 served: a fixed set of threads each owning a connection is taken by the first slow ones, and the foreground waits behind 450 attackers in the accept queue".into(),
            o.served <= 2,
        ),
    }
}

/// Lab 19's entry in the list of labs ([`super::all`]).
pub(super) const LAB19: Lab = Lab {
    id: 19,
    title: "Hostile clients: who serves the foreground under a slow-client flood",
    sheet: "labs/19-hostile-clients.md",
    targets: &[],
    run: lab19,
};

pub(super) fn lab19(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let mut checks = Vec::new();
    for entry in architectures::ALL.iter() {
        let o = under_attack(env, entry.name)?;
        let (expected, agrees) = expectation(entry.name, &o);
        let cut: u64 = o.background.iter().map(|l| l.cut_off).sum();
        let held: u64 = o.background.iter().map(|l| l.open_at_end).sum();
        checks.push(check(
            format!("{}: the foreground under 450 slow and idle connections", entry.name),
            format!(
                "{}/{FOREGROUND} served; {} more threads, {:.1} MiB more memory; {cut} attackers cut off, {held} still held at the end",
                o.served,
                o.threads,
                o.bytes as f64 / (1024.0 * 1024.0),
            ),
            expected,
            agrees,
        ));
    }
    Ok(checks)
}
