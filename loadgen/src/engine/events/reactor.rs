//! One engine thread's loop: its clients' sockets, their timers, and what each socket is
//! ready for. See the parent module for the loop as a whole.
//!
//! Each client lives in a [`Slot`] with its socket, and the slot's [`Io`] says which step
//! the socket is in. The client ([`Client`]) decides the steps; the reactor only carries
//! them out without blocking and tells the client how each ended:
//!
//! ```text
//!            Step::Connect              writable + no error
//!   Free ─────────────────▶ Connecting ───────────────────────▶ (Connected) ─▶ Free
//!    │  Step::Exchange                  all bytes written            response complete
//!    ├──────────────────▶ Sending ───────────────────▶ Receiving ───────────▶ (Replied) ─▶ Free
//!    │  Step::Hold                       its deadline
//!    ├──────────────────▶ Holding ─────────────────────────────────────────▶ (Held) ─▶ Free
//!    │  Step::Idle (open loop)           the dispatcher hands over a request
//!    ├──────────────────▶ Idle ────────────────────────────────────────────▶ Free
//!    │  Step::Done
//!    └──────────────────▶ Done
//!   any step past its deadline, or a socket error: (Failed) ─▶ Free, socket closed
//!   a connect that failed at once: Backoff until CONNECT_RETRY has passed, then Free
//! ```
//!
//! With an emulated path (`--rtt`, `--bandwidth`, see [`crate::link`]) three states are
//! added, each waiting on the slot's link timer rather than on the socket: `Dialing` (the
//! handshake's round trip, before the real connect), `Departing` (the request on its way,
//! before it is written) and `Arriving` (the answer read from the socket, before the
//! client is told). The step's own deadline still runs on the client's clock, so an answer
//! that would arrive after it is a timeout, as it would be for a real distant client.
//!
//! Readiness is edge-triggered: the poll reports a socket once when it becomes readable or
//! writable, not again until a call has drained it. So the slot remembers (`readable`,
//! `writable`) what it was told until a call says it would block, and a step that starts
//! later (a request written after a hold) still finds the readiness it needs.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::alarm::Alarm;
use super::dispatcher::Dispatcher;
use super::{ALARM, READ_BUFFER, WAKE};
use crate::client::{Client, Event, Plan, Step};
use crate::engine::{Abort, CONNECT_RETRY};
use crate::http::{Reply, ResponseReader};
use crate::link::Link;
use crate::outcome::{Failure, Outcome};
use crate::tally::Tally;
use crate::Error;

/// What a slot's socket is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Io {
    /// No step in progress on the socket (between steps, or no socket).
    Free,
    /// A non-blocking connect is in progress: the socket becomes writable when the
    /// handshake has completed or failed.
    Connecting,
    /// Writing the request; the rest is in `unsent`.
    Sending,
    /// Reading the response.
    Receiving,
    /// Holding the connection idle until the deadline.
    Holding,
    /// Emulated path: the handshake's round trip; the real connect is made at `link_at`.
    Dialing,
    /// Emulated path: the request is on its way; it is written at `link_at`.
    Departing,
    /// Emulated path: the answer (or failure) is in `arriving`, told at `link_at`.
    Arriving,
    /// Open loop: waiting for the dispatcher.
    Idle,
    /// A connect failed at once; the client tries again when the deadline passes, not in
    /// a tight loop.
    Backoff,
    /// The client has finished; its socket is closed and no timer or event concerns it.
    Done,
}

/// One client and its socket. A slot's index is its token in the poll, so an event leads
/// straight to its slot.
struct Slot {
    /// The client's state machine: what to do next, and its record.
    client: Client,
    /// The socket, registered once for reading and writing; `None` between connections.
    stream: Option<TcpStream>,
    io: Io,
    /// The response being read. It keeps nothing between responses but bytes that arrived
    /// after the last one.
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
    /// Emulated path: half this client's round trip (zero on plain loopback).
    one_way: std::time::Duration,
    /// Emulated path: when the link next hands something over (see [`Io::Dialing`],
    /// [`Io::Departing`], [`Io::Arriving`]), with its entry in the reactor's link timers.
    link_at: Option<Instant>,
    /// Emulated path: the step's end as the socket gave it, not yet told to the client.
    arriving: Option<Event>,
    /// Bytes of the response in progress read so far.
    received: usize,
}

