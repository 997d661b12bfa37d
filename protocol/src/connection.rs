//! One client connection as a state machine that does no I/O.
//!
//! A [`Connection`] knows everything HTTP/1.1 needs between requests (where the next request
//! starts, whether the client wants the connection kept open, what it is owed) but never
//! touches a socket or a clock. Its driver does the I/O and hands it what happened:
//!
//! ```text
//!   driver                                      Connection
//!   ──────                                      ──────────
//!   read from the socket  ── receive(bytes) ──▶ buffers, parses
//!                         ◀── poll() ────────── Event::Request(request, ticket)
//!   work out the answer   ── respond(ticket, response) ──▶ encodes, in request order
//!   write to the socket   ◀── output() ──────── bytes to send;  wrote(n) when sent
//!   wait until            ◀── next_deadline() ─ read timeout, keep-alive timeout, linger
//! ```
//!
//! Because it does no I/O, one state machine serves every architecture. The blocking
//! driver (`server-core`'s `blocking` module) reads, polls, handles and writes on one
//! thread, or hands the steps to several threads as the pipeline does. An event loop feeds
//! it from readiness events and writes its output when the socket can take it. A test
//! feeds it byte by byte (see the tests at the bottom).
//!
//! The pairing of a request and its response is explicit: every request comes with a
//! [`Ticket`], which is not `Clone`, and [`Connection::respond`] consumes it. Responses may
//! be given back in any order (an event loop may finish a quick request before a slow one
//! that came first); the connection releases them to the output strictly in request order,
//! which is what HTTP/1.1 pipelining requires.
//!
//! The phases of a connection and its deadlines:
//!
//! * **idle**: no request has started. Before the first request the client has
//!   `read_timeout` to send one (then 408); between requests it may be silent for
//!   `keep_alive_timeout` (then the connection closes without a word, as nginx and Apache
//!   do). While a response is still owed no idle deadline runs: the handler may take long.
//! * **receiving** the head, then the body: the whole request must be in within
//!   `read_timeout` of its first byte (then 408). A client dribbling a byte a second cannot
//!   hold the connection longer than that.
//! * **finishing**: no more requests will be read (the client asked to close, the server is
//!   stopping, the client closed its side, or a response ended the connection); owed
//!   responses are still produced and written, then the connection is done.
//! * **lingering** after an error response: the server keeps reading and discarding what
//!   the client still sends, for a short while, before closing. Closing a socket with unread
//!   input makes the kernel send a reset, which can destroy the error response before the
//!   client reads it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::request::{parse_head, Head, Limits, Method, Version};
use crate::response::{Response, Status};

/// After an error response, how long the connection keeps reading and discarding input.
pub const LINGER: Duration = Duration::from_millis(500);
/// The most a lingering close reads and discards.
pub const LINGER_BYTES: usize = 256 * 1024;
/// Requests read but not answered yet, at most. A client that pipelines more waits (its
/// bytes stay in the socket) until some are answered, so a flood of pipelined requests costs
/// memory for this many responses, not for as many as it sends.
pub const MAX_OUTSTANDING: usize = 16;
/// Output waiting to be written, at most, before the connection stops reading new requests.
pub const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// An input or output buffer larger than this is released when the connection goes idle, so
/// that an idle connection costs a few hundred bytes, not the size of its largest request.
const KEEP_BUFFER: usize = 4096;

/// The settings a connection is checked against, from the server's flags.
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    /// Time allowed for the first request to arrive, and for any request once it has begun.
    pub read_timeout: Duration,
    /// The pace a request must keep once it has begun: by `pace_grace` after its first byte,
    /// plus a second for every `min_rate` bytes of it received, the rest must follow (never
    /// later than `read_timeout` in all). A client dribbling a few bytes a second (slowloris)
    /// is cut off after about `pace_grace`. `min_rate` 0 turns the pace off.
    pub pace_grace: Duration,
    pub min_rate: u64,
    /// Idle time allowed between requests. Zero turns keep-alive off: every response then
    /// carries `Connection: close`.
    pub keep_alive_timeout: Duration,
    /// The value of every response's `Server` header.
    pub server_header: String,
}

/// A complete request: head and body.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub version: Version,
    pub body: Vec<u8>,
}

/// The claim to answer one request. [`Connection::respond`] takes it back; it cannot be
/// copied, so a request cannot be answered twice.
#[derive(Debug)]
#[must_use = "a request that is read must be answered with Connection::respond"]
pub struct Ticket {
    seq: u64,
}

