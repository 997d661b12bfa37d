//! One simulated client, as a state machine that does no I/O.
//!
//! A [`Client`] decides *what* to do next ([`Step`]: connect, send the request and read
//! the response, hold the connection, wait for work, stop) and is told what happened
//! ([`Event`]: connected, a reply, a failure, the hold is over). It never touches a socket
//! or sleeps; an engine does that and reports back. So both engines run exactly the same
//! client: the thread-per-client engine with blocking calls, the event-driven engine with
//! non-blocking sockets and a timer heap (see [`crate::engine`]). The rules of time (whose
//! clock a deadline runs on, what counts as late) are decided here, once.
//!
//! A client is one of three kinds:
//!
//! * **the lecture's client** (`--requests K`): connect, be served `K` times, hold the
//!   connection for `--hold`, leave. Each step is bounded by the deadline of the
//!   scenario's clock: with `from-start` one deadline, `T` after the common start, bounds
//!   everything; with `per-call` each step gets a fresh `T` from its own beginning, as the
//!   lecture's `settimeout(T)` does;
//! * **a closed-loop client** (`--duration`): requests back to back on a keep-alive
//!   connection until the run ends, each with its own deadline, reconnecting when the
//!   server closes;
//! * **an open-loop connection** (`--rate`): one of the pool that carries a schedule of
//!   requests. It sends whatever the engine's dispatcher hands it, each request's deadline
//!   counted from the moment it was due.
//!
//! Whatever the kind, a load run ends on time: no step's deadline lies beyond the run's
//! end, and a request still in flight then is counted as unfinished, not as a failure.
//!
//! The exchange between an engine and a client is always the same two calls:
//!
//! ```text
//! loop:
//!     step = client.next(now)         -- Connect, Exchange, Hold, Idle or Done
//!     the engine does the step         -- a blocking call, or a non-blocking socket and a timer
//!     client.on(event, now)            -- Connected, Replied, Failed or Held
//! ```
//!
//! `next` records which step is in progress (`Doing`) with the moment its deadline
//! counts from; `on` judges what happened against that moment, so a late answer is late
//! by the client's clock, not by when the engine got round to reporting it.

use std::net::SocketAddr;
use std::time::Instant;

use crate::http::Reply;
use crate::outcome::{in_time, Failure, Outcome};
use crate::record::ClientRecord;
use crate::scenario::{DeadlineClock, Load, Scenario};
use crate::tally::{ClientState, Tally};
use crate::units::micros;

/// The fixed inputs of every client of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    /// The Host header.
    pub host: String,
    pub scenario: Scenario,
    /// The request's bytes, encoded once (a body that varies is encoded afresh by each
    /// client for each request).
    pub request: Vec<u8>,
    /// Each client is a thread named after it (`client-3`), so log lines need not say
    /// which client they are about.
    pub thread_per_client: bool,
    /// The server runs in this process and holds the other end of every connection here.
    pub in_process: bool,
}

impl Plan {
    pub fn new(addr: SocketAddr, host: &str, scenario: &Scenario) -> Plan {
        let mut request = Vec::with_capacity(256);
        scenario.request.encode(host, &mut request);
        Plan {
            addr,
            host: host.to_owned(),
            scenario: scenario.clone(),
            request,
            thread_per_client: false,
            in_process: false,
        }
    }

    fn limit_us(&self) -> u64 {
        micros(self.scenario.timeout)
    }
}

/// What the engine should do next for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Open a new connection (closing the old one, if any), giving up at `deadline`.
    Connect { deadline: Instant },
    /// Send [`Client::request`] on the connection and read one response, giving up at
    /// `deadline`. `want_thread`: record the server thread that answers.
    Exchange {
        deadline: Instant,
        want_thread: bool,
    },
    /// Keep the connection open and idle until `until`, then report [`Event::Held`].
    Hold { until: Instant },
    /// Close the connection (if any) and stay away until `until`, then report
    /// [`Event::Held`]: a closed loop's ramp has removed this client for a while.
    Leave { until: Instant },
    /// Open loop: nothing to send until the dispatcher hands over a request
    /// ([`Client::assign`]).
    Idle,
    /// The client is finished: close its connection.
    Done,
}

/// What happened to the step the engine was doing.
#[derive(Debug)]
pub enum Event {
    Connected,
    Replied(Reply),
    /// The step failed, or its deadline passed ([`Failure::not_connected`],
    /// [`Failure::no_answer`]).
    Failed(Failure),
    /// The hold is over.
    Held,
}