impl Slot {
    fn new(client: Client, link: &Link) -> Slot {
        let one_way = link.rtt_of(client.record.id) / 2;
        Slot {
            one_way,
            link_at: None,
            arriving: None,
            received: 0,
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

/// One engine thread's state. Nothing here is shared: the thread owns its clients, their
/// sockets and its timers, so the loop takes no lock.
pub(super) struct Reactor<'p> {
    plan: &'p Plan,
    /// The thread's clients, by token.
    slots: Vec<Slot>,
    /// Clients not yet done: the loop ends when this reaches 0.
    live: usize,
    /// The thread's epoll instance, with every slot's socket, the coordinator's waker and
    /// the open loop's alarm registered.
    poll: Poll,
    /// Pending moments, nearest first: (when, slot). At most one live entry per slot (see
    /// [`Reactor::set_deadline`]), plus stale ones that are skipped when they come up, so
    /// the heap stays about the size of the thread's clients.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// The thread's read buffer: every read lands here and goes straight to a response
    /// reader, which keeps nothing of a complete response.
    buf: Box<[u8]>,
    /// Open loop: the schedule of requests and the queue of those waiting for a
    /// connection.
    dispatcher: Option<Dispatcher>,
    /// Open loop: slots whose connection waits for a request, longest-waiting first, so
    /// that requests go round the pool as wrk2 spreads them, rather than to the same few
    /// connections. A slot enters when it goes idle and leaves when it is handed a request,
    /// so the line never holds more than the thread's connections; an entry whose slot is
    /// no longer idle is skipped ([`Reactor::pop_idle`]).
    idle: VecDeque<usize>,
    /// Open loop: a timer with microsecond resolution for the next due request (`poll`
    /// alone wakes only to the millisecond).
    alarm: Option<Alarm>,
    /// The emulated path of every client (`Link::default()`: plain loopback).
    link: Link,
    /// Emulated path: the moments the link hands something over, nearest first. Like
    /// `timers`, at most one live entry per slot (the one equal to its `link_at`); others
    /// are stale and skipped.
    link_timers: BinaryHeap<Reverse<(Instant, usize)>>,
}

/// A failure the run cannot go on after: the simulator's own, not the server's.
type Fatal = Error;

/// What starting a client's next step did ([`Reactor::begin`]).
enum Began {
    /// It waits for something (a socket, a timer): the turn of this client is over.
    Waits,
    /// It ended at once with `event` for the client; `retry`: a connect that failed at
    /// once, to be tried again only after a pause.
    Ended { event: Event, retry: bool },
    /// The client is done.
    Done,
}

impl<'p> Reactor<'p> {
    /// The loop of one engine thread, for `clients`, waiting on `poll`. Open loops pass the
    /// thread's share of the schedule.
    pub(super) fn new(
        plan: &'p Plan,
        clients: Vec<Client>,
        poll: Poll,
        dispatcher: Option<Dispatcher>,
    ) -> Result<Reactor<'p>, Error> {
        let alarm = match dispatcher {
            Some(_) => Some(Alarm::new(poll.registry()).map_err(|source| Error::RanOut {
                doing: "the engine could not create its timer",
                source,
            })?),
            None => None,
        };
        let link = plan.scenario.link;
        Ok(Reactor {
            plan,
            live: clients.len(),
            slots: clients.into_iter().map(|c| Slot::new(c, &link)).collect(),
            link,
            link_timers: BinaryHeap::new(),
            poll,
            timers: BinaryHeap::new(),
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            alarm,
            dispatcher,
            idle: VecDeque::new(),
        })
    }

    /// The clients' records, once the loop has run.
    pub(super) fn into_records(self) -> Vec<crate::record::ClientRecord> {
        self.slots.into_iter().map(|s| s.client.record).collect()
    }

    /// Runs the loop until every client is done (or the run is aborted).
    ///
    /// Each turn: sleep in the poll until the next thing that can happen (a socket event,
    /// the nearest deadline, the next due request, the next second of the time series, or
    /// the coordinator's waker); carry out what the ready sockets allow; fire the timers
    /// that have passed; hand out the requests now due; move the time series on.
    pub(super) fn run(&mut self, tally: &mut Tally, abort: &Abort) -> Result<(), Fatal> {
        // Up to 1024 readiness events per wake-up. When more sockets are ready, the kernel
        // keeps the rest on its ready list and the next poll returns them: nothing is lost,
        // only served a turn later.
        let mut events = Events::with_capacity(1024);
        // Every client's first step: usually a non-blocking connect, all of them at once.
        for i in 0..self.slots.len() {
            self.advance(i, None, Instant::now(), tally)?;
        }
        while self.live > 0 {
            let timeout = self.arm(tally)?;
            // Sleeps until a socket is ready, the nearest timer or due request (mio rounds
            // the timeout up to a millisecond), or the coordinator's waker.
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                // A signal interrupted the wait: wait again.
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::RanOut {
                    doing: "the engine's poll failed",
                    source: e,
                });
            }
            // Another thread ran out of something: stop at once, the run is over.
            if abort.is_raised() {
                return Ok(());
            }
            // A live view's `q`: every client ends now, as at the run's end.
            if tally.stop_requested() {
                self.stop_all(Instant::now(), tally);
                break;
            }
            for event in events.iter() {
                self.on_event(event, tally)?;
            }
            let now = Instant::now();
            self.expire(now, tally)?;
            self.hand_over(now, tally)?;
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

    /// Ends every client still running at `now` ([`Client::stop`]) and closes its
    /// connection: the run was stopped from the live view.
    fn stop_all(&mut self, now: Instant, tally: &mut Tally) {
        for slot in self.slots.iter_mut().filter(|s| s.io != Io::Done) {
            slot.client.stop(self.plan, now, tally);
            slot.close();
            slot.io = Io::Done;
            slot.deadline = None;
        }
        self.live = 0;
    }

    /// How long the next poll may sleep: until the nearest timer, due request or second of
    /// the time series (`None`: until a socket event). In an open loop, also sets the alarm
    /// that wakes the poll at that moment to the microsecond.
    fn arm(&mut self, tally: &Tally) -> Result<Option<std::time::Duration>, Fatal> {
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
                .map_err(|source| Error::RanOut {
                    doing: "the engine could not set its timer",
                    source,
                })?;
        }
        Ok(timeout)
    }

