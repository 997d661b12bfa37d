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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::client::{Client, ClientRecord, Event, Plan, Step};
use crate::gate::StartGate;
use crate::http::{Reply, ResponseReader};
use crate::outcome::{Failure, Outcome};
use crate::scenario::{Arrivals, Load, OpenLoop, WhenBusy};
use crate::tally::{Live, Series, Tally};
use crate::units::micros;
use crate::SimError;

use super::{Abort, Finished};

/// The token of each thread's waker, which the coordinator uses to stop the thread early.
const WAKE: Token = Token(usize::MAX);

/// The token of the open-loop alarm.
const ALARM: Token = Token(usize::MAX - 1);

/// The size of each thread's read buffer.
const READ_BUFFER: usize = 64 * 1024;

/// What the engine threads share.
struct Shared {
    plan: Plan,
    gate: StartGate,
    abort: Abort,
    series: Arc<Series>,
    live: Arc<Live>,
}

/// What a thread hands back.
type ThreadResult = Result<(Vec<ClientRecord>, Option<Tally>), String>;

/// Runs `plan` on the event-driven engine.
pub fn run(plan: Plan) -> Result<Finished, SimError> {
    let threads = super::engine_threads(&plan);
    // This process's clients: all of the run's, or its shard's share.
    let own = plan.scenario.own_ids();
    let clients = own.len();
    let shared = Arc::new(Shared {
        plan,
        gate: StartGate::new(),
        abort: Abort::default(),
        series: Arc::new(Series::new(threads)),
        live: Arc::new(Live::new(threads)),
    });
    let (done, results) = mpsc::channel::<ThreadResult>();
    let mut wakers = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let started = Poll::new().and_then(|poll| {
            let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
            let ids: Vec<usize> = own.iter().copied().skip(index).step_by(threads).collect();
            let (shared, done) = (Arc::clone(&shared), done.clone());
            let handle = std::thread::Builder::new()
                .name(format!("engine-{}", index + 1))
                .spawn(move || {
                    let result = drive(&shared, index, ids, poll);
                    // The coordinator outlives every engine thread.
                    let _ = done.send(result);
                })?;
            Ok((waker, handle))
        });
        match started {
            Ok((waker, handle)) => {
                wakers.push(waker);
                handles.push(handle);
            }
            Err(e) => {
                shared.gate.call_off();
                for handle in handles {
                    let _ = handle.join();
                }
                return Err(SimError::Threads(format!(
                    "could not start engine thread {} of {threads}: {e}",
                    index + 1
                )));
            }
        }
    }
    drop(done);
    let (started_at, collected) = super::start_and_collect(
        &shared.gate,
        &shared.plan,
        &results,
        threads,
        &shared.live,
        &shared.abort,
        || {
            for waker in &wakers {
                // Interrupts the thread's poll so that it sees the abort at once.
                let _ = waker.wake();
            }
        },
    );
    for handle in handles {
        // Every thread has sent its result (or panicked), so this does not wait long.
        let _ = handle.join();
    }
    let mut records = Vec::with_capacity(clients);
    let mut tallies = Vec::with_capacity(threads);
    for result in collected? {
        match result {
            Ok((r, t)) => {
                records.extend(r);
                tallies.extend(t);
            }
            Err(reason) => return Err(SimError::Resources(reason)),
        }
    }
    Ok(super::finish(
        records,
        tallies,
        &shared.series,
        started_at,
        threads,
    ))
}

