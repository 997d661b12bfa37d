//! A server binary as its users run it: started as a process on a free loopback port,
//! talked to over real sockets, stopped with a signal, judged by its exit status and its log.
//!
//! Each architecture's crate runs these through [`crate::binary_tests!`], which names the binary
//! Cargo built for it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::{get, Client};

/// A server process and everything it logged.
#[derive(Debug)]
pub struct Binary {
    /// `None` once waited for.
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The log's lines after "listening on", sent by the thread that drains it.
    log: mpsc::Receiver<String>,
    /// The lines taken from `log` so far.
    seen: Vec<String>,
}

impl Binary {
    /// Starts `path` on a free loopback port with `args`, and waits until it listens.
    pub fn start(path: &str, args: &[&str]) -> Binary {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut child = Command::new(path)
            .args(["--addr", &addr.to_string()])
            // At least `info`, for the "listening on" line.
            .args(if args.contains(&"--log") {
                &[][..]
            } else {
                &["--log", "info"][..]
            })
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stderr = child.stderr.take().expect("its log");
        let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
        // Blocks until the server says it listens (or its log ends).
        let listening = lines.by_ref().any(|l| l.contains("listening on"));
        assert!(listening, "{path} did not start");
        let (tx, log) = mpsc::channel();
        // Drains the rest of the log, so the server never blocks writing it; ends with it.
        std::thread::spawn(move || {
            for line in lines {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Binary {
            child: Some(child),
            addr,
            log,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `limit`) until the log has `count` lines containing `needle`.
    pub fn wait_for_log(&mut self, needle: &str, count: usize, limit: Duration) {
        let give_up = std::time::Instant::now() + limit;
        while self.seen.iter().filter(|l| l.contains(needle)).count() < count {
            let left = give_up.saturating_duration_since(std::time::Instant::now());
            // Blocks until the server logs its next line.
            match self.log.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("the log never had {count} × {needle:?}: {:#?}", self.seen),
            }
        }
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("the server runs");
        // The process this test started and has not waited for: the pid is still its.
        crate::kill(child.id(), signal);
    }

    /// Waits (at most `limit`) for the server to exit; returns its status and its log.
    pub fn wait(mut self, limit: Duration) -> (ExitStatus, Vec<String>) {
        let (tx, rx) = mpsc::channel();
        let mut child = self.child.take().expect("the server runs");
        std::thread::spawn(move || {
            // Blocks until the server exits; a server that never does is killed below.
            let result = child.wait();
            let _ = tx.send((result, child));
        });
        // Waits for the exit, or gives up at the limit.
        let status = match rx.recv_timeout(limit) {
            Ok((Ok(status), _)) => status,
            Ok((Err(e), _)) => panic!("waiting for the server failed: {e}"),
            Err(_) => panic!("the server did not exit within {limit:?}"),
        };
        // The log ends when the process does; collect what is left of it (at most a
        // second per line, in case a forked child still holds the pipe).
        let mut log = std::mem::take(&mut self.seen);
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(1)) {
            log.push(line);
        }
        (status, log)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The shutdown promise (docs/protocol.md): on SIGTERM, exit 0 when every request the
/// server read was answered; exit 1 when it had to abandon requests still running after
/// `--shutdown-timeout`, saying how many in its final line, which counts answered and
/// abandoned requests apart.
pub fn shutdown_keeps_its_promise(path: &str) {
    // Everything answered: status 0.
    let server = Binary::start(path, &["--shutdown-timeout", "300ms"]);
    assert_eq!(get(server.addr, "/").status, 200);
    server.signal(libc::SIGTERM);
    let (status, log) = server.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("stopped after") && l.contains("answered and 0 abandoned")),
        "{log:#?}"
    );

    // A request still running after the timeout: status 1, and the count. The debug log
    // says when each request starts (a sequential server could not answer /stats now).
    let mut server = Binary::start(path, &["--shutdown-timeout", "300ms", "--log", "debug"]);
    assert_eq!(get(server.addr, "/").status, 200);
    let mut sleeper = Client::connect(server.addr);
    sleeper.send("GET /sleep/5000 HTTP/1.1\r\nHost: t\r\n\r\n");
    server.wait_for_log("a request started", 2, Duration::from_secs(10));
    server.signal(libc::SIGTERM);
    let (status, log) = server.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{log:#?}");
    // The server's final line (a forked handler process may log after it).
    let last = log
        .iter()
        .rfind(|l| l.contains("stopped after"))
        .cloned()
        .unwrap_or_default();
    assert!(
        last.contains("abandoned") && last.contains("and 1 abandoned"),
        "the final line: {last:?}\n{log:#?}"
    );
    drop(sleeper);
}

/// The tests of an architecture's binary, for its crate's `tests/`: `binary_tests!("single");`.
#[macro_export]
macro_rules! binary_tests {
    ($name:literal) => {
        #[test]
        fn shutdown_exits_1_only_when_it_abandons_requests() {
            $crate::binary::shutdown_keeps_its_promise(env!(concat!("CARGO_BIN_EXE_", $name)));
        }

        #[test]
        fn shutdown_under_keep_alive_load_loses_no_answer() {
            $crate::binary::shutdown_under_load_loses_no_answer(env!(concat!(
                "CARGO_BIN_EXE_",
                $name
            )));
        }
    };
}

/// Shutdown under keep-alive load loses no answer: every request the server counts as
/// answered in its final line reached its client. (Closing a connection that still has
/// unread input makes the kernel send a reset, which destroys answers already sent but not
/// yet read; a request that had arrived must be answered with `Connection: close`
/// instead.)
pub fn shutdown_under_load_loses_no_answer(path: &str) {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let server = Binary::start(path, &["--shutdown-timeout", "2s"]);
    let addr = server.addr;
    let received = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let received = Arc::clone(&received);
            std::thread::spawn(move || {
                let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, IO) else {
                    return;
                };
                let _ = stream.set_read_timeout(Some(IO));
                let _ = stream.set_write_timeout(Some(IO));
                let mut buf = Vec::new();
                // Bounded: at most 20 000 requests per connection; the shutdown ends it
                // long before.
                for _ in 0..20_000 {
                    if stream
                        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                    match read_answer(&mut stream, &mut buf) {
                        Some(closing) => {
                            received.fetch_add(1, Ordering::Relaxed);
                            if closing {
                                return;
                            }
                        }
                        // Closed (or reset) before a whole answer: the count below says
                        // whether an answer the server sent was lost.
                        None => return,
                    }
                }
            })
        })
        .collect();
    crate::harness::wait_until("the load is running", || {
        received.load(Ordering::Relaxed) >= 2_000
    });
    server.signal(libc::SIGTERM);
    for client in clients {
        let _ = client.join();
    }
    let (status, log) = server.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{log:#?}");
    let last = log
        .iter()
        .rfind(|l| l.contains("stopped after"))
        .cloned()
        .unwrap_or_default();
    let answered: u64 = last
        .split("stopped after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no final line: {log:#?}"));
    assert_eq!(
        received.load(Ordering::Relaxed),
        answered,
        "answers the server sent that its clients never got"
    );
}

/// How long a load client waits for one answer.
const IO: Duration = Duration::from_secs(5);

/// Reads one whole answer (head and Content-Length body) from `stream`; `Some(true)` if it
/// closes the connection, `None` if the connection ended (or failed) first.
fn read_answer(stream: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> Option<bool> {
    use std::io::Read;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                buf.drain(..end + 4 + length);
                return Some(head.contains("connection: close"));
            }
        }
        // Blocks until more of the answer arrives (at most IO).
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
