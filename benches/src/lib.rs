//! Shared code of servelab's benchmarks: the workloads and the load driver.
//!
//! The end-to-end benchmarks (`benches/end_to_end.rs`) measure how many requests per second
//! each architecture serves for each workload and number of concurrent clients. The
//! driver here sends a batch of requests over `clients` keep-alive connections, each
//! connection on its own thread, pulling request numbers from a shared counter until the
//! batch is exhausted, and then hanging up.
//!
//! Pulling from a shared counter and hanging up at the end matters for the models that
//! serve one connection per thread: the sequential server serves one connection until it
//! closes, so the other clients' first requests wait until the busy connections run out of
//! work and leave. The batch then takes exactly as long as that model needs, and no client
//! waits for a keep-alive timeout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use loadgen::gate::StartGate;
use loadgen::http::Connection;

pub mod report;

/// The factorisation target of the CPU-bound workload: 600011 × 600043, about 300 000
/// trial divisions, roughly 1 ms of CPU in a release build.
pub const SEMIPRIME: u64 = 360_032_400_473;

/// The numbers of concurrent clients every architecture is measured with.
pub const CONCURRENCY: [usize; 3] = [1, 16, 64];

/// Whether the benchmark binary was started with `--quick` (`cargo bench -- --quick`). The
/// benchmarks then shorten their warm-up and measurement times so that the whole of
/// `cargo bench` takes about a minute.
pub fn quick_mode() -> bool {
    std::env::args().any(|arg| arg == "--quick")
}

/// Criterion's warm-up and measurement time per benchmark: 1 s and 3 s, or in quick mode
/// 200 ms and 500 ms. With `--quick` criterion skips the warm-up and doubles the batch until
/// two measurements agree or the measurement time has passed, so half a second keeps the
/// whole run short.
pub fn timings() -> (Duration, Duration) {
    if quick_mode() {
        (Duration::from_millis(200), Duration::from_millis(500))
    } else {
        (Duration::from_secs(1), Duration::from_secs(3))
    }
}

/// Notes in the criterion directory whether this run is quick or full, and the commit it
/// measures, so that the report can say both. Best effort: a benchmark run must not fail
/// over a note.
pub fn record_mode() {
    let dir = report::default_criterion_dir();
    let mode = if quick_mode() { "quick" } else { "full" };
    let note = format!("{mode}\n{}\n", report::commit());
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(report::RUN_NOTE), note);
    }
}

/// The four workloads, one criterion group each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `GET /`: the server's own overhead.
    Hello,
    /// `GET /sleep/5`: I/O-bound requests.
    Io,
    /// `GET /factor/SEMIPRIME`: CPU-bound requests.
    Cpu,
    /// Eight in ten `GET /`, one `GET /sleep/5`, one `GET /factor/SEMIPRIME`.
    Mixed,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::Hello,
        Workload::Io,
        Workload::Cpu,
        Workload::Mixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Hello => "hello",
            Workload::Io => "io",
            Workload::Cpu => "cpu",
            Workload::Mixed => "mixed",
        }
    }

    /// What the workload sends, in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            Workload::Hello => "`GET /`, the server's own overhead",
            Workload::Io => "`GET /sleep/5`, I/O-bound",
            Workload::Cpu => "`GET /factor/360032400473`, about 1 ms of CPU",
            Workload::Mixed => "8 × `GET /`, 1 × `/sleep/5`, 1 × `/factor` in every 10",
        }
    }

    /// The encoded requests, and which one request number `i` sends.
    fn requests(self) -> Vec<Vec<u8>> {
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes();
        let hello = get("/");
        let io = get("/sleep/5");
        let cpu = get(&format!("/factor/{SEMIPRIME}"));
        match self {
            Workload::Hello => vec![hello],
            Workload::Io => vec![io],
            Workload::Cpu => vec![cpu],
            Workload::Mixed => {
                let mut mix = vec![hello; 8];
                mix.push(io);
                mix.push(cpu);
                mix
            }
        }
    }
}

/// Sends `total` requests of `workload` to `addr` over `clients` connections at once and
/// returns the wall time from the moment all clients start to the last response. Panics if
/// the server fails a request: a benchmark of a broken server means nothing, and criterion
/// reports the panic.
pub fn drive(addr: SocketAddr, clients: usize, total: u64, workload: Workload) -> Duration {
    let requests = workload.requests();
    let remaining = AtomicU64::new(total);
    // Every client thread waits here until all exist, so that all clients start together
    // and thread start-up is not part of the measured time. If the system refuses a
    // thread, the gate is called off and the others return at once instead of waiting.
    let gate = StartGate::new();
    let began = std::thread::scope(|scope| {
        for _ in 0..clients {
            let spawned = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(scope, || client(addr, &requests, &remaining, &gate));
            if let Err(e) = spawned {
                gate.call_off();
                return Err(e);
            }
        }
        let began = gate.go();
        // The scope waits here for every client thread to finish its share of the batch.
        Ok(began)
    });
    match began {
        Ok(began) => began.elapsed(),
        Err(e) => panic!("the OS refused to start a benchmark client thread: {e}"),
    }
}

/// One client: connects, waits for the others, then takes request numbers from
/// `remaining` until the batch is used up, sending each over its keep-alive connection, and
/// hangs up.
///
/// The connection is opened before the barrier, so the TCP handshake (which the kernel
/// completes from the listen backlog, before the server even accepts) is not timed; the
/// server's accept is. That keeps the fixed cost of an iteration small, so that short
/// batches, as in `--quick` runs, still measure requests rather than connections.
fn client(addr: SocketAddr, requests: &[Vec<u8>], remaining: &AtomicU64, gate: &StartGate) {
    let deadline = || Instant::now() + EXCHANGE_LIMIT;
    let open = || {
        Connection::open(addr, deadline())
            .unwrap_or_else(|f| panic!("benchmark client: {}", f.message))
    };
    // A failure here must not panic before the gate; the loop below connects again and
    // reports the failure.
    let mut conn = Connection::open(addr, deadline()).ok();
    if gate.wait().is_none() {
        return;
    }
    while let Ok(n) =
        remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
    {
        let c = conn.get_or_insert_with(open);
        let request = &requests[(n % requests.len() as u64) as usize];
        // Blocks until the whole response has arrived, or EXCHANGE_LIMIT passes.
        match c.exchange(request, deadline(), false, false, false) {
            Ok(reply) if reply.status == 200 => {
                if reply.close {
                    conn = None;
                }
            }
            Ok(reply) => panic!("benchmark client: the server answered {}", reply.status),
            Err(f) => panic!("benchmark client: {}", f.message),
        }
    }
    // Dropping the connection hangs up, which frees the server thread that held it.
}

/// The longest a single connect or exchange may take before the benchmark gives up. No
/// workload comes near it; it only turns a hung server into a failure instead of a hang.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(60);
