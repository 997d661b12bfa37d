//! At the limit on open files every `accept` fails ("too many open files"), and a server
//! retries every 50 ms. Each architecture must then log one line a second, with a count of
//! the lines it left out, instead of twenty lines a second per accepting thread.
//!
//! This test has a binary of its own because it lowers the whole process's limit on open
//! files, and installs the process's log subscriber, which captures every line the servers
//! write. (The per-second arithmetic is tested with a made-up clock beside
//! `server_core::logging::RepeatLog`; this shows that every server goes through it.)
//!
//! One architecture cannot be brought there: the sequential server. A thread blocked in
//! `accept` has already reserved the descriptor for the connection it waits for (Linux
//! takes it before it waits), so the first client after the limit is accepted; and the
//! sequential server's only thread serves that client to its end, then closes it, which
//! frees a descriptor again before its next `accept`. It goes through the same `Acceptor`
//! as five of the others, which this test does reach.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use server_core::ServerArgs;
use socket2::{Domain, Socket, Type};

/// How long to wait for a log line before failing: far more than the second between two.
const PATIENCE: Duration = Duration::from_secs(10);

/// A log writer that sends each line (the subscriber writes one event per call) to the test.
struct Lines(mpsc::Sender<String>);

impl Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.send(String::from_utf8_lossy(bytes).into_owned());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The highest descriptor this process has open.
fn highest_descriptor() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap_or(2)
}

/// Takes every free descriptor below the (lowered) limit, so that the next `accept` fails.
fn take_every_descriptor() -> Vec<std::fs::File> {
    let mut taken = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        taken.push(file);
    }
    taken
}

/// Waits for the next line that reports a failed accept.
fn next_accept_failure(lines: &mpsc::Receiver<String>, arch: &str) -> (Instant, String) {
    loop {
        // Blocks until the server logs its next line.
        match lines.recv_timeout(PATIENCE) {
            Ok(line) if line.contains("accept failed") => return (Instant::now(), line),
            Ok(_) => {}
            Err(_) => panic!("{arch}: no accept failure was logged within {PATIENCE:?}"),
        }
    }
}

/// Connects `clients` (created before the descriptors ran out) to `addr`: each waits in
/// the server's backlog, and each accept of one fails.
fn connect_all(clients: &[Socket], addr: SocketAddr) {
    for client in clients {
        client
            .connect_timeout(&addr.into(), PATIENCE)
            .expect("connect: the kernel completes the handshake in the backlog");
    }
}

#[test]
fn at_the_descriptor_limit_every_server_logs_one_line_a_second_with_a_count() {
    let (tx, lines) = mpsc::channel();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || Lines(tx.clone()))
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    // (io-uring where io_uring is forbidden is skipped: it cannot start at all.)
    let reachable = architectures::ALL
        .iter()
        .filter(|e| e.name != "single" && e.available().is_ok());
    for entry in reachable {
        // Client sockets made while descriptors are free; they connect once none is left.
        // The first may be accepted (see the module documentation), the others cannot.
        let clients: Vec<Socket> = (0..3)
            .map(|_| Socket::new(Domain::IPV4, Type::STREAM, None).expect("a client socket"))
            .collect();
        // The limit is lowered before the server starts, with room for what it opens as it
        // starts (its listening socket, epoll or ring descriptors, pipes): io_uring reads
        // the limit when an accept is submitted, not when it completes, so the io-uring
        // server's accept, submitted at start, must already see the lower one.
        let limit = server_core::rlimit::set_open_files(highest_descriptor() + 64)
            .expect("lower the limit on open files");
        let server = entry
            .start(&[], ServerArgs::default())
            .expect("the server starts");
        let taken = take_every_descriptor();
        connect_all(&clients, server.addr());

        // The first failure is logged at once, with nothing left out before it ...
        let (first_at, first) = next_accept_failure(&lines, entry.name);
        assert!(!first.contains("more like it"), "{}: {first}", entry.name);
        // ... and the next line only a second later, counting the retries in between (one
        // every 50 ms: about 19; at least one, however slow the machine).
        let (second_at, second) = next_accept_failure(&lines, entry.name);
        let gap = second_at - first_at;
        assert!(
            gap >= Duration::from_millis(900),
            "{}: two lines {gap:?} apart:\n{first}{second}",
            entry.name
        );
        let left_out: u64 = second
            .split("(and ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}: no count in {second:?}", entry.name));
        assert!(left_out >= 1, "{}: {second}", entry.name);

        // Descriptors free again: the clients are accepted, and the server stops as usual.
        drop(taken);
        server_core::rlimit::set_open_files(limit).expect("restore the limit");
        drop(clients);
        server.stop().expect("the server stops");
        // Whatever it logged meanwhile belongs to this server, not to the next.
        while lines.try_recv().is_ok() {}
    }
}
