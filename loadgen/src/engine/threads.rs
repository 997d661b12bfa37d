//! The thread-per-client engine: the lecture's simulator.
//!
//! Every client is a thread of its own (`client-1` … `client-N`) with a blocking socket.
//! All of them wait at a [`StartGate`] until every thread exists, then start together.
//! From then on each asks its [`Client`] what to do and does it with a blocking call:
//! `connect`, `write` and `read` bounded by what is left of the step's deadline, `sleep`
//! for a hold. So a client never waits past its deadline, and a load run never past its
//! end.
//!
//! This is the simplest model to read and the one the lecture draws, but each client costs
//! a thread (and its stack, and a context switch per wake-up); the event-driven engine
//! ([`super::events`]) runs the same clients on a few threads. The clients share one
//! [`Tally`] behind a mutex, held only while a client decides its next step or records
//! what happened.

use std::io;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::client::{Client, Event, Plan, Step};
use crate::gate::StartGate;
use crate::http::Connection;
use crate::outcome::{Failure, Outcome};
use crate::record::{ClientRecord, Finished};
use crate::scenario::Load;
use crate::tally::{Live, Series, Tally};
use crate::units::micros;
use crate::Error;

use super::{Abort, Monitor, Watch};

/// A client's whole life, to run on its own thread.
pub type ClientJob = Box<dyn FnOnce() -> ClientRecord + Send>;

/// Starts a thread named `name` running `job`.
pub type Spawner<'a> = &'a mut dyn FnMut(String, ClientJob) -> io::Result<JoinHandle<ClientRecord>>;

/// The spawner of real runs: a thread with a small stack (a client needs little).
pub fn spawn(name: String, job: ClientJob) -> io::Result<JoinHandle<ClientRecord>> {
    std::thread::Builder::new()
        .name(name)
        .stack_size(256 * 1024)
        .spawn(job)
}

/// What every client thread shares: the plan, the gate they start behind, and what they
/// count into.
struct Shared {
    /// Read-only once the threads start.
    plan: Plan,
    /// Every client thread waits here until all exist (a mutex and a condition variable,
    /// waited on once per thread).
    gate: StartGate,
    /// Raised when a client's connect found the simulator out of descriptors or ports;
    /// each client checks it before its next step.
    abort: Abort,
    /// The time series, fed by the one tally below as its clock passes each second.
    series: Arc<Series>,
    /// The live counters, one slot for the whole run: every client adds through the tally,
    /// under its mutex, and the monitor reads them without it.
    live: Arc<Live>,
    /// The one tally of the run, created by the first client to start (it needs the common
    /// start). Shared because every client counts its requests in it; locked only for the
    /// few hundred nanoseconds a client spends deciding or recording.
    tally: Mutex<Option<Tally>>,
}

impl Shared {
    /// Runs `f` on the run's tally.
    fn with_tally<R>(&self, start: Instant, f: impl FnOnce(&mut Tally) -> R) -> R {
        let mut tally = self.tally.lock();
        let tally = tally.get_or_insert_with(|| {
            Tally::new(
                start,
                micros(self.plan.scenario.timeout),
                Arc::clone(&self.series),
                Arc::clone(&self.live),
                0,
            )
        });
        f(tally)
    }
}

/// Runs `plan` with a thread per client, started by `spawn` (a test can make it fail),
/// with `monitor` watching.
pub fn run(mut plan: Plan, spawn: Spawner, monitor: &mut dyn Monitor) -> Result<Finished, Error> {
    if matches!(plan.scenario.load, Load::Rate(_)) {
        return Err(Error::Invalid(
            "open-loop runs (--rate) need the event-driven engine (--engine events)".into(),
        ));
    }
    plan.thread_per_client = true;
    // This process's clients: all of the run's, or its shard's share.
    let own = plan.scenario.own_ids();
    let clients = own.len();
    let live = Arc::new(super::live_for(&plan, 1, monitor));
    let shared = Arc::new(Shared {
        plan,
        gate: StartGate::new(),
        abort: Abort::default(),
        series: Arc::new(Series::new(1)),
        live,
        tally: Mutex::new(None),
    });
    // Each client thread sends one message here when it ends: an unbounded channel, so a
    // send never blocks, and at most one message per client is ever in it.
    let (done, finished) = mpsc::channel();
    let threads = spawn_clients(&shared, &own, spawn, &done)?;
    drop(done);
    let (started_at, collected) = super::start_and_collect(
        &shared.gate,
        &shared.plan,
        &finished,
        clients,
        Watch {
            live: &shared.live,
            abort: &shared.abort,
            monitor,
        },
        // Each client checks the flag before its next step; its blocking call in progress
        // is bounded by its deadline.
        || {},
    );
    let (records, panicked) = join_clients(threads, clients);
    collected?;
    if panicked {
        return Err(Error::Panicked("a client thread"));
    }
    let mut tally = shared.tally.lock().take();
    if let Some(t) = tally.as_mut() {
        t.finish();
    }
    Ok(Finished::assemble(
        records,
        tally.into_iter().collect(),
        &shared.series,
        started_at,
        clients,
    ))
}

