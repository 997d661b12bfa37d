//! The generator: what the fuzzer writes on each connection, drawn from a seeded RNG.
//!
//! A fuzzer that only sends garbage tests one thing, the parser's first `400`. Most of a
//! server's code runs after a request parses, so most of what this generator makes is
//! well-formed: every route, bodies, pipelined batches, HTTP/1.0, `Expect: 100-continue`,
//! bare-LF line ends. Each connection then *ends* in one of a few ways, and the endings are
//! where servers go wrong:
//!
//! * the client closes once every answer is in ([`Ending::Close`]), or asked the server to
//!   close (`Connection: close`, HTTP/1.0);
//! * a **mutated** request, and then the client shuts down its sending side
//!   ([`Ending::Mutated`]): the server must answer what it can read and close. Mutations
//!   start from a well-formed request or from one of [`protocol::hostile::REQUESTS`] and
//!   flip, insert, delete, truncate, duplicate header lines, rewrite `Content-Length`
//!   (huge, negative, garbage, longer or shorter than the body) and splice two requests;
//! * a **stall** ([`Ending::Stall`]): the client stops in the middle of something and keeps
//!   its sending side open, never half-closing. Only the server's own deadlines
//!   (`--read-timeout`, the request pace of `--header-timeout`, `--keep-alive-timeout`) can
//!   end such a connection, which is exactly what the fuzzer measures.
//!
//! The generator does no I/O and reads no clock: given the same seed it makes the same
//! plans, byte for byte, which the unit tests below check. A mutated request is always the
//! last on its connection, because after it nobody knows where the next request would
//! start.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The most bytes one mutated request may grow to (repeated chunks and insertions).
const MAX_MUTATED: usize = 64 * 1024;

/// One request the fuzzer writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Req {
    /// The bytes on the wire.
    pub bytes: Vec<u8>,
    /// The answer has no body (a `HEAD` request), whatever its `Content-Length` says.
    pub head: bool,
    /// Made by the generator's grammar, not by a mutation: its answer must be well framed.
    pub well_formed: bool,
    /// The first part of a request only, sent by a stall that then waits.
    pub partial: bool,
    /// The server closes the connection after answering it (`Connection: close`, HTTP/1.0
    /// without keep-alive). Only ever the last request of a connection.
    pub closes: bool,
}

impl Req {
    /// A well-formed request, not `HEAD`, after which the connection stays open.
    fn kept_open(bytes: Vec<u8>) -> Req {
        Req {
            bytes,
            head: false,
            well_formed: true,
            partial: false,
            closes: false,
        }
    }

    /// The first part of a request, which a stall sends and then waits.
    fn partial(bytes: Vec<u8>) -> Req {
        Req {
            bytes,
            head: false,
            well_formed: false,
            partial: true,
            closes: false,
        }
    }
}

/// How a connection that stalls stops: each leaves the sending side open and waits for
/// the server to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallKind {
    /// Connects and sends nothing at all: `--read-timeout` counts from the connect.
    Silent,
    /// Sends part of a request head: the request pace (`--header-timeout` plus a second
    /// per `--min-rate` bytes), never past `--read-timeout`.
    PartialHead,
    /// Sends a whole head that announces a body, and only part of the body.
    PartialBody,
    /// Sends requests, reads their answers and then nothing more: `--keep-alive-timeout`.
    Idle,
    /// Sends a mutated request and no more, without half-closing.
    MutatedOpen,
}

impl StallKind {
    /// Every kind, in the order the stalled connections of a run take them in turn.
    pub const ALL: [StallKind; 5] = [
        StallKind::Silent,
        StallKind::PartialHead,
        StallKind::PartialBody,
        StallKind::Idle,
        StallKind::MutatedOpen,
    ];

    /// The kind's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            StallKind::Silent => "silent",
            StallKind::PartialHead => "partial-head",
            StallKind::PartialBody => "partial-body",
            StallKind::Idle => "idle",
            StallKind::MutatedOpen => "mutated-open",
        }
    }
}

