//! Labs 11 and 12: the event loop. Thousands of idle clients against a thread per
//! connection and against one loop (C10K), and what happens when the loop itself computes.
//!
//! These labs go past the lecture, to the design that replaced a thread per connection.
//! A thread per connection pays for every client whether it does anything or not: a
//! thread, its stack pages, the kernel's structures for it, a context switch per wake-up.
//! An event loop keeps every connection as a non-blocking socket and a small state machine
//! in a slab, asks the kernel which sockets are ready (`epoll`, through `mio`), and serves
//! all of them on one thread. An idle client then costs its socket and a few hundred
//! bytes.
//!
//! * Lab 11 (C10K): 4000 clients make one request each and stay connected and idle; one
//!   more client then asks for `/`. Thread-per-connection needs 4000 more threads and some
//!   tens of KiB per client, and still answers the newcomer at once (a new thread); the
//!   event loop needs no thread and well under a KiB per client, and answers the newcomer
//!   from the same loop.
//! * Lab 12 (don't block the loop): the price of one thread for everyone is that nothing
//!   on it may block. A factorisation of a quarter of a second on the loop (`--offload
//!   off`) stalls every connection for that long: each `GET /` that arrives meanwhile waits
//!   for it. Handed to a helper thread (`--offload on`, the Flash server's AMPED design),
//!   the loop goes on answering in microseconds.
//!
//! The heavy request's length is calibrated on the machine that runs the lab (see
//! [`calibrated_prime`]), so the expectations are in proportion to it, not in absolute
//! times that a slower machine would miss.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use protocol::routes::factorise;

use super::*;
use loadgen::units::micros;

/// Lab 11's default number of idle clients; fewer if the descriptor limit says so. Enough
/// that a thread per client costs far more than anything else in the process, few enough
/// that the lab takes seconds.
const IDLE_CLIENTS: u64 = 4000;

/// Opens `n` connections that each make one request and then stay open and idle. Each is
/// made and answered before the next, so that when this returns the server has seen every
/// one of them and holds it as an idle keep-alive connection. The sockets are plain
/// blocking ones: this is the lab's own client, one request each, not a load.
fn hold_idle(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>, SimError> {
    let fail = |e: std::io::Error| SimError::Usage(format!("holding idle connections: {e}"));
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        // Blocks until connected, at most 5 s.
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(fail)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(fail)?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
            .map_err(fail)?;
        // The answer is a few hundred bytes; read until its blank line and short body.
        let mut seen = Vec::new();
        let mut chunk = [0u8; 512];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            // Blocks until the server answers (at most 5 s).
            let got = stream.read(&mut chunk).map_err(fail)?;
            // A close here would mean the server does not keep idle connections, and the
            // lab would measure nothing: it stops with a sentence instead.
            if got == 0 {
                return Err(SimError::Usage(
                    "the server closed an idle client's connection".into(),
                ));
            }
            seen.extend_from_slice(&chunk[..got]);
        }
        // The answer's body (if any of it is still unread) stays in the socket: the
        // connection is idle from the server's side, which is all that matters here.
        held.push(stream);
    }
    Ok(held)
}

/// What holding `n` idle clients cost one architecture.
struct Holding {
    /// Threads this process gained while holding them.
    threads: u64,
    /// Resident memory gained, per idle client (server and client ends together; the
    /// client end is the same for both architectures, so the difference is the server's).
    bytes_per_client: u64,
    /// How long one more client took, connect to answer, with the others held.
    newcomer: Duration,
}

