//! The event-driven engine: a few threads, each driving many clients.
//!
//! Each engine thread owns a share of the clients (client `k` goes to thread `k mod T`),
//! one `mio::Poll`, and a heap of timers. Its loop is the servers' event loop turned
//! around:
//!
//! ```text
//! start every client (its first step: usually a non-blocking connect)
//! loop:
//!     poll(until the nearest timer or due request)  -- sleeps until a socket is ready
//!     for each ready socket: finish the connect, write the rest of the request,
//!                            or read the response; tell the client; do its next step
//!     for each timer that has passed: the step's deadline (a timeout), or a hold's end
//!     open loop: hand each request that is now due to an idle connection
//! until every client is done
//! ```
//!
//! Nothing in the loop blocks: sockets are non-blocking, and every wait is either `poll`
//! or a timer. Each connection is registered once, for reading and writing, with
//! edge-triggered readiness; the slot remembers that a socket is readable or writable
//! until a call says it would block (or a read comes back short, which means the socket
//! was drained), so no readiness is ever lost between steps.
//!
//! Memory per client is its [`Client`] and record, a slot of a few dozen bytes, and a
//! response reader that holds nothing between responses. All reads go through one 64 KiB
//! buffer per thread, and the latency histograms are per thread too, so ten thousand
//! clients cost a few megabytes.
//!
//! Timers keep at most one live heap entry per client, as the event-loop server's do: when
//! a deadline moves later, the old entry stays and, when it fires, finds the real deadline
//! and is pushed again; an entry whose time no longer matches its slot's is skipped.
//!
//! The pieces: this module starts the threads and collects them; `reactor` is one
//! thread's loop; `dispatcher` is the open-loop schedule; `alarm` the microsecond timer
//! that wakes the loop when the next request is due.

mod alarm;
mod dispatcher;
mod reactor;

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use mio::{Poll, Token, Waker};

use crate::client::{Client, Plan};
use crate::gate::StartGate;
use crate::record::{ClientRecord, Finished};
use crate::scenario::Load;
use crate::tally::{Live, Series, Tally};
use crate::units::micros;
use crate::Error;

use super::{Abort, Monitor, Watch};
use dispatcher::Dispatcher;
use reactor::Reactor;

/// The token of each thread's waker, which the coordinator uses to stop the thread early.
const WAKE: Token = Token(usize::MAX);

/// The token of the open-loop alarm.
const ALARM: Token = Token(usize::MAX - 1);

/// The size of each thread's read buffer.
const READ_BUFFER: usize = 64 * 1024;

/// What the engine threads share, each through an `Arc`: the plan they run, the gate they
/// start behind, the abort flag any of them may raise, and what they count into.
struct Shared {
    /// Read-only once the threads start: no synchronisation needed beyond the `Arc`.
    plan: Plan,
    /// Every thread waits here until all exist; the coordinator opens it, fixing the
    /// common start (a mutex and a condition variable: waited on once per thread).
    gate: StartGate,
    /// Raised by a thread that ran out of something; every thread checks it after each
    /// wake-up (see [`Abort`] for its ordering).
    abort: Abort,
    /// The time series: each thread hands in a second once a second, under its mutex.
    series: Arc<Series>,
    /// The live counters: each thread adds to its own cache line with relaxed atomics,
    /// the coordinator's monitor reads them (see [`Live`]).
    live: Arc<Live>,
}

/// What a thread hands back: its clients' records and its tally, or nothing when it
/// stopped early (the reason is in the shared [`Abort`]).
type ThreadResult = Option<(Vec<ClientRecord>, Tally)>;

/// The engine threads, started and waiting at the gate.
struct Threads {
    /// One per thread, registered with its poll: waking it interrupts the thread's poll,
    /// so an abort is seen at once rather than at the next timer.
    wakers: Vec<Arc<Waker>>,
    handles: Vec<JoinHandle<()>>,
}