/// The last thing a connection does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Nothing more: the client closes after the last answer (or the last request already
    /// asked the server to close).
    Close,
    /// A mutated request, then `shutdown(Write)`: the server sees the end of the stream.
    Mutated(Req),
    /// The client stops and keeps its sending side open; `last` is what it sends last
    /// (nothing for [`StallKind::Silent`] and [`StallKind::Idle`]).
    Stall { kind: StallKind, last: Option<Req> },
}

/// Everything one connection does: batches of well-formed requests, each batch written
/// with one `write` (a batch of more than one is pipelined), then its ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub batches: Vec<Vec<Req>>,
    pub ending: Ending,
}

impl Plan {
    /// The requests the plan writes, counting a partial or mutated last one.
    pub fn requests(&self) -> u64 {
        let batched: usize = self.batches.iter().map(Vec::len).sum();
        let last = match &self.ending {
            Ending::Close => 0,
            Ending::Mutated(_) => 1,
            Ending::Stall { last, .. } => usize::from(last.is_some()),
        };
        (batched + last) as u64
    }

    /// Cuts the plan down to at most `n` requests, so that a run writes exactly the
    /// number asked for. What is cut is the end: the ending's request first (a stall
    /// without its last request still stalls), then batches from the back.
    pub fn truncate(&mut self, n: u64) {
        let mut over = self.requests().saturating_sub(n);
        if over == 0 {
            return;
        }
        match &mut self.ending {
            Ending::Mutated(_) => {
                self.ending = Ending::Close;
                over -= 1;
            }
            Ending::Stall { kind, last } if last.is_some() => {
                // A stall keeps stalling: it just has nothing left to send.
                *kind = if self.batches.is_empty() {
                    StallKind::Silent
                } else {
                    StallKind::Idle
                };
                *last = None;
                over -= 1;
            }
            _ => {}
        }
        while over > 0 {
            let Some(batch) = self.batches.last_mut() else {
                break;
            };
            batch.pop();
            if batch.is_empty() {
                self.batches.pop();
            }
            over -= 1;
        }
        // A request that asks the server to close may only be the last one, and it was;
        // if its batch lost requests behind it, it still is.
    }
}

/// How the generator mixes its plans.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// The most well-formed requests on one connection (each connection draws 0 to this).
    pub per_connection: u32,
    /// The probability that a connection ends with a mutated request.
    pub mutate: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            per_connection: 16,
            mutate: 0.5,
        }
    }
}

/// Makes plans from a seeded RNG. See the module documentation.
#[derive(Debug)]
pub struct Generator {
    rng: SmallRng,
    mix: Mix,
}

impl Generator {
    /// A generator whose plans depend only on `seed` and `mix`.
    pub fn new(seed: u64, mix: Mix) -> Self {
        Generator {
            rng: SmallRng::seed_from_u64(seed),
            mix,
        }
    }

    /// The next connection's plan; `stall` makes it end in that kind of stall.
    pub fn plan(&mut self, stall: Option<StallKind>) -> Plan {
        let most = match stall {
            // A stall is slow whatever comes before it; a few requests are enough.
            Some(StallKind::Silent) => 0,
            Some(_) => self.mix.per_connection.min(3),
            None => self.mix.per_connection,
        };
        let count = self.rng.random_range(0..=most);
        let mut batches: Vec<Vec<Req>> = Vec::new();
        let mut left = count;
        while left > 0 {
            // Mostly one request at a time; sometimes a pipelined batch of up to 8.
            let size = if self.rng.random_bool(0.3) {
                self.rng.random_range(2..=8).min(left)
            } else {
                1
            };
            batches.push((0..size).map(|_| self.valid()).collect());
            left -= size;
        }
        let ending = match stall {
            Some(kind) => Ending::Stall {
                kind,
                last: self.stall_bytes(kind),
            },
            None if self.rng.random_bool(self.mix.mutate) => Ending::Mutated(self.mutated()),
            None => {
                // Sometimes the last request asks the server to close.
                if let Some(batch) = batches.last_mut() {
                    if self.rng.random_bool(0.2) {
                        batch.push(self.closing());
                    }
                }
                Ending::Close
            }
        };
        Plan { batches, ending }
    }

