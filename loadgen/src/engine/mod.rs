//! Engines: what runs the clients.
//!
//! A client ([`crate::client::Client`]) decides what to do; an engine does it. There are
//! two, and they run exactly the same clients, so every scenario gives the same result on
//! both:
//!
//! * [`events`] (the default): a few threads, one per CPU, each driving thousands of
//!   clients' non-blocking sockets with `mio`, with every deadline in a timer heap. Ten
//!   thousand clients cost a few megabytes and no more threads, and the engine keeps up
//!   with wrk as a load generator;
//! * [`threads`]: the lecture's simulator, every client a thread of its own doing blocking
//!   `connect`, `write` and `read`, each bounded by the client's deadline. It is the
//!   simplest model to read, and each client's story appears in the log under its thread's
//!   name, but every client costs a thread and its stack.
//!
//! What both share lives here: checking that the clients' sockets fit under the limit on
//! open files before any starts, the common start, and collecting the results while a
//! [`Monitor`] (a progress line, a live view) watches the run's live counters.

pub mod events;
pub mod threads;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::client::Plan;
use crate::gate::StartGate;
use crate::record::Finished;
use crate::scenario::Engine;
use crate::tally::Live;
use crate::Error;

/// Something that watches a run while it goes on: a progress line, a live view.
///
/// The thread that started the run calls it every [`MONITOR_PERIOD`] while it waits for the
/// engine's threads, so a monitor never slows a client down: it reads the live counters
/// ([`Live`], relaxed atomics the engines add to) and takes no lock of theirs. It should
/// return quickly all the same: the collection of results waits behind it.
pub trait Monitor {
    /// The clients are about to start; the run is planned to last `planned`.
    fn start(&mut self, planned: Duration) {
        let _ = planned;
    }
    /// Called every [`MONITOR_PERIOD`] while the run goes on.
    fn update(&mut self, live: &Live);
    /// The run is over (or was given up).
    fn finish(&mut self) {}
    /// Whether the monitor shows each client's state: then the engines keep them in the
    /// live counters ([`Live::with_clients`]), a byte per client stored at each change.
    fn wants_clients(&self) -> bool {
        false
    }
}

/// The live counters of a run of `plan` on `threads` engine threads, with room for every
/// client's state if `monitor` shows them.
pub(crate) fn live_for(plan: &Plan, threads: usize, monitor: &dyn Monitor) -> Live {
    let clients = if monitor.wants_clients() {
        plan.scenario.clients
    } else {
        0
    };
    Live::with_clients(threads, clients)
}

/// No monitor: the run is watched by nobody.
impl Monitor for () {
    fn update(&mut self, _live: &Live) {}
}

/// How often a [`Monitor`] is called while the run goes on.
pub const MONITOR_PERIOD: Duration = Duration::from_millis(200);

/// How long a client waits before it connects again after a connect that failed at once
/// (not refused: a reset, say), so that a load run does not spin on a failing server.
pub const CONNECT_RETRY: Duration = Duration::from_millis(10);

/// File descriptors the simulator keeps for itself (standard streams, the poll instances,
/// the probe's connection, the test harness) beyond one per client.
const RESERVED_FILES: u64 = 64;

/// Runs `plan`'s clients on its engine, with `monitor` watching (`&mut ()` for none).
/// Returns when every client has finished.
pub fn run(plan: Plan, monitor: &mut dyn Monitor) -> Result<Finished, Error> {
    check_files(&plan)?;
    match plan.scenario.engine {
        Engine::Events => events::run(plan, monitor),
        Engine::Threads => threads::run(plan, &mut threads::spawn, monitor),
    }
}

/// Checks, before any client starts, that every client's socket fits under the limit on
/// open files (raising the soft limit towards the hard one if needed). A run that would hit
/// the limit halfway would measure the simulator, not the server, so it is refused with one
/// sentence instead.
fn check_files(plan: &Plan) -> Result<(), Error> {
    // Background connections count like clients: a socket each.
    let background: usize = plan.scenario.background.iter().map(|p| p.clients).sum();
    let clients = (plan.scenario.own_clients() + background) as u64;
    // An in-process server holds the other end of every connection in this same process.
    let per_client = if plan.in_process { 2 } else { 1 };
    let needed = clients * per_client + RESERVED_FILES;
    let limit = raise_open_files(needed);
    if limit >= needed {
        return Ok(());
    }
    Err(Error::TooFewFiles {
        clients,
        needed,
        limit,
        fit: limit.saturating_sub(RESERVED_FILES) / per_client,
        in_process: plan.in_process,
    })
}

