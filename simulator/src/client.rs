//! One simulated client, and how its fate is classified.
//!
//! Every client is a thread of its own (`client-1` … `client-N`), as in the lecture's
//! simulator. All of them wait at a barrier and start together; from that moment each has
//! its own deadline, and every blocking call it makes (connect, write, read) is bounded by
//! what is left of it. So a client never waits past its deadline, and the whole run never
//! lasts longer than the deadline plus the hold.
//!
//! Blocking sockets and one thread per client are the honest model of the lecture's
//! clients. They are also fast enough for load runs: each client spends its life in
//! `write` and `read`, the kernel does the waiting, and the per-request work here is a few
//! hundred nanoseconds of parsing.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::scenario::{DeadlineClock, Load, Scenario};

/// What happened to a client (or, in a load run, to one request). Exactly one per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Complete 2xx responses, in time.
    Served,
    /// Not even connected by the deadline: what a full backlog looks like.
    ConnectTimeout,
    /// Connected, but no complete response by the deadline.
    ServiceTimeout,
    /// The connection was refused: nothing listening, or the listener is shutting down.
    Refused,
    /// The server closed or reset the connection before a complete response.
    Reset,
    /// The server answered with an error status: 503 or another 5xx (or any non-2xx).
    Rejected,
    /// What came back was not valid HTTP.
    BadResponse,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Served,
        Outcome::ConnectTimeout,
        Outcome::ServiceTimeout,
        Outcome::Refused,
        Outcome::Reset,
        Outcome::Rejected,
        Outcome::BadResponse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Served => "served",
            Outcome::ConnectTimeout => "connect_timeout",
            Outcome::ServiceTimeout => "service_timeout",
            Outcome::Refused => "refused",
            Outcome::Reset => "reset",
            Outcome::Rejected => "rejected",
            Outcome::BadResponse => "bad_response",
        }
    }

    /// Ran out of time: counted "over the deadline" in the latency distribution.
    pub fn timed_out(self) -> bool {
        matches!(self, Outcome::ConnectTimeout | Outcome::ServiceTimeout)
    }
}

/// The deadline rule, in one place: a wait meets its limit only if it ended strictly
/// before it. A response that completes at the deadline, or a few microseconds after it
/// because the kernel rounded a read timeout up, is late.
///
/// Every judgement of "in time" goes through this function: the client's outcome, each
/// load-run request, and the "over the deadline" count of the latency distribution, so the
/// ledger and the distribution can never disagree.
pub fn in_time(waited_us: u64, limit_us: u64) -> bool {
    waited_us < limit_us
}

/// Everything recorded about one client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientRecord {
    pub id: usize,
    pub outcome: Outcome,
    /// From the start to the completed TCP handshake.
    pub connect_us: Option<u64>,
    /// From the start to the first byte of the first response.
    pub first_byte_us: Option<u64>,
    /// From the start to the end of the last response.
    pub complete_us: Option<u64>,
    /// The wait the deadline was applied to, when it is known: from the start to the last
    /// response (`--deadline from-start`), or the longest single step, connecting or one
    /// response (`--deadline per-call`). A client whose deadline passed while it was still
    /// waiting has none: all we know is that it waited at least the deadline.
    pub waited_us: Option<u64>,
    /// The status of the last response received.
    pub status: Option<u16>,
    /// The server thread that answered the first request, where the server says
    /// (servelab's `X-Servelab-Thread` header).
    pub server_thread: Option<String>,
    /// Requests answered with 2xx in time.
    pub served_requests: u64,
    /// Requests that failed (load runs go on after a failure).
    pub failed_requests: u64,
    /// What went wrong, in words.
    pub error: Option<String>,
    /// Load runs: the latency of every request whose response arrived, in microseconds
    /// (request sent to response complete), late ones included.
    #[serde(skip)]
    pub latencies: Histogram<u64>,
    /// Load runs: requests still unanswered when their deadline passed. Their latency is
    /// unknown (censored): the distribution records them at the deadline.
    #[serde(skip)]
    pub censored: u64,
    /// Failed requests by outcome (load runs).
    #[serde(skip)]
    pub failures: Vec<Outcome>,
}