/// Runs `plan` on the event-driven engine, with `monitor` watching.
pub fn run(plan: Plan, monitor: &mut dyn Monitor) -> Result<Finished, Error> {
    let threads = super::engine_threads(&plan);
    let live = Arc::new(super::live_for(&plan, threads, monitor));
    let shared = Arc::new(Shared {
        plan,
        gate: StartGate::new(),
        abort: Abort::default(),
        series: Arc::new(Series::new(threads)),
        live,
    });
    // Each thread sends exactly one result here when it ends: an unbounded channel, so the
    // send never blocks, and it never holds more than one message per thread.
    let (done, results) = mpsc::channel::<ThreadResult>();
    let started = spawn(&shared, threads, &done)?;
    drop(done);
    let watch = Watch {
        live: &shared.live,
        abort: &shared.abort,
        monitor,
    };
    let (started_at, collected) =
        super::start_and_collect(&shared.gate, &shared.plan, &results, threads, watch, || {
            for waker in &started.wakers {
                // Interrupts the thread's poll so that it sees the abort at once.
                let _ = waker.wake();
            }
        });
    for handle in started.handles {
        // Every thread has sent its result (or panicked), so this does not wait long.
        let _ = handle.join();
    }
    let mut records = Vec::with_capacity(shared.plan.scenario.own_clients());
    let mut tallies = Vec::with_capacity(threads);
    // A thread that stopped early raised the abort, which `collected` reports.
    for (r, t) in collected?.into_iter().flatten() {
        records.extend(r);
        tallies.push(t);
    }
    Ok(Finished::assemble(
        records,
        tallies,
        &shared.series,
        started_at,
        threads,
    ))
}

/// Starts `threads` engine threads, each with its share of this process's clients (client
/// `k` goes to thread `k mod T`), each sending its result on `done`. If the system refuses
/// one, those already started are called off and joined.
fn spawn(
    shared: &Arc<Shared>,
    threads: usize,
    done: &mpsc::Sender<ThreadResult>,
) -> Result<Threads, Error> {
    // This process's clients: all of the run's, or its shard's share.
    let own = shared.plan.scenario.own_ids();
    let mut started = Threads {
        wakers: Vec::with_capacity(threads),
        handles: Vec::with_capacity(threads),
    };
    for index in 0..threads {
        let thread = Poll::new().and_then(|poll| {
            let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
            let ids: Vec<usize> = own.iter().copied().skip(index).step_by(threads).collect();
            let (shared, done) = (Arc::clone(shared), done.clone());
            let handle = std::thread::Builder::new()
                .name(format!("engine-{}", index + 1))
                .spawn(move || {
                    let result = drive(&shared, index, &ids, poll);
                    // The coordinator outlives every engine thread.
                    let _ = done.send(result);
                })?;
            Ok((waker, handle))
        });
        match thread {
            Ok((waker, handle)) => {
                started.wakers.push(waker);
                started.handles.push(handle);
            }
            Err(source) => {
                shared.gate.call_off();
                for handle in started.handles {
                    let _ = handle.join();
                }
                return Err(Error::Thread {
                    what: format!("could not start engine thread {} of {threads}", index + 1),
                    source,
                });
            }
        }
    }
    Ok(started)
}

/// One engine thread: waits for the common start, then runs its clients (`ids`) to their
/// end.
fn drive(shared: &Shared, index: usize, ids: &[usize], poll: Poll) -> ThreadResult {
    // Waits until every engine thread exists, so that all clients start together.
    let start = shared.gate.wait()?;
    let plan = &shared.plan;
    let mut tally = Tally::new(
        start,
        micros(plan.scenario.timeout),
        Arc::clone(&shared.series),
        Arc::clone(&shared.live),
        index,
    );
    // Open loop: this thread's share of the schedule, over its own connections.
    let dispatcher = match plan.scenario.load {
        Load::Rate(open) => {
            // Open-loop requests must leave when they are due: this thread's timer slack
            // goes from the default 50 µs to 1 µs.
            let _ = nix::sys::prctl::set_timerslack(1);
            Some(Dispatcher::new(
                open,
                start,
                plan.scenario.timeout,
                // Connection `c` (from 0) is client `c + 1`.
                ids.iter().map(|&id| id as u64 - 1).collect(),
                plan.scenario.clients,
            ))
        }
        _ => None,
    };
    // Every client of the thread counts from the same common start, the gate's.
    let clients = ids.iter().map(|&id| Client::new(id, plan, start)).collect();
    let result = Reactor::new(plan, clients, poll, dispatcher).and_then(|mut reactor| {
        reactor.run(&mut tally, &shared.abort)?;
        Ok(reactor.into_records())
    });
    tally.finish();
    match result {
        Ok(records) => Some((records, tally)),
        Err(reason) => {
            // The other threads stop too: the coordinator wakes them when it sees the flag.
            shared.abort.raise(reason);
            None
        }
    }
}
