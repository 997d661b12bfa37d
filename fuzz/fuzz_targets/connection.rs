//! Fuzzes `protocol::Connection`, the connection state machine, driven as a server drives
//! it.
//!
//! The input is what the client sends, unchanged (the seed corpus is plain requests). How
//! the driver behaves is drawn from a small generator seeded by a hash of the input, so a
//! crashing input replays exactly: how the bytes are cut into reads (everything at once, a
//! byte at a time, small or large pieces), how the clock moves (not at all, milliseconds,
//! seconds, straight to the next deadline), when and in which order requests are answered
//! (at once, in reverse, at random later), how much of the output each write takes, whether
//! the server stops, whether the client closes its side once it has sent everything, and
//! the settings (keep-alive off, the pace off, tight limits). Requests are answered with
//! `protocol::route` the way the unit tests in `connection.rs` do.
//!
//! What is checked, besides never panicking:
//!
//! * the driver reads only when `wants_input` says so, and that is never true while
//!   `MAX_OUTSTANDING` responses are owed or `OUTPUT_HIGH_WATER` bytes wait to be written;
//! * requests are handed out with consecutive ticket numbers, at most `MAX_OUTSTANDING`
//!   unanswered at once, each within the configured limits;
//! * every `Reject` closes: nothing is handed out after it, and the connection ends as
//!   `Closed::Finished`;
//! * `Wait` never leaves a deadline in the past (a driver would spin) and never leaves the
//!   connection stuck: with nothing owed and nothing to write, a deadline is always set;
//! * what is written is a sequence of well-formed responses (status line, headers, exactly
//!   `Content-Length` bytes of body, none for `HEAD`), each the one given for its request,
//!   in request order, with nothing after a `Connection: close`;
//! * a connection closes only once all its output is written (no response is cut off),
//!   nothing is written after `should_close_write`, and a closed connection stays closed;
//! * memory (every live heap byte, counted by the allocator) grows with what the client
//!   sent, never with what it announced: at most 12 bytes per byte received plus 256 KiB
//!   (the output high-water mark and 16 responses, with room for buffers doubling), and an
//!   idle connection keeps no more than 5 KiB (no buffer over 4 KiB), whatever it served;
//! * a silent client cannot keep the connection: once the input is used up, answering
//!   everything, writing everything and moving the clock to each deadline closes it.
//!
//! To see what the driver did with an input (a crash, say), run it with `FUZZ_TRACE=1`:
//! `FUZZ_TRACE=1 cargo fuzz run --sanitizer none connection fuzz/artifacts/connection/crash-...`.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use protocol::connection::{MAX_OUTSTANDING, OUTPUT_HIGH_WATER};
use protocol::request::{Limits, Method};
use protocol::{
    route, Closed, Config, Connection, Event, Job, Response, RouteConfig, Status, Ticket, Work,
};

/// The allocator, counting the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is
// updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Heap growth allowed per byte the client sent: its bytes may sit in the input buffer,
/// the body, the echoed response, the encoded response and the output, each buffer up to
/// twice its length.
const BYTES_PER_BYTE_FED: usize = 12;
/// Heap growth allowed whatever was sent: the output high-water mark and the responses
/// owed on top of it, with buffers doubling.
const FIXED_BYTES: usize = 4 * OUTPUT_HIGH_WATER;
/// What an idle connection may keep: the ring of owed responses (1 KiB) and no buffer
/// ("an idle connection keeps no buffers", `connection.rs`).
const IDLE_BYTES: usize = 1024;

/// The largest read a driver makes (the event loop's read size).
const READ_CHUNK: usize = 64 * 1024;

/// A splitmix64 generator seeded with the FNV-1a hash of the input.
struct Rng(u64);