/// A failed exchange: its class and a sentence about it.
#[derive(Debug)]
pub struct Failure {
    pub outcome: Outcome,
    pub message: String,
}

impl Failure {
    fn new(outcome: Outcome, message: impl Into<String>) -> Failure {
        Failure {
            outcome,
            message: message.into(),
        }
    }

    fn from_io(e: &io::Error, doing: &str) -> Failure {
        let outcome = match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::ServiceTimeout,
            _ => Outcome::Reset,
        };
        Failure::new(outcome, format!("{doing}: {e}"))
    }

    /// A step that completed, but not in time.
    fn late(outcome: Outcome, what: &str, waited_us: u64, limit_us: u64) -> Failure {
        Failure::new(
            outcome,
            format!(
                "{what} {} after the deadline",
                crate::report::human_us(waited_us - limit_us.min(waited_us))
            ),
        )
    }
}

/// One complete response.
pub struct Reply {
    pub status: u16,
    pub first_byte: Instant,
    pub server_thread: Option<String>,
    /// The server announced it closes the connection.
    pub close: bool,
}

/// The fixed inputs of every client of a run.
pub struct Plan<'a> {
    pub addr: SocketAddr,
    pub host: String,
    pub scenario: &'a Scenario,
}

/// Runs client `id` from `start` to its end and returns its record. Called on the client's
/// own thread, right after the common barrier.
pub fn run(id: usize, plan: &Plan, start: Instant) -> ClientRecord {
    let mut record = ClientRecord {
        id,
        outcome: Outcome::Served,
        connect_us: None,
        first_byte_us: None,
        complete_us: None,
        waited_us: None,
        status: None,
        server_thread: None,
        served_requests: 0,
        failed_requests: 0,
        error: None,
        latencies: crate::report::new_histogram(),
        censored: 0,
        failures: Vec::new(),
    };
    match plan.scenario.load {
        Load::Requests(count) => {
            if let Err(failure) = scenario_client(plan, start, count, &mut record) {
                let limit_us = micros(plan.scenario.timeout);
                if failure.outcome.timed_out()
                    && record.waited_us.is_some_and(|w| in_time(w, limit_us))
                {
                    // The step that ran out of time never ended, so the client's wait is
                    // unknown beyond "at least the deadline" (censored); what was recorded
                    // belongs to an earlier step.
                    record.waited_us = None;
                }
                fail(&mut record, failure);
            }
        }
        Load::Duration(length) => load_client(plan, start, length, &mut record),
    }
    tracing::info!("disconnected ...");
    record
}

