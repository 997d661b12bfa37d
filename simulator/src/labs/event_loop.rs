//! Labs 11 and 12: the event loop. Thousands of idle clients against a thread per
//! connection and against one loop (C10K), and what happens when the loop itself computes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use protocol::routes::factorise;

use super::*;
use loadgen::units::micros;

/// Lab 11's default number of idle clients; fewer if the descriptor limit says so.
const IDLE_CLIENTS: u64 = 4000;

/// Opens `n` connections that each make one request and then stay open and idle.
fn hold_idle(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>, SimError> {
    let fail = |e: std::io::Error| SimError::Usage(format!("holding idle connections: {e}"));
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
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
            if got == 0 {
                return Err(SimError::Usage(
                    "the server closed an idle client's connection".into(),
                ));
            }
            seen.extend_from_slice(&chunk[..got]);
        }
        held.push(stream);
    }
    Ok(held)
}

/// What holding `n` idle clients cost one architecture.
struct Holding {
    threads: u64,
    bytes_per_client: u64,
    newcomer: Duration,
}

fn hold_against(arch: &str, n: usize) -> Result<Holding, SimError> {
    let args = ServerArgs {
        // Long enough that nobody is closed for idling during the lab.
        keep_alive_timeout: Duration::from_secs(60),
        backlog: 4096,
        ..ServerArgs::default()
    };
    let server = Servers::default().start(arch, args)?;
    let (rss_before, threads_before) = process_figures();
    let held = hold_idle(server.addr(), n)?;
    let (rss_after, threads_after) = process_figures();
    let began = Instant::now();
    let answered = hold_idle(server.addr(), 1)?;
    let newcomer = began.elapsed();
    drop((held, answered));
    stop(server)?;
    Ok(Holding {
        threads: threads_after.saturating_sub(threads_before),
        bytes_per_client: rss_after.saturating_sub(rss_before) / n.max(1) as u64,
        newcomer,
    })
}

/// Lab 11's entry in the list of labs ([`super::all`]).
pub(super) const LAB11: Lab = Lab {
    id: 11,
    title: "C10K: thousands of idle clients, a thread each or one loop for all",
    sheet: "labs/11-c10k.md",
    targets: &[],
    run: lab11,
};

pub(super) fn lab11(_env: &LabEnv) -> Result<Vec<Check>, SimError> {
    // Each idle client costs this process two descriptors (its end and the server's).
    let limit = server_core::rlimit::raise_open_files(2 * IDLE_CLIENTS + 500);
    let n = usize::try_from((limit.saturating_sub(500) / 2).min(IDLE_CLIENTS)).unwrap_or(100);
    let scaled = if (n as u64) < IDLE_CLIENTS {
        format!(" (the descriptor limit, {limit}, allows no more)")
    } else {
        String::new()
    };
    let threads = hold_against("thread-per-conn", n)?;
    let lp = hold_against("event-loop", n)?;
    let kib = |bytes: u64| format!("{:.1} KiB", bytes as f64 / 1024.0);
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
            lp.threads == 0
                && lp.newcomer < Duration::from_secs(1)
                && lp.bytes_per_client * 2 <= threads.bytes_per_client.max(1),
        ),
    ])
}

/// Primes to factorise, smallest first: trial division up to the square root makes each
/// about three times as long as the one before.
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

/// Asks the server at `addr` for `/factor/{prime}` after `delay`, on a thread of its own;
/// the thread returns how long the answer took.
pub(super) fn factorise_after(
    addr: SocketAddr,
    prime: u64,
    delay: Duration,
) -> std::thread::JoinHandle<Result<Duration, SimError>> {
    std::thread::spawn(move || {
        // The experiment's schedule: the heavy request arrives in the middle of the load.
        std::thread::sleep(delay);
        let began = Instant::now();
        let mut conn = loadgen::http::Connection::open(addr, began + Duration::from_secs(60))
            .map_err(|f| SimError::Usage(f.message))?;
        let request = format!("GET /factor/{prime} HTTP/1.1\r\nHost: lab\r\n\r\n");
        // Blocks until the factorisation is answered (at most a minute).
        conn.exchange(
            request.as_bytes(),
            began + Duration::from_secs(60),
            true,
            false,
            false,
        )
        .map_err(|f| SimError::Usage(f.message))?;
        Ok(began.elapsed())
    })
}

/// One heavy request and a closed loop of `GET /` beside it, against an event loop with one
/// reactor; the loop lasts `length`. Returns the load's report and how long the heavy
/// request took.
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
    // Bounded wait until the heavy request is being computed.
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
    let report = crate::measure::run(
        addr,
        &addr.to_string(),
        &env.scenario(&hello),
        Some(&info),
        env.record,
    )?;
    env.keep(&report);
    let heavy = heavy
        .join()
        .map_err(|_| SimError::Panicked("the heavy client"))??;
    stop(server)?;
    Ok((report, heavy))
}

/// Lab 12's entry in the list of labs ([`super::all`]).
pub(super) const LAB12: Lab = Lab {
    id: 12,
    title: "Don't block the loop: a long computation on the loop or on a helper",
    sheet: "labs/12-dont-block-the-loop.md",
    targets: &[],
    run: lab12,
};

pub(super) fn lab12(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let (prime, alone) = calibrated_prime(Duration::from_millis(250));
    let mut checks = Vec::new();
    for (offload, blocked) in [("off", true), ("on", false)] {
        // The load outlasts the factorisation, so that the requests it held up are answered
        // (and measured) before the run ends.
        let (report, heavy) = beside_a_factorisation(env, offload, prime, alone * 2)?;
        let l = &report.latency_us;
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