impl Rng {
    fn new(data: &[u8]) -> Rng {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &byte in data {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(hash)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// In `0..=n`, as a usize.
    fn upto(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64 + 1)).unwrap_or(n)
    }
    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// How the driver cuts the client's bytes into reads.
#[derive(Debug, Clone, Copy)]
enum Reads {
    Whole,
    Bytes,
    Small,
    Large,
}

/// When the driver answers requests.
#[derive(Debug, Clone, Copy)]
enum Answers {
    /// As soon as a request is handed out, as a blocking driver does.
    AtOnce,
    /// After each round of polling, newest first: an event loop whose quick answers
    /// overtake slow ones.
    Reversed,
    /// Some now, some later, in any order: helpers and timers finishing when they do.
    Later,
}

/// How much of the output each write takes.
#[derive(Debug, Clone, Copy)]
enum Writes {
    All,
    Partial,
    Stalling,
}

/// Everything the driver does, drawn once per input.
#[derive(Debug)]
struct Plan {
    reads: Reads,
    answers: Answers,
    writes: Writes,
    stop_at: Option<usize>,
    client_closes: bool,
}

/// What the driver answered a request with: what the output must show for it.
#[derive(Debug)]
struct Given {
    status: u16,
    /// Whether the answer goes without a body (`HEAD`); unknown for a `Reject`, which may
    /// end a `HEAD` request whose body never came.
    head_only: Option<bool>,
    body_len: usize,
    body_hash: u64,
    /// The response ends the connection (`Response::close`): it must say so.
    closing: bool,
}

fn hash(bytes: &[u8]) -> u64 {
    Rng::new(bytes).0
}

/// The written bytes, checked response by response as they come.
#[derive(Default)]
struct Transcript {
    /// Written and not checked yet (a response is checked once it is complete).
    pending: Vec<u8>,
    /// The answers given, by ticket number, until their response is checked.
    given: BTreeMap<u64, Given>,
    /// The ticket number the next final response must answer.
    next: u64,
    /// A response with `Connection: close` was written: nothing may follow.
    ended: bool,
    /// Whether the last final response written said `Connection: close`.
    last_closed: Option<bool>,
}

/// The headers servelab writes, and nothing else.
const HEADERS: [&str; 8] = [
    "Server",
    "Date",
    "Content-Type",
    "Content-Length",
    "X-Servelab-Thread",
    "Allow",
    "Retry-After",
    "Connection",
];

impl Transcript {
    fn write(&mut self, bytes: &[u8]) {
        assert!(
            !self.ended || bytes.is_empty(),
            "bytes written after Connection: close"
        );
        self.pending.extend_from_slice(bytes);
        while self.check_one(false) {}
        if self.pending.is_empty() {
            // Keep no buffer, so that the idle check counts the connection alone.
            self.pending = Vec::new();
        }
    }