/// The lecture's client: connect, be served `count` times, hold the connection, leave.
///
/// Each step is bounded by the deadline of the scenario's clock: with `from-start` one
/// deadline, `T` after the common start, bounds everything; with `per-call` each step gets
/// a fresh `T` from its own beginning, as the lecture's `settimeout(T)` does. The wait that
/// the deadline applies to is recorded in `waited_us` and judged by [`in_time`].
fn scenario_client(
    plan: &Plan,
    start: Instant,
    count: u32,
    record: &mut ClientRecord,
) -> Result<(), Failure> {
    let timeout = plan.scenario.timeout;
    let limit_us = micros(timeout);
    // Where the clock of a step that begins at `began` starts, by the scenario's rule.
    let origin = |began: Instant| match plan.scenario.deadline {
        DeadlineClock::FromStart => start,
        DeadlineClock::PerCall => began,
    };
    let mut conn = None;
    let mut request = Vec::with_capacity(256);
    plan.scenario.request.encode(&plan.host, &mut request);
    for i in 0..count {
        if conn.is_none() {
            tracing::info!("trying to connect to {} ...", plan.addr);
            let began = Instant::now();
            let clock = origin(began);
            let c = Connection::open(plan.addr, clock + timeout)?;
            let connected = Instant::now();
            record.connect_us.get_or_insert(micros(connected - start));
            let waited = micros(connected - clock);
            record.waited_us = Some(record.waited_us.unwrap_or(0).max(waited));
            if !in_time(waited, limit_us) {
                return Err(Failure::late(
                    Outcome::ConnectTimeout,
                    "connected",
                    waited,
                    limit_us,
                ));
            }
            tracing::info!("connected, waiting for service ...");
            conn = Some(c);
        }
        let Some(c) = conn.as_mut() else {
            return Ok(());
        };
        if i > 0 && plan.scenario.request.varies() {
            plan.scenario.request.encode(&plan.host, &mut request);
        }
        let sent = Instant::now();
        let clock = origin(sent);
        let reply = c.exchange(
            &request,
            clock + timeout,
            true,
            plan.scenario.request.is_head(),
            i == 0,
        )?;
        let done = Instant::now();
        record.complete_us = Some(micros(done - start));
        record.status = Some(reply.status);
        if i == 0 {
            record.first_byte_us = Some(micros(reply.first_byte - start));
            record.server_thread = reply.server_thread;
        }
        let waited = micros(done - clock);
        record.waited_us = Some(record.waited_us.unwrap_or(0).max(waited));
        if !in_time(waited, limit_us) {
            return Err(Failure::late(
                Outcome::ServiceTimeout,
                "the response arrived",
                waited,
                limit_us,
            ));
        }
        if !(200..300).contains(&reply.status) {
            return Err(Failure::new(
                Outcome::Rejected,
                format!("the server answered {}", reply.status),
            ));
        }
        record.served_requests += 1;
        if reply.close {
            conn = None;
        }
    }
    if !plan.scenario.hold.is_zero() {
        tracing::info!(
            "service available! keeping it busy for {} ...",
            humantime::format_duration(plan.scenario.hold)
        );
        // Holds the connection open and idle, as the lecture's clients do.
        std::thread::sleep(plan.scenario.hold);
        tracing::info!("finished using the service");
    }
    drop(conn);
    Ok(())
}