    /// One readiness event: the waker (nothing to do but look at the abort flag), the
    /// alarm (acknowledged; the loop's turn does the rest), or a slot's socket, whose
    /// readiness is remembered and acted on.
    fn on_event(&mut self, event: &mio::event::Event, tally: &mut Tally) -> Result<(), Fatal> {
        if event.token() == WAKE {
            return Ok(());
        }
        if event.token() == ALARM {
            if let Some(alarm) = self.alarm.as_mut() {
                alarm.acknowledge();
            }
            return Ok(());
        }
        // The clock is read for every event: handling a thousand events takes a while, and
        // each response's time must be its own.
        let now = Instant::now();
        let i = event.token().0;
        let Some(slot) = self.slots.get_mut(i) else {
            return Ok(());
        };
        // An error or a close is reported as readable too: the next read says which.
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
        let happened = self.hold_back(i, happened, now);
        self.advance(i, happened, now, tally)
    }

    /// The nearest moment the loop must wake for without a socket event.
    fn next_moment(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        let link = self.link_timers.peek().map(|Reverse((at, _))| *at);
        let due = self.dispatcher.as_ref().and_then(Dispatcher::next_moment);
        [timer, link, due].into_iter().flatten().min()
    }

    /// Sets slot `i`'s deadline, pushing a timer unless an earlier one is already in the
    /// heap.
    ///
    /// A deadline that moves later (the next step's) keeps the earlier entry: when it
    /// fires, [`Reactor::expire`] finds the real deadline and pushes it then. So a slot
    /// never has more than one live entry however often its deadline changes, as the
    /// event-loop server's timers do.
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
            // Nothing is expected on a connection between requests: what arrives is read
            // and dropped, and a close means the next request needs a new connection.
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
        happened: Option<Event>,
        now: Instant,
        tally: &mut Tally,
    ) -> Result<(), Fatal> {
        self.advance_from(i, happened, false, now, tally)
    }

    /// [`Reactor::advance`], told whether `happened` is a connect that failed at once
    /// (`retry_later`): the client then tries again only after a pause.
    fn advance_from(
        &mut self,
        i: usize,
        mut happened: Option<Event>,
        mut retry_later: bool,
        now: Instant,
        tally: &mut Tally,
    ) -> Result<(), Fatal> {
        let plan = self.plan;
        // Steps that end at once (a connect refused, an answer already in the reader) are
        // reported to the client and followed by its next step in the same turn; the loop
        // ends when a step has to wait.
        loop {
            if let Some(event) = happened.take() {
                let slot = &mut self.slots[i];
                if matches!(event, Event::Failed(_)) {
                    slot.close();
                }
                slot.io = Io::Free;
                // The step is over: its timer entries, if still in the heaps, are stale.
                slot.deadline = None;
                slot.link_at = None;
                slot.arriving = None;
                slot.client.on(plan, event, now, tally);
                if retry_later && !slot.client.is_done() {
                    slot.io = Io::Backoff;
                    self.set_deadline(i, now + CONNECT_RETRY);
                    return Ok(());
                }
            } else if self.slots[i].io != Io::Free {
                // The step in progress goes on.
                return Ok(());
            }
            // The client's next step: it either starts something the loop waits for, or
            // ends at once with an event for the client, or the client is done.
            happened = match self.begin(i, now, tally)? {
                Began::Waits => None,
                Began::Ended { event, retry } => {
                    retry_later = retry;
                    Some(event)
                }
                Began::Done => return Ok(()),
            };
        }
    }

    /// Asks slot `i`'s client for its next step and starts it: a connect (after the
    /// handshake's round trip when the clients are far), an exchange (its request leaving
    /// over the link when far), a hold, a time away, an idle wait, or the end.
    fn begin(&mut self, i: usize, now: Instant, tally: &mut Tally) -> Result<Began, Fatal> {
        let plan = self.plan;
        let ended = |event: Option<Event>, retry: bool| match event {
            Some(event) => Began::Ended { event, retry },
            None => Began::Waits,
        };
        Ok(match self.slots[i].client.next(plan, now, tally) {
            Step::Connect { deadline } if self.link.is_active() => {
                // The handshake's round trip first; the real connect comes after it.
                self.slots[i].close();
                self.slots[i].io = Io::Dialing;
                self.set_deadline(i, deadline);
                let back = now + self.slots[i].one_way * 2;
                self.set_link(i, back);
                Began::Waits
            }
            Step::Connect { deadline } => {
                // A connect that fails at once is tried again only after a pause.
                let failed = self.connect(i, deadline)?;
                ended(failed, true)
            }
            Step::Exchange {
                deadline,
                want_thread,
            } if self.link.is_active() => {
                self.prepare(i, deadline, want_thread);
                let slot = &mut self.slots[i];
                slot.io = Io::Departing;
                let arrives = now + slot.one_way + self.link.transfer(slot.unsent.len());
                self.set_link(i, arrives);
                Began::Waits
            }
            Step::Exchange {
                deadline,
                want_thread,
            } => ended(self.exchange(i, deadline, want_thread, now), false),
            Step::Hold { until } => {
                self.slots[i].io = Io::Holding;
                self.set_deadline(i, until);
                Began::Waits
            }
            Step::Leave { until } => {
                // Away from the server: no socket, only the timer of the return.
                self.slots[i].close();
                self.slots[i].io = Io::Holding;
                self.set_deadline(i, until);
                Began::Waits
            }
            Step::Idle => {
                self.idle(i, now, tally);
                Began::Waits
            }
            Step::Done => {
                let slot = &mut self.slots[i];
                slot.close();
                slot.io = Io::Done;
                slot.deadline = None;
                self.live -= 1;
                Began::Done
            }
        })
    }

    /// Starts a non-blocking connect for slot `i`, to give up at `deadline`. Returns the
    /// failure if it failed at once; an error if the simulator itself ran out of something.
    fn connect(&mut self, i: usize, deadline: Instant) -> Result<Option<Event>, Fatal> {
        let plan = self.plan;
        let slot = &mut self.slots[i];
        slot.close();
        // Returns at once: the handshake goes on in the kernel, and the socket becomes
        // writable when it is done (or has failed).
        let mut stream = match TcpStream::connect(plan.addr) {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors or local ports is the simulator's failure, not the
                // server's: it stops the run. Anything else is the client's failure.
                let mut failure = Failure::from_connect(&e, plan.addr);
                return match failure.fatal.take() {
                    Some(fatal) => Err(fatal),
                    None => Ok(Some(Event::Failed(failure))),
                };
            }
        };
        // Small requests must leave at once, not wait for Nagle.
        let _ = stream.set_nodelay(true);
        // Registered once, for both directions, for the connection's whole life: no
        // re-registration between steps.
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|source| Error::RanOut {
                doing: "the engine could not watch another socket",
                source,
            })?;
        slot.stream = Some(stream);
        slot.io = Io::Connecting;
        self.set_deadline(i, deadline);
        Ok(None)
    }

    /// Sends slot `i`'s request and reads what has already arrived of the response, to
    /// give up at `deadline`. Returns the step's end if it ended at once.
    fn exchange(
        &mut self,
        i: usize,
        deadline: Instant,
        want_thread: bool,
        now: Instant,
    ) -> Option<Event> {
        self.prepare(i, deadline, want_thread);
        let slot = &mut self.slots[i];
        slot.io = Io::Sending;
        // Writes at once if the socket is known writable (a kept-alive connection usually
        // is), and reads whatever of the answer is there already.
        match write(slot) {
            Err(failure) => Some(Event::Failed(failure)),
            Ok(()) if slot.io == Io::Receiving => receive(slot, &mut self.buf, now),
            Ok(()) => None,
        }
    }

    /// Readies slot `i` for an exchange that gives up at `deadline`: the request to send, a
    /// reader expecting its answer.
    fn prepare(&mut self, i: usize, deadline: Instant, want_thread: bool) {
        let plan = self.plan;
        let slot = &mut self.slots[i];
        slot.reader
            .expect(plan.scenario.request.is_head(), want_thread);
        slot.first_byte = None;
        slot.received = 0;
        slot.unsent.clear();
        slot.unsent.extend_from_slice(slot.client.request(plan));
        self.set_deadline(i, deadline);
    }

    /// Emulated path: sets the moment slot `i`'s link hands something over.
    fn set_link(&mut self, i: usize, at: Instant) {
        self.slots[i].link_at = Some(at);
        self.link_timers.push(Reverse((at, i)));
    }

    /// Emulated path: an exchange's end that the socket gave (the answer, or a failure of
    /// the connection) reaches the client only after the answer's trip back, so it is held
    /// in the slot until then. Anything else, and everything on plain loopback, passes.
    fn hold_back(&mut self, i: usize, happened: Option<Event>, now: Instant) -> Option<Event> {
        let slot = &mut self.slots[i];
        let exchanging = matches!(slot.io, Io::Sending | Io::Receiving);
        if !exchanging || !self.link.is_active() {
            return happened;
        }
        let mut event = happened?;
        if let Event::Replied(reply) = &mut event {
            reply.first_byte += slot.one_way;
        }
        let arrives = now + slot.one_way + self.link.transfer(slot.received);
        slot.arriving = Some(event);
        slot.io = Io::Arriving;
        self.set_link(i, arrives);
        None
    }

    /// Emulated path: does what the link hands over now: the real connect after the
    /// handshake's round trip, the request's write once it has reached the server, the
    /// answer to the client once it has come back.
    fn hand_over(&mut self, now: Instant, tally: &mut Tally) -> Result<(), Fatal> {
        while let Some(&Reverse((at, i))) = self.link_timers.peek() {
            if at > now {
                break;
            }
            self.link_timers.pop();
            let slot = &mut self.slots[i];
            if slot.link_at != Some(at) {
                continue;
            }
            slot.link_at = None;
            match slot.io {
                Io::Dialing => {
                    let deadline = slot.deadline.unwrap_or(now);
                    let failed = self.connect(i, deadline)?;
                    let retry_later = failed.is_some();
                    self.advance_from(i, failed, retry_later, now, tally)?;
                }
                Io::Departing => {
                    slot.io = Io::Sending;
                    let happened = match write(slot) {
                        Err(failure) => Some(Event::Failed(failure)),
                        Ok(()) if slot.io == Io::Receiving => receive(slot, &mut self.buf, now),
                        Ok(()) => None,
                    };
                    let happened = self.hold_back(i, happened, now);
                    self.advance(i, happened, now, tally)?;
                }
                Io::Arriving => {
                    let happened = slot.arriving.take();
                    self.advance(i, happened, now, tally)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Open loop: slot `i`'s connection is free. It takes the oldest queued request, or
    /// waits in the idle line for the dispatcher.
    fn idle(&mut self, i: usize, now: Instant, tally: &mut Tally) {
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

    /// Fires every timer that has passed: a step's deadline becomes a failure (not
    /// connected, no answer), a hold's end becomes [`Event::Held`], a backoff's end frees
    /// the slot for its next connect.
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
                        Io::Connecting | Io::Dialing => {
                            Some(Event::Failed(Failure::not_connected()))
                        }
                        Io::Sending | Io::Receiving | Io::Departing | Io::Arriving => {
                            Some(Event::Failed(Failure::no_answer()))
                        }
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
    ///
    /// A request handed to an idle connection is sent in this same turn, so the engine's
    /// own lateness is the time from its due moment to this turn: the lag histogram
    /// records it. One that finds no idle connection waits in the dispatcher's queue with
    /// its due moment, and its wait counts in its corrected latency.
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

/// A connecting socket became writable: did the handshake complete? A failed handshake
/// leaves its error on the socket (`SO_ERROR`); a socket with no peer address yet was
/// woken before the handshake finished.
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
/// A socket whose send buffer is full says it would block: the rest waits in `unsent` for
/// the next writable edge.
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
///
/// Every read lands in the thread's one buffer and is handed to the reader at once, which
/// keeps only an incomplete head: ten thousand clients reading at once cost one buffer.
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
                slot.received += n;
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
        size: slot.received,
    })
}

/// Reads and discards what arrives on an idle connection; returns whether the server
/// closed it (its keep-alive timeout, usually) or broke it.
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
