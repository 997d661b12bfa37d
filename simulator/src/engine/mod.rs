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
//! open files before any starts, the common start, and collecting the results (with the
//! progress line while they run).

pub mod events;
pub mod threads;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use crate::client::{ClientRecord, Plan};
use crate::progress::Progress;
use crate::scenario::Engine;
use crate::tally::{Live, Row, Series, Tally};
use crate::SimError;

/// A run's raw results, before the ledger adds them up.
pub struct Finished {
    /// Every client's record, ordered by id.
    pub records: Vec<ClientRecord>,
    /// Every engine thread's tally, merged.
    pub tally: Tally,
    /// The per-second time series.
    pub rows: Vec<Row>,
    /// The HdrHistogram interval log.
    pub interval_log: String,
    /// From the moment the first client really started to the moment the last one really
    /// finished.
    pub elapsed: Duration,
    /// The threads that ran the clients.
    pub threads: usize,
    /// The wall-clock moment the clients were let go (every client's times count from it).
    pub started_at: SystemTime,
}

impl Finished {
    /// The results of a run that produced `records` and nothing else (no requests counted):
    /// for tools and tests that render reports.
    pub fn from_records(records: Vec<ClientRecord>) -> Finished {
        finish(records, Vec::new(), &Series::new(1), SystemTime::now(), 1)
    }
}

/// How long a client waits before it connects again after a connect that failed at once
/// (not refused: a reset, say), so that a load run does not spin on a failing server.
pub const CONNECT_RETRY: Duration = Duration::from_millis(10);

/// File descriptors the simulator keeps for itself (standard streams, the poll instances,
/// the probe's connection, the test harness) beyond one per client.
const RESERVED_FILES: u64 = 64;

/// Runs `plan`'s clients on its engine.
pub fn run(plan: Plan) -> Result<Finished, SimError> {
    check_files(&plan)?;
    match plan.scenario.engine {
        Engine::Events => events::run(plan),
        Engine::Threads => threads::run(plan, &mut threads::spawn),
    }
}

/// Checks, before any client starts, that every client's socket fits under the limit on
/// open files (raising the soft limit towards the hard one if needed). A run that would hit
/// the limit halfway would measure the simulator, not the server, so it is refused with one
/// sentence instead.
fn check_files(plan: &Plan) -> Result<(), SimError> {
    // Background connections count like clients: a socket each.
    let background: usize = plan.scenario.background.iter().map(|p| p.clients).sum();
    let clients = (plan.scenario.own_clients() + background) as u64;
    // An in-process server holds the other end of every connection in this same process.
    let per_client = if plan.in_process { 2 } else { 1 };
    let needed = clients * per_client + RESERVED_FILES;
    let limit = server_core::rlimit::raise_open_files(needed);
    if limit >= needed {
        return Ok(());
    }
    let fit = limit.saturating_sub(RESERVED_FILES) / per_client;
    Err(SimError::Resources(format!(
        "{clients} clients need about {needed} open files{}, but this process may open at most {limit} (see `ulimit -n` and `ulimit -Hn`); at most {fit} clients fit",
        if plan.in_process {
            " (a socket each for the client and for the in-process server)"
        } else {
            ""
        }
    )))
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
/// descriptors), so what it measured would not be the server's doing.
#[derive(Default)]
pub struct Abort {
    /// Set once; every engine thread checks it after each wake-up.
    flag: AtomicBool,
    /// The first reason given, in words.
    reason: Mutex<Option<String>>,
}

impl Abort {
    pub fn raise(&self, reason: String) {
        self.reason.lock().get_or_insert(reason);
        self.flag.store(true, Ordering::Release);
    }

    pub fn is_raised(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    fn reason(&self) -> Option<String> {
        self.reason.lock().clone()
    }
}

/// Opens `gate` (every engine thread or client thread exists and waits at it), then
/// collects what they send on `results` (see [`collect`]). Returns the wall-clock time of
/// the start too, for the interval log.
pub(crate) fn start_and_collect<T>(
    gate: &crate::gate::StartGate,
    plan: &Plan,
    results: &mpsc::Receiver<T>,
    expected: usize,
    live: &Live,
    abort: &Abort,
    on_abort: impl FnMut(),
) -> (SystemTime, Result<Vec<T>, SimError>) {
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
    gate.go();
    let collected = collect(
        results,
        expected,
        plan.scenario.planned_length(),
        live,
        abort,
        on_abort,
    );
    (started_at, collected)
}

/// Waits for `expected` results on `results` while the run goes on, redrawing the
/// progress line, and calls `on_abort` once if the run is aborted (so the engine can wake
/// its threads).
fn collect<T>(
    results: &mpsc::Receiver<T>,
    expected: usize,
    planned: Duration,
    live: &Live,
    abort: &Abort,
    mut on_abort: impl FnMut(),
) -> Result<Vec<T>, SimError> {
    let mut progress = Progress::new(planned);
    let mut got = Vec::with_capacity(expected);
    let mut woken = false;
    while got.len() < expected {
        // Waits for the next thread to finish, or for the next redraw of the progress line.
        match results.recv_timeout(Duration::from_millis(200)) {
            Ok(result) => got.push(result),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                progress.finish();
                return Err(SimError::Threads(
                    "a client thread ended without a result (it panicked)".into(),
                ));
            }
        }
        if abort.is_raised() && !woken {
            woken = true;
            on_abort();
        }
        progress.update(live);
    }
    progress.finish();
    match abort.reason() {
        Some(reason) => Err(SimError::Resources(reason)),
        None => Ok(got),
    }
}

/// Adds up what the engine threads returned.
pub(crate) fn finish(
    mut records: Vec<ClientRecord>,
    tallies: Vec<Tally>,
    series: &Series,
    started_at: SystemTime,
    threads: usize,
) -> Finished {
    records.sort_by_key(|r| r.id);
    let mut tallies = tallies.into_iter();
    let mut tally = tallies.next().unwrap_or_else(|| {
        Tally::new(
            Instant::now(),
            1,
            Arc::new(Series::new(1)),
            Arc::new(Live::new(1)),
            0,
        )
    });
    for other in tallies {
        tally.merge(&other);
    }
    let (rows, interval_log) = series.finish(started_at);
    let elapsed = crate::ledger::span(&records);
    Finished {
        records,
        tally,
        rows,
        interval_log,
        elapsed,
        threads,
        started_at,
    }
}