/// A load-run client: requests back to back on a keep-alive connection until `length` has
/// passed, each request with its own deadline. Reconnects when the server closes.
fn load_client(plan: &Plan, start: Instant, length: Duration, record: &mut ClientRecord) {
    let end = start + length;
    let timeout = plan.scenario.timeout;
    let limit_us = micros(timeout);
    let mut conn: Option<Connection> = None;
    let mut request = Vec::with_capacity(256);
    plan.scenario.request.encode(&plan.host, &mut request);
    while Instant::now() < end {
        let sent = Instant::now();
        if conn.is_none() {
            match Connection::open(plan.addr, sent + timeout) {
                Ok(c) => {
                    record.connect_us.get_or_insert(micros(start.elapsed()));
                    conn = Some(c);
                }
                Err(failure) => {
                    let stop = matches!(failure.outcome, Outcome::Refused);
                    if failure.outcome.timed_out() {
                        record.censored += 1;
                    }
                    note_failure(record, failure);
                    if stop {
                        // Nothing is listening any more; retrying would only spin.
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        if plan.scenario.request.varies() {
            plan.scenario.request.encode(&plan.host, &mut request);
        }
        let first = record.served_requests == 0;
        match c.exchange(
            &request,
            sent + timeout,
            false,
            plan.scenario.request.is_head(),
            first,
        ) {
            Ok(reply) => {
                let took = micros(sent.elapsed());
                let _ = record.latencies.record(took.max(1));
                record.status = Some(reply.status);
                if first {
                    record.first_byte_us = Some(micros(reply.first_byte - start));
                    record.server_thread = reply.server_thread;
                }
                if reply.close {
                    conn = None;
                }
                if !in_time(took, limit_us) {
                    note_failure(
                        record,
                        Failure::late(
                            Outcome::ServiceTimeout,
                            "a response arrived",
                            took,
                            limit_us,
                        ),
                    );
                } else if (200..300).contains(&reply.status) {
                    record.served_requests += 1;
                    record.complete_us = Some(micros(start.elapsed()));
                } else {
                    note_failure(
                        record,
                        Failure::new(
                            Outcome::Rejected,
                            format!("the server answered {}", reply.status),
                        ),
                    );
                }
            }
            Err(failure) => {
                conn = None;
                if failure.outcome.timed_out() {
                    record.censored += 1;
                }
                note_failure(record, failure);
            }
        }
    }
}

fn fail(record: &mut ClientRecord, failure: Failure) {
    if failure.outcome.timed_out() {
        tracing::info!("timeout waiting for service! ({})", failure.message);
    } else {
        tracing::info!("{}: {}", failure.outcome.name(), failure.message);
    }
    record.outcome = failure.outcome;
    record.failed_requests += 1;
    record.error = Some(failure.message);
}

fn note_failure(record: &mut ClientRecord, failure: Failure) {
    record.failures.push(failure.outcome);
    if record.outcome == Outcome::Served {
        record.outcome = failure.outcome;
        record.error = Some(failure.message);
    }
    record.failed_requests += 1;
}

/// Microseconds, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A client connection with a read buffer. Also used by the end-to-end benchmarks.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` that hold unread data.
    len: usize,
    /// The read timeout last set, to skip redundant system calls.
    timeout_set: Option<Duration>,
}

impl Connection {
    /// Connects, waiting at most until `deadline`.
    pub fn open(addr: SocketAddr, deadline: Instant) -> Result<Connection, Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::new(
                Outcome::ConnectTimeout,
                "no time left to connect",
            ));
        }
        // Blocks until the handshake completes, the server refuses, or time runs out (when
        // the server's backlog is full, the kernel drops our SYN and retries after ~1 s).
        let stream = TcpStream::connect_timeout(&addr, left).map_err(|e| {
            let outcome = match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::ConnectTimeout,
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => Outcome::Reset,
                _ => Outcome::Refused,
            };
            Failure::new(outcome, format!("connecting to {addr}: {e}"))
        })?;
        let io = |e: io::Error| Failure::from_io(&e, "setting up the socket");
        stream.set_nodelay(true).map_err(io)?;
        stream.set_write_timeout(Some(left)).map_err(io)?;
        Ok(Connection {
            stream,
            buf: vec![0; 16 * 1024],
            len: 0,
            timeout_set: None,
        })
    }

    /// Sends `request` and reads one complete response by `deadline`. With `exact` the
    /// read timeout is recomputed before every read so the deadline holds to the
    /// millisecond; load runs skip that system call and check the time afterwards instead.
    pub fn exchange(
        &mut self,
        request: &[u8],
        deadline: Instant,
        exact: bool,
        head_only: bool,
        want_thread: bool,
    ) -> Result<Reply, Failure> {
        // Blocks until the kernel has taken the request (bounded by the write timeout).
        self.stream
            .write_all(request)
            .map_err(|e| Failure::from_io(&e, "sending the request"))?;
        let mut first_byte = None;
        loop {
            if self.len > 0 {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buf[..self.len]) {
                    Ok(httparse::Status::Complete(head_len)) => {
                        let status = response.code.unwrap_or(0);
                        if (100..200).contains(&status) {
                            // An interim response: skip it and read the real one.
                            self.consume(head_len);
                            continue;
                        }
                        let framing = Framing::of(
                            response.headers,
                            head_only || status == 204 || status == 304,
                        );
                        let close = response.headers.iter().any(|h| {
                            h.name.eq_ignore_ascii_case("connection")
                                && h.value.eq_ignore_ascii_case(b"close")
                        });
                        let server_thread = want_thread
                            .then(|| {
                                response
                                    .headers
                                    .iter()
                                    .find(|h| h.name.eq_ignore_ascii_case("x-servelab-thread"))
                                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
                            })
                            .flatten();
                        let framing = framing?;
                        self.consume(head_len);
                        self.skip_body(framing, deadline, exact)?;
                        return Ok(Reply {
                            status,
                            first_byte: first_byte.unwrap_or_else(Instant::now),
                            server_thread,
                            close: close || framing == Framing::UntilClose,
                        });
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => {
                        return Err(Failure::new(
                            Outcome::BadResponse,
                            format!("not an HTTP response: {e}"),
                        ))
                    }
                }
            }
            let n = self.fill(deadline, exact)?;
            if n == 0 {
                return Err(Failure::new(
                    Outcome::Reset,
                    "the server closed the connection before a complete response",
                ));
            }
            first_byte.get_or_insert_with(Instant::now);
        }
    }

    /// Reads and discards the body described by `framing`.
    fn skip_body(
        &mut self,
        framing: Framing,
        deadline: Instant,
        exact: bool,
    ) -> Result<(), Failure> {
        match framing {
            Framing::Empty => Ok(()),
            Framing::Length(mut left) => loop {
                let take = left.min(self.len);
                self.consume(take);
                left -= take;
                if left == 0 {
                    return Ok(());
                }
                if self.fill(deadline, exact)? == 0 {
                    return Err(Failure::new(
                        Outcome::Reset,
                        "the server closed the connection in the middle of a body",
                    ));
                }
            },
            Framing::Chunked => loop {
                match httparse::parse_chunk_size(&self.buf[..self.len]) {
                    Ok(httparse::Status::Complete((size_len, size))) => {
                        let size = usize::try_from(size).unwrap_or(usize::MAX);
                        if size == 0 {
                            // The last chunk; then an empty trailer line.
                            self.consume(size_len);
                            while self.len < 2 {
                                if self.fill(deadline, exact)? == 0 {
                                    return Err(Failure::new(
                                        Outcome::Reset,
                                        "closed in a chunked body",
                                    ));
                                }
                            }
                            self.consume(2);
                            return Ok(());
                        }
                        self.consume(size_len);
                        // The chunk's data and its CRLF.
                        self.skip_body(Framing::Length(size.saturating_add(2)), deadline, exact)?;
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.fill(deadline, exact)? == 0 {
                            return Err(Failure::new(Outcome::Reset, "closed in a chunked body"));
                        }
                    }
                    Err(_) => {
                        return Err(Failure::new(
                            Outcome::BadResponse,
                            "a malformed chunked body",
                        ))
                    }
                }
            },
            Framing::UntilClose => {
                self.len = 0;
                while self.fill(deadline, exact)? > 0 {
                    self.len = 0;
                }
                Ok(())
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Reads more bytes, waiting at most until `deadline`.
    fn fill(&mut self, deadline: Instant, exact: bool) -> Result<usize, Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::new(
                Outcome::ServiceTimeout,
                "no complete response by the deadline",
            ));
        }
        let timeout = if exact {
            left
        } else {
            self.timeout_set.unwrap_or(left)
        };
        if self.timeout_set != Some(timeout) {
            self.stream
                .set_read_timeout(Some(timeout))
                .map_err(|e| Failure::from_io(&e, "setting the read timeout"))?;
            self.timeout_set = Some(timeout);
        }
        if self.len == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            // Blocks until the server sends something, closes, or the time is up.
            match self.stream.read(&mut self.buf[self.len..]) {
                Ok(n) => {
                    self.len += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(Failure::new(
                        Outcome::ServiceTimeout,
                        "no complete response by the deadline",
                    ))
                }
                Err(e) => return Err(Failure::from_io(&e, "reading the response")),
            }
        }
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

impl Framing {
    fn of(headers: &[httparse::Header], no_body: bool) -> Result<Framing, Failure> {
        if no_body {
            return Ok(Framing::Empty);
        }
        let mut framing = Framing::UntilClose;
        for header in headers {
            if header.name.eq_ignore_ascii_case("transfer-encoding") {
                if header.value.eq_ignore_ascii_case(b"chunked") {
                    return Ok(Framing::Chunked);
                }
            } else if header.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| {
                        Failure::new(Outcome::BadResponse, "an unreadable Content-Length")
                    })?;
                framing = if n == 0 {
                    Framing::Empty
                } else {
                    Framing::Length(n)
                };
            }
        }
        Ok(framing)
    }
}