impl Ticket {
    /// The request's position on its connection: 0 for the first.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// What the driver should do next. See [`Connection::poll`].
#[derive(Debug)]
pub enum Event {
    /// A complete request. Work out its response and give it back with
    /// [`Connection::respond`].
    Request(Request, Ticket),
    /// Input that cannot be served (bad syntax, over a limit, too slow, cut off): answer it
    /// with this response through [`Connection::respond`]. The connection closes after it.
    Reject(Response, Ticket),
    /// Nothing to do until more input arrives (if [`Connection::wants_input`]), the output
    /// is written, a response is given back, or [`Connection::next_deadline`] passes.
    Wait,
    /// Nothing more will happen on this connection: close it.
    Closed(Closed),
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The client closed its side between requests.
    ByPeer,
    /// The client sent nothing for the keep-alive timeout.
    Idle,
    /// The server stopped while the connection was between requests.
    Shutdown,
    /// The last response was written: the client asked to close, an error ended the
    /// connection, or keep-alive is off.
    Finished,
    /// The client read none of the output for the read timeout: the server gave up writing
    /// to it (a slow or stalled reader), as a blocking write gives up after its timeout.
    Stalled,
}

/// Where the connection is between requests. See the module documentation.
#[derive(Debug)]
enum Phase {
    /// No request has started. `deadline` is `None` while a response is still owed.
    Idle {
        deadline: Option<Instant>,
        first: bool,
    },
    /// Part of a head has arrived; the whole request is due by `deadline` at the latest,
    /// and must keep its pace from `began`.
    Head {
        deadline: Instant,
        began: Instant,
    },
    /// The head is in and the body is arriving.
    Body {
        head: Head,
        seq: u64,
        body: Vec<u8>,
        deadline: Instant,
        began: Instant,
    },
    /// No more requests will be read; owed responses are still produced and written.
    Finishing,
    /// An error response was written: discarding input until `until`.
    Linger {
        until: Instant,
        discarded: usize,
    },
    Done(Closed),
}

/// A response owed to one request, in request order.
#[derive(Debug)]
struct Slot {
    seq: u64,
    /// What the request said about its response: keep-alive, HTTP/1.0, HEAD.
    keep_alive: bool,
    http10: bool,
    head_only: bool,
    /// `100 Continue` is owed before this request's body is read.
    interim: bool,
    /// The response, once given back.
    encoded: Option<Encoded>,
}

#[derive(Debug)]
struct Encoded {
    bytes: Vec<u8>,
    /// The response carries `Connection: close`: nothing is read or sent after it.
    close: bool,
    /// It is an error that broke the byte stream: linger before closing.
    error: bool,
}

/// One client connection. See the module documentation.
#[derive(Debug)]
pub struct Connection {
    /// The server's settings, shared by all its connections.
    config: Arc<Config>,
    phase: Phase,
    /// Received bytes not consumed yet live in `input[start..]`.
    input: Vec<u8>,
    start: usize,
    /// Bytes to write live in `output[flushed..]`.
    output: Vec<u8>,
    flushed: usize,
    /// While output is waiting to be written: when the server gives up on a client that
    /// reads none of it (the read timeout after the last progress).
    write_due: Option<Instant>,
    /// Responses owed, oldest first.
    slots: VecDeque<Slot>,
    next_seq: u64,
    /// No more requests will be read after the owed ones.
    reading_done: bool,
    /// The client closed its sending side (a read returned 0).
    peer_closed: bool,
    /// The server is shutting down.
    stopping: bool,
    /// A closing response has been released to the output: `Some(true)` if it was an error.
    ending: Option<bool>,
    /// Everything owed is written and nothing more will be: the driver may shut down the
    /// sending side.
    write_closed: bool,
}

impl Connection {
    /// A freshly accepted connection: the first request is due within `read_timeout`.
    pub fn new(config: Arc<Config>, now: Instant) -> Connection {
        let deadline = now + config.read_timeout;
        Connection {
            config,
            phase: Phase::Idle {
                deadline: Some(deadline),
                first: true,
            },
            input: Vec::new(),
            start: 0,
            output: Vec::new(),
            flushed: 0,
            write_due: None,
            slots: VecDeque::new(),
            next_seq: 0,
            reading_done: false,
            peer_closed: false,
            stopping: false,
            ending: None,
            write_closed: false,
        }
    }

    /// Hands the connection bytes the client sent. An empty slice means the client closed
    /// its sending side (a read returned 0).
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if bytes.is_empty() {
            self.peer_closed = true;
            return;
        }
        match &mut self.phase {
            Phase::Linger { discarded, .. } => {
                *discarded += bytes.len();
                return;
            }
            // Bytes after the last request that will be read: nobody parses them.
            Phase::Done(_) | Phase::Finishing => return,
            Phase::Idle { .. } if self.reading_done => return,
            Phase::Idle { .. } => {
                // The first byte of a request starts its clock.
                self.phase = Phase::Head {
                    deadline: now + self.config.read_timeout,
                    began: now,
                };
            }
            Phase::Head { .. } | Phase::Body { .. } => {}
        }
        if self.start == self.input.len() {
            self.input.clear();
            self.start = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Whether the driver should read from the socket now. False while the connection has
    /// enough to do (too many responses owed, too much output unwritten), and once no more
    /// input matters.
    pub fn wants_input(&self) -> bool {
        if self.peer_closed {
            return false;
        }
        match self.phase {
            Phase::Linger { discarded, .. } => discarded < LINGER_BYTES,
            Phase::Done(_) | Phase::Finishing => false,
            Phase::Idle { .. } if self.reading_done => false,
            _ => {
                self.slots.len() < MAX_OUTSTANDING
                    && self.output.len() - self.flushed < OUTPUT_HIGH_WATER
            }
        }
    }

    /// Whether received bytes are waiting to be parsed (the start of the next request,
    /// pipelined behind the last one): the driver has something to do without reading.
    pub fn has_unread_input(&self) -> bool {
        self.start < self.input.len()
    }

    /// Whether the client has closed its sending side.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Whether no request has begun and none is owed: a connection that the server can
    /// close at shutdown without losing anything.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Idle { .. })
            && self.slots.is_empty()
            && self.start == self.input.len()
            && self.flushed == self.output.len()
    }

    /// How many requests have been read and not answered yet.
    pub fn owed(&self) -> usize {
        self.slots.len()
    }