/// Raises this process's soft limit on open files towards `wanted` (never above the hard
/// limit, which needs no privilege) and returns the limit now in force.
pub fn raise_open_files(wanted: u64) -> u64 {
    rlimit::increase_nofile_limit(wanted).unwrap_or(1024)
}

/// How many engine threads: `--engine-threads`, or one per CPU; never more than clients.
pub fn engine_threads(plan: &Plan) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    plan.scenario
        .engine_threads
        .unwrap_or(cpus)
        .clamp(1, plan.scenario.own_clients().max(1))
}

/// A reason to stop the whole run early: the simulator itself ran out of something (file
/// descriptors), so what it measured would not be the server's doing. Shared by every
/// engine thread (any may raise it) and the coordinator (which reports it).
#[derive(Debug, Default)]
pub(crate) struct Abort {
    /// Set once; every engine thread checks it after each wake-up. Release on raising and
    /// acquire on checking, so a thread that sees the flag also sees the reason stored
    /// before it.
    flag: AtomicBool,
    /// The first reason given; later ones are dropped. A mutex, since an error is not an
    /// atomic value; it is locked at most once per thread that raises, and once by the
    /// coordinator that reports.
    reason: Mutex<Option<Error>>,
}

impl Abort {
    pub(crate) fn raise(&self, reason: Error) {
        self.reason.lock().get_or_insert(reason);
        self.flag.store(true, Ordering::Release);
    }

    pub(crate) fn is_raised(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    fn take(&self) -> Option<Error> {
        self.reason.lock().take()
    }
}

/// Opens `gate` (every engine thread or client thread exists and waits at it), then
/// collects what they send on `results` (see [`collect`]). Returns the wall-clock time of
/// the start too, for the interval log.
pub(crate) fn start_and_collect<T>(
    gate: &StartGate,
    plan: &Plan,
    results: &mpsc::Receiver<T>,
    expected: usize,
    watch: Watch<'_>,
    on_abort: impl FnMut(),
) -> (SystemTime, Result<Vec<T>, Error>) {
    if let Some(at) = plan.scenario.start_at {
        // Waits for the common start of all shards (`--start-at`); every thread is ready.
        match at.duration_since(SystemTime::now()) {
            Ok(wait) => std::thread::sleep(wait),
            Err(late) if late.duration() > Duration::from_millis(100) => eprintln!(
                "simulator: the start time (--start-at) passed {} before the clients were ready; they start now",
                humantime::format_duration(Duration::from_millis(
                    u64::try_from(late.duration().as_millis()).unwrap_or(u64::MAX)
                ))
            ),
            Err(_) => {}
        }
    }
    let started_at = SystemTime::now();
    tracing::info!(
        "{} clients will connect to {} ...",
        plan.scenario.own_clients(),
        plan.host
    );
    watch.monitor.start(plan.scenario.planned_length());
    gate.go();
    let collected = collect(results, expected, watch, on_abort);
    (started_at, collected)
}

/// What the coordinator watches while the run goes on: the engines' live counters for the
/// monitor, and the abort flag.
pub(crate) struct Watch<'a> {
    pub(crate) live: &'a Live,
    pub(crate) abort: &'a Abort,
    pub(crate) monitor: &'a mut dyn Monitor,
}

/// Waits for `expected` results on `results` while the run goes on, calling the monitor,
/// and calls `on_abort` once if the run is aborted (so the engine can wake its threads).
fn collect<T>(
    results: &mpsc::Receiver<T>,
    expected: usize,
    watch: Watch<'_>,
    mut on_abort: impl FnMut(),
) -> Result<Vec<T>, Error> {
    let mut got = Vec::with_capacity(expected);
    // The engine is told of an abort once: waking its threads again would change nothing.
    let mut woken = false;
    while got.len() < expected {
        // Waits for the next thread to finish, or for the monitor's next turn.
        match results.recv_timeout(MONITOR_PERIOD) {
            Ok(result) => got.push(result),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                watch.monitor.finish();
                return Err(Error::Panicked("an engine or client thread"));
            }
        }
        // A live view's `q` ([`Live::request_stop`]) wakes the engine threads like an
        // abort, but they end the run as if it had reached its end.
        if (watch.abort.is_raised() || watch.live.stop_requested()) && !woken {
            woken = true;
            on_abort();
        }
        watch.monitor.update(watch.live);
    }
    // Once more with every client finished, so that a live view's last picture is the
    // run's end.
    watch.monitor.update(watch.live);
    watch.monitor.finish();
    match watch.abort.take() {
        Some(reason) => Err(reason),
        None => Ok(got),
    }
}