    /// Checks the response at the start of `pending` if it is complete, removes it, and
    /// says whether it did. At the end (`finished`), what is left must be whole.
    fn check_one(&mut self, finished: bool) -> bool {
        let Some(end) = find(&self.pending, b"\r\n\r\n") else {
            assert!(
                self.pending.len() < 16 * 1024,
                "a response head of over 16 KiB"
            );
            assert!(
                !finished || self.pending.is_empty(),
                "output ends inside a head"
            );
            return false;
        };
        assert!(!self.ended, "a response after Connection: close");
        let head = std::str::from_utf8(&self.pending[..end]).expect("a response head is text");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let rest = status_line
            .strip_prefix("HTTP/1.1 ")
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let (code, reason) = rest
            .split_once(' ')
            .unwrap_or_else(|| panic!("{status_line:?}"));
        assert!(
            code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()),
            "{status_line:?}"
        );
        let code: u16 = code.parse().unwrap_or_default();
        if code == 100 {
            assert_eq!(
                head, "HTTP/1.1 100 Continue",
                "an interim response with headers"
            );
            self.pending.drain(..end + 4);
            return true;
        }
        let status = Status::ALL
            .iter()
            .find(|s| s.code() == code)
            .unwrap_or_else(|| panic!("unknown status in {status_line:?}"));
        assert_eq!(reason, status.reason(), "{status_line:?}");
        let (mut length, mut connection) = (None, None);
        for line in lines {
            let (name, value) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("header {line:?}"));
            assert!(
                HEADERS.contains(&name),
                "header {name} is not one servelab writes"
            );
            match name {
                "Content-Length" => {
                    assert!(length.is_none(), "two Content-Length headers");
                    length = Some(value.parse::<usize>().expect("a decimal Content-Length"));
                }
                "Connection" => {
                    assert!(connection.is_none(), "two Connection headers");
                    assert!(
                        value == "close" || value == "keep-alive",
                        "Connection: {value}"
                    );
                    connection = Some(value == "close");
                }
                "Server" => assert_eq!(value, "servelab-fuzz"),
                _ => {}
            }
        }
        let length = length.expect("every response has a Content-Length");
        let close = connection == Some(true);
        let seq = self.next;
        let given = self
            .given
            .get(&seq)
            .unwrap_or_else(|| panic!("a response written for request {seq}, never answered"));
        assert_eq!(
            code, given.status,
            "request {seq} got another answer than its own"
        );
        assert_eq!(length, given.body_len, "request {seq}: Content-Length");
        assert!(
            !given.closing || close,
            "request {seq}: a closing response without Connection: close"
        );
        let available = self.pending.len() - (end + 4);
        let body_len = match given.head_only {
            Some(true) => 0,
            Some(false) if available >= length => length,
            Some(false) => return false,
            // A Reject, the last response: whole only at the end, with its body or not.
            None if !finished => return false,
            None => {
                assert!(
                    available == 0 || available == length,
                    "request {seq}: {available} bytes after a head with Content-Length {length}"
                );
                available
            }
        };
        if body_len > 0 {
            let body = &self.pending[end + 4..end + 4 + body_len];
            assert_eq!(
                hash(body),
                given.body_hash,
                "request {seq}: another body than the one given"
            );
        }
        self.given.remove(&seq);
        if self.given.is_empty() {
            // An emptied map keeps a node; the idle check counts the connection alone.
            self.given = BTreeMap::new();
        }
        self.pending.drain(..end + 4 + body_len);
        self.next += 1;
        self.ended = close;
        self.last_closed = Some(close);
        true
    }

    /// The connection is closed: everything written must have been whole.
    /// The server gave up writing (`Stalled`): every whole response is checked, and the
    /// one it stopped in the middle of may be cut short.
    fn cut_short(&mut self) {
        while self.check_one(false) {}
    }

    fn finish(&mut self) {
        while self.check_one(true) {}
        assert!(
            self.pending.is_empty(),
            "{} bytes of output that are no response",
            self.pending.len()
        );
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The driver and what it has seen.
struct Driver {
    conn: Connection,
    config: Arc<Config>,
    routes: RouteConfig,
    now: Instant,
    rng: Rng,
    plan: Plan,
    /// Answers worked out and not given back yet.
    held: Vec<(Response, Ticket, Option<bool>)>,
    transcript: Transcript,
    issued: u64,
    answered: u64,
    fed: usize,
    rejected: bool,
    closed: Option<Closed>,
    client_closed: bool,
    write_closed: bool,
    baseline: usize,
    start: Instant,
    /// `FUZZ_TRACE` is set: say every step on stderr.
    trace: bool,
}

impl Driver {
    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>9.3?} {}", self.now - self.start, what());
        }
    }

    /// The answer to a request, as the unit tests in `connection.rs` give it: no waiting
    /// (a sleep is answered at once, or later by the plan), and the computation run here
    /// when it is quick (a large `/factor` gets the 503 the CPU limit would give it).
    fn answer(&self, request: &protocol::Request) -> Response {
        match route(request, &self.routes) {
            Work::Respond(response) => response,
            Work::Sleep { then, .. } => then,
            Work::Compute(job @ Job::Factor { n, .. }) if n < 1 << 32 => job.run(),
            Work::Compute(_) => Response::error(Status::ServiceUnavailable, "too costly here"),
            Work::Stats => Response::text(Status::Ok, "{}"),
        }
    }

    fn give_back(&mut self, index: usize) {
        let (response, ticket, head_only) = self.held.swap_remove(index);
        self.give(response, ticket, head_only);
        if self.held.is_empty() {
            self.held = Vec::new();
        }
    }

    fn give(&mut self, response: Response, ticket: Ticket, head_only: Option<bool>) {
        self.transcript.given.insert(
            ticket.seq(),
            Given {
                status: response.status.code(),
                head_only,
                body_len: response.body.len(),
                body_hash: hash(&response.body),
                closing: response.close,
            },
        );
        self.answered += 1;
        self.log(|| format!("respond #{} {}", ticket.seq(), response.status.code()));
        self.conn.respond(ticket, &response, self.now);
    }

    /// Polls until the connection waits or closes, handing out answers as the plan says.
    fn poll_all(&mut self) {
        for _ in 0..4 * MAX_OUTSTANDING + 16 {
            let event = self.conn.poll(self.now);
            self.log(|| match &event {
                Event::Request(r, t) => format!(
                    "poll: request #{} {} {}",
                    t.seq(),
                    r.method.as_str(),
                    r.path
                ),
                Event::Reject(r, t) => format!("poll: reject #{} {}", t.seq(), r.status.code()),
                other => format!(
                    "poll: {other:?}, next deadline {:?}",
                    self.conn.next_deadline().map(|d| d - self.start)
                ),
            });
            if let Some(why) = self.closed {
                assert!(
                    matches!(event, Event::Closed(again) if again == why),
                    "closed as {why:?}, then {event:?}"
                );
                return;
            }
            match event {
                Event::Request(request, ticket) => {
                    assert!(!self.rejected, "a request handed out after a Reject");
                    self.issue(&ticket);
                    assert!(request.path.starts_with('/'), "path {:?}", request.path);
                    assert!(request.body.len() <= self.config.limits.max_body_bytes);
                    let response = self.answer(&request);
                    let head_only = Some(request.method == Method::Head);
                    drop(request);
                    self.hold(response, ticket, head_only);
                }
                Event::Reject(response, ticket) => {
                    assert!(!self.rejected, "a second Reject");
                    assert!(response.close, "a Reject that does not close: {response:?}");
                    self.rejected = true;
                    self.issue(&ticket);
                    self.hold(response, ticket, None);
                }
                Event::Wait => {
                    if let Some(at) = self.conn.next_deadline() {
                        assert!(at > self.now, "Wait with a deadline already passed");
                    } else {
                        assert!(
                            self.issued > self.answered || !self.conn.output().is_empty(),
                            "Wait with nothing owed, nothing to write and no deadline: stuck forever"
                        );
                    }
                    if matches!(self.plan.answers, Answers::Reversed) {
                        while !self.held.is_empty() {
                            self.give_back(self.held.len() - 1);
                        }
                    }
                    return;
                }
                Event::Closed(why) => {
                    self.closed = Some(why);
                    assert!(!self.conn.wants_input(), "closed, yet wants input");
                    // Only a client that read nothing for the read timeout loses output.
                    assert!(
                        self.conn.output().is_empty() || why == Closed::Stalled,
                        "closed ({why:?}) with {} bytes of output unwritten: a response cut off",
                        self.conn.output().len()
                    );
                    return;
                }
            }
        }
        panic!("poll never settled on Wait or Closed");
    }

    fn issue(&mut self, ticket: &Ticket) {
        assert_eq!(ticket.seq(), self.issued, "tickets out of sequence");
        self.issued += 1;
        let unanswered = self.issued - self.answered;
        assert!(
            unanswered <= MAX_OUTSTANDING as u64,
            "{unanswered} requests handed out and unanswered"
        );
        assert!(
            self.conn.owed() <= MAX_OUTSTANDING,
            "{} owed",
            self.conn.owed()
        );
    }

    fn hold(&mut self, response: Response, ticket: Ticket, head_only: Option<bool>) {
        if matches!(self.plan.answers, Answers::AtOnce) {
            self.give(response, ticket, head_only);
        } else {
            self.held.push((response, ticket, head_only));
        }
    }

    /// Writes what the plan lets this turn write.
    fn write(&mut self, all: bool) {
        let pending = self.conn.output().len();
        if self.write_closed {
            assert_eq!(pending, 0, "output after the sending side was closed");
            return;
        }
        if pending == 0 {
            return;
        }
        let n = match (all, self.plan.writes) {
            (true, _) | (false, Writes::All) => pending,
            (false, Writes::Partial) => self.rng.upto(pending),
            (false, Writes::Stalling) if self.rng.one_in(3) => 0,
            (false, Writes::Stalling) => pending,
        };
        self.log(|| format!("wrote {n} of {pending} bytes"));
        let bytes = self.conn.output()[..n].to_vec();
        self.transcript.write(&bytes);
        drop(bytes);
        self.conn.wrote(n, self.now);
        self.write_closed = self.conn.should_close_write();
    }

    fn check_memory(&self) {
        let grown = live().saturating_sub(self.baseline);
        let allowed = BYTES_PER_BYTE_FED * self.fed + FIXED_BYTES;
        assert!(
            grown <= allowed,
            "{grown} heap bytes for {} bytes received (allowed {allowed})",
            self.fed
        );
        if self.conn.is_idle()
            && self.held.is_empty()
            && self.transcript.pending.is_empty()
            && self.transcript.given.is_empty()
        {
            assert!(
                grown <= IDLE_BYTES,
                "an idle connection keeps {grown} heap bytes"
            );
        }
    }

    fn check_reading(&self) {
        if self.conn.wants_input() {
            assert!(
                self.conn.owed() < MAX_OUTSTANDING,
                "reads with {} owed",
                self.conn.owed()
            );
            assert!(
                self.conn.output().len() < OUTPUT_HIGH_WATER,
                "reads with {} bytes unwritten",
                self.conn.output().len()
            );
        }
    }
}