/// Starts a thread for each client of `own` with `spawn`; each waits at the gate, runs its
/// client, and sends one message on `done` when it ends. If the system refuses a thread,
/// the gate is called off (so those already started return at once) and they are joined
/// before the refusal is reported.
fn spawn_clients(
    shared: &Arc<Shared>,
    own: &[usize],
    spawn: Spawner,
    done: &mpsc::Sender<()>,
) -> Result<Vec<JoinHandle<ClientRecord>>, Error> {
    let mut threads = Vec::with_capacity(own.len());
    for &id in own {
        let (mine, done) = (Arc::clone(shared), done.clone());
        let job: ClientJob = Box::new(move || {
            let record = client_thread(id, &mine);
            // The receiver outlives every client thread; a failed send only means the run
            // was already given up.
            let _ = done.send(());
            record
        });
        match spawn(format!("client-{id}"), job) {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                shared.gate.call_off();
                for thread in threads {
                    let _ = thread.join();
                }
                return Err(Error::Thread {
                    what: format!("the system refused to start client {id} of {}", own.len()),
                    source: e,
                });
            }
        }
    }
    Ok(threads)
}

/// Joins every client thread: the records of those that returned, and whether any
/// panicked.
fn join_clients(
    threads: Vec<JoinHandle<ClientRecord>>,
    clients: usize,
) -> (Vec<ClientRecord>, bool) {
    let mut records = Vec::with_capacity(clients);
    let mut panicked = false;
    for thread in threads {
        // Each client has ended by itself (its channel message came first), or ends soon:
        // every blocking call it makes is bounded.
        match thread.join() {
            Ok(record) => records.push(record),
            Err(_) => panicked = true,
        }
    }
    (records, panicked)
}

/// One client's thread: waits for the common start, then does what its client asks until
/// it is done.
fn client_thread(id: usize, shared: &Shared) -> ClientRecord {
    // Waits until every client thread exists, so that all start together.
    let Some(start) = shared.gate.wait() else {
        return ClientRecord::new(id);
    };
    let plan = &shared.plan;
    let mut client = Client::new(id, plan, start);
    let mut conn: Option<Connection> = None;
    loop {
        if shared.abort.is_raised() {
            break;
        }
        if shared.live.stop_requested() {
            // A live view's `q`: the run ends now for this client, between its steps (a
            // blocking call in progress ends first, by its deadline at the latest).
            let now = Instant::now();
            shared.with_tally(start, |t| client.stop(plan, now, t));
            break;
        }
        // The clock is read before the lock: a wait for the lock is not the server's.
        let now = Instant::now();
        let step = shared.with_tally(start, |t| client.next(plan, now, t));
        let connecting = matches!(step, Step::Connect { .. });
        let Some(event) = perform(step, &mut conn, client.request(plan), id, shared) else {
            break;
        };
        let failed = matches!(event, Event::Failed(_));
        let now = Instant::now();
        shared.with_tally(start, |t| client.on(plan, event, now, t));
        if connecting && failed && !client.is_done() {
            // A connect that failed at once is tried again only after a pause, as the
            // event-driven engine does.
            std::thread::sleep(super::CONNECT_RETRY);
        }
    }
    drop(conn);
    client.record
}