/// One engine thread: waits for the common start, then runs its clients to their end.
fn drive(shared: &Shared, index: usize, ids: Vec<usize>, poll: Poll) -> ThreadResult {
    // Waits until every engine thread exists, so that all clients start together.
    let Some(start) = shared.gate.wait() else {
        return Ok((Vec::new(), None));
    };
    let plan = &shared.plan;
    let mut tally = Tally::new(
        start,
        micros(plan.scenario.timeout),
        Arc::clone(&shared.series),
        Arc::clone(&shared.live),
        index,
    );
    let dispatcher = match plan.scenario.load {
        Load::Rate(open) => Some(Dispatcher::new(
            open,
            start,
            plan.scenario.timeout,
            // Connection `c` (from 0) is client `c + 1`.
            ids.iter().map(|&id| id as u64 - 1).collect(),
            plan.scenario.clients,
        )),
        _ => None,
    };
    let slots: Vec<Slot> = ids
        .iter()
        .map(|&id| Slot::new(Client::new(id, plan, start)))
        .collect();
    // SAFETY: prctl(PR_SET_TIMERSLACK) changes only this thread's timer slack, from the
    // default 50 µs to 1 µs, so that open-loop requests leave when they are due.
    if matches!(plan.scenario.load, Load::Rate(_)) {
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        }
    }
    let alarm = match dispatcher {
        Some(_) => Some(
            Alarm::new(poll.registry())
                .map_err(|e| format!("the engine could not create its timer: {e}"))?,
        ),
        None => None,
    };
    let mut reactor = Reactor {
        plan,
        live: slots.len(),
        slots,
        poll,
        timers: BinaryHeap::new(),
        buf: vec![0; READ_BUFFER].into_boxed_slice(),
        alarm,
        dispatcher,
        idle: VecDeque::new(),
    };
    let result = reactor.run(&mut tally, &shared.abort);
    tally.finish();
    if let Err(reason) = &result {
        // The other threads stop too: the coordinator wakes them when it sees the flag.
        shared.abort.raise(reason.clone());
    }
    result?;
    let records = reactor.slots.into_iter().map(|s| s.client.record).collect();
    Ok((records, Some(tally)))
}

/// What a slot's socket is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Io {
    /// No step in progress on the socket (between steps, or no socket).
    Free,
    Connecting,
    /// Writing the request; the rest is in `unsent`.
    Sending,
    /// Reading the response.
    Receiving,
    /// Holding the connection idle until the deadline.
    Holding,
    /// Open loop: waiting for the dispatcher.
    Idle,
    /// A connect failed at once; the client tries again when the deadline passes, not in
    /// a tight loop.
    Backoff,
    Done,
}

/// One client and its socket.
struct Slot {
    client: Client,
    stream: Option<TcpStream>,
    io: Io,
    reader: ResponseReader,
    /// When the step in progress gives up (or the hold ends).
    deadline: Option<Instant>,
    /// The moment of this slot's live entry in the timer heap, if it has one.
    scheduled: Option<Instant>,
    /// The socket has data (or a close) we have not read yet.
    readable: bool,
    /// The socket can take more bytes.
    writable: bool,
    /// The server has closed its side: after the data still queued, a read returns 0.
    /// (Its edge has been delivered, so a short read cannot be taken to mean "drained".)
    peer_closed: bool,
    /// Bytes of the request the socket has not taken yet.
    unsent: Vec<u8>,
    /// When the first byte of the response in progress arrived.
    first_byte: Option<Instant>,
}

impl Slot {
    fn new(client: Client) -> Slot {
        Slot {
            client,
            stream: None,
            io: Io::Free,
            reader: ResponseReader::new(),
            deadline: None,
            scheduled: None,
            readable: false,
            writable: false,
            peer_closed: false,
            unsent: Vec::new(),
            first_byte: None,
        }
    }

    /// Closes the socket (the kernel removes it from the poll).
    fn close(&mut self) {
        self.stream = None;
        self.readable = false;
        self.writable = false;
        self.peer_closed = false;
        self.unsent.clear();
        self.reader = ResponseReader::new();
    }
}

/// One engine thread's state.
struct Reactor<'p> {
    plan: &'p Plan,
    slots: Vec<Slot>,
    /// Clients not yet done.
    live: usize,
    poll: Poll,
    /// Pending moments, nearest first: (when, slot).
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// The thread's read buffer: every read lands here and goes straight to a response
    /// reader, which keeps nothing of a complete response.
    buf: Box<[u8]>,
    /// Open loop: the schedule of requests and the queue of those waiting for a
    /// connection.
    dispatcher: Option<Dispatcher>,
    /// Open loop: slots whose connection waits for a request, longest-waiting first, so
    /// that requests go round the pool as wrk2 spreads them, rather than to the same few
    /// connections.
    idle: VecDeque<usize>,
    /// Open loop: a timer with microsecond resolution for the next due request (`poll`
    /// alone wakes only to the millisecond).
    alarm: Option<Alarm>,
}