    /// How many requests have begun on this connection.
    pub fn requests(&self) -> u64 {
        self.next_seq
    }

    /// The server is shutting down. A connection between requests closes; a request that
    /// has begun may still complete; owed responses are still sent, the last one with
    /// `Connection: close`.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// The next moment something happens by itself: a read timeout, the keep-alive timeout,
    /// the end of a lingering close, or giving up on a client that reads none of its
    /// output. The driver calls [`Connection::poll`] when it passes.
    pub fn next_deadline(&self) -> Option<Instant> {
        let phase = self.phase_deadline();
        match (phase, self.write_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The deadline of the phase alone.
    fn phase_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Idle { deadline, .. } => *deadline,
            // A request waiting only because too many are owed is not the client's fault.
            Phase::Head { .. } if self.slots.len() >= MAX_OUTSTANDING => None,
            Phase::Head { .. } | Phase::Body { .. } => self.request_deadline().map(|(at, _)| at),
            Phase::Linger { until, .. } => Some(*until),
            Phase::Finishing | Phase::Done(_) => None,
        }
    }

    /// The bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.output[self.flushed..]
    }

    /// The driver wrote the first `n` bytes of [`Connection::output`].
    pub fn wrote(&mut self, n: usize, now: Instant) {
        self.flushed = (self.flushed + n).min(self.output.len());
        if n > 0 {
            // Progress: the client reads, so it gets another read timeout for the rest.
            self.write_due = Some(now + self.config.read_timeout);
        }
        self.settle(now);
    }

    /// Whether everything owed has been written and nothing more will be: the driver should
    /// shut down the socket's sending side, so that the client sees the end.
    pub fn should_close_write(&self) -> bool {
        self.write_closed
    }

    /// Gives back the response to the request `ticket` was issued for. Responses may come
    /// in any order; they are written in request order.
    pub fn respond(&mut self, ticket: Ticket, response: &Response, now: Instant) {
        let Some(index) = self.slots.iter().position(|s| s.seq == ticket.seq) else {
            // Discarded: an earlier response ended the connection.
            return;
        };
        let last = index + 1 == self.slots.len();
        let receiving = matches!(self.phase, Phase::Head { .. } | Phase::Body { .. });
        let slot = &self.slots[index];
        // `Connection: close` when the response breaks the stream, when the client or the
        // configuration wants it, or when this is the last response the connection will send
        // (the server is stopping or the client has closed its side, and no later request is
        // owed or on its way).
        let close = response.close
            || !slot.keep_alive
            || self.config.keep_alive_timeout.is_zero()
            || last && !receiving && (self.stopping || self.peer_closed || self.reading_done);
        let (keep_alive_header, include_body) = (slot.http10 && !close, !slot.head_only);
        if index == 0 && !slot.interim {
            // Next in line (the usual case): straight into the output, no copy.
            response.encode_into(
                &mut self.output,
                &self.config.server_header,
                close,
                keep_alive_header,
                include_body,
            );
            self.slots.pop_front();
            if close {
                self.close_after_release(response.close);
            }
        } else {
            // An earlier response is still owed: keep this one until its turn.
            let mut bytes = Vec::new();
            response.encode_into(
                &mut bytes,
                &self.config.server_header,
                close,
                keep_alive_header,
                include_body,
            );
            self.slots[index].encoded = Some(Encoded {
                bytes,
                close,
                error: response.close,
            });
            if close {
                // Nothing after this response is read or sent.
                self.slots.truncate(index + 1);
                self.reading_done = true;
            }
        }
        self.release(now);
    }

    /// A response that ends the connection has gone to the output: nothing after it is
    /// read or sent.
    fn close_after_release(&mut self, error: bool) {
        self.ending = Some(error);
        self.slots.clear();
        self.reading_done = true;
        if !matches!(self.phase, Phase::Done(_)) {
            self.phase = Phase::Finishing;
        }
    }

    /// Asks what to do next. Parses what has arrived, applies deadlines that have passed, and
    /// returns the first thing the driver must act on.
    pub fn poll(&mut self, now: Instant) -> Event {
        if self.write_due.is_some_and(|due| now >= due) && !matches!(self.phase, Phase::Done(_)) {
            // The client has read nothing for the read timeout: the rest is not written.
            self.write_due = None;
            self.phase = Phase::Done(Closed::Stalled);
        }
        // One step per turn, for the phase the connection is in: a step either has an event
        // for the driver, or has moved the connection on (to another phase, or past a
        // `100 Continue`) and returns `None`, and the next turn looks again. Within one
        // poll nothing moves back, so the turns end in an event.
        loop {
            let event = match &self.phase {
                Phase::Done(why) => Some(Event::Closed(*why)),
                Phase::Linger { until, discarded } => {
                    let (until, discarded) = (*until, *discarded);
                    self.step_linger(now, until, discarded)
                }
                Phase::Finishing => self.step_finishing(),
                Phase::Idle { deadline, first } => {
                    let (deadline, first) = (*deadline, *first);
                    self.step_idle(now, deadline, first)
                }
                Phase::Head { deadline, began } => {
                    let (deadline, began) = (*deadline, *began);
                    self.step_head(now, deadline, began)
                }
                Phase::Body { .. } => self.step_body(now),
            };
            if let Some(event) = event {
                return event;
            }
        }
    }

