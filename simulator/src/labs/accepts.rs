//! Lab 26: where accepts land. One reactor of the event loop is stalled by a computation
//! on its own thread; newcomers arrive meanwhile. With one listening socket shared by the
//! reactors (`--accept shared`), the free reactor takes them all. With a listening socket
//! per reactor (`--accept reuseport`), the kernel hashes each newcomer to a socket by its
//! addresses and ports, not by how busy that socket's reactor is: about half of them wait
//! in the stalled reactor's backlog and miss their deadline. Pinning the reactors to CPUs
//! (`--pin on`) moves the threads, not the hash, and changes nothing.
//!
//! # The experiment
//!
//! An `event-loop` with two reactors and `--offload off`, so that `/factor` is computed on
//! the reactor that read it. One client asks for `/factor/{p}` of the largest prime below
//! 2^64: trial division would take minutes, so the server's `--max-cpu` (1 s) ends it,
//! and the reactor that read it computes for exactly that second, reading no socket and
//! accepting nobody. As soon as the computation has begun, [`CLIENTS`] clients each connect
//! and ask `GET /`, with a deadline of [`DEADLINE`] from their common start.
//!
//! # The prediction
//!
//! The kernel completes every handshake itself and queues the connection on a listening
//! socket; a reactor only takes it from there (`accept`). So where a client waits is
//! decided by which socket its connection was queued on:
//!
//! * **shared**: one socket, one queue, watched by both reactors' `epoll`. The stalled
//!   reactor is not waiting in `epoll_wait`, the free one is: it is woken and accepts every
//!   newcomer, and all are answered in milliseconds. None misses; the stalled reactor
//!   accepts nobody.
//! * **reuseport**: two sockets, two queues. The kernel picks a socket by a hash of each
//!   connection's four-tuple (`reuseport_select_sock`), so each newcomer lands on the
//!   stalled reactor's socket with probability ½, whatever that reactor is doing. Those
//!   wait there until the second is over, far past their deadline: about half miss, and
//!   the stalled reactor accepts them late, after its computation.
//!
//! The checks allow what chance and a busy machine can do and no more: at most one client
//! in ten missing or landing on the stalled reactor under `shared` (the architecture says
//! none), at least one in five under `reuseport` (the hash says half; with 40 clients,
//! fewer than 8 heads has a probability below 10⁻⁴).
//!
//! What to look at: per reactor, `accepted` in `/stats` (`reactors[]`) and the
//! `X-Servelab-Thread` of each answer, which say where the newcomers landed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::event_loop::factorise_after;
use super::*;
use loadgen::outcome::Outcome;
use loadgen::units::micros;

/// Newcomers per step: enough that half of them is far from one in five by chance alone,
/// few enough that every one is answered in milliseconds on a busy machine.
const CLIENTS: usize = 40;

/// How long the stalled reactor computes: the server's `--max-cpu`, which ends the
/// factorisation on the clock whatever the machine's speed.
const STALL: Duration = Duration::from_millis(1000);

/// The newcomers' deadline, from their common start: far beyond what an answer from a free
/// reactor takes, far short of the stall, so that a client that waits for the stalled
/// reactor misses it by most of a second.
const DEADLINE: Duration = Duration::from_millis(400);

/// The largest prime below 2^64 (2^64 − 59): nothing divides it, so trial division would
/// run for minutes, and `--max-cpu` decides the stall's length alone.
const PRIME: u64 = 18_446_744_073_709_551_557;

/// How long the lab waits, at most, for the stalled reactor to accept what the kernel
/// queued for it once its computation is over.
const SETTLE: Duration = Duration::from_secs(5);

/// What one step measured.
struct Landing {
    report: Report,
    /// The reactor that computed: the `X-Servelab-Thread` of the factorisation's answer.
    stalled: String,
    /// The newcomers each reactor answered in time, by the answer's `X-Servelab-Thread`.
    served_by: BTreeMap<String, usize>,
    /// Connections each reactor accepted, once everything queued had been accepted (the
    /// factorisation's included).
    accepted: BTreeMap<String, u64>,
    /// The CPU each reactor is pinned to, by `/stats` (`--pin on`); empty when unpinned.
    cpus: BTreeMap<String, u64>,
}

impl Landing {
    /// Newcomers the stalled reactor accepted: its count without the factorisation's own
    /// connection.
    fn landed_on_stalled(&self) -> u64 {
        self.accepted
            .get(&self.stalled)
            .copied()
            .unwrap_or(0)
            .saturating_sub(1)
    }

    /// Newcomers that missed their deadline (or had no answer at all).
    fn missed(&self) -> usize {
        self.report
            .clients
            .iter()
            .filter(|c| c.outcome != Outcome::Served)
            .count()
    }
}