    /// What a stall of `kind` writes before it stops.
    fn stall_bytes(&mut self, kind: StallKind) -> Option<Req> {
        match kind {
            StallKind::Silent | StallKind::Idle => None,
            StallKind::PartialHead => {
                let whole = self.valid();
                // Cut somewhere before the end of the head: at least one byte is sent and
                // at least the last LF of the blank line is missing.
                let head_end = head_end(&whole.bytes).unwrap_or(whole.bytes.len());
                let cut = self.rng.random_range(1..head_end.max(2));
                Some(Req::partial(whole.bytes[..cut].to_vec()))
            }
            StallKind::PartialBody => {
                let length = self.rng.random_range(1..=4096usize);
                let sent = self.rng.random_range(0..length);
                let mut bytes = format!(
                    "POST /echo HTTP/1.1\r\nHost: fuzz\r\nContent-Length: {length}\r\n\r\n"
                )
                .into_bytes();
                bytes.extend(std::iter::repeat_n(b'b', sent));
                Some(Req::partial(bytes))
            }
            StallKind::MutatedOpen => Some(self.mutated()),
        }
    }

    /// A well-formed request that keeps the connection open.
    pub fn valid(&mut self) -> Req {
        let rng = &mut self.rng;
        let roll = rng.random_range(0..1000u32);
        let mut head = false;
        let (method, target, body): (&str, String, Vec<u8>) = match roll {
            0..300 => ("GET", "/".into(), Vec::new()),
            300..330 => {
                head = true;
                ("HEAD", "/".into(), Vec::new())
            }
            330..350 => ("GET", "/stats".into(), Vec::new()),
            350..380 => ("GET", "/time".into(), Vec::new()),
            380..630 => {
                // Mostly a UUID-sized body, sometimes none, sometimes several KiB.
                let len = match rng.random_range(0..20u32) {
                    0 => 0,
                    1 => rng.random_range(1024..=8192),
                    _ => rng.random_range(1..=64),
                };
                ("POST", "/echo".into(), body_bytes(rng, len))
            }
            630..640 => {
                let ms = if rng.random_bool(0.9) { 0 } else { 1 };
                ("POST", format!("/echo/{ms}"), body_bytes(rng, 36))
            }
            640..700 => ("GET", "/sleep/0".into(), Vec::new()),
            // A real wait is rare: on the sequential server every millisecond here is a
            // millisecond nobody else is served.
            700..705 => (
                "GET",
                format!("/sleep/{}", rng.random_range(1..=5)),
                Vec::new(),
            ),
            705..805 => (
                "GET",
                format!("/factor/{}", rng.random_range(2..=1_000_000u64)),
                Vec::new(),
            ),
            805..807 => (
                "GET",
                format!("/factor/{}", rng.random_range(2..=1u64 << 40)),
                Vec::new(),
            ),
            807..847 => ("GET", "/no/such/path".into(), Vec::new()),
            847..877 => (
                ["DELETE", "PUT", "POST"][rng.random_range(0..3)],
                "/".into(),
                Vec::new(),
            ),
            877..897 => ("GET", "/sleep/abc".into(), Vec::new()),
            897..917 => ("GET", "/?q=fuzz&x=1".into(), Vec::new()),
            // Written out whole: unusual forms that are still well formed.
            917..967 => return unusual_but_valid(rng, roll),
            _ => ("GET", "/".into(), Vec::new()),
        };
        let mut bytes = format!("{method} {target} HTTP/1.1\r\nHost: fuzz\r\n").into_bytes();
        // A few ordinary headers now and then.
        if rng.random_bool(0.2) {
            bytes.extend_from_slice(b"User-Agent: wirefuzz/0.1\r\nAccept: */*\r\n");
        }
        if rng.random_bool(0.05) {
            bytes.extend_from_slice(format!("X-Fuzz: {}\r\n", rng.random::<u64>()).as_bytes());
        }
        if !body.is_empty() || method == "POST" {
            bytes.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend(body);
        Req {
            bytes,
            head,
            well_formed: true,
            partial: false,
            closes: false,
        }
    }

    /// A well-formed request after which the server closes.
    fn closing(&mut self) -> Req {
        let bytes = if self.rng.random_bool(0.5) {
            b"GET / HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n".to_vec()
        } else {
            b"GET / HTTP/1.0\r\n\r\n".to_vec()
        };
        Req {
            bytes,
            head: false,
            well_formed: true,
            partial: false,
            closes: true,
        }
    }

    /// A mutated request: a seed (a well-formed request, or a hostile one) with one to
    /// three mutations applied, or now and then a hostile request as it is.
    pub fn mutated(&mut self) -> Req {
        let hostile = protocol::hostile::REQUESTS;
        let mut bytes = if self.rng.random_bool(0.3) && !hostile.is_empty() {
            let entry = &hostile[self.rng.random_range(0..hostile.len())];
            if self.rng.random_bool(0.25) {
                return mutated_req(entry.bytes.to_vec());
            }
            entry.bytes.to_vec()
        } else {
            self.valid().bytes
        };
        let rounds = self.rng.random_range(1..=3);
        for _ in 0..rounds {
            self.mutate(&mut bytes);
        }
        mutated_req(bytes)
    }

    /// Applies one random mutation to `bytes`.
    pub fn mutate(&mut self, bytes: &mut Vec<u8>) {
        let rng = &mut self.rng;
        match rng.random_range(0..11u32) {
            // Flip one bit.
            0 if !bytes.is_empty() => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= 1 << rng.random_range(0..8);
            }
            // Overwrite a byte with one a parser cares about.
            1 if !bytes.is_empty() => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = interesting(rng);
            }
            // Insert a few bytes.
            2 => {
                let at = rng.random_range(0..=bytes.len());
                let n = rng.random_range(1..=16);
                let insert: Vec<u8> = (0..n).map(|_| interesting(rng)).collect();
                bytes.splice(at..at, insert);
            }
            // Delete a run of bytes.
            3 if !bytes.is_empty() => {
                let at = rng.random_range(0..bytes.len());
                let end = (at + rng.random_range(1..=16)).min(bytes.len());
                bytes.drain(at..end);
            }
            // Truncate.
            4 if bytes.len() > 1 => {
                let at = rng.random_range(1..bytes.len());
                bytes.truncate(at);
            }
            // Duplicate a header line (or the request line).
            5 => {
                let lines = line_starts(bytes);
                if lines.len() > 1 {
                    let i = rng.random_range(0..lines.len() - 1);
                    let line = bytes[lines[i]..lines[i + 1]].to_vec();
                    let at = lines[i + 1];
                    bytes.splice(at..at, line);
                }
            }
            // Rewrite (or add) Content-Length.
            6 => {
                let value = BAD_LENGTHS[rng.random_range(0..BAD_LENGTHS.len())];
                set_content_length(bytes, value);
            }
            // Splice: the start of this request and the end of another.
            7 => splice_another(rng, self.mix, bytes),
            // Repeat a chunk several times.
            8 if !bytes.is_empty() => repeat_a_chunk(rng, bytes),
            // Replace everything with random bytes.
            9 => {
                let n = rng.random_range(1..=256);
                *bytes = (0..n).map(|_| rng.random()).collect();
            }
            // Two requests in one: this one twice, back to back.
            _ => {
                let copy = bytes.clone();
                bytes.extend_from_slice(&copy);
            }
        }
        if bytes.is_empty() {
            bytes.push(interesting(rng));
        }
        bytes.truncate(MAX_MUTATED);
    }
}