/// Starts `arch`, holds `n` idle clients against it, times a newcomer, and measures what
/// the idle clients cost: this process's threads and memory before and after they
/// connected.
fn hold_against(arch: &str, n: usize) -> Result<Holding, SimError> {
    let args = ServerArgs {
        // Long enough that nobody is closed for idling during the lab.
        keep_alive_timeout: Duration::from_secs(60),
        backlog: 4096,
        ..ServerArgs::default()
    };
    let server = Servers::default().start(arch, args)?;
    // The baseline: the server started, no client yet.
    let (rss_before, threads_before) = process_figures();
    let held = hold_idle(server.addr(), n)?;
    // Read while all n are held: the thread-per-connection server has a thread blocked in
    // a read on each of them.
    let (rss_after, threads_after) = process_figures();
    let began = Instant::now();
    let answered = hold_idle(server.addr(), 1)?;
    let newcomer = began.elapsed();
    // Closing the clients' ends lets the server's threads (or loop) see the connections
    // end, so that stopping it need not wait for them.
    drop((held, answered));
    stop(server)?;
    Ok(Holding {
        threads: threads_after.saturating_sub(threads_before),
        bytes_per_client: rss_after.saturating_sub(rss_before) / n.max(1) as u64,
        newcomer,
    })
}

/// Lab 11's entry in the list of labs ([`super::all`]).
/// The question before running: how many threads does each server need for 4000 idle
/// clients, what does a thread cost when its stack is mostly untouched, and does a
/// newcomer wait?
pub(super) const LAB11: Lab = Lab {
    id: 11,
    title: "C10K: thousands of idle clients, a thread each or one loop for all",
    sheet: "labs/11-c10k.md",
    targets: &[],
    run: lab11,
};

/// Lab 11: the same thousands of idle clients against a thread per connection and against
/// the event loop.
///
/// In its HTML report (`--report`): the checks only: the lab holds its idle connections
/// itself, not as simulator clients, so there is no timeline.
pub(super) fn lab11(_env: &LabEnv) -> Result<Vec<Check>, SimError> {
    // Each idle client costs this process two descriptors (its end and the server's). The
    // soft limit is raised as far as the hard limit allows (no privilege needed), keeping
    // 500 for everything else; fewer clients are held if that is not enough, and the
    // check says so.
    let limit = server_core::rlimit::raise_open_files(2 * IDLE_CLIENTS + 500);
    let n = usize::try_from((limit.saturating_sub(500) / 2).min(IDLE_CLIENTS)).unwrap_or(100);
    let scaled = if (n as u64) < IDLE_CLIENTS {
        format!(" (the descriptor limit, {limit}, allows no more)")
    } else {
        String::new()
    };
    // One after the other, each server stopped before the next starts, so that the second
    // reading does not include the first server's threads.
    let threads = hold_against("thread-per-conn", n)?;
    let lp = hold_against("event-loop", n)?;
    let kib = |bytes: u64| format!("{:.1} KiB", bytes as f64 / 1024.0);
    // Measured on a 2-core machine: 27 KiB and a thread per client against 0.6 KiB and
    // none. The thread's cost is its stack pages actually touched, the kernel's task
    // structures and the scheduler's bookkeeping; the loop's is a slab entry, a socket, and
    // a read buffer only while a request is being read.
    Ok(vec![
        check(
            format!("thread-per-conn holding {n} idle keep-alive clients{scaled}"),
            format!(
                "{} more threads, {} of memory per client, a newcomer answered in {}",
                threads.threads,
                kib(threads.bytes_per_client),
                human_us(micros(threads.newcomer))
            ),
            "a thread per idle client (each with its stack pages), and a newcomer still answered at once: its own new thread",
            // A thread for at least nine in ten idle clients (a margin, not a prediction:
            // every one has a thread), and the newcomer within a second.
            threads.threads >= (n as u64) * 9 / 10 && threads.newcomer < Duration::from_secs(1),
        ),
        check(
            format!("event-loop holding the same {n} idle clients"),
            format!(
                "{} more threads, {} of memory per client, a newcomer answered in {}",
                lp.threads,
                kib(lp.bytes_per_client),
                human_us(micros(lp.newcomer))
            ),
            "no thread at all, a few hundred bytes per client (its connection state and socket), and the newcomer answered at once",
            // No thread at all, and at most half the memory per client of a thread each:
            // the client ends cost the same in both runs, so the server's share differs by
            // far more than this.
            lp.threads == 0
                && lp.newcomer < Duration::from_secs(1)
                && lp.bytes_per_client * 2 <= threads.bytes_per_client.max(1),
        ),
    ])
}