/// Starts the event loop with `--accept accept --pin pin`, stalls one reactor with the
/// factorisation, runs the newcomers beside it, and waits until the stalled reactor has
/// accepted what was queued for it.
fn beside_a_stall(env: &LabEnv, accept: &str, pin: &str) -> Result<Landing, SimError> {
    let servers = Servers::only("event-loop")
        .with("reactors", 2)
        .with("offload", "off")
        .with("accept", accept)
        .with("pin", pin);
    let args = ServerArgs {
        max_cpu: STALL,
        ..ServerArgs::default()
    };
    let server = servers.start("event-loop", args)?;
    let heavy = factorise_after(server.addr(), PRIME, Duration::ZERO);
    // Bounded wait until the factorisation is being computed, so that every newcomer
    // arrives during the stall. Polls the in-flight count in-process every millisecond:
    // there is nothing to wait on, and a millisecond is small beside a one-second stall.
    let ctx = Arc::clone(server.context());
    let began = Instant::now();
    while ctx.stats.in_flight() == 0 && began.elapsed() < SETTLE {
        std::thread::sleep(Duration::from_millis(1));
    }
    let newcomers = Scenario::get(CLIENTS, "/", DEADLINE, Duration::ZERO);
    // Blocks until every newcomer is answered or has passed its deadline.
    let (report, _) = run_against(env, &server, &newcomers)?;
    // Blocks until the factorisation's answer (the 503 of `--max-cpu`) is in.
    let heavy = heavy
        .join()
        .map_err(|_| SimError::Panicked("the heavy client"))??;
    // Bounded wait until every connection has been accepted: the stalled reactor takes the
    // newcomers queued on its socket only after its computation.
    let total = || -> u64 { ctx.snapshot().reactors.iter().map(|r| r.accepted).sum() };
    let began = Instant::now();
    while total() < CLIENTS as u64 + 1 && began.elapsed() < SETTLE {
        std::thread::sleep(Duration::from_millis(1));
    }
    let reactors = ctx.snapshot().reactors;
    let accepted = reactors
        .iter()
        .map(|r| (r.name.clone(), r.accepted))
        .collect();
    let cpus = reactors
        .iter()
        .filter_map(|r| Some((r.name.clone(), r.cpu?)))
        .collect();
    stop(server)?;
    let mut served_by = BTreeMap::new();
    for client in report
        .clients
        .iter()
        .filter(|c| c.outcome == Outcome::Served)
    {
        let thread = client.server_thread.clone().unwrap_or_else(|| "?".into());
        *served_by.entry(thread).or_insert(0) += 1;
    }
    Ok(Landing {
        report,
        stalled: heavy.thread.unwrap_or_else(|| "?".into()),
        served_by,
        accepted,
        cpus,
    })
}

/// Lab 26's entry in the list of labs ([`super::all`]).
/// The question before running: while one of two reactors computes for a second, how many
/// of 40 newcomers miss a 400 ms deadline with a shared listening socket, and how many
/// with one socket per reactor (`SO_REUSEPORT`)?
pub(super) const LAB26: Lab = Lab {
    id: 26,
    title: "Where accepts land: a stalled reactor under a shared listener and under SO_REUSEPORT",
    sheet: "labs/26-where-accepts-land.md",
    targets: &[],
    run: lab26,
};

/// Lab 26: the same stall and the same newcomers with `--accept shared`, `--accept
/// reuseport`, and `--accept reuseport --pin on`.
///
/// In its HTML report (`--report`): the newcomers' timeline, the missed ones as timeouts
/// at the deadline.
pub(super) fn lab26(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let mut checks = Vec::new();
    for (accept, pin) in [("shared", "off"), ("reuseport", "off"), ("reuseport", "on")] {
        let landing = beside_a_stall(env, accept, pin)?;
        checks.push(landing_check(accept, pin, &landing));
    }
    Ok(checks)
}

/// The check of one step: how many newcomers missed, and how many landed on the stalled
/// reactor, against what the way of accepting predicts.
fn landing_check(accept: &str, pin: &str, landing: &Landing) -> Check {
    let (missed, landed) = (landing.missed(), landing.landed_on_stalled());
    let shared = accept == "shared";
    let counts = |map: &BTreeMap<String, u64>| {
        map.iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pinned = if landing.cpus.is_empty() {
        String::new()
    } else {
        let each: Vec<String> = landing
            .cpus
            .iter()
            .map(|(name, cpu)| format!("{name} on CPU {cpu}"))
            .collect();
        format!("; pinned: {}", each.join(", "))
    };
    let served_by: BTreeMap<String, u64> = landing
        .served_by
        .iter()
        .map(|(name, n)| (name.clone(), *n as u64))
        .collect();
    check(
        format!(
            "event-loop, 2 reactors, --offload off, --accept {accept}, --pin {pin}: {CLIENTS} clients ask GET / (deadline {}) while one reactor computes /factor/{PRIME} for {}",
            human_us(micros(DEADLINE)),
            human_us(micros(STALL)),
        ),
        format!(
            "{}/{CLIENTS} served, {missed} missed; {} computed; accepted: {} (served in time: {}); {landed} newcomers landed on the stalled reactor{pinned}",
            CLIENTS - missed,
            landing.stalled,
            counts(&landing.accepted),
            counts(&served_by),
        ),
        if shared {
            "one listening socket: the free reactor is the one in epoll_wait, so it accepts every newcomer; none lands on the stalled reactor and none misses (at most 1 in 10 allowed)".to_owned()
        } else {
            "a socket per reactor: the kernel hashes each newcomer to one by its ports, not by how busy its reactor is, so about half land on the stalled reactor and wait there past their deadline (at least 1 in 5 required)".to_owned()
        },
        // With `--pin on`, `/stats` must also say where each reactor was pinned.
        (pin == "off" || landing.cpus.len() == landing.accepted.len())
            && if shared {
                missed * 10 <= CLIENTS && landed as usize * 10 <= CLIENTS
            } else {
                missed * 5 >= CLIENTS && landed as usize * 5 >= CLIENTS
            },
    )
}
