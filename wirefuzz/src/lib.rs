//! wirefuzz: servelab's end-to-end wire fuzzer.
//!
//! The unit tests and the behaviour list send each bad request once; the parser's own
//! fuzz targets (`fuzz/`) never open a socket. This crate does what neither can: it sends
//! a server a million requests, random and mutated, over real loopback connections, the
//! way clients really misbehave (pipelined, half-closed, cut off in the middle, gone
//! silent with the connection left open), and checks the server's promise from the
//! outside: every connection makes progress or is closed within the server's own
//! deadlines. What it cannot see from outside (a panic in the server's log, threads,
//! file descriptors and memory back to where they were) `scripts/fuzz-wire.sh` checks
//! around it.
//!
//! * [`generate`]: what is sent, from a seeded RNG (no I/O, unit-tested).
//! * [`wire`]: one connection with a deadline on every read and write.
//! * [`run`]: the worker threads, the exact request count and the tally.

pub mod generate;
pub mod run;
pub mod wire;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What can stop a run before it starts or while it runs (hangs are not errors: they are
/// the run's findings, in its [`run::Summary`]).
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error("cannot connect to {target}: {source} (is the server running there?)")]
    Connect {
        target: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read {target}'s /stats: {why}")]
    Stats { target: SocketAddr, why: String },
    #[error("cannot start a worker thread: {0}")]
    Thread(std::io::Error),
    #[error("a worker thread panicked (a bug in wirefuzz)")]
    WorkerPanicked,
}

/// How many connections a servelab server at `target` holds at once without a newcomer
/// waiting behind them, read from its `/stats` (`capacity`): the connections that idle
/// clients can keep a reader busy with (`idle_holds_readers`), or, where an idle client
/// keeps its worker (`idle_holds_worker`), the number of workers (`concurrent`). `None`
/// when nothing but the number of clients bounds it.
pub fn server_capacity(target: SocketAddr, timeout: Duration) -> Result<Option<usize>, FuzzError> {
    let stats = |why: String| FuzzError::Stats { target, why };
    // Blocks until the handshake completes, or `timeout`.
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|source| FuzzError::Connect { target, source })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| stats(e.to_string()))?;
    // Blocks until the request is in the kernel's send buffer (a few bytes: at once).
    stream
        .write_all(b"GET /stats HTTP/1.1\r\nHost: wirefuzz\r\nConnection: close\r\n\r\n")
        .map_err(|e| stats(e.to_string()))?;
    let until = Instant::now() + timeout;
    let mut body = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    // Bounded by the deadline and by 1 MiB: /stats is a few KiB.
    while Instant::now() < until && body.len() < 1024 * 1024 {
        // Blocks until the server sends more or closes (Connection: close), or the timeout.
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(stats(e.to_string())),
        }
    }
    let start = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| stats("no complete response".into()))?;
    let json: serde_json::Value = serde_json::from_slice(&body[start + 4..])
        .map_err(|e| stats(format!("not JSON ({e}); is it a servelab server?")))?;
    let capacity = json
        .get("capacity")
        .ok_or_else(|| stats("no \"capacity\" in it".into()))?;
    let number = |key: &str| {
        capacity
            .get(key)
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
    };
    let idle_holds_worker = capacity
        .get("idle_holds_worker")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    Ok(match number("idle_holds_readers") {
        Some(readers) => Some(readers),
        None if idle_holds_worker => number("concurrent"),
        None => None,
    })
}
