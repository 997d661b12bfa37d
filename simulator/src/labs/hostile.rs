//! Lab 19: hostile clients. Every architecture against the same background of slow and
//! idle connections, with twenty ordinary clients in the foreground: who keeps serving
//! them, and what holding the attackers costs in threads and memory.
//!
//! A slow client (slowloris) costs the attacker almost nothing: a socket and a few bytes a
//! second. What it costs the server depends on the architecture. Where a fixed set of `W`
//! threads each own a connection until its request is complete (`single`, the pool, the
//! pipeline's receivers), the first `W` attackers take every thread, each for up to the
//! server's pace (about 2 s for a slow sender) or read timeout (10 s for an idle one), and
//! the foreground waits behind the other attackers in the accept queue: an attacker needs
//! only `W / D` new slow connections a second to keep a server with hold `D` busy. Where
//! every connection gets a thread (thread-per-connection, combined delegation) everyone is
//! served, at the price of a thread per attacker. Where a connection is a socket and a
//! state machine (the event loop, the async servers) everyone is served and no thread is
//! added. Thread-per-request sits between: an idle connection costs no thread, one whose
//! request has begun does.
//!
//! The lab starts each architecture in this process, opens the background first (and waits
//! until it holds its connections), runs the foreground beside it, and reads this process's
//! threads and memory before the attack and while it is held. What to look at: the served
//! counts split the designs into two groups, and the thread counts split the second group
//! again.

use super::*;
use loadgen::attack::{self, Behaviour, Population};

/// The background every architecture faces: 450 connections, each sending (or reading) a
/// few bytes a second, 350 of them with a request that never completes.
const MIX: [(usize, Behaviour); 4] = [
    // One more header line a second, never the blank line that ends the head: a reader
    // that waits for the whole head is held until the server's pace runs out.
    (200, Behaviour::SlowHeaders),
    // A 64 KiB body announced, ten bytes of it a second: held the same way, in the body.
    (100, Behaviour::SlowBody),
    // A 256 KiB `POST /echo` sent, its echo read 16 bytes at a time through a tiny
    // receive window: the server's writer is held, up to its read timeout.
    (50, Behaviour::SlowRead),
    // Connected, silent: held until the read timeout by a design that reads at once.
    (100, Behaviour::Idle),
];

/// The foreground: ordinary clients, each wanting `/` within a second.
const FOREGROUND: usize = 20;

/// What one architecture did under the attack.
struct Outcome {
    /// Foreground clients served within their second.
    served: usize,
    /// Threads this process gained while the attackers were held (server threads: the
    /// attackers' own thread is subtracted).
    threads: u64,
    /// Resident memory this process gained meanwhile, server and attacker ends together.
    bytes: u64,
    /// Each hostile population's ledger: connected, cut off by the server, still held.
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
    // Each architecture with its defaults: read timeout 10 s, header pace 2 s plus a
    // second per 500 bytes. The attack is priced against what a server ships with.
    let server = Servers::default().start(arch, ServerArgs::default())?;
    // The baseline, read before the attack: the server's own threads and memory, which
    // every design has whatever its clients do.
    let (rss_before, threads_before) = process_figures();
    // Blocks until every hostile connection is established (or has failed), at most a
    // settling time; the attackers then run on a thread of their own, and the foreground
    // meets a server already under attack.
    let measured = attack::start(server.addr(), &background)
        .map_err(SimError::from)
        .and_then(|attack| {
            let scenario = Scenario::get(FOREGROUND, "/", Duration::from_secs(1), Duration::ZERO);
            // Blocks until the 20 foreground clients are served or have given up (1 s).
            let ran = crate::measure::run_in_process(&server, &env.scenario(&scenario), env.record);
            // Read while the attackers are still held: what they cost the server.
            let (rss_during, threads_during) = process_figures();
            // Stops the attackers and waits (at most a tick) for their thread to close its
            // connections: their ledger says what the server did to each population.
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

/// What the lab expects of each design, and whether `o` meets it. The thread bounds leave
/// room for attackers the server has already cut off (a slow sender past its pace) and
/// for the server's own helper threads.
fn expectation(arch: &str, o: &Outcome) -> (String, bool) {
    let hostile: u64 = MIX.iter().map(|(n, _)| *n as u64).sum();
    let all = o.served == FOREGROUND;
    match arch {
        // A thread per connection: every attacker holds one. At least 70% of them, since
        // the server cuts off slow senders past their pace and their threads end.
        "thread-per-conn" | "combined-delegation" => (
            format!("all {FOREGROUND} served, paying a thread per hostile connection (about {hostile} more)"),
            all && o.threads >= hostile * 7 / 10,
        ),
        // A thread per request: the 350 whose request has begun hold one, the 100 idle
        // do not (the main thread watches them). At least 200, for those already cut off.
        "thread-per-request" => (
            format!("all {FOREGROUND} served; a thread for every connection whose request has begun (the 350 slow ones, not the 100 idle)"),
            all && o.threads >= 200 && o.threads < hostile + 50,
        ),
        // A state machine per connection: no thread for anyone (the bound of 4 is a margin
        // for threads started meanwhile that are not the attackers').
        "event-loop" | "io-uring" | "async-work-stealing" | "async-per-core" => (
            format!("all {FOREGROUND} served with no new thread: a slow connection is a socket and a state machine (in a task, for the async servers)"),
            all && o.threads <= 4,
        ),
        // A fixed set of threads that each own a connection until its request is
        // complete: every one taken by the first attackers, and the foreground queued
        // behind the other attackers. At most 2, for a thread freed just as a foreground
        // client reached the front.
        _ => (
            "at most 2 served: a fixed set of threads each owning a connection is taken by the first slow ones, and the foreground waits behind 450 attackers in the accept queue".into(),
            o.served <= 2,
        ),
    }
}

/// Lab 19's entry in the list of labs ([`super::all`]).
/// The question before running: which designs give every connection a thread, which
/// have a fixed set of threads that each own a connection until its request is complete,
/// and how many slow connections stop the second kind?
pub(super) const LAB19: Lab = Lab {
    id: 19,
    title: "Hostile clients: who serves the foreground under a slow-client flood",
    sheet: "labs/19-hostile-clients.md",
    targets: &[],
    run: lab19,
};

/// Lab 19: every registered architecture, one after another, against the same attack.
///
/// In its HTML report (`--report`): each architecture's foreground on the timeline, and the
/// background's ledger per population in the text.
pub(super) fn lab19(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let mut checks = Vec::new();
    // Every architecture of the registry: a new one is attacked too, and expected to do
    // what the fixed designs do unless `expectation` names it.
    for entry in architectures::ALL.iter() {
        if let Err(why) = entry.available() {
            // io-uring where io_uring is forbidden: said, not measured.
            eprintln!("{}: skipped: {why}", entry.name);
            continue;
        }
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