    /// Lingering after an error: done once the client closes, the linger time passes, or
    /// enough has been discarded.
    fn step_linger(&mut self, now: Instant, until: Instant, discarded: usize) -> Option<Event> {
        if self.peer_closed || now >= until || discarded >= LINGER_BYTES {
            self.phase = Phase::Done(Closed::Finished);
            return None;
        }
        Some(Event::Wait)
    }

    /// Reading is over: done once everything owed is written (`settle` moves on once a
    /// closing response is written).
    fn step_finishing(&mut self) -> Option<Event> {
        if self.slots.is_empty() && self.flushed == self.output.len() && self.ending.is_none() {
            // Reading ended without a closing response: nothing was owed.
            self.write_closed = true;
            self.phase = Phase::Done(if self.peer_closed {
                Closed::ByPeer
            } else if self.stopping {
                Closed::Shutdown
            } else {
                Closed::Finished
            });
            return None;
        }
        Some(Event::Wait)
    }

    /// Between requests: a pipelined request starts its head; the end of reading (the
    /// client's close, shutdown) finishes; the keep-alive (or first-request) deadline ends
    /// the connection.
    fn step_idle(&mut self, now: Instant, deadline: Option<Instant>, first: bool) -> Option<Event> {
        if self.start < self.input.len() && !self.reading_done {
            // A pipelined request is already here: its clock starts now.
            self.phase = Phase::Head {
                deadline: now + self.config.read_timeout,
                began: now,
            };
            return None;
        }
        if self.reading_done || self.peer_closed || self.stopping && self.slots.is_empty() {
            self.reading_done = true;
            self.phase = Phase::Finishing;
            return None;
        }
        if deadline.is_some_and(|d| now >= d) {
            if first {
                let reason = format!(
                    "no request within {}",
                    humantime::format_duration(self.config.read_timeout)
                );
                return Some(self.reject(Status::RequestTimeout, &reason));
            }
            self.phase = Phase::Done(Closed::Idle);
            return None;
        }
        Some(Event::Wait)
    }

    /// A request's head is arriving: once it is complete, its slot is taken and its body
    /// begins; bad input, a passed deadline or the client's close end it with an error.
    fn step_head(&mut self, now: Instant, deadline: Instant, began: Instant) -> Option<Event> {
        if self.slots.len() >= MAX_OUTSTANDING {
            return Some(Event::Wait);
        }
        match parse_head(&self.input[self.start..], &self.config.limits) {
            Ok(Some(head)) => {
                self.start += head.len;
                let seq = self.next_seq;
                self.next_seq += 1;
                self.slots.push_back(Slot {
                    seq,
                    keep_alive: head.keep_alive,
                    http10: head.version == Version::Http10,
                    head_only: head.method == Method::Head,
                    interim: false,
                    encoded: None,
                });
                if !head.keep_alive {
                    // The client closes after this request: read no more.
                    self.reading_done = true;
                }
                self.phase = Phase::Body {
                    head,
                    seq,
                    body: Vec::new(),
                    deadline,
                    began,
                };
                return None;
            }
            Ok(None) => {}
            Err(rejection) => return Some(self.reject(rejection.status, &rejection.reason)),
        }
        if let Some(reason) = self.too_late(now) {
            return Some(self.reject(Status::RequestTimeout, &reason));
        }
        if self.peer_closed {
            return Some(self.cut_off());
        }
        Some(Event::Wait)
    }

    /// A request's body is arriving: once it is complete, the request goes to the driver
    /// and the connection is idle again. A `100 Continue` goes out first if the client
    /// waits for one; a passed deadline or the client's close end it with an error.
    fn step_body(&mut self, now: Instant) -> Option<Event> {
        let Phase::Body {
            head, seq, body, ..
        } = &mut self.phase
        else {
            unreachable!("poll calls step_body only in the Body phase");
        };
        // Only bytes that arrived are kept: a body announced as 1 MiB costs nothing until
        // it is really sent.
        let wanted = head.content_length - body.len();
        let take = wanted.min(self.input.len() - self.start);
        body.extend_from_slice(&self.input[self.start..self.start + take]);
        self.start += take;
        if body.len() == head.content_length {
            let request = Request {
                method: head.method.clone(),
                path: std::mem::take(&mut head.path),
                version: head.version,
                body: std::mem::take(body),
            };
            let ticket = Ticket { seq: *seq };
            self.phase = Phase::Idle {
                deadline: None,
                first: false,
            };
            return Some(Event::Request(request, ticket));
        }
        if head.expect_continue {
            // The client waits for this go-ahead before it sends the body.
            head.expect_continue = false;
            let seq = *seq;
            if let Some(slot) = self.slots.iter_mut().find(|s| s.seq == seq) {
                slot.interim = true;
            }
            self.release(now);
            return None;
        }
        if let Some(reason) = self.too_late(now) {
            return Some(self.reject(Status::RequestTimeout, &reason));
        }
        if self.peer_closed {
            return Some(self.cut_off());
        }
        Some(Event::Wait)
    }

    /// While a request arrives: when it is due, and whether by the pace (`true`) or by the
    /// read timeout (`false`). The pace's deadline moves later with every byte received.
    fn request_deadline(&self) -> Option<(Instant, bool)> {
        let (deadline, began, received) = match &self.phase {
            Phase::Head { deadline, began } => (*deadline, *began, self.input.len() - self.start),
            Phase::Body {
                head,
                body,
                deadline,
                began,
                ..
            } => (*deadline, *began, head.len + body.len()),
            _ => return None,
        };
        if self.config.min_rate == 0 {
            return Some((deadline, false));
        }
        let earned = Duration::from_secs_f64(received as f64 / self.config.min_rate as f64);
        let paced = began + self.config.pace_grace + earned;
        Some(if paced < deadline {
            (paced, true)
        } else {
            (deadline, false)
        })
    }

