//! The run: a few worker threads, each playing connection plans against the server, and
//! the tally they add up to.
//!
//! Workers share two counters. `claimed` hands out requests, so that the run writes
//! exactly `--requests` of them however the workers race: a worker claims a plan's
//! requests before writing them and cuts the plan to what it got. `stalls` hands out the
//! stalled connections (those that stop and keep their sending side open), spread evenly
//! over the run: stall `i` of `N` is due once `(2i+1)/2N` of the requests were claimed, or
//! of `--duration` has passed, whichever comes first.
//!
//! Each connection is judged by the same rule: the server must make progress (answer the
//! next request, or close) within `deadline + margin` of the client's last activity (its
//! last byte written, or the last answer read). The deadline is the longest a servelab
//! server may legitimately stay silent on a connection, its read timeout plus its
//! keep-alive timeout; the margin covers the half second a server spends discarding input
//! before it closes after an error, and scheduling on a busy machine. A connection that
//! goes past it is a **hang**, and every hang is described in the report.
//!
//! A worker holds one connection at a time, so the fuzzer never has more than
//! `--connections` open: a server that serves fewer at once would keep the others waiting
//! in its backlog, where none of its deadlines has started yet (`--fit-to-server` reads the
//! server's `/stats` and uses no more connections than it holds at once).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::generate::{Ending, Generator, Mix, Plan, Req, StallKind};
use crate::wire::{Answer, Read, Sent, Wire};
use crate::FuzzError;

/// How many hangs and bad responses the report describes one by one.
const DESCRIBED: usize = 20;

/// After this many failed connects in a row, a worker concludes the server is gone.
const CONNECT_FAILURES: u32 = 50;

/// The longest a run without `--duration` may last.
pub const RUN_LIMIT: Duration = Duration::from_secs(6 * 3600);

/// What the run does.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: SocketAddr,
    pub requests: u64,
    pub connections: usize,
    pub seed: u64,
    pub deadline: Duration,
    pub margin: Duration,
    /// The run also ends at this time (and at [`RUN_LIMIT`] without it).
    pub duration: Option<Duration>,
    /// Requests per second over all connections, or as fast as the server answers.
    pub rate: Option<f64>,
    /// Connections that stall (end with the sending side open).
    pub stalls: u64,
    pub mix: Mix,
}

impl Settings {
    /// How long the server may take to make progress before the fuzzer calls it a hang.
    pub fn hang_after(&self) -> Duration {
        self.deadline + self.margin
    }
}

/// What happened to the stalled connections of one kind.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StallTally {
    /// Stalled connections of this kind.
    pub count: u64,
    /// Closed by the server within the deadline and margin.
    pub closed: u64,
    /// The longest the server took to close one, from the client's last activity.
    pub slowest_ms: u64,
}