/// Which kind of client, and how far it has got.
#[derive(Debug)]
enum Kind {
    /// The lecture's client: `count` requests, then one hold.
    Scenario {
        count: u32,
        /// Responses received so far, in time or not.
        answered: u32,
        /// The hold has begun (it comes once, after the last answer).
        held: bool,
    },
    /// A closed-loop client: requests back to back until `end`.
    Closed {
        /// The run's end.
        end: Instant,
        /// The moment the request cycle in progress began (at its connect, when it needed
        /// one): its deadline counts from there.
        due: Option<Instant>,
    },
    /// An open-loop connection: the requests the dispatcher hands it, until `end`.
    Open {
        /// The run's end.
        end: Instant,
        /// The request handed over, by the moment it was due.
        assigned: Option<Instant>,
        /// The first, eager connect has been tried.
        warmed: bool,
        /// Requests this connection was handed.
        carried: u64,
    },
}

/// The step in progress.
///
/// `clock` is where the deadline of the request in progress starts counting, and so where
/// its corrected latency starts: the common start or the step's own beginning in a
/// scenario run (by `--deadline`), the moment the request cycle began in a closed loop,
/// the moment the request was due in an open loop. `deadline` is when the engine gives up.
#[derive(Debug, Clone, Copy)]
enum Doing {
    /// No step in progress: between steps, or finished.
    Nothing,
    Connecting {
        clock: Instant,
        deadline: Instant,
    },
    Exchanging {
        clock: Instant,
        /// When the request was written: the uncorrected latency counts from here.
        sent: Instant,
        deadline: Instant,
    },
    /// Holding the connection idle; the engine reports the hold's end.
    Holding,
    /// Away, without a connection, until a closed loop's ramp brings the client back.
    Away,
}

/// What [`Client::next`] decided, before it acts on it.
enum Next {
    /// Begin a request whose deadline counts from `clock` and ends at `deadline`
    /// (connecting first if needed); `first`: record the server thread that answers.
    Begin {
        clock: Instant,
        deadline: Instant,
        first: bool,
    },
    /// Hold the connection idle for the scenario's hold.
    Hold,
    /// Closed loop on a ramp: leave until `until`.
    Away { until: Instant },
    /// Open loop: connect eagerly, before any request needs the connection.
    Warm { deadline: Instant },
    /// Open loop: wait for the dispatcher.
    Idle,
    /// The client is done.
    Finish,
}

/// One client. See the module documentation.
#[derive(Debug)]
pub struct Client {
    /// What the ledger keeps of this client; the engine hands it back when the run ends.
    pub record: ClientRecord,
    /// The run's common start: the from-start clock and every recorded time count from it.
    start: Instant,
    kind: Kind,
    /// The engine holds an open connection for this client. Cleared by every failure and
    /// by a response that closes the connection, so the next request connects again.
    connected: bool,
    /// The step in progress, and the moment its deadline counts from.
    doing: Doing,
    /// The client has finished: every later `next` says [`Step::Done`].
    finished: bool,
    /// This request's bytes, when the body varies per request.
    own_request: Vec<u8>,
}

impl Client {
    /// Client `id` of `plan`, whose run started at `start`.
    pub fn new(id: usize, plan: &Plan, start: Instant) -> Client {
        let kind = match plan.scenario.load {
            Load::Requests(count) => Kind::Scenario {
                count,
                answered: 0,
                held: false,
            },
            Load::Duration(length) => Kind::Closed {
                end: start + length,
                due: None,
            },
            Load::Rate(open) => Kind::Open {
                end: start + open.duration,
                assigned: None,
                warmed: false,
                carried: 0,
            },
        };
        Client {
            record: ClientRecord::new(id),
            start,
            kind,
            connected: false,
            doing: Doing::Nothing,
            finished: false,
            own_request: Vec::new(),
        }
    }

    /// The request to send for the current [`Step::Exchange`].
    pub fn request<'a>(&'a self, plan: &'a Plan) -> &'a [u8] {
        if self.own_request.is_empty() {
            &plan.request
        } else {
            &self.own_request
        }
    }

    /// Whether the client has finished.
    pub fn is_done(&self) -> bool {
        self.finished
    }

    /// Open loop: hands over the request due at `due`. The next step sends it.
    pub fn assign(&mut self, due: Instant) {
        if let Kind::Open {
            assigned, carried, ..
        } = &mut self.kind
        {
            *assigned = Some(due);
            *carried += 1;
        }
    }