/// Does `step` on the client's connection `conn` with one blocking call, bounded by the
/// step's deadline (or, for a hold, lasting until its end), and says what happened.
/// `request` is what an exchange sends. `None`: the client has nothing more to do.
fn perform(
    step: Step,
    conn: &mut Option<Connection>,
    request: &[u8],
    id: usize,
    shared: &Shared,
) -> Option<Event> {
    let plan = &shared.plan;
    let link = &plan.scenario.link;
    let one_way = link.rtt_of(id) / 2;
    let event = match step {
        // On an emulated path each guard below first waits out the trip (`travel`): a trip
        // that outlasts the step's deadline is its failure, otherwise the plain arm that
        // follows makes the call.
        Step::Connect { deadline } if link.is_active() && !travel(one_way * 2, deadline) => {
            *conn = None;
            Event::Failed(Failure::not_connected())
        }
        Step::Exchange { deadline, .. }
            if link.is_active() && !travel(one_way + link.transfer(request.len()), deadline) =>
        {
            Event::Failed(Failure::no_answer())
        }
        Step::Connect { deadline } => {
            *conn = None;
            connect(conn, deadline, shared)
        }
        Step::Exchange {
            deadline,
            want_thread,
        } => exchange(conn, request, deadline, want_thread, one_way, shared),
        Step::Leave { until } => {
            *conn = None;
            // Away until the ramp brings the client back: nothing to do meanwhile.
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            Event::Held
        }
        Step::Hold { until } => {
            // Holds the connection open and idle, as the lecture's clients do.
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            Event::Held
        }
        // Open-loop runs are refused above; nothing else idles.
        Step::Idle | Step::Done => return None,
    };
    Some(event)
}

/// A connect for the client, into `conn`; blocks until connected, refused, or `deadline`.
fn connect(conn: &mut Option<Connection>, deadline: Instant, shared: &Shared) -> Event {
    // Blocks until connected, refused, or the deadline.
    match Connection::open(shared.plan.addr, deadline) {
        Ok(c) => {
            *conn = Some(c);
            Event::Connected
        }
        Err(mut failure) if failure.fatal.is_some() => {
            // The simulator itself ran out (of descriptors, of ports): the whole run
            // stops, since what follows would not be the server's doing.
            if let Some(reason) = failure.fatal.take() {
                shared.abort.raise(reason);
            }
            Event::Failed(failure)
        }
        Err(failure) => Event::Failed(failure),
    }
}

/// One exchange on `conn`: sends `request` and reads the answer, bounded by `deadline`;
/// on an emulated path the answer then travels back (`one_way` and its transfer time)
/// before the client hears it. A failed exchange drops the connection.
fn exchange(
    conn: &mut Option<Connection>,
    request: &[u8],
    deadline: Instant,
    want_thread: bool,
    one_way: Duration,
    shared: &Shared,
) -> Event {
    let plan = &shared.plan;
    let link = &plan.scenario.link;
    // Scenario runs judge every step to the millisecond; load runs save the system call
    // that would reset the read timeout before every read.
    let exact = !plan.scenario.load.is_load();
    let head_only = plan.scenario.request.is_head();
    let Some(c) = conn.as_mut() else {
        return Event::Failed(Failure::new(Outcome::Reset, "no connection to send on"));
    };
    // Blocks until the whole response is in, or the deadline.
    match c.exchange(request, deadline, exact, head_only, want_thread) {
        Ok(mut reply) if link.is_active() => {
            // The answer's trip back: the client hears it only then.
            reply.first_byte += one_way;
            if travel(one_way + link.transfer(reply.size), deadline) {
                Event::Replied(reply)
            } else {
                *conn = None;
                Event::Failed(Failure::no_answer())
            }
        }
        Ok(reply) => Event::Replied(reply),
        Err(failure) => {
            *conn = None;
            Event::Failed(failure)
        }
    }
}

/// Emulated path ([`crate::link`]): waits out a trip of `length` on the path, or until
/// `deadline` if that comes first. Returns whether the trip ended before the deadline.
fn travel(length: std::time::Duration, deadline: Instant) -> bool {
    let arrives = Instant::now() + length;
    // Blocks for the trip: this client thread is the client, and its bytes are on the way.
    std::thread::sleep(
        arrives
            .min(deadline)
            .saturating_duration_since(Instant::now()),
    );
    arrives <= deadline
}