/// Primes to factorise, smallest first: trial division up to the square root makes each
/// about three times as long as the one before (each prime is ten times the last, and
/// √10 ≈ 3.2), and the last about 300 times as long as the first. [`calibrated_prime`]
/// takes the last if none reaches the time asked for.
const PRIMES: [u64; 6] = [
    1_000_000_000_039,
    10_000_000_000_037,
    100_000_000_000_031,
    1_000_000_000_000_037,
    10_000_000_000_000_061,
    100_000_000_000_000_003,
];

/// The smallest prime whose factorisation takes at least `at_least` on this machine and
/// build, with how long it took.
///
/// A prime is the worst case of trial division: nothing divides it, so the search runs to
/// its square root. Timing each candidate here, in this process, calibrates the heavy
/// request to the machine and the build (a debug build divides several times slower), so
/// the labs that use it expect stalls in proportion to it.
pub(super) fn calibrated_prime(at_least: Duration) -> (u64, Duration) {
    let mut last = (PRIMES[0], Duration::ZERO);
    for prime in PRIMES {
        let began = Instant::now();
        let _ = factorise(prime);
        last = (prime, began.elapsed());
        if last.1 >= at_least {
            break;
        }
    }
    last
}

/// What the heavy request of [`factorise_after`] saw.
pub(super) struct Heavy {
    /// How long its answer took, from connecting to the last byte.
    pub took: Duration,
    /// The server thread that answered (`X-Servelab-Thread`): on an event loop with
    /// `--offload off`, the reactor that computed.
    pub thread: Option<String>,
}

/// Asks the server at `addr` for `/factor/{prime}` after `delay`, on a thread of its own;
/// the thread returns how long the answer took and which server thread gave it. The caller
/// joins it after its run, so the heavy request runs beside the load, not before or after
/// it.
pub(super) fn factorise_after(
    addr: SocketAddr,
    prime: u64,
    delay: Duration,
) -> std::thread::JoinHandle<Result<Heavy, SimError>> {
    std::thread::spawn(move || {
        // The experiment's schedule: the heavy request arrives in the middle of the load.
        std::thread::sleep(delay);
        let began = Instant::now();
        // Blocks until connected (at most a minute: the server may be busy computing).
        let mut conn = loadgen::http::Connection::open(addr, began + Duration::from_secs(60))
            .map_err(|f| SimError::Usage(f.message))?;
        let request = format!("GET /factor/{prime} HTTP/1.1\r\nHost: lab\r\n\r\n");
        // Blocks until the factorisation is answered (at most a minute).
        let reply = conn
            .exchange(
                request.as_bytes(),
                began + Duration::from_secs(60),
                // Exact timeouts (a single request, so the system call per read is free),
                // a GET, and the server thread that answered wanted.
                true,
                false,
                true,
            )
            .map_err(|f| SimError::Usage(f.message))?;
        Ok(Heavy {
            took: began.elapsed(),
            thread: reply.server_thread,
        })
    })
}