    /// The server closed the idle connection (an open-loop connection between requests,
    /// or a client holding its connection): the next request needs a new one.
    pub fn disconnected(&mut self) {
        self.connected = false;
    }

    /// What to do next, at `now`.
    pub fn next(&mut self, plan: &Plan, now: Instant, tally: &mut Tally) -> Step {
        if self.finished {
            return Step::Done;
        }
        if self.record.started_us.is_none() {
            self.record.started_us = Some(self.since_start(now));
        }
        // First what the kind says, then (with the kind no longer borrowed) the step.
        let next = self.decide(plan, now);
        let step = self.act(plan, now, next, tally);
        tally.show(self.record.id, self.state());
        step
    }

    /// What the client is doing, for a live view: the phase of the report's timeline it is
    /// in, or its outcome once finished.
    pub fn state(&self) -> ClientState {
        if self.finished {
            return ClientState::Ended(self.record.outcome);
        }
        // A scenario client whose first answer has begun is being answered until its last.
        let answering =
            matches!(self.kind, Kind::Scenario { .. }) && self.record.first_byte_us.is_some();
        match self.doing {
            Doing::Connecting { .. } => ClientState::Connecting,
            Doing::Exchanging { .. } if answering => ClientState::Answering,
            Doing::Exchanging { .. } => ClientState::Waiting,
            Doing::Holding => ClientState::Holding,
            // A closed-loop client the ramp has sent away is shown as one not yet started:
            // it has no connection and waits for the ramp to bring it back.
            Doing::Away => ClientState::NotStarted,
            Doing::Nothing if self.record.started_us.is_none() => ClientState::NotStarted,
            Doing::Nothing if matches!(self.kind, Kind::Open { .. }) => ClientState::Idle,
            Doing::Nothing if answering => ClientState::Answering,
            Doing::Nothing if self.connected => ClientState::Waiting,
            Doing::Nothing => ClientState::Connecting,
        }
    }

    /// The run was stopped at `now` (a live view's `q`): the client finishes as a load run's
    /// client does at the run's end. A request in flight is unfinished; a scenario client
    /// not yet served is starved (the run ended before its answer), one holding its
    /// connection was served.
    pub fn stop(&mut self, plan: &Plan, now: Instant, tally: &mut Tally) {
        if self.finished {
            return;
        }
        let doing = std::mem::replace(&mut self.doing, Doing::Nothing);
        if matches!(doing, Doing::Exchanging { .. }) {
            tally.unfinished();
        }
        if let Kind::Scenario {
            count, answered, ..
        } = self.kind
        {
            if answered < count {
                self.record.outcome = Outcome::Starved;
                self.record.error =
                    Some("the run was stopped before this client was answered".into());
            }
        }
        self.finish(plan, now);
        tally.show(self.record.id, self.state());
    }

    /// Decides, by the client's kind and how far it has got, what comes next at `now`,
    /// without acting on it yet.
    fn decide(&mut self, plan: &Plan, now: Instant) -> Next {
        let timeout = plan.scenario.timeout;
        let (id, start) = (self.record.id as f64, self.start);
        match &mut self.kind {
            // The lecture's client: its requests one after the other, then the hold once,
            // then done.
            Kind::Scenario {
                count,
                answered,
                held,
            } => {
                if *answered < *count {
                    let clock = match plan.scenario.deadline {
                        DeadlineClock::FromStart => self.start,
                        DeadlineClock::PerCall => now,
                    };
                    Next::Begin {
                        clock,
                        deadline: clock + timeout,
                        first: *answered == 0,
                    }
                } else if *held || plan.scenario.hold.is_zero() {
                    Next::Finish
                } else {
                    *held = true;
                    Next::Hold
                }
            }
            // A closed loop: the next request at once, until the run's end. A cycle that
            // had to connect first keeps the moment it began (`due`).
            // The deadline is the request's own or the run's end, whichever is earlier: a
            // request cut off by the end is unfinished, not late (see `load_failure`).
            Kind::Closed { end, due } => {
                // The ramp of clients (`--stages` with `--closed`), empty when steady.
                let ramp = &plan.scenario.clients_ramp;
                let since = now.saturating_duration_since(start);
                if now >= *end {
                    Next::Finish
                } else if !ramp.is_empty() && ramp.level_at(since) < id {
                    // The ramp is below this client: away until it comes back up to it.
                    *due = None;
                    match ramp.reaches(id, since).map(|at| start + at) {
                        Some(back) if back < *end => Next::Away { until: back },
                        _ => Next::Finish,
                    }
                } else {
                    let due = due.take().unwrap_or(now);
                    Next::Begin {
                        clock: due,
                        deadline: (due + timeout).min(*end),
                        first: self.record.served_requests == 0,
                    }
                }
            }
            // An open-loop connection: the request handed over, if any; else one eager
            // connect at the start, then idle until the dispatcher hands one over.
            Kind::Open {
                end,
                assigned,
                warmed,
                ..
            } => match *assigned {
                Some(due) => Next::Begin {
                    clock: due,
                    deadline: (due + timeout).min(*end),
                    first: false,
                },
                None if now >= *end => Next::Finish,
                None if !*warmed => {
                    *warmed = true;
                    Next::Warm {
                        deadline: (now + timeout).min(*end),
                    }
                }
                None => Next::Idle,
            },
        }
    }