/// Everything counted. Requests are counted once each, by what became of them:
/// `requests = answered + closed + reset + hung + bad`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Tally {
    /// Requests written (or begun: a stall's partial request counts).
    pub requests: u64,
    /// Of those: made by the grammar, mutated, and the partial ones of stalls.
    pub well_formed: u64,
    pub mutated: u64,
    pub partial: u64,
    /// Requests written behind another in the same write (pipelined).
    pub pipelined: u64,
    /// Requests that got a (final) response.
    pub answered: u64,
    /// Requests whose connection the server closed before answering them.
    pub closed: u64,
    /// Requests whose connection was reset before an answer.
    pub reset: u64,
    /// Requests on a connection the server held past the deadline and margin.
    pub hung: u64,
    /// Requests answered with something that is not HTTP.
    pub bad: u64,
    /// Responses by status, interim `100` included and every response counted (a mutated
    /// request can be read as two requests and answered twice).
    pub statuses: BTreeMap<u16, u64>,
    /// Connections opened, and failed connection attempts.
    pub connections: u64,
    pub connect_errors: u64,
    /// Connections the server held past the deadline and margin (a violation each).
    pub hung_connections: u64,
    /// Stalled connections, by kind.
    pub stalls: BTreeMap<&'static str, StallTally>,
    /// The first hangs and bad responses, described.
    pub violations: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        self.well_formed += other.well_formed;
        self.mutated += other.mutated;
        self.partial += other.partial;
        self.pipelined += other.pipelined;
        self.answered += other.answered;
        self.closed += other.closed;
        self.reset += other.reset;
        self.hung += other.hung;
        self.bad += other.bad;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.connections += other.connections;
        self.connect_errors += other.connect_errors;
        self.hung_connections += other.hung_connections;
        for (kind, s) in other.stalls {
            let mine = self.stalls.entry(kind).or_default();
            mine.count += s.count;
            mine.closed += s.closed;
            mine.slowest_ms = mine.slowest_ms.max(s.slowest_ms);
        }
        for v in other.violations {
            if self.violations.len() < DESCRIBED {
                self.violations.push(v);
            }
        }
    }

    fn describe(&mut self, what: String) {
        if self.violations.len() < DESCRIBED {
            self.violations.push(what);
        }
    }

    fn response(&mut self, answer: Answer) {
        *self.statuses.entry(answer.status).or_default() += 1;
    }
}

/// The whole run's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub target: String,
    pub seed: u64,
    pub connections_at_once: usize,
    pub deadline_ms: u64,
    pub margin_ms: u64,
    pub elapsed_s: f64,
    pub requests_per_second: f64,
    #[serde(flatten)]
    pub tally: Tally,
    /// Why the run ended before writing every request, if it did.
    pub stopped_early: Option<String>,
    /// No connection held past its deadline, no bad response, the server reachable to
    /// the end.
    pub ok: bool,
}

/// What the workers share.
struct Shared {
    settings: Settings,
    start: Instant,
    end: Instant,
    claimed: AtomicU64,
    stalls: AtomicU64,
    /// Set when a worker finds the server gone: the others stop too.
    stop: AtomicBool,
    stopped_because: Mutex<Option<String>>,
    /// Workers still running, for progress reports.
    running: AtomicU64,
}

impl Shared {
    /// Claims up to `n` requests; returns how many were granted.
    fn claim(&self, n: u64) -> u64 {
        let total = self.settings.requests;
        let before = self
            .claimed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c + n.min(total.saturating_sub(c)))
            })
            .unwrap_or(total);
        n.min(total.saturating_sub(before))
    }

    fn requests_left(&self) -> bool {
        self.claimed.load(Ordering::Relaxed) < self.settings.requests
    }

    /// The next stall, if one is due.
    fn claim_stall(&self) -> Option<StallKind> {
        let n = self.settings.stalls;
        let i = self.stalls.load(Ordering::Relaxed);
        if i >= n {
            return None;
        }
        let claimed = u128::from(self.claimed.load(Ordering::Relaxed));
        let by_requests = claimed * 2 * u128::from(n)
            >= (2 * u128::from(i) + 1) * u128::from(self.settings.requests);
        let by_time = self.settings.duration.is_some_and(|d| {
            self.start.elapsed().as_secs_f64() * 2.0 * n as f64
                >= (2 * i + 1) as f64 * d.as_secs_f64()
        });
        if !(by_requests || by_time) {
            return None;
        }
        self.stalls
            .compare_exchange(i, i + 1, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|i| StallKind::ALL[(i % StallKind::ALL.len() as u64) as usize])
    }

    fn stop(&self, why: String) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(mut reason) = self.stopped_because.lock() {
            reason.get_or_insert(why);
        }
    }
}