/// The well-formed requests of [`Generator::valid`] that are written out whole, for `roll`
/// in 917..967: forms a server must accept although clients seldom send them.
fn unusual_but_valid(rng: &mut SmallRng, roll: u32) -> Req {
    match roll {
        917..937 => {
            // HTTP/1.0 that asks for keep-alive: answered and kept open.
            let bytes = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec();
            Req::kept_open(bytes)
        }
        937..952 => {
            // The server sends `100 Continue` first; the body follows without waiting.
            let body = body_bytes(rng, 36);
            let mut bytes = format!(
                "POST /echo HTTP/1.1\r\nHost: fuzz\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            bytes.extend(body);
            Req::kept_open(bytes)
        }
        _ => {
            // Bare LF line ends and lower-case names: both allowed.
            let bytes = b"GET / HTTP/1.1\nhost: fuzz\nuser-agent: wirefuzz\n\n".to_vec();
            Req::kept_open(bytes)
        }
    }
}

/// Content-Length values a parser must refuse or read with care, for [`Generator::mutate`].
const BAD_LENGTHS: [&str; 12] = [
    "99999999999999999999999",
    "18446744073709551616",
    "-1",
    "abc",
    "1048577",
    "100000",
    "0",
    " 5 ",
    "5, 5",
    "+5",
    "0x10",
    "",
];

/// A mutation: the start of `bytes` and the end of another, valid, request, made from a
/// seed drawn from `rng` (so the whole stays a function of the generator's seed).
fn splice_another(rng: &mut SmallRng, mix: Mix, bytes: &mut Vec<u8>) {
    let other = {
        let mut g = Generator {
            rng: SmallRng::seed_from_u64(rng.random()),
            mix,
        };
        g.valid().bytes
    };
    let cut = rng.random_range(0..=bytes.len());
    let from = rng.random_range(0..=other.len());
    bytes.truncate(cut);
    bytes.extend_from_slice(&other[from..]);
}

/// A mutation: a chunk of up to 32 bytes of `bytes` (not empty), repeated 2 to 64 times.
fn repeat_a_chunk(rng: &mut SmallRng, bytes: &mut Vec<u8>) {
    let at = rng.random_range(0..bytes.len());
    let end = (at + rng.random_range(1..=32)).min(bytes.len());
    let chunk = bytes[at..end].to_vec();
    let times = rng.random_range(2..=64);
    let repeated: Vec<u8> = chunk
        .iter()
        .copied()
        .cycle()
        .take(chunk.len() * times)
        .collect();
    bytes.splice(at..end, repeated);
}

/// A mutated request: never well formed, and answered without a body only if it still
/// starts with `HEAD ` (after the empty lines a server skips).
fn mutated_req(bytes: Vec<u8>) -> Req {
    let start = bytes
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(bytes.len());
    Req {
        head: bytes[start..].starts_with(b"HEAD "),
        bytes,
        well_formed: false,
        partial: false,
        closes: false,
    }
}

/// A byte a parser cares about more than most.
fn interesting(rng: &mut SmallRng) -> u8 {
    const BYTES: &[u8] = b"\r\n\0 \t:;,/?%\x7f\xff0123456789aZ";
    if rng.random_bool(0.7) {
        BYTES[rng.random_range(0..BYTES.len())]
    } else {
        rng.random()
    }
}

/// Printable body bytes.
fn body_bytes(rng: &mut SmallRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.random_range(b'a'..=b'z')).collect()
}