/// One heavy request and a closed loop of `GET /` beside it, against an event loop with one
/// reactor; the loop lasts `length`. Returns the load's report and how long the heavy
/// request took.
///
/// One reactor, so that there is one loop to block: with several, the kernel would spread
/// the connections and only the unlucky ones would share the computing loop.
fn beside_a_factorisation(
    env: &LabEnv,
    offload: &str,
    prime: u64,
    length: Duration,
) -> Result<(Report, Duration), SimError> {
    let servers = Servers::only("event-loop")
        .with("reactors", 1)
        .with("offload", offload);
    let server = servers.start("event-loop", ServerArgs::default())?;
    let addr = server.addr();
    let heavy = factorise_after(addr, prime, Duration::ZERO);
    // Bounded wait until the heavy request is being computed, so that the load starts
    // during the stall and not before it. Polls the server's in-flight count in-process
    // every millisecond: there is nothing to wait on, and a millisecond is small beside a
    // quarter-second stall.
    let ctx = Arc::clone(server.context());
    let deadline = Instant::now() + Duration::from_secs(5);
    while ctx.stats.in_flight() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let hello = Scenario {
        load: Load::Duration(length),
        ..Scenario::get(4, "/", Duration::from_secs(30), Duration::ZERO)
    };
    let info = ServerInfo::from(ctx.snapshot());
    // Blocks for the load's `length`; on the blocked loop, its first requests wait for
    // the whole factorisation.
    let report = crate::measure::run(
        addr,
        &addr.to_string(),
        &env.scenario(&hello),
        Some(&info),
        env.record,
    )?;
    env.keep(&report);
    // The load outlasts the factorisation, so its answer is in by now: this join waits for
    // the heavy client's thread to return it.
    let heavy = heavy
        .join()
        .map_err(|_| SimError::Panicked("the heavy client"))??;
    stop(server)?;
    Ok((report, heavy.took))
}

/// Lab 12's entry in the list of labs ([`super::all`]).
/// The question before running: how long does a `GET /` that arrives during a
/// factorisation wait when the loop computes it, and when a helper thread does?
pub(super) const LAB12: Lab = Lab {
    id: 12,
    title: "Don't block the loop: a long computation on the loop or on a helper",
    sheet: "labs/12-dont-block-the-loop.md",
    targets: &[],
    run: lab12,
};

/// Lab 12: a quarter-second factorisation beside `GET /`, computed on the loop and then on
/// a helper thread.
///
/// In its HTML report (`--report`): over time, the seconds in which the computing loop
/// answered nothing, and the tail of the latency spectrum that stall makes.
pub(super) fn lab12(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    // A quarter of a second or more of CPU: thousands of `GET /` come due meanwhile, each
    // answered in microseconds when the loop is free.
    let (prime, alone) = calibrated_prime(Duration::from_millis(250));
    let mut checks = Vec::new();
    // The loop computes (`off`: every connection waits) or a helper thread does (`on`:
    // the loop only forwards the request and, later, the answer through a channel and a
    // waker that wakes its poll).
    for (offload, blocked) in [("off", true), ("on", false)] {
        // The load outlasts the factorisation, so that the requests it held up are answered
        // (and measured) before the run ends.
        let (report, heavy) = beside_a_factorisation(env, offload, prime, alone * 2)?;
        let l = &report.latency_us;
        // The p50 and p99 stay small either way: each of the four clients had at most one
        // request stuck, and sent nothing while it waited (lab 14 explains why). The
        // slowest request is what shows the stall: blocked, it waited most of the
        // factorisation; offloaded, nowhere near it.
        let worst = Duration::from_micros(l.max);
        checks.push(check(
            format!(
                "event-loop, 1 reactor, --offload {offload}: 4 clients asking GET / while one asks /factor/{prime} ({} alone)",
                human_us(micros(alone))
            ),
            format!(
                "GET / p50 {}, p99 {}, max {} ({} requests); the factorisation took {}",
                human_us(l.p50),
                human_us(l.p99),
                human_us(l.max),
                l.samples,
                human_us(micros(heavy))
            ),
            if blocked {
                "the loop computes: every GET / that arrives meanwhile waits until it is done, so the slowest waited most of the factorisation".to_owned()
            } else {
                "a helper thread computes: the loop goes on answering, and no GET / waits anywhere near the factorisation's time".to_owned()
            },
            if blocked {
                worst >= heavy / 2
            } else {
                worst < heavy / 2
            },
        ));
    }
    Ok(checks)
}