/// Runs the fuzzer; `progress` is called about every `every` with the requests claimed.
pub fn run(
    settings: Settings,
    every: Option<Duration>,
    progress: impl Fn(u64, Duration),
) -> Result<Summary, FuzzError> {
    let start = Instant::now();
    let end = start + settings.duration.unwrap_or(RUN_LIMIT).min(RUN_LIMIT);
    let shared = Arc::new(Shared {
        settings: settings.clone(),
        start,
        end,
        claimed: AtomicU64::new(0),
        stalls: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        stopped_because: Mutex::new(None),
        running: AtomicU64::new(settings.connections as u64),
    });
    let handles = spawn_workers(&shared)?;
    // The main thread reports progress until the workers are done. Bounded: the workers
    // stop by `end`, plus one connection's deadline each.
    let mut last = Instant::now();
    let limit = end + settings.hang_after() * 4 + Duration::from_secs(5);
    while shared.running.load(Ordering::Relaxed) > 0 && Instant::now() < limit {
        // Sleeps a little between looks at the counters.
        std::thread::sleep(Duration::from_millis(100));
        if let Some(every) = every {
            if last.elapsed() >= every {
                last = Instant::now();
                progress(shared.claimed.load(Ordering::Relaxed), start.elapsed());
            }
        }
    }
    let (tally, finished) = join_workers(handles, start)?;
    // From the start to the moment the last worker finished (not when this thread, which
    // looks every 100 ms, noticed).
    let elapsed = finished - start;
    let mut stopped_early = shared.stopped_because.lock().ok().and_then(|r| r.clone());
    if stopped_early.is_none() && tally.requests < settings.requests {
        if let Some(d) = settings.duration {
            stopped_early = Some(format!(
                "--duration {} ended the run first",
                humantime::format_duration(d)
            ));
        }
    }
    let server_gone = shared.stop.load(Ordering::Relaxed);
    let ok = tally.hung_connections == 0 && tally.bad == 0 && !server_gone;
    Ok(Summary {
        target: settings.target.to_string(),
        seed: settings.seed,
        connections_at_once: settings.connections,
        deadline_ms: millis(settings.deadline),
        margin_ms: millis(settings.margin),
        elapsed_s: elapsed.as_secs_f64(),
        requests_per_second: tally.requests as f64 / elapsed.as_secs_f64().max(1e-9),
        tally,
        stopped_early,
        ok,
    })
}

/// A worker thread's result: its tally, and when it finished.
type WorkerHandle = std::thread::JoinHandle<(Tally, Instant)>;