/// Where the head ends: the index just past the blank line, if there is one.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The index of each line's first byte, and the length as the last entry.
fn line_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1)
            .filter(|i| *i < bytes.len()),
    );
    starts.push(bytes.len());
    starts.dedup();
    starts
}

/// Replaces the value of the first `Content-Length` header with `value`, or adds the
/// header after the request line when there is none.
fn set_content_length(bytes: &mut Vec<u8>, value: &str) {
    let name = b"content-length:";
    let found = bytes
        .windows(name.len())
        .position(|w| w.eq_ignore_ascii_case(name));
    match found {
        Some(at) => {
            let start = at + name.len();
            let end = bytes[start..]
                .iter()
                .position(|b| *b == b'\r' || *b == b'\n')
                .map_or(bytes.len(), |i| start + i);
            bytes.splice(start..end, format!(" {value}").into_bytes());
        }
        None => {
            let at = bytes
                .iter()
                .position(|b| *b == b'\n')
                .map_or(bytes.len(), |i| i + 1);
            bytes.splice(at..at, format!("Content-Length: {value}\r\n").into_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plans(seed: u64, n: usize) -> Vec<Plan> {
        let mut g = Generator::new(seed, Mix::default());
        (0..n)
            .map(|i| g.plan(StallKind::ALL.get(i % 7).copied()))
            .collect()
    }

    #[test]
    fn the_same_seed_makes_the_same_plans() {
        assert_eq!(plans(42, 500), plans(42, 500));
    }

    #[test]
    fn another_seed_makes_other_plans() {
        assert_ne!(plans(1, 50), plans(2, 50));
    }

    #[test]
    fn mutation_always_produces_bytes() {
        let mut g = Generator::new(7, Mix::default());
        let mut changed = 0;
        for _ in 0..10_000 {
            let seed = g.valid().bytes;
            let mut bytes = seed.clone();
            g.mutate(&mut bytes);
            assert!(!bytes.is_empty());
            assert!(bytes.len() <= MAX_MUTATED);
            changed += usize::from(bytes != seed);
            let req = g.mutated();
            assert!(!req.bytes.is_empty());
            assert!(!req.well_formed);
        }
        // A mutation can undo itself (a bit flipped to what it was) only rarely.
        assert!(
            changed > 9_000,
            "only {changed} of 10000 mutations changed anything"
        );
    }

    #[test]
    fn well_formed_requests_parse_completely() {
        let mut g = Generator::new(3, Mix::default());
        for _ in 0..5_000 {
            let req = g.valid();
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut parsed = httparse::Request::new(&mut headers);
            let status = parsed
                .parse(&req.bytes)
                .expect("a well-formed request parses");
            let httparse::Status::Complete(head) = status else {
                panic!("incomplete: {:?}", String::from_utf8_lossy(&req.bytes));
            };
            let length = parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |h| {
                    std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.parse::<usize>().ok())
                        .expect("a length")
                });
            assert_eq!(head + length, req.bytes.len());
            assert_eq!(req.head, parsed.method == Some("HEAD"));
        }
    }

    #[test]
    fn partial_heads_are_incomplete_and_partial_bodies_short() {
        let mut g = Generator::new(11, Mix::default());
        for _ in 0..2_000 {
            let Some(req) = g.stall_bytes(StallKind::PartialHead) else {
                panic!("a partial head sends something");
            };
            assert!(!req.bytes.is_empty());
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let parsed = httparse::Request::new(&mut headers).parse(&req.bytes);
            assert!(
                !matches!(parsed, Ok(httparse::Status::Complete(_))),
                "{:?}",
                String::from_utf8_lossy(&req.bytes)
            );
            let Some(body) = g.stall_bytes(StallKind::PartialBody) else {
                panic!("a partial body sends something");
            };
            let end = head_end(&body.bytes).expect("a whole head");
            let text = String::from_utf8_lossy(&body.bytes[..end]).to_string();
            let length: usize = text
                .split("Content-Length: ")
                .nth(1)
                .and_then(|v| v.trim().parse().ok())
                .expect("a length");
            assert!(body.bytes.len() - end < length);
        }
    }

    #[test]
    fn truncate_keeps_the_count_exact() {
        let mut g = Generator::new(5, Mix::default());
        for i in 0..2_000u64 {
            let mut plan = g.plan(if i % 3 == 0 {
                Some(StallKind::MutatedOpen)
            } else {
                None
            });
            let before = plan.requests();
            let n = i % (before + 1);
            plan.truncate(n);
            assert_eq!(plan.requests(), n.min(before));
            // A closing request is still last, if there is one.
            let all: Vec<&Req> = plan.batches.iter().flatten().collect();
            for req in all.iter().rev().skip(1) {
                assert!(!req.closes);
            }
        }
    }

    #[test]
    fn content_length_is_rewritten_or_added() {
        let mut bytes =
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello".to_vec();
        set_content_length(&mut bytes, "-1");
        assert_eq!(
            bytes,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\nhello".to_vec()
        );
        let mut bytes = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
        set_content_length(&mut bytes, "7");
        assert_eq!(
            bytes,
            b"GET / HTTP/1.1\r\nContent-Length: 7\r\nHost: t\r\n\r\n".to_vec()
        );
    }
}