/// A failure the run cannot go on after: the simulator's own, not the server's.
type Fatal = String;

impl Reactor<'_> {
    fn run(&mut self, tally: &mut Tally, abort: &Abort) -> Result<(), Fatal> {
        let mut events = Events::with_capacity(1024);
        for i in 0..self.slots.len() {
            self.advance(i, None, Instant::now(), tally)?;
        }
        while self.live > 0 {
            let now = Instant::now();
            // Wakes at least once a second, so that the time series moves on even while
            // this thread's clients all wait.
            let next = self.next_moment().map(|at| at.min(tally.next_second()));
            let timeout = next.map(|at| at.saturating_duration_since(now));
            if let (Some(alarm), Some(at)) = (self.alarm.as_mut(), next) {
                // The alarm wakes the poll to the microsecond; poll's own timeout (rounded
                // up to the millisecond) stays as a backstop.
                alarm
                    .set(at.saturating_duration_since(now))
                    .map_err(|e| format!("the engine could not set its timer: {e}"))?;
            }
            // Sleeps until a socket is ready, the nearest timer or due request (mio rounds
            // the timeout up to a millisecond), or the coordinator's waker.
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("the engine's poll failed: {e}"));
            }
            if abort.is_raised() {
                return Ok(());
            }
            for event in events.iter() {
                if event.token() == WAKE {
                    continue;
                }
                if event.token() == ALARM {
                    if let Some(alarm) = self.alarm.as_mut() {
                        alarm.acknowledge();
                    }
                    continue;
                }
                // The clock is read for every event: handling a thousand events takes a
                // while, and each response's time must be its own.
                let now = Instant::now();
                let i = event.token().0;
                let Some(slot) = self.slots.get_mut(i) else {
                    continue;
                };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    slot.readable = true;
                }
                if event.is_read_closed() || event.is_error() {
                    slot.peer_closed = true;
                }
                if event.is_writable() || event.is_write_closed() || event.is_error() {
                    slot.writable = true;
                }
                let happened = self.progress(i, now);
                self.advance(i, happened, now, tally)?;
            }
            let now = Instant::now();
            self.expire(now, tally)?;
            self.dispatch(now, tally)?;
            tally.tick(now);
        }
        // Requests still waiting for a connection when the run ended.
        if let Some(dispatcher) = &mut self.dispatcher {
            for _ in dispatcher.queue.drain(..) {
                tally.unfinished();
            }
        }
        Ok(())
    }

    /// The nearest moment the loop must wake for without a socket event.
    fn next_moment(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        let due = self.dispatcher.as_ref().and_then(Dispatcher::next_moment);
        match (timer, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sets slot `i`'s deadline, pushing a timer unless an earlier one is already in the
    /// heap.
    fn set_deadline(&mut self, i: usize, at: Instant) {
        let slot = &mut self.slots[i];
        slot.deadline = Some(at);
        if slot.scheduled.is_none_or(|s| at < s) {
            slot.scheduled = Some(at);
            self.timers.push(Reverse((at, i)));
        }
    }

    /// Does what slot `i`'s socket is ready for, and returns what happened to the client's
    /// step, if it ended.
    fn progress(&mut self, i: usize, now: Instant) -> Option<Event> {
        let slot = &mut self.slots[i];
        match slot.io {
            Io::Connecting if slot.writable => connected(slot, self.plan),
            Io::Sending if slot.writable => {
                if let Err(failure) = write(slot) {
                    return Some(Event::Failed(failure));
                }
                if slot.io == Io::Receiving {
                    receive(slot, &mut self.buf, now)
                } else {
                    None
                }
            }
            Io::Receiving if slot.readable => receive(slot, &mut self.buf, now),
            Io::Holding | Io::Idle | Io::Free if slot.readable => {
                if drain(slot, &mut self.buf) {
                    // The server closed the idle connection.
                    slot.close();
                    slot.client.disconnected();
                }
                None
            }
            _ => None,
        }
    }

    /// Tells slot `i`'s client what `happened` (if anything), then does its next steps
    /// until one has to wait for the network, a timer, or the dispatcher.
    fn advance(
        &mut self,
        i: usize,
        mut happened: Option<Event>,
        now: Instant,
        tally: &mut Tally,
    ) -> Result<(), Fatal> {
        let plan = self.plan;
        // A connect that failed at once is tried again only after a pause.
        let mut retry_later = false;
        loop {
            if let Some(event) = happened.take() {
                let slot = &mut self.slots[i];
                if matches!(event, Event::Failed(_)) {
                    slot.close();
                }
                slot.io = Io::Free;
                slot.deadline = None;
                slot.client.on(plan, event, now, tally);
                if retry_later && !slot.client.is_done() {
                    slot.io = Io::Backoff;
                    self.set_deadline(i, now + super::CONNECT_RETRY);
                    return Ok(());
                }
            } else if self.slots[i].io != Io::Free {
                // The step in progress goes on.
                return Ok(());
            }
            let step = self.slots[i].client.next(plan, now, tally);
            match step {
                Step::Connect { deadline } => {
                    let slot = &mut self.slots[i];
                    slot.close();
                    match TcpStream::connect(plan.addr) {
                        Ok(mut stream) => {
                            // Small requests must leave at once, not wait for Nagle.
                            let _ = stream.set_nodelay(true);
                            self.poll
                                .registry()
                                .register(
                                    &mut stream,
                                    Token(i),
                                    Interest::READABLE | Interest::WRITABLE,
                                )
                                .map_err(|e| {
                                    format!("the engine could not watch another socket: {e}")
                                })?;
                            slot.stream = Some(stream);
                            slot.io = Io::Connecting;
                            self.set_deadline(i, deadline);
                        }
                        Err(e) => {
                            let failure = Failure::from_connect(&e, plan.addr);
                            if failure.fatal {
                                return Err(failure.message);
                            }
                            happened = Some(Event::Failed(failure));
                            retry_later = true;
                        }
                    }
                }
                Step::Exchange {
                    deadline,
                    want_thread,
                } => {
                    let slot = &mut self.slots[i];
                    slot.reader
                        .expect(plan.scenario.request.is_head(), want_thread);
                    slot.first_byte = None;
                    slot.unsent.clear();
                    slot.unsent.extend_from_slice(slot.client.request(plan));
                    slot.io = Io::Sending;
                    self.set_deadline(i, deadline);
                    let slot = &mut self.slots[i];
                    happened = match write(slot) {
                        Err(failure) => Some(Event::Failed(failure)),
                        Ok(()) if slot.io == Io::Receiving => receive(slot, &mut self.buf, now),
                        Ok(()) => None,
                    };
                }
                Step::Hold { until } => {
                    self.slots[i].io = Io::Holding;
                    self.set_deadline(i, until);
                }
                Step::Idle => {
                    let queued = self
                        .dispatcher
                        .as_mut()
                        .and_then(|d| d.take_queued(now, tally));
                    match queued {
                        Some(due) => self.slots[i].client.assign(due),
                        None => {
                            self.slots[i].io = Io::Idle;
                            self.idle.push_back(i);
                        }
                    }
                }
                Step::Done => {
                    let slot = &mut self.slots[i];
                    slot.close();
                    slot.io = Io::Done;
                    slot.deadline = None;
                    self.live -= 1;
                    return Ok(());
                }
            }
        }
    }

    /// Fires every timer that has passed.
    fn expire(&mut self, now: Instant, tally: &mut Tally) -> Result<(), Fatal> {
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let slot = &mut self.slots[i];
            if slot.scheduled != Some(at) {
                // Stale: the slot has an earlier entry, which fired already.
                continue;
            }
            slot.scheduled = None;
            match slot.deadline {
                Some(deadline) if deadline <= now => {
                    let happened = match slot.io {
                        Io::Connecting => Some(Event::Failed(Failure::not_connected())),
                        Io::Sending | Io::Receiving => Some(Event::Failed(Failure::no_answer())),
                        Io::Holding => Some(Event::Held),
                        Io::Backoff => {
                            slot.io = Io::Free;
                            slot.deadline = None;
                            None
                        }
                        _ => continue,
                    };
                    self.advance(i, happened, now, tally)?;
                }
                Some(later) => {
                    // The deadline moved on since this entry was pushed.
                    slot.scheduled = Some(later);
                    self.timers.push(Reverse((later, i)));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Open loop: hands every request now due to an idle connection, or queues (or
    /// drops) it; at the end of the run, lets the idle connections finish.
    fn dispatch(&mut self, now: Instant, tally: &mut Tally) -> Result<(), Fatal> {
        let Some(dispatcher) = self.dispatcher.as_mut() else {
            return Ok(());
        };
        dispatcher.expire_queued(now, tally);
        while let Some(due) = self.dispatcher.as_mut().and_then(|d| d.next_due(now)) {
            tally.due();
            match self.pop_idle() {
                Some(i) => {
                    tally.lag(due, now);
                    self.slots[i].client.assign(due);
                    self.slots[i].io = Io::Free;
                    self.advance(i, None, now, tally)?;
                }
                None => {
                    if let Some(d) = self.dispatcher.as_mut() {
                        d.busy(due, tally);
                    }
                }
            }
        }
        let ended = match self.dispatcher.as_mut() {
            Some(d) if now >= d.end => {
                d.ended = true;
                true
            }
            _ => false,
        };
        if ended {
            while let Some(i) = self.pop_idle() {
                self.slots[i].io = Io::Free;
                self.advance(i, None, now, tally)?;
            }
        }
        Ok(())
    }

    /// An idle connection, if there is one.
    fn pop_idle(&mut self) -> Option<usize> {
        while let Some(i) = self.idle.pop_front() {
            if self.slots[i].io == Io::Idle {
                return Some(i);
            }
        }
        None
    }
}

/// A connecting socket became writable: did the handshake complete?
fn connected(slot: &mut Slot, plan: &Plan) -> Option<Event> {
    let stream = slot.stream.as_ref()?;
    let failed = |e: &io::Error| Some(Event::Failed(Failure::from_connect(e, plan.addr)));
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => return failed(&e),
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => Some(Event::Connected),
        // Not yet: a spurious wake-up.
        Err(e) if e.kind() == ErrorKind::NotConnected => {
            slot.writable = false;
            None
        }
        Err(e) => failed(&e),
    }
}

/// Writes what the socket takes of the request; moves on to receiving once all is sent.
fn write(slot: &mut Slot) -> Result<(), Failure> {
    let Some(stream) = slot.stream.as_mut() else {
        return Err(Failure::new(Outcome::Reset, "no connection to send on"));
    };
    while !slot.unsent.is_empty() {
        match stream.write(&slot.unsent) {
            Ok(0) => {
                return Err(Failure::new(
                    Outcome::Reset,
                    "the connection took no more bytes",
                ))
            }
            Ok(n) => {
                slot.unsent.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                slot.writable = false;
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::from_io(&e, "sending the request")),
        }
    }
    slot.io = Io::Receiving;
    Ok(())
}

/// Once the request is sent: the response, if what the reader holds already completes it
/// (the server answered early, or sent two answers at once), else whatever the socket has.
fn receive(slot: &mut Slot, buf: &mut [u8], now: Instant) -> Option<Event> {
    if slot.reader.has_pending() {
        slot.first_byte.get_or_insert(now);
        match slot.reader.poll() {
            Ok(Some(response)) => return Some(replied(slot, response, now)),
            Ok(None) => {}
            Err(failure) => return Some(Event::Failed(failure)),
        }
    }
    if slot.readable {
        read(slot, buf, now)
    } else {
        None
    }
}

/// Reads what the socket has into the response reader; returns the step's end if the
/// response is complete (or the connection failed).
fn read(slot: &mut Slot, buf: &mut [u8], now: Instant) -> Option<Event> {
    loop {
        let stream = slot.stream.as_mut()?;
        match stream.read(buf) {
            Ok(0) => {
                slot.readable = false;
                return Some(match slot.reader.closed() {
                    Ok(response) => replied(slot, response, now),
                    Err(failure) => Event::Failed(failure),
                });
            }
            Ok(n) => {
                slot.first_byte.get_or_insert(now);
                if n < buf.len() && !slot.peer_closed {
                    // A short read drained the socket: the next data brings a new event.
                    slot.readable = false;
                }
                match slot.reader.feed(&buf[..n]) {
                    Ok(Some(response)) => return Some(replied(slot, response, now)),
                    Ok(None) if !slot.readable => return None,
                    Ok(None) => {}
                    Err(failure) => return Some(Event::Failed(failure)),
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                slot.readable = false;
                return None;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Some(Event::Failed(Failure::from_io(&e, "reading the response"))),
        }
    }
}

/// The client's event for a complete response. A server that closed its side after the
/// response (without saying so) cannot take another request either.
fn replied(slot: &Slot, response: crate::http::Response, now: Instant) -> Event {
    Event::Replied(Reply {
        status: response.status,
        first_byte: slot.first_byte.unwrap_or(now),
        server_thread: response.server_thread,
        close: response.close || slot.peer_closed,
    })
}

/// Reads and discards what arrives on an idle connection; returns whether the server
/// closed it.
fn drain(slot: &mut Slot, buf: &mut [u8]) -> bool {
    let Some(stream) = slot.stream.as_mut() else {
        slot.readable = false;
        return false;
    };
    loop {
        match stream.read(buf) {
            Ok(0) => return true,
            Ok(n) if n < buf.len() && !slot.peer_closed => {
                slot.readable = false;
                return false;
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                slot.readable = false;
                return false;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// The open-loop schedule of one engine thread: when its requests are due, and the queue
/// of those waiting for a connection.
///
/// Each thread carries its own share of the run's `N` connections (connection `c`, from 0,
/// belongs to thread `c mod T`; in a shard, among the shard's connections), so it carries
/// the same share of the rate. With constant arrivals the run's schedule is one sequence,
/// request `i` due at `i/R`, and request `i` goes to the thread that owns connection
/// `i mod N`: a thread takes the requests whose `i mod N` is one of its connections, so the
/// threads of every shard together send exactly the one-process schedule. With Poisson
/// arrivals each thread draws its own process at its share of the rate, `R × n_t / N` (the
/// sum of independent Poisson processes is a Poisson process of the summed rate), seeded by
/// its first connection, so that no two threads in any shard draw the same process.
struct Dispatcher {
    start: Instant,
    end: Instant,
    timeout: Duration,
    arrivals: Arrivals,
    when_busy: WhenBusy,
    /// The whole run's rate.
    rate: f64,
    /// The run's connections, and this thread's: the residues `i mod N` it takes.
    connections: u64,
    mine: Vec<u64>,
    /// How many requests this thread has scheduled so far.
    scheduled: u64,
    /// The run's end has been handled: the idle connections were let go.
    ended: bool,
    /// When the next request is due (at or after `end`: none).
    next: Instant,
    rng: SmallRng,
    /// Requests due but waiting for a free connection (`--when-busy queue`), oldest
    /// first, by when they were due. Unbounded in count, but bounded in time: a request
    /// leaves it when its deadline passes.
    queue: VecDeque<Instant>,
}

impl Dispatcher {
    fn new(
        open: OpenLoop,
        start: Instant,
        timeout: Duration,
        mine: Vec<u64>,
        connections: usize,
    ) -> Self {
        let connections = connections.max(1) as u64;
        let first = mine.first().copied().unwrap_or(0);
        let mut d = Dispatcher {
            start,
            end: start + open.duration,
            timeout,
            arrivals: open.arrivals,
            when_busy: open.when_busy,
            rate: open.rate.max(1e-9),
            connections,
            mine,
            scheduled: 0,
            ended: false,
            next: start,
            rng: SmallRng::seed_from_u64(open.seed.wrapping_add(first)),
            queue: VecDeque::new(),
        };
        d.next = match d.arrivals {
            Arrivals::Constant => d.constant_due(0),
            Arrivals::Poisson => start + d.gap(),
        };
        d
    }

    /// Constant arrivals: when this thread's `k`-th request is due.
    fn constant_due(&self, k: u64) -> Instant {
        let share = self.mine.len().max(1) as u64;
        let i = (k / share) * self.connections
            + self.mine.get((k % share) as usize).copied().unwrap_or(0);
        self.start + secs(i as f64 / self.rate)
    }

    /// Poisson arrivals: an exponential gap of mean `N / (R × n_t)`.
    fn gap(&mut self) -> Duration {
        let u: f64 = self.rng.random();
        let share = self.rate * self.mine.len() as f64 / self.connections as f64;
        secs(-(1.0 - u).ln() / share.max(1e-9))
    }

    /// The next request due by `now`, if any (none at or after the end).
    fn next_due(&mut self, now: Instant) -> Option<Instant> {
        if self.next > now || self.next >= self.end {
            return None;
        }
        let due = self.next;
        self.scheduled += 1;
        self.next = match self.arrivals {
            Arrivals::Constant => self.constant_due(self.scheduled),
            Arrivals::Poisson => due + self.gap(),
        };
        Some(due)
    }

    /// When a queued request due at `due` gives up: its deadline, unless the run ends
    /// first (it is then unfinished, not late).
    fn gives_up(&self, due: Instant) -> Option<Instant> {
        let deadline = due + self.timeout;
        (deadline < self.end).then_some(deadline)
    }

    /// The next moment the dispatcher needs the loop awake: the next due request, a
    /// queued request's deadline, or the end of the run.
    fn next_moment(&self) -> Option<Instant> {
        let due = (self.next < self.end).then_some(self.next);
        let queued = self.queue.front().and_then(|due| self.gives_up(*due));
        let end = (!self.ended).then_some(self.end);
        [due, queued, end].into_iter().flatten().min()
    }

    /// A request due at `due` found every connection busy.
    fn busy(&mut self, due: Instant, tally: &mut Tally) {
        match self.when_busy {
            WhenBusy::Queue => {
                tally.queued();
                self.queue.push_back(due);
            }
            WhenBusy::Drop => tally.dropped(due),
        }
    }

    /// Queued requests whose deadline has passed give up: counted over the deadline,
    /// never sent.
    fn expire_queued(&mut self, now: Instant, tally: &mut Tally) {
        while let Some(&due) = self.queue.front() {
            match self.gives_up(due) {
                Some(deadline) if deadline <= now => {
                    self.queue.pop_front();
                    tally.failed(Outcome::ServiceTimeout, due, None, now);
                }
                _ => break,
            }
        }
    }

    /// The oldest queued request that can still meet its deadline.
    fn take_queued(&mut self, now: Instant, tally: &mut Tally) -> Option<Instant> {
        self.expire_queued(now, tally);
        self.queue.pop_front()
    }
}

/// A one-shot timer with microsecond resolution (a Linux `timerfd`), registered with the
/// thread's poll. `poll`'s own timeout is counted in milliseconds, which would send
/// open-loop requests up to a millisecond late; the alarm wakes it when the next request is
/// due.
struct Alarm {
    fd: std::os::fd::OwnedFd,
}

impl Alarm {
    fn new(registry: &mio::Registry) -> io::Result<Alarm> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: timerfd_create returns a new descriptor that we own from here on (or -1).
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a valid descriptor nobody else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        registry.register(
            &mut mio::unix::SourceFd(&fd.as_raw_fd()),
            ALARM,
            Interest::READABLE,
        )?;
        Ok(Alarm { fd })
    }

    /// Rings once, `after` from now (at once if zero).
    fn set(&mut self, after: Duration) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // A zero it_value would disarm the timer; the smallest wait is a nanosecond.
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the descriptor is ours and open; `spec` is a valid itimerspec, and the
        // old value is not asked for.
        let done =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if done < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads the expiry count, so that the next expiry raises a new edge.
    fn acknowledge(&mut self) {
        use std::os::fd::AsRawFd;
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into our buffer from our descriptor (non-blocking).
        unsafe {
            libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len());
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}