fn settings(rng: &mut Rng) -> Config {
    let limits = if rng.one_in(8) {
        Limits {
            max_header_bytes: 64 + rng.upto(1024),
            max_body_bytes: rng.upto(64),
        }
    } else {
        Limits::default()
    };
    Config {
        limits,
        read_timeout: Duration::from_secs(10),
        pace_grace: Duration::from_secs(2),
        min_rate: if rng.one_in(8) { 0 } else { 500 },
        keep_alive_timeout: if rng.one_in(8) {
            Duration::ZERO
        } else {
            Duration::from_secs(5)
        },
        server_header: "servelab-fuzz".into(),
    }
}

fn plan(rng: &mut Rng, len: usize) -> Plan {
    let reads = match rng.below(4) {
        0 => Reads::Whole,
        // A byte at a time re-parses the head at every byte: quadratic, so short inputs only.
        1 if len <= 2048 => Reads::Bytes,
        1 | 2 => Reads::Small,
        _ => Reads::Large,
    };
    let answers = match rng.below(3) {
        0 => Answers::AtOnce,
        1 => Answers::Reversed,
        _ => Answers::Later,
    };
    let writes = match rng.below(3) {
        0 => Writes::All,
        1 => Writes::Partial,
        _ => Writes::Stalling,
    };
    let stop_at = rng.one_in(8).then(|| rng.upto(len / 8 + 8));
    let client_closes = rng.one_in(2);
    Plan {
        reads,
        answers,
        writes,
        stop_at,
        client_closes,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rng = Rng::new(data);
    let config = Arc::new(settings(&mut rng));
    let plan = plan(&mut rng, data.len());
    let trace = std::env::var_os("FUZZ_TRACE").is_some();
    if trace {
        eprintln!("{config:?}\n{plan:?}");
    }
    // The first response of a thread makes its cached Date and thread name: before the
    // baseline, so that they do not count as the connection's.
    let mut warm = Vec::new();
    Response::text(Status::Ok, "").encode(&mut warm, "servelab-fuzz", false, false, true);
    drop(warm);
    let now = Instant::now();
    let baseline = live();
    let mut driver = Driver {
        conn: Connection::new(Arc::clone(&config), now),
        config,
        routes: RouteConfig {
            architecture: "fuzz",
            max_sleep: Duration::from_secs(60),
            max_cpu: Duration::from_secs(2),
            allow_crash: false,
        },
        now,
        rng,
        plan,
        held: Vec::new(),
        transcript: Transcript::default(),
        issued: 0,
        answered: 0,
        fed: 0,
        rejected: false,
        closed: None,
        client_closed: false,
        write_closed: false,
        baseline,
        start: now,
        trace,
    };
    let mut rest = data;

    // The client's bytes, as the plan cuts them, with the server answering and writing.
    for step in 0..data.len() + 64 {
        if driver.closed.is_some() {
            break;
        }
        let d = &mut driver;
        match d.rng.below(16) {
            0..=9 => {}
            10..=12 => d.now += Duration::from_millis(d.rng.below(50)),
            13 => d.now += Duration::from_millis(d.rng.below(3000)),
            14 => {
                if let Some(at) = d.conn.next_deadline() {
                    d.now = d.now.max(at);
                }
            }
            _ => d.now += Duration::from_secs(11),
        }
        if d.plan.stop_at == Some(step) {
            d.log(|| "stop".into());
            d.conn.stop();
        }
        d.check_reading();
        if !rest.is_empty() && d.conn.wants_input() {
            let n = match d.plan.reads {
                Reads::Whole => READ_CHUNK,
                Reads::Bytes => 1,
                Reads::Small => 1 + d.rng.upto(15),
                Reads::Large => 1 + d.rng.upto(4095),
            }
            .min(rest.len());
            d.log(|| format!("receive {:?}", String::from_utf8_lossy(&rest[..n])));
            d.conn.receive(&rest[..n], d.now);
            d.fed += n;
            rest = &rest[n..];
        } else if rest.is_empty() && d.plan.client_closes && !d.client_closed {
            d.log(|| "receive: the client closed its side".into());
            d.conn.receive(&[], d.now);
            d.client_closed = true;
        }
        d.poll_all();
        if matches!(d.plan.answers, Answers::Later) {
            while !d.held.is_empty() && d.rng.one_in(2) {
                let i = d.rng.upto(d.held.len() - 1);
                d.give_back(i);
            }
        }
        d.write(false);
        d.check_memory();
        d.poll_all();
    }

    // The client says nothing more: answering everything, writing everything and moving
    // the clock to each deadline in turn must close the connection.
    for _ in 0..32 {
        let d = &mut driver;
        if d.closed.is_some() {
            break;
        }
        while !d.held.is_empty() {
            d.give_back(0);
        }
        d.write(true);
        d.check_memory();
        d.poll_all();
        if d.closed.is_none() {
            if let Some(at) = d.conn.next_deadline() {
                d.now = d.now.max(at);
            }
        }
    }
    let why = driver
        .closed
        .unwrap_or_else(|| panic!("the connection never closed: {:?}", driver.conn));
    assert!(driver.conn.output().is_empty() || why == Closed::Stalled);
    if driver.rejected {
        assert!(
            matches!(why, Closed::Finished | Closed::Stalled),
            "a Reject, then closed as {why:?}"
        );
    }
    if why == Closed::Stalled {
        driver.transcript.cut_short();
    } else {
        driver.transcript.finish();
    }
    if why == Closed::Finished && driver.transcript.last_closed.is_some() {
        assert_eq!(
            driver.transcript.last_closed,
            Some(true),
            "finished without Connection: close on the last response"
        );
    }
});
