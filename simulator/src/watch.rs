//! Watching the server from inside while the clients run: servelab's `/stats`, read every
//! [`PERIOD`], kept as a time series of its queues' depths and its busy threads.
//!
//! A black-box load tool sees only answers. A servelab server says what it is doing, so the
//! report can draw its queues filling and its threads busy on the same clock as the
//! clients' outcomes. The watch runs only when a report is asked for (`--report`), on a
//! thread of its own beside the engine; each reading is timed, and the report shows what
//! reading cost. In-process servers are read directly; a server elsewhere with one
//! `GET /stats` per reading (a connection each, counted by the server like any request).

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use server_core::{Context, Snapshot};

/// How often `/stats` is read: ten times a second, a bounded cost whatever the run.
pub const PERIOD: Duration = Duration::from_millis(100);

/// At most this many readings are kept (an hour at [`PERIOD`]); a longer run keeps its
/// first hour.
const MAX_SAMPLES: usize = 36_000;

/// One reading of the server's `/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatsSample {
    /// Milliseconds since the watch began (just before the clients start).
    pub at_ms: u64,
    /// How long the reading took, in microseconds.
    pub cost_us: u64,
    /// What was read, by name: each queue's depth (`queue requests`), each thread group's
    /// busy threads (`handler busy`).
    pub values: Vec<(String, u64)>,
}

/// Where the server's `/stats` comes from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// A server running in this process.
    InProcess(&'a Context),
    /// A servelab server elsewhere.
    Remote { addr: SocketAddr, target: &'a str },
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::InProcess(_) => f.write_str("InProcess"),
            Source::Remote { addr, target } => write!(f, "Remote({target} at {addr})"),
        }
    }
}

impl Source<'_> {
    fn read(&self) -> Option<Snapshot> {
        match self {
            Source::InProcess(ctx) => Some(ctx.snapshot()),
            Source::Remote { addr, target } => crate::target::probe(*addr, target)
                .ok()
                .flatten()
                .map(|i| i.snapshot),
        }
    }
}

/// The queue depths and busy threads of `snapshot`.
fn values(snapshot: &Snapshot) -> Vec<(String, u64)> {
    let queues = snapshot
        .queues
        .iter()
        .map(|q| (format!("queue {}", q.name), q.depth));
    let threads = snapshot
        .threads
        .iter()
        .map(|g| (format!("{} busy", g.role), g.busy));
    queues.chain(threads).collect()
}

/// Runs `f` while watching `source` (if any), and returns what `f` returned with the
/// readings. Each reading is also sent on `tap`, if given (the live view draws them as they
/// come); a tap whose receiver is gone is simply no longer fed.
pub fn during<T>(
    source: Option<Source<'_>>,
    tap: Option<mpsc::Sender<StatsSample>>,
    f: impl FnOnce() -> T,
) -> (T, Vec<StatsSample>) {
    let Some(source) = source else {
        return (f(), Vec::new());
    };
    // The watcher stops when this sender is dropped or sends.
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        // Moved in, so that a panic in `f` drops it while unwinding: the watcher then
        // returns, and the scope (which waits for it) lets the panic go on.
        let stop = stop;
        let watcher = scope.spawn(move || {
            let began = Instant::now();
            let mut samples = Vec::new();
            loop {
                let before = Instant::now();
                if let Some(snapshot) = source.read() {
                    let sample = StatsSample {
                        at_ms: u64::try_from(before.duration_since(began).as_millis())
                            .unwrap_or(u64::MAX),
                        cost_us: loadgen::units::micros(before.elapsed()),
                        values: values(&snapshot),
                    };
                    if let Some(tap) = &tap {
                        // Never blocks: the channel is unbounded (see the live view).
                        let _ = tap.send(sample.clone());
                    }
                    if samples.len() < MAX_SAMPLES {
                        samples.push(sample);
                    }
                }
                // Waits for the next reading, or for the run's end.
                match stopped.recv_timeout(PERIOD.saturating_sub(before.elapsed())) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return samples,
                }
            }
        });
        let result = f();
        let _ = stop.send(());
        // The watcher returns at once when told; a panic in it loses only the readings.
        let samples = watcher.join().unwrap_or_default();
        (result, samples)
    })
}