    /// Why the request arriving now is too late, if it is.
    fn too_late(&self, now: Instant) -> Option<String> {
        let (due, by_pace) = self.request_deadline()?;
        if now < due {
            return None;
        }
        Some(if by_pace {
            format!(
                "the request arrived slower than {} bytes a second after its first {}",
                self.config.min_rate,
                humantime::format_duration(self.config.pace_grace)
            )
        } else {
            format!(
                "no complete request within {}",
                humantime::format_duration(self.config.read_timeout)
            )
        })
    }

    /// The client closed its side in the middle of a request.
    fn cut_off(&mut self) -> Event {
        if self.stopping {
            // The server itself most likely cut the connection off while stopping: not the
            // client's fault, and worth a retry elsewhere or later.
            let mut response = Response::error(
                Status::ServiceUnavailable,
                "the server is shutting down; send the request again",
            )
            .closing();
            response.retry_after = Some(1);
            return self.reject_with(response);
        }
        self.reject(
            Status::BadRequest,
            "the connection ended in the middle of a request",
        )
    }

    fn reject(&mut self, status: Status, reason: &str) -> Event {
        self.reject_with(Response::error(status, reason).closing())
    }

    /// Stops reading and hands out an error response for the request in progress (or for a
    /// request that never got that far).
    fn reject_with(&mut self, response: Response) -> Event {
        let seq = match &self.phase {
            Phase::Body { seq, .. } => *seq,
            _ => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.slots.push_back(Slot {
                    seq,
                    keep_alive: false,
                    http10: false,
                    head_only: false,
                    interim: false,
                    encoded: None,
                });
                seq
            }
        };
        self.reading_done = true;
        self.phase = Phase::Finishing;
        // Whatever else has arrived will not be parsed.
        self.input = Vec::new();
        self.start = 0;
        Event::Reject(response, Ticket { seq })
    }

    /// Moves every response that is next in line into the output.
    fn release(&mut self, now: Instant) {
        while let Some(slot) = self.slots.front_mut() {
            if slot.interim {
                slot.interim = false;
                self.output
                    .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            let Some(encoded) = slot.encoded.take() else {
                break;
            };
            self.output.extend_from_slice(&encoded.bytes);
            self.slots.pop_front();
            if encoded.close {
                self.close_after_release(encoded.error);
            }
        }
        if self.flushed < self.output.len() && self.write_due.is_none() {
            // Output is waiting: the client has a read timeout to start reading it.
            self.write_due = Some(now + self.config.read_timeout);
        }
        self.settle(now);
    }

    /// Takes the steps that follow from the output being written: closing the sending side
    /// after the last response, lingering after an error, freeing buffers when idle.
    fn settle(&mut self, now: Instant) {
        if self.flushed < self.output.len() {
            return;
        }
        self.output.clear();
        self.flushed = 0;
        self.write_due = None;
        if self.slots.is_empty() {
            if let Phase::Idle { deadline, .. } = &mut self.phase {
                if deadline.is_none() {
                    // Nothing is owed and everything is written: the keep-alive clock
                    // starts (not before: a client still reading its answer is not idle).
                    *deadline = Some(now + self.config.keep_alive_timeout);
                }
            }
        }
        if let (Some(error), true) = (self.ending, self.slots.is_empty()) {
            // A connection already done (given up as `Stalled`) stays done.
            if !self.write_closed && !matches!(self.phase, Phase::Done(_)) {
                self.write_closed = true;
                self.phase = if error && !self.peer_closed {
                    Phase::Linger {
                        until: now + LINGER,
                        discarded: 0,
                    }
                } else {
                    Phase::Done(Closed::Finished)
                };
            }
        }
        // An idle connection keeps no buffers; a busy one keeps small ones for reuse.
        if self.start == self.input.len() {
            self.input.clear();
            self.start = 0;
            if self.input.capacity() > KEEP_BUFFER || self.is_idle() {
                self.input = Vec::new();
            } else {
                self.input.clear();
            }
        }
        if self.output.capacity() > KEEP_BUFFER || self.is_idle() {
            self.output = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{route, RouteConfig, Work};

    fn config() -> Arc<Config> {
        Arc::new(Config {
            limits: Limits::default(),
            read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            server_header: "servelab-test".into(),
            pace_grace: Duration::from_secs(2),
            min_rate: 500,
        })
    }

    fn routes() -> RouteConfig {
        RouteConfig {
            architecture: "test",
            max_sleep: Duration::from_secs(60),
            max_cpu: Duration::from_secs(2),
            allow_crash: false,
        }
    }

    /// Answers a request the way an event loop would for routes that need no waiting.
    fn answer(request: &Request) -> Response {
        match route(request, &routes()) {
            Work::Respond(response) => response,
            Work::Compute(job) => job.run(),
            Work::Sleep { then, .. } => then,
            Work::Stats => Response::text(Status::Ok, "{}"),
        }
    }

    /// Takes all output, as one write would.
    fn drain(conn: &mut Connection, now: Instant) -> String {
        let text = String::from_utf8_lossy(conn.output()).into_owned();
        let n = conn.output().len();
        conn.wrote(n, now);
        text
    }

    /// The status lines of everything in `text` (a status line may follow a body directly).
    fn statuses(text: &str) -> Vec<&str> {
        text.match_indices("HTTP/1.1 ")
            .map(|(at, _)| text[at..].split("\r\n").next().unwrap_or(""))
            .collect()
    }

    #[test]
    fn fed_one_byte_at_a_time() {
        let now = Instant::now();
        let mut conn = Connection::new(config(), now);
        let bytes = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
        let mut requests = Vec::new();
        for (i, byte) in bytes.iter().enumerate() {
            assert!(conn.wants_input(), "it wants byte {i}");
            conn.receive(std::slice::from_ref(byte), now);
            match conn.poll(now) {
                Event::Wait => {}
                Event::Request(request, ticket) => requests.push((i, request, ticket)),
                other => panic!("unexpected {other:?} at byte {i}"),
            }
        }
        let (at, request, ticket) = requests.pop().expect("one request");
        assert!(requests.is_empty());
        assert_eq!(at, bytes.len() - 1, "complete only with its last byte");
        assert_eq!(
            (request.path.as_str(), &request.body[..]),
            ("/echo", &b"hello"[..])
        );
        conn.respond(ticket, &answer(&request), now);
        let out = drain(&mut conn, now);
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nhello"), "{out}");
        // Kept alive, idle, waiting for the next request within the keep-alive timeout.
        assert!(conn.is_idle());
        assert_eq!(conn.next_deadline(), Some(now + Duration::from_secs(5)));
        assert!(matches!(
            conn.poll(now + Duration::from_secs(6)),
            Event::Closed(Closed::Idle)
        ));
    }

    /// A connection that has read `request` and been given a 100 000-byte answer to it.
    fn owing_a_large_answer(request: &[u8], now: Instant) -> Connection {
        let mut conn = Connection::new(config(), now);
        conn.receive(request, now);
        let Event::Request(_, ticket) = conn.poll(now) else {
            panic!("a request")
        };
        conn.respond(
            ticket,
            &Response::text(Status::Ok, "x".repeat(100_000)),
            now,
        );
        conn
    }

    #[test]
    fn every_hostile_request_is_refused_with_its_status() {
        for hostile in crate::hostile::REQUESTS {
            let now = Instant::now();
            let mut conn = Connection::new(config(), now);
            conn.receive(hostile.bytes, now);
            match conn.poll(now) {
                Event::Reject(response, _) => {
                    assert_eq!(response.status.code(), hostile.status, "{}", hostile.what)
                }
                other => panic!("{}: {other:?}", hostile.what),
            }
        }
    }

    #[test]
    fn a_slow_reader_keeps_its_answer_past_the_keep_alive_timeout() {
        // Found by the fuzzer: the keep-alive clock started when the answer went into the
        // output, so a client still reading it after 5 s lost the rest.
        let now = Instant::now();
        let mut conn = owing_a_large_answer(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", now);
        let mut t = now;
        for _ in 0..9 {
            t += Duration::from_secs(1);
            conn.wrote(10_000, t);
            assert!(
                matches!(conn.poll(t), Event::Wait),
                "still writing at {t:?}"
            );
        }
        // The last bytes go out after 9 s; only now does the connection become idle.
        let rest = conn.output().len();
        conn.wrote(rest, t);
        assert!(conn.is_idle());
        assert_eq!(conn.next_deadline(), Some(t + Duration::from_secs(5)));
    }

    #[test]
    fn a_client_that_reads_nothing_is_given_up_after_the_read_timeout() {
        // Found by the fuzzer: with `Connection: close` and an unread answer the connection
        // had no deadline at all, so a client that never read held it forever.
        let now = Instant::now();
        let mut conn = owing_a_large_answer(
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            now,
        );
        assert_eq!(conn.next_deadline(), Some(now + Duration::from_secs(10)));
        conn.wrote(1000, now + Duration::from_secs(4));
        // Progress gives it another read timeout from then.
        assert_eq!(conn.next_deadline(), Some(now + Duration::from_secs(14)));
        assert!(matches!(
            conn.poll(now + Duration::from_secs(13)),
            Event::Wait
        ));
        assert!(matches!(
            conn.poll(now + Duration::from_secs(14)),
            Event::Closed(Closed::Stalled)
        ));
    }

    #[test]
    fn an_idle_connection_keeps_no_buffers() {
        // Found by the fuzzer: the input buffer was kept after a long request, because
        // the check for idleness looked at it before it was emptied.
        let now = Instant::now();
        let mut conn = Connection::new(config(), now);
        let path = "a".repeat(2000);
        conn.receive(
            format!("GET /{path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
            now,
        );
        let Event::Request(request, ticket) = conn.poll(now) else {
            panic!("a request")
        };
        conn.respond(ticket, &answer(&request), now);
        drain(&mut conn, now);
        assert!(conn.is_idle());
        assert_eq!((conn.input.capacity(), conn.output.capacity()), (0, 0));
    }

    #[test]
    fn pipelined_requests_in_one_buffer_are_answered_in_one_write() {
        let now = Instant::now();
        let mut conn = Connection::new(config(), now);
        conn.receive(
            b"GET /factor/91 HTTP/1.1\r\nHost: t\r\n\r\n\
              POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nsecond\
              GET /nope HTTP/1.1\r\nHost: t\r\n\r\n\
              HEAD / HTTP/1.1\r\nHost: t\r\n\r\n",
            now,
        );
        let mut tickets = Vec::new();
        while let Event::Request(request, ticket) = conn.poll(now) {
            tickets.push((answer(&request), ticket));
        }
        assert_eq!(tickets.len(), 4);
        assert_eq!(conn.owed(), 4);
        // Answered out of order, as an event loop may finish them; written in order.
        for (response, ticket) in tickets.into_iter().rev() {
            conn.respond(ticket, &response, now);
        }
        let out = drain(&mut conn, now);
        assert_eq!(
            statuses(&out),
            [
                "HTTP/1.1 200 OK",
                "HTTP/1.1 200 OK",
                "HTTP/1.1 404 Not Found",
                "HTTP/1.1 200 OK"
            ]
        );
        assert!(out.contains("91 = 7 * 13\n"));
        assert!(out.contains("\r\n\r\nsecondHTTP/1.1 404"));
        // The HEAD response has a length but no body: its head is the last thing written.
        let head = &out[out.rfind("HTTP/1.1 ").unwrap_or(0)..];
        assert!(head.contains("Content-Length: 14\r\n"), "{out}");
        assert!(head.ends_with("\r\n\r\n"), "{out}");
        assert!(!out.contains("Connection: close"));
        assert_eq!(conn.owed(), 0);
    }

    #[test]
    fn a_response_is_held_until_the_earlier_ones_are_answered() {
        let now = Instant::now();
        let mut conn = Connection::new(config(), now);
        conn.receive(
            b"GET /sleep/100 HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
            now,
        );
        let Event::Request(slow, first) = conn.poll(now) else {
            panic!()
        };
        let Event::Request(quick, second) = conn.poll(now) else {
            panic!()
        };
        conn.respond(second, &answer(&quick), now);
        assert!(
            conn.output().is_empty(),
            "the second answer waits for the first"
        );
        conn.respond(first, &answer(&slow), now);
        assert_eq!(statuses(&drain(&mut conn, now)).len(), 2);
    }

    #[test]
    fn connection_close_and_http10() {
        let now = Instant::now();
        let mut conn = Connection::new(config(), now);
        conn.receive(
            b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
            now,
        );
        let Event::Request(request, ticket) = conn.poll(now) else {
            panic!()
        };
        // HTTP/1.0 without keep-alive: nothing after this request is read.
        assert!(matches!(conn.poll(now), Event::Wait));
        conn.respond(ticket, &answer(&request), now);
        let out = drain(&mut conn, now);
        assert!(out.contains("Connection: close\r\n"), "{out}");
        assert!(conn.should_close_write());
        assert!(matches!(conn.poll(now), Event::Closed(Closed::Finished)));

        let mut conn = Connection::new(config(), now);
        conn.receive(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", now);
        let Event::Request(request, ticket) = conn.poll(now) else {
            panic!()
        };
        conn.respond(ticket, &answer(&request), now);
        assert!(drain(&mut conn, now).contains("Connection: keep-alive\r\n"));
        assert!(conn.wants_input());
    }

    #[test]
    fn expect_continue_is_answered_before_the_body() {
        let now = Instant::now();
        let mut conn = Connection::new(config(), now);
        conn.receive(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
            now,
        );
        assert!(matches!(conn.poll(now), Event::Wait));
        assert_eq!(drain(&mut conn, now), "HTTP/1.1 100 Continue\r\n\r\n");
        conn.receive(b"abc", now);
        let Event::Request(request, ticket) = conn.poll(now) else {
            panic!()
        };
        assert_eq!(request.body, b"abc");
        conn.respond(ticket, &answer(&request), now);
        assert!(drain(&mut conn, now).starts_with("HTTP/1.1 200 OK"));
    }

    #[test]
    fn bad_input_is_answered_and_lingers() {
        let now = Instant::now();
        let mut conn = Connection::new(config(), now);
        conn.receive(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nBAD\r\n\r\n", now);
        let Event::Request(request, ticket) = conn.poll(now) else {
            panic!()
        };
        conn.respond(ticket, &answer(&request), now);
        let Event::Reject(response, ticket) = conn.poll(now) else {
            panic!()
        };
        assert_eq!(response.status, Status::BadRequest);
        conn.respond(ticket, &response, now);
        let out = drain(&mut conn, now);
        assert_eq!(
            statuses(&out),
            ["HTTP/1.1 200 OK", "HTTP/1.1 400 Bad Request"]
        );
        assert!(out.contains("Connection: close"));
        // The sending side closes, then the connection reads and discards for a while.
        assert!(conn.should_close_write());
        assert!(conn.wants_input());
        assert_eq!(conn.next_deadline(), Some(now + LINGER));
        conn.receive(b"more garbage", now);
        assert!(matches!(conn.poll(now), Event::Wait));
        assert!(matches!(
            conn.poll(now + LINGER),
            Event::Closed(Closed::Finished)
        ));
    }

    #[test]
    fn read_timeouts() {
        let now = Instant::now();
        let later = now + Duration::from_secs(11);
        // No first request at all.
        let mut conn = Connection::new(config(), now);
        assert_eq!(conn.next_deadline(), Some(now + Duration::from_secs(10)));
        let Event::Reject(response, _) = conn.poll(later) else {
            panic!()
        };
        assert_eq!(response.status, Status::RequestTimeout);
        // A head that never ends.
        let mut conn = Connection::new(config(), now);
        conn.receive(b"GET / HTTP/1.1\r\n", now);
        let Event::Reject(response, _) = conn.poll(later) else {
            panic!()
        };
        assert_eq!(response.status, Status::RequestTimeout);
        // A body that never comes.
        let mut conn = Connection::new(config(), now);
        conn.receive(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nab",
            now,
        );
        assert!(matches!(conn.poll(now), Event::Wait));
        let Event::Reject(response, _) = conn.poll(later) else {
            panic!()
        };
        assert_eq!(response.status, Status::RequestTimeout);
    }

    #[test]
    fn a_request_must_keep_its_pace() {
        let now = Instant::now();
        let at = |ms: u64| now + Duration::from_millis(ms);
        // A slowloris client: a header line every 500 ms, 10 bytes each. The pace gives it
        // 2 s plus 10 / 500 s per line, so it is cut off after a little over 2 s, long
        // before the 10 s read timeout.
        let mut conn = Connection::new(config(), now);
        conn.receive(b"GET / HTTP/1.1\r\n", now);
        let mut cut_at = None;
        for i in 1..20u64 {
            let t = at(500 * i);
            if let Event::Reject(response, _) = conn.poll(t) {
                assert_eq!(response.status, Status::RequestTimeout);
                let reason = String::from_utf8_lossy(&response.body).into_owned();
                assert!(
                    reason.contains("slower than 500 bytes a second"),
                    "{reason}"
                );
                cut_at = Some(500 * i);
                break;
            }
            assert!(conn.next_deadline().is_some_and(|d| d > t));
            conn.receive(b"X-Slow: a\r\n", t);
        }
        assert!(matches!(cut_at, Some(2000..=3000)), "{cut_at:?}");

        // A large head that arrives quickly earns its time: 6 KB at once is due 2 s + 12 s
        // later, but never past the read timeout.
        let mut conn = Connection::new(config(), now);
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(6000));
        conn.receive(big.as_bytes(), now);
        assert!(matches!(conn.poll(now), Event::Wait));
        assert_eq!(conn.next_deadline(), Some(at(10_000)));

        // The pace off: only the read timeout.
        let mut conn = Connection::new(
            Arc::new(Config {
                min_rate: 0,
                ..(*config()).clone()
            }),
            now,
        );
        conn.receive(b"GET / HTTP/1.1\r\n", now);
        assert_eq!(conn.next_deadline(), Some(at(10_000)));
        assert!(matches!(conn.poll(at(5_000)), Event::Wait));
    }

    #[test]
    fn memory_follows_what_arrives_not_what_is_announced() {
        let now = Instant::now();
        let mut conn = Connection::new(config(), now);
        conn.receive(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\nabc",
            now,
        );
        assert!(matches!(conn.poll(now), Event::Wait));
        let Phase::Body { body, .. } = &conn.phase else {
            panic!()
        };
        assert!(body.capacity() < 4096, "{} bytes reserved", body.capacity());
    }

    #[test]
    fn a_client_that_closes_mid_request_gets_400_or_503_at_shutdown() {
        let now = Instant::now();
        let mut conn = Connection::new(config(), now);
        conn.receive(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nab",
            now,
        );
        conn.receive(b"", now);
        let Event::Reject(response, _) = conn.poll(now) else {
            panic!()
        };
        assert_eq!(response.status, Status::BadRequest);

        // The same cut while the server stops is the server's doing, not the client's.
        let mut conn = Connection::new(config(), now);
        conn.receive(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nab",
            now,
        );
        conn.stop();
        conn.receive(b"", now);
        let Event::Reject(response, _) = conn.poll(now) else {
            panic!()
        };
        assert_eq!(response.status, Status::ServiceUnavailable);
    }

    #[test]
    fn stopping_answers_what_has_arrived_and_closes_after_the_last() {
        let now = Instant::now();
        let mut conn = Connection::new(config(), now);
        conn.receive(
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
            now,
        );
        let Event::Request(a, first) = conn.poll(now) else {
            panic!()
        };
        let Event::Request(b, second) = conn.poll(now) else {
            panic!()
        };
        conn.stop();
        conn.respond(first, &answer(&a), now);
        conn.respond(second, &answer(&b), now);
        let out = drain(&mut conn, now);
        assert_eq!(statuses(&out).len(), 2);
        assert_eq!(
            out.matches("Connection: close").count(),
            1,
            "only the last closes"
        );
        assert!(out.trim_end().ends_with("servelab test"));
        assert!(matches!(conn.poll(now), Event::Closed(Closed::Finished)));
        // An idle connection simply closes.
        let mut idle = Connection::new(config(), now);
        idle.stop();
        assert!(matches!(idle.poll(now), Event::Closed(Closed::Shutdown)));
    }

    #[test]
    fn too_many_owed_responses_pause_reading() {
        let now = Instant::now();
        let mut conn = Connection::new(config(), now);
        let many = "GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(MAX_OUTSTANDING + 4);
        conn.receive(many.as_bytes(), now);
        let mut tickets = Vec::new();
        while let Event::Request(request, ticket) = conn.poll(now) {
            tickets.push((answer(&request), ticket));
        }
        assert_eq!(tickets.len(), MAX_OUTSTANDING);
        assert!(!conn.wants_input());
        assert_eq!(conn.next_deadline(), None, "not the client's fault");
        for (response, ticket) in tickets {
            conn.respond(ticket, &response, now);
        }
        drain(&mut conn, now);
        let mut rest = 0;
        while let Event::Request(request, ticket) = conn.poll(now) {
            conn.respond(ticket, &answer(&request), now);
            rest += 1;
        }
        assert_eq!(rest, 4);
    }
}