    /// Acts on what [`Client::decide`] decided: records the step now in progress and tells
    /// the engine what to do.
    fn act(&mut self, plan: &Plan, now: Instant, next: Next, tally: &mut Tally) -> Step {
        match next {
            Next::Begin {
                clock,
                deadline,
                first,
            } => self.begin(plan, now, clock, deadline, first, tally),
            Next::Hold => {
                self.say(
                    plan,
                    format_args!(
                        "service available! keeping it busy for {} ...",
                        humantime::format_duration(plan.scenario.hold)
                    ),
                );
                self.doing = Doing::Holding;
                Step::Hold {
                    until: now + plan.scenario.hold,
                }
            }
            Next::Warm { deadline } => {
                // Open the pool's connections at the start, as wrk does, so that the first
                // requests do not pay for a handshake.
                self.doing = Doing::Connecting {
                    clock: now,
                    deadline,
                };
                Step::Connect { deadline }
            }
            Next::Away { until } => {
                self.connected = false;
                self.doing = Doing::Away;
                Step::Leave { until }
            }
            Next::Idle => Step::Idle,
            Next::Finish => {
                self.finish(plan, now);
                Step::Done
            }
        }
    }

    /// Starts the next exchange, connecting first if needed. The request's deadline counts
    /// from `clock` (see [`Doing`]), and the engine gives up at `deadline`.
    fn begin(
        &mut self,
        plan: &Plan,
        now: Instant,
        clock: Instant,
        deadline: Instant,
        want_thread: bool,
        tally: &mut Tally,
    ) -> Step {
        if !self.connected {
            self.say(plan, format_args!("trying to connect to {} ...", plan.addr));
            self.doing = Doing::Connecting { clock, deadline };
            return Step::Connect { deadline };
        }
        if plan.scenario.request.varies() {
            plan.scenario
                .request
                .encode(&plan.host, &mut self.own_request);
        }
        tally.sent(now);
        self.doing = Doing::Exchanging {
            clock,
            sent: now,
            deadline,
        };
        Step::Exchange {
            deadline,
            want_thread,
        }
    }

    /// Takes what happened to the step in progress, at `now`.
    pub fn on(&mut self, plan: &Plan, event: Event, now: Instant, tally: &mut Tally) {
        let doing = std::mem::replace(&mut self.doing, Doing::Nothing);
        // An open-loop connection connecting with no request handed over is warming up.
        let warming_up = matches!(self.kind, Kind::Open { assigned: None, .. });
        // Whatever ends an open-loop request (an answer, or a failure to connect for it or
        // to exchange it) frees the connection for the next one.
        if matches!(
            (&doing, &event),
            (
                Doing::Exchanging { .. },
                Event::Replied(_) | Event::Failed(_)
            ) | (Doing::Connecting { .. }, Event::Failed(_))
        ) {
            if let Kind::Open { assigned, .. } = &mut self.kind {
                *assigned = None;
            }
        }
        match (doing, event) {
            (Doing::Connecting { clock, .. }, Event::Connected) => {
                self.connected = true;
                self.record.connect_us.get_or_insert(self.since_start(now));
                self.on_connected(plan, clock, now);
            }
            (Doing::Connecting { clock, deadline }, Event::Failed(failure)) => {
                self.connected = false;
                if warming_up {
                    // The eager connect of an idle connection: no request was waiting for
                    // it. The next request tries again.
                    tracing::debug!(
                        "open-loop connection {} could not connect: {}",
                        self.record.id,
                        failure.message
                    );
                } else {
                    self.on_connect_failed(plan, failure, clock, deadline, now, tally);
                }
            }
            (Doing::Exchanging { clock, sent, .. }, Event::Replied(reply)) => {
                self.on_reply(plan, reply, clock, sent, now, tally);
            }
            (
                Doing::Exchanging {
                    clock,
                    sent,
                    deadline,
                },
                Event::Failed(failure),
            ) => {
                self.connected = false;
                if let Kind::Scenario { .. } = self.kind {
                    tally.failed(failure.outcome, clock, Some(sent), now);
                    self.fail(plan, failure, now);
                } else {
                    self.load_failure(failure, clock, Some(sent), deadline, now, tally);
                }
            }
            (Doing::Holding, Event::Held) => {
                self.say(plan, format_args!("finished using the service"));
            }
            (Doing::Away, Event::Held) => {}
            (doing, event) => {
                // An event for a step that was not in progress: an engine bug, but not one
                // worth a panic in the middle of a measurement.
                tracing::debug!("client {}: {event:?} while {doing:?}", self.record.id);
            }
        }
        tally.show(self.record.id, self.state());
    }