/// Starts one worker thread per connection at once (`fuzz-0`, `fuzz-1`, ...).
fn spawn_workers(shared: &Arc<Shared>) -> Result<Vec<WorkerHandle>, FuzzError> {
    let connections = shared.settings.connections;
    let mut handles = Vec::with_capacity(connections);
    for id in 0..connections {
        let shared = Arc::clone(shared);
        let handle = std::thread::Builder::new()
            .name(format!("fuzz-{id}"))
            .spawn(move || {
                let tally = worker(id as u64, &shared);
                shared.running.fetch_sub(1, Ordering::Relaxed);
                (tally, Instant::now())
            })
            .map_err(FuzzError::Thread)?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Waits for every worker; returns their tallies added up, and when the last one finished
/// (`start` if none did).
fn join_workers(handles: Vec<WorkerHandle>, start: Instant) -> Result<(Tally, Instant), FuzzError> {
    let mut tally = Tally::default();
    let mut finished = start;
    for handle in handles {
        // Waits for the worker to finish its last connection (bounded by the deadlines).
        match handle.join() {
            Ok((t, at)) => {
                tally.add(t);
                finished = finished.max(at);
            }
            Err(_) => return Err(FuzzError::WorkerPanicked),
        }
    }
    Ok((tally, finished))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One worker: connection after connection until the requests, the stalls or the time
/// run out. Bounded in time by `end`, and in passes: nearly every pass claims a request
/// or a stall (the others are failed connects, at most CONNECT_FAILURES in a row, and the
/// rare connection that sends nothing and closes), and `passes` caps them all.
fn worker(id: u64, shared: &Shared) -> Tally {
    let settings = &shared.settings;
    // Each worker's own stream of plans: the seed and the worker's number decide it.
    let mut generator = Generator::new(
        settings.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        settings.mix,
    );
    let mut tally = Tally::default();
    let mut failures = 0;
    let per_worker_rate = settings.rate.map(|r| r / settings.connections as f64);
    let mut written: u64 = 0;
    let hang = settings.hang_after();
    let mut passes = settings
        .requests
        .saturating_add(settings.stalls)
        .saturating_mul(4)
        .saturating_add(1_000);
    while !shared.stop.load(Ordering::Relaxed) && Instant::now() < shared.end && passes > 0 {
        passes -= 1;
        let stall = shared.claim_stall();
        if stall.is_none() && !shared.requests_left() {
            break;
        }
        // Keeps to --rate: waits until this worker's next request is due.
        if let Some(rate) = per_worker_rate {
            let due = shared.start + Duration::from_secs_f64(written as f64 / rate);
            let now = Instant::now();
            if due > now {
                // Sleeps until the next request is due (never past the end of the run).
                std::thread::sleep((due - now).min(shared.end.saturating_duration_since(now)));
            }
        }
        let mut wire = match Wire::connect(settings.target, hang) {
            Ok(wire) => {
                failures = 0;
                wire
            }
            Err(e) => {
                tally.connect_errors += 1;
                failures += 1;
                if failures >= CONNECT_FAILURES {
                    shared.stop(format!(
                        "{CONNECT_FAILURES} connections in a row to {} failed (the last: {e}): the server stopped accepting",
                        settings.target
                    ));
                    break;
                }
                // Waits a little before trying again (a full backlog, a restarting child).
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let mut plan = generator.plan(stall);
        let wanted = plan.requests();
        let granted = shared.claim(wanted);
        if wanted > 0 && granted == 0 && stall.is_none() {
            // The requests ran out while this connection was being opened.
            break;
        }
        plan.truncate(granted);
        written += plan.requests();
        tally.connections += 1;
        play(&mut wire, plan, hang, &mut tally, id);
    }
    tally
}

/// Plays one connection's plan and counts what happened: its batches one after another,
/// then its ending.
fn play(wire: &mut Wire, plan: Plan, hang: Duration, tally: &mut Tally, worker: u64) {
    let batches = plan.batches.len();
    let mut last = Instant::now();
    for (b, batch) in plan.batches.into_iter().enumerate() {
        let at = Place {
            worker,
            batch: b + 1,
            batches,
        };
        match play_batch(wire, &batch, hang, tally, at) {
            Some(answered) => last = answered,
            // The connection ended (or failed): the rest of the plan is not played.
            None => return,
        }
    }
    play_ending(wire, plan.ending, last, hang, tally, worker);
}

/// Where a batch is in its worker's plan, for the descriptions of what went wrong.
#[derive(Debug, Clone, Copy)]
struct Place {
    worker: u64,
    /// The batch's number, from 1, of `batches`.
    batch: usize,
    batches: usize,
}

/// Writes one batch in one write (more than one request in it is pipelining) and reads its
/// answers. Returns the client's last activity (the last answer read), or `None` if the
/// connection ended (a close, a reset, a hang, a bad answer), which it has counted.
fn play_batch(
    wire: &mut Wire,
    batch: &[Req],
    hang: Duration,
    tally: &mut Tally,
    at: Place,
) -> Option<Instant> {
    let worker = at.worker;
    let bytes: Vec<u8> = batch.iter().flat_map(|r| r.bytes.iter().copied()).collect();
    count_written(tally, batch);
    let what = || {
        format!(
            "worker {worker}: writing a batch of {} requests",
            batch.len()
        )
    };
    if !send_or_count(wire, &bytes, batch.len() as u64, hang, tally, what) {
        return None;
    }
    // The client's last activity: its last byte written or the last answer read. The
    // server must make progress within `hang` of it.
    let mut last = Instant::now();
    for (i, req) in batch.iter().enumerate() {
        let left = (batch.len() - i) as u64;
        match wire.next_response(req.head, last + hang) {
            Read::Response(answer) => {
                last = Instant::now();
                tally.response(answer);
                tally.answered += 1;
                if answer.close {
                    // The server said it closes: what was behind this request is not
                    // answered, and the close must come.
                    tally.closed += left - 1;
                    expect_close(
                        wire,
                        last + hang,
                        tally,
                        worker,
                        "after an answer with Connection: close",
                    );
                    return None;
                }
            }
            Read::Closed => {
                tally.closed += left;
                return None;
            }
            Read::Reset => {
                tally.reset += left;
                return None;
            }
            Read::Hung => {
                tally.hung += left;
                hung(tally, format!(
                    "worker {worker}: no answer to {} (request {} of a batch of {}, batch {} of {}) and no close within {}",
                    first_line(&req.bytes), i + 1, batch.len(), at.batch, at.batches, show(hang)
                ));
                return None;
            }
            Read::Bad(why) => {
                tally.bad += left;
                tally.describe(format!(
                    "worker {worker}: bad answer to {}: {why}",
                    first_line(&req.bytes)
                ));
                return None;
            }
        }
    }
    // Interim answers (100 Continue) count among the statuses.
    if wire.interim > 0 {
        *tally.statuses.entry(100).or_default() += wire.interim;
        wire.interim = 0;
    }
    Some(last)
}

/// Plays the end of a plan, once every batch was answered: the client closes, or sends a
/// mutated request and half-closes, or stalls (and only the server's deadlines end it).
fn play_ending(
    wire: &mut Wire,
    ending: Ending,
    mut last: Instant,
    hang: Duration,
    tally: &mut Tally,
    worker: u64,
) {
    match ending {
        // The client closes (dropping the wire); if the last request asked the server to
        // close, its answer said so and was handled above.
        Ending::Close => {}
        Ending::Mutated(req) => {
            count_written(tally, std::slice::from_ref(&req));
            let what = || {
                format!(
                    "worker {worker}: writing the mutated request {}",
                    first_line(&req.bytes)
                )
            };
            if !send_or_count(wire, &req.bytes, 1, hang, tally, what) {
                return;
            }
            last = Instant::now();
            // The end of the stream: the server must answer what it read and close.
            if wire.half_close() == Sent::Reset {
                tally.reset += 1;
                return;
            }
            answers_until_close(
                wire,
                &req,
                last,
                hang,
                tally,
                worker,
                "a mutated request, then a half-close",
            );
        }
        Ending::Stall { kind, last: sent } => {
            let entry = tally.stalls.entry(kind.name()).or_default();
            entry.count += 1;
            if let Some(req) = &sent {
                count_written(tally, std::slice::from_ref(req));
                let what = || format!("worker {worker}: writing a {} stall", kind.name());
                if !send_or_count(wire, &req.bytes, 1, hang, tally, what) {
                    return;
                }
                last = Instant::now();
            }
            // The sending side stays open: only the server's deadlines end this.
            let what = format!("a {} stall (sending side kept open)", kind.name());
            let closed_in_time = match &sent {
                Some(req) => answers_until_close(wire, req, last, hang, tally, worker, &what),
                None => expect_close(wire, last + hang, tally, worker, &what),
            };
            let entry = tally.stalls.entry(kind.name()).or_default();
            if closed_in_time {
                entry.closed += 1;
                entry.slowest_ms = entry.slowest_ms.max(millis(last.elapsed()));
            }
        }
    }
}

/// Counts requests as written.
/// Writes `bytes`, which carry `requests` requests, giving the server `hang` to take them.
/// Returns whether they went out; if not, counts the requests as reset, or as hung and
/// describes the hang with `what` (a write that blocks means the server stopped reading).
fn send_or_count(
    wire: &mut Wire,
    bytes: &[u8],
    requests: u64,
    hang: Duration,
    tally: &mut Tally,
    what: impl FnOnce() -> String,
) -> bool {
    match wire.send(bytes, Instant::now() + hang) {
        Sent::Ok => true,
        Sent::Reset => {
            tally.reset += requests;
            false
        }
        Sent::Hung => {
            tally.hung += requests;
            hung(tally, format!("{} blocked for {}", what(), show(hang)));
            false
        }
    }
}

fn count_written(tally: &mut Tally, batch: &[Req]) {
    tally.requests += batch.len() as u64;
    tally.pipelined += batch.len().saturating_sub(1) as u64;
    for req in batch {
        if req.well_formed {
            tally.well_formed += 1;
        } else if req.partial {
            tally.partial += 1;
        } else {
            tally.mutated += 1;
        }
    }
}

/// After the last request of a connection (`req`, written at `last`): reads answers until
/// the server closes. The first answers `req`; any more are counted among the statuses.
/// Returns whether the server closed in time.
fn answers_until_close(
    wire: &mut Wire,
    req: &Req,
    mut last: Instant,
    hang: Duration,
    tally: &mut Tally,
    worker: u64,
    what: &str,
) -> bool {
    let mut answered = false;
    // Bounded: a mutated request is at most 64 KiB, so it can be read as at most a few
    // thousand requests, and each answer must come within `hang`.
    for _ in 0..100_000 {
        match wire.next_response(req.head, last + hang) {
            Read::Response(answer) => {
                last = Instant::now();
                tally.response(answer);
                if !answered {
                    answered = true;
                    tally.answered += 1;
                }
            }
            Read::Closed | Read::Reset if answered => return true,
            Read::Closed => {
                tally.closed += 1;
                return true;
            }
            Read::Reset => {
                tally.reset += 1;
                return true;
            }
            Read::Hung => {
                if !answered {
                    tally.hung += 1;
                }
                hung(tally, format!(
                    "worker {worker}: {what}: {} {}; the server had not closed {} after the client's last activity",
                    first_line(&req.bytes),
                    if answered { "was answered" } else { "was not answered" },
                    show(hang)
                ));
                return false;
            }
            Read::Bad(why) => {
                // A mutated request may be answered in ways the fuzzer cannot frame (it
                // cannot always know what the server read as the method): what matters
                // here is that the server closes.
                if !answered {
                    tally.answered += 1;
                }
                if req.well_formed {
                    tally.bad += 1;
                    tally.describe(format!(
                        "worker {worker}: bad answer to {}: {why}",
                        first_line(&req.bytes)
                    ));
                }
                return expect_close(wire, last + hang, tally, worker, what);
            }
        }
        if wire.interim > 0 {
            *tally.statuses.entry(100).or_default() += wire.interim;
            wire.interim = 0;
        }
    }
    true
}

/// Waits for the server to close, throwing away what it sends meanwhile; a hang if it
/// has not closed by `until`. Returns whether it closed in time.
fn expect_close(
    wire: &mut Wire,
    until: Instant,
    tally: &mut Tally,
    worker: u64,
    what: &str,
) -> bool {
    match wire.drain(until) {
        Read::Hung => {
            hung(tally, format!("worker {worker}: {what}: the server had not closed the connection by its deadline and margin"));
            false
        }
        _ => true,
    }
}

fn hung(tally: &mut Tally, what: String) {
    tally.hung_connections += 1;
    tally.describe(what);
}

/// A request's first line, for reports: at most 60 characters, escaped.
fn first_line(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(bytes.len())
        .min(60);
    format!("{:?}", String::from_utf8_lossy(&bytes[..end]))
}

fn show(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(millis(d))).to_string()
}