    /// The connect that began at `clock` succeeded at `now`. A scenario client judges the
    /// wait (a connect can already be too late); a closed-loop client's request cycle keeps
    /// counting from `clock`; an open-loop connection goes on with its request, if any.
    fn on_connected(&mut self, plan: &Plan, clock: Instant, now: Instant) {
        match &mut self.kind {
            Kind::Scenario { .. } => {
                let waited = micros(now.saturating_duration_since(clock));
                self.note_wait(waited);
                if !in_time(waited, plan.limit_us()) {
                    let late = Failure::late(
                        Outcome::ConnectTimeout,
                        "connected",
                        waited,
                        plan.limit_us(),
                    );
                    self.fail(plan, late, now);
                } else {
                    self.say(plan, format_args!("connected, waiting for service ..."));
                }
            }
            Kind::Closed { due, .. } => *due = Some(clock),
            Kind::Open { .. } => {}
        }
    }

    /// A connect for a request failed (not an open-loop connection's eager one). A scenario
    /// client has failed; a load run counts the request as failed, and a closed loop whose
    /// server refuses connections stops.
    fn on_connect_failed(
        &mut self,
        plan: &Plan,
        failure: Failure,
        clock: Instant,
        deadline: Instant,
        now: Instant,
        tally: &mut Tally,
    ) {
        match &mut self.kind {
            Kind::Scenario { .. } => self.fail(plan, failure, now),
            Kind::Closed { .. } | Kind::Open { .. } => {
                let refused = failure.outcome == Outcome::Refused;
                self.load_failure(failure, clock, None, deadline, now, tally);
                if refused && matches!(self.kind, Kind::Closed { .. }) {
                    // Nothing is listening any more; retrying would only spin.
                    self.finish(plan, now);
                }
            }
        }
    }

    /// A response arrived at `now` to the request sent at `sent`, whose deadline counts from
    /// `clock`. Records what the first response says, counts it in the tally, and judges
    /// it: in time and 2xx is served; late or an error status is a failure.
    fn on_reply(
        &mut self,
        plan: &Plan,
        reply: Reply,
        clock: Instant,
        sent: Instant,
        now: Instant,
        tally: &mut Tally,
    ) {
        if reply.close {
            self.connected = false;
        }
        self.record.status = Some(reply.status);
        if self.record.first_byte_us.is_none() {
            self.record.first_byte_us = Some(micros(
                reply.first_byte.saturating_duration_since(self.start),
            ));
            self.record.server_thread = reply.server_thread.clone();
        }
        // The tally judges the request by its corrected latency (from `clock`) and counts it;
        // the client then decides what that means for its own outcome.
        let served = tally.answered(clock, sent, now, reply.status);
        if served {
            self.record.served_requests += 1;
        }
        let waited = micros(now.saturating_duration_since(clock));
        match &mut self.kind {
            Kind::Scenario { answered, .. } => {
                *answered += 1;
                // Late answers too: the lab's account of the run shows them.
                self.record.complete_us = Some(self.since_start(now));
                self.note_wait(waited);
                if !in_time(waited, plan.limit_us()) {
                    let late = Failure::late(
                        Outcome::ServiceTimeout,
                        "the response arrived",
                        waited,
                        plan.limit_us(),
                    );
                    self.fail(plan, late, now);
                } else if !served {
                    let rejected = Failure::new(
                        Outcome::Rejected,
                        format!("the server answered {}", reply.status),
                    );
                    self.fail(plan, rejected, now);
                }
            }
            // A load run's client goes on after a failed request: its first failure becomes
            // its outcome, later ones are only counted (see `note_failure`).
            Kind::Closed { .. } | Kind::Open { .. } => {
                if served {
                    self.record.complete_us = Some(self.since_start(now));
                } else {
                    let failure = if !in_time(waited, plan.limit_us()) {
                        Failure::late(
                            Outcome::ServiceTimeout,
                            "a response arrived",
                            waited,
                            plan.limit_us(),
                        )
                    } else {
                        Failure::new(
                            Outcome::Rejected,
                            format!("the server answered {}", reply.status),
                        )
                    };
                    self.note_failure(failure);
                }
            }
        }
    }

    /// A load-run request that failed (or whose connection failed) at `now`. If its
    /// deadline was the run's end, it is not a failure: the run ended with it in flight.
    fn load_failure(
        &mut self,
        failure: Failure,
        due: Instant,
        sent: Option<Instant>,
        deadline: Instant,
        now: Instant,
        tally: &mut Tally,
    ) {
        let end = match self.kind {
            Kind::Closed { end, .. } | Kind::Open { end, .. } => Some(end),
            Kind::Scenario { .. } => None,
        };
        let cut_by_end = failure.outcome.timed_out() && Some(deadline) == end && now >= deadline;
        if cut_by_end {
            tally.unfinished();
            return;
        }
        tally.failed(failure.outcome, due, sent, now);
        self.note_failure(failure);
    }

    /// The client is finished: its outcome, if nothing decided it yet, and its end.
    fn finish(&mut self, plan: &Plan, now: Instant) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.record.ended_us = Some(self.since_start(now));
        // An open-loop connection the schedule never needed had nothing to be starved of.
        let needed = !matches!(self.kind, Kind::Open { carried: 0, .. });
        if plan.scenario.load.is_load()
            && needed
            && self.record.served_requests == 0
            && self.record.failed_requests == 0
        {
            self.record.outcome = Outcome::Starved;
            self.record.error = Some(format!(
                "no response in the {} the run lasted",
                humantime::format_duration(plan.scenario.planned_length())
            ));
        }
        if matches!(self.kind, Kind::Scenario { .. }) {
            self.say(plan, format_args!("disconnected ..."));
        }
    }

    /// A scenario client failed: that is its outcome, and it is finished.
    fn fail(&mut self, plan: &Plan, failure: Failure, now: Instant) {
        if failure.outcome.timed_out()
            && self
                .record
                .waited_us
                .is_some_and(|w| in_time(w, plan.limit_us()))
        {
            // The step that ran out of time never ended, so the client's wait is unknown
            // beyond "at least the deadline" (censored); what was recorded belongs to an
            // earlier step.
            self.record.waited_us = None;
        }
        if failure.outcome.timed_out() {
            self.say(
                plan,
                format_args!("timeout waiting for service! ({})", failure.message),
            );
        } else {
            self.say(
                plan,
                format_args!("{}: {}", failure.outcome.name(), failure.message),
            );
        }
        self.record.outcome = failure.outcome;
        self.record.failed_requests += 1;
        self.record.error = Some(failure.message);
        self.finish(plan, now);
    }

    /// A load-run request failed: the first failure is the client's outcome.
    fn note_failure(&mut self, failure: Failure) {
        if self.record.outcome == Outcome::Served && self.record.failed_requests == 0 {
            self.record.outcome = failure.outcome;
            self.record.error = Some(failure.message);
        }
        self.record.failed_requests += 1;
    }

    fn note_wait(&mut self, waited: u64) {
        self.record.waited_us = Some(self.record.waited_us.unwrap_or(0).max(waited));
    }

    fn since_start(&self, now: Instant) -> u64 {
        micros(now.saturating_duration_since(self.start))
    }

    /// A line of the client's story at `--log info`, in the lecture's words.
    fn say(&self, plan: &Plan, what: std::fmt::Arguments) {
        if plan.thread_per_client {
            tracing::info!("{what}");
        } else {
            tracing::info!("client {}: {what}", self.record.id);
        }
    }
}
