//! The attacker: populations of hostile clients that run in the background of a scenario.
//!
//! A server is not only judged by how it serves polite clients, but by whether it still
//! serves them while others misbehave. A scenario may therefore carry background
//! populations (`--background 1000:slow-headers`): connections that start before the
//! ordinary (foreground) clients, hold on for as long as the server lets them, come back
//! when the server cuts them off, and stop when the foreground is done. The foreground is
//! the scenario's own clients, with their own ledger; each background population gets a
//! ledger of its own ([`PopulationLedger`]): how many connections it opened, how many the
//! server cut off, with which answer and after how long, and how many it still held at the
//! end.
//!
//! The behaviours are the classic ways to hold a server's resources with almost no
//! traffic ([`Behaviour`]): a request head that never ends (slowloris), a body that never
//! ends (R.U.D.Y.), a response read a few bytes at a time through a tiny receive window
//! (slow read), and a connection that never sends anything (idle).
//!
//! All populations run on one thread with one `mio` poll, whatever their size: a thousand
//! hostile connections cost the simulator a socket and a few dozen bytes each, so what is
//! measured is the server's cost, not the attacker's.

mod population;

pub use population::{
    Behaviour, Population, PopulationLedger, DEFAULT_EVERY, MAX_BACKGROUND, SETTLE,
    SLOW_BODY_BYTES, SLOW_READ_BYTES, SLOW_READ_CHUNK,
};

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use population::{MIN_TICK, SLOW_READ_WINDOW};

use crate::Error;

/// A running attack: [`start`] it before the foreground, [`Attack::stop`] it after.
#[derive(Debug)]
pub struct Attack {
    /// Tells the attack thread to stop. Shared with that thread, which checks it after
    /// every wake-up. Sequentially consistent, though nothing else is published with it:
    /// the flag is read once per wake-up, so its ordering costs nothing worth saving.
    stopping: Arc<AtomicBool>,
    /// Wakes the attack thread from its poll so that it sees `stopping` at once.
    waker: Arc<Waker>,
    thread: JoinHandle<Vec<PopulationLedger>>,
}

impl Attack {
    /// Stops every hostile connection and returns the populations' ledgers.
    pub fn stop(self) -> Vec<PopulationLedger> {
        self.stopping.store(true, Ordering::SeqCst);
        // If the wake fails, the poll still returns within one tick.
        let _ = self.waker.wake();
        // Waits for the attack thread to close its connections: at most a tick.
        self.thread.join().unwrap_or_default()
    }
}

/// Starts `populations` against `addr` on a thread of their own, and returns once every
/// hostile connection has been established (or has failed), or after
/// [`SETTLE`]: the foreground then meets a server already under attack.
pub fn start(addr: SocketAddr, populations: &[Population]) -> Result<Attack, Error> {
    let fail = |source| Error::RanOut {
        doing: "the attacker could not set up its poll",
        source,
    };
    let poll = Poll::new().map_err(fail)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(fail)?);
    let stopping = Arc::new(AtomicBool::new(false));
    // Capacity 1: one message, "settled", sent once.
    let (settled_tx, settled_rx) = mpsc::sync_channel(1);
    let attacker = Attacker {
        addr,
        poll,
        populations: populations.to_vec(),
        ledgers: populations
            .iter()
            .map(|p| PopulationLedger {
                population: p.to_string(),
                ..PopulationLedger::default()
            })
            .collect(),
        held: vec![Vec::new(); populations.len()],
        openings: populations
            .iter()
            .map(|p| Arc::from(p.behaviour.opening()))
            .collect(),
        conns: Slab::new(),
        waiting: Vec::new(),
        settled: Some(settled_tx),
        unsettled: populations.iter().map(|p| p.clients).sum(),
    };
    let thread = std::thread::Builder::new()
        .name("attacker".into())
        .spawn({
            let stopping = stopping.clone();
            move || attacker.run(&stopping)
        })
        .map_err(|source| Error::Thread {
            what: "the attacker thread".into(),
            source,
        })?;
    // Waits until every connection has had its first outcome, at most SETTLE (or until the
    // attack thread ends early, which drops the sender).
    let _ = settled_rx.recv_timeout(SETTLE);
    Ok(Attack {
        stopping,
        waker,
        thread,
    })
}

const WAKER: Token = Token(usize::MAX);

/// One hostile connection.
struct Conn {
    /// Its population, by index: its behaviour, pace and ledger.
    population: usize,
    stream: TcpStream,
    /// The non-blocking connect has completed.
    connected: bool,
    /// When it was opened: how long the server held it is counted from here.
    opened_at: Instant,
    /// How much of its population's opening it has sent (for slow read, the opening is
    /// the whole request, body included).
    sent: usize,
    /// When it next sends or reads its few bytes.
    next_tick: Instant,
    /// The first bytes the server answered, to find its status.
    answer: Vec<u8>,
    /// Whether its first outcome (connected, or failed) was counted for settling.
    settled: bool,
}

/// The attack thread's state.
struct Attacker {
    addr: SocketAddr,
    poll: Poll,
    populations: Vec<Population>,
    ledgers: Vec<PopulationLedger>,
    /// How long each population's cut-off connections were held, in milliseconds.
    held: Vec<Vec<u64>>,
    /// Each population's opening, shared by its connections (a slow reader's is 256 KiB).
    openings: Vec<Arc<[u8]>>,
    /// The open hostile connections; a connection's key is its token in the poll.
    conns: Slab<Conn>,
    /// Connections to open again: (population, when). A population comes back after the
    /// server cuts it off, so the pressure lasts as long as the foreground.
    waiting: Vec<(usize, Instant)>,
    /// Tells [`start`] that every connection has had its first outcome; taken (and so
    /// dropped) once sent. Its channel holds one message, and only one is ever sent, so the
    /// send never blocks.
    settled: Option<mpsc::SyncSender<()>>,
    /// Connections whose first outcome has not come yet.
    unsettled: usize,
}

impl Attacker {
    /// The attack thread: opens every population's connections, then loops (wait for a
    /// socket or the next tick; act on ready sockets; send or read each connection's few
    /// bytes when due) until told to stop, and returns the ledgers.
    fn run(mut self, stopping: &AtomicBool) -> Vec<PopulationLedger> {
        let now = Instant::now();
        for (population, p) in self.populations.clone().iter().enumerate() {
            for _ in 0..p.clients {
                self.open(population, now);
            }
        }
        // Up to 1024 ready sockets a wake-up; more wait for the next poll, not lost.
        let mut events = Events::with_capacity(1024);
        // Every read lands here and is dropped (but the first bytes of an answer).
        let mut scratch = vec![0u8; 64 * 1024];
        while !stopping.load(Ordering::SeqCst) {
            let now = Instant::now();
            let timeout = self
                .next_due()
                .map(|due| due.saturating_duration_since(now).max(MIN_TICK));
            // Waits for a hostile socket to become ready, the waker, or the next tick.
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                tracing::warn!("the attacker's poll failed: {e}");
                break;
            }
            let now = Instant::now();
            for event in events.iter() {
                if event.token() != WAKER {
                    self.ready(event.token().0, now, &mut scratch);
                }
            }
            self.tick(now);
        }
        self.finish()
    }

    /// The earliest moment something is due.
    fn next_due(&self) -> Option<Instant> {
        let ticks = self.conns.iter().map(|(_, c)| c.next_tick);
        let reopen = self.waiting.iter().map(|(_, at)| *at);
        ticks.chain(reopen).min()
    }

    /// Starts a connection for `population`.
    fn open(&mut self, population: usize, now: Instant) {
        let behaviour = self.populations[population].behaviour;
        let every = self.populations[population].every;
        let stream = match connect(self.addr, behaviour) {
            Ok(stream) => stream,
            Err(_) => {
                self.ledgers[population].failed_connects += 1;
                self.waiting.push((population, now + every));
                self.settle_one();
                return;
            }
        };
        let entry = self.conns.vacant_entry();
        let token = Token(entry.key());
        let mut conn = Conn {
            population,
            stream,
            connected: false,
            opened_at: now,
            sent: 0,
            next_tick: now + every,
            answer: Vec::new(),
            settled: false,
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut conn.stream, token, interest)
            .is_err()
        {
            self.ledgers[population].failed_connects += 1;
            self.waiting.push((population, now + every));
            self.settle_one();
            return;
        }
        entry.insert(conn);
    }

    /// Counts one connection's first outcome; the last one tells [`start`] to go on.
    fn settle_one(&mut self) {
        self.unsettled = self.unsettled.saturating_sub(1);
        if self.unsettled == 0 {
            if let Some(settled) = self.settled.take() {
                let _ = settled.try_send(());
            }
        }
    }

    /// A hostile socket is ready: finish connecting, send what is pending, notice the
    /// server's answer or close.
    fn ready(&mut self, key: usize, now: Instant, scratch: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let population = conn.population;
        if !conn.connected {
            // A non-blocking connect has finished when the socket is writable: it worked
            // if the socket has a peer and no pending error.
            match (conn.stream.take_error(), conn.stream.peer_addr()) {
                (Ok(None), Ok(_)) => {
                    conn.connected = true;
                    conn.settled = true;
                    self.ledgers[population].connected += 1;
                    self.settle_one();
                }
                (_, Err(e)) if e.kind() == ErrorKind::NotConnected => return,
                _ => {
                    self.ledgers[population].failed_connects += 1;
                    self.drop_conn(key, now);
                    return;
                }
            }
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        // Sends the rest of the opening, as far as the socket takes it now.
        let opening = &self.openings[population];
        while conn.sent < opening.len() {
            match conn.stream.write(&opening[conn.sent..]) {
                Ok(n) => {
                    conn.sent += n;
                    self.ledgers[population].bytes_sent += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.cut_off(key, now, true);
                    return;
                }
            }
        }
        // A slow reader reads only on its ticks: that is the attack.
        if self.populations[population].behaviour == Behaviour::SlowRead {
            return;
        }
        self.read_all(key, now, scratch);
    }

    /// Reads what the server sent until the socket is drained; notices a close.
    fn read_all(&mut self, key: usize, now: Instant, scratch: &mut [u8]) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            match conn.stream.read(scratch) {
                Ok(0) => {
                    self.cut_off(key, now, false);
                    return;
                }
                Ok(n) => {
                    let keep = n.min(32usize.saturating_sub(conn.answer.len()));
                    conn.answer.extend_from_slice(&scratch[..keep]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.cut_off(key, now, true);
                    return;
                }
            }
        }
    }

    /// The server closed (or reset) connection `key`: counts it and plans a new one.
    fn cut_off(&mut self, key: usize, now: Instant, reset: bool) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let ledger = &mut self.ledgers[conn.population];
        ledger.cut_off += 1;
        if reset {
            ledger.reset += 1;
        }
        if let Some(status) = status_of(&conn.answer) {
            *ledger.statuses.entry(status).or_default() += 1;
        }
        let held = now.saturating_duration_since(conn.opened_at);
        self.held[conn.population].push(crate::units::micros(held) / 1000);
        self.drop_conn(key, now);
    }

    /// Forgets connection `key` and plans a new connection for its population after a
    /// tick.
    fn drop_conn(&mut self, key: usize, now: Instant) {
        let conn = self.conns.remove(key);
        if !conn.settled {
            self.settle_one();
        }
        let population = conn.population;
        let mut stream = conn.stream;
        let _ = self.poll.registry().deregister(&mut stream);
        self.waiting
            .push((population, now + self.populations[population].every));
    }

    /// Does what is due: each connection's few bytes, and reopening cut-off ones.
    fn tick(&mut self, now: Instant) {
        let due: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.next_tick <= now)
            .map(|(key, _)| key)
            .collect();
        let mut chunk = [0u8; SLOW_READ_CHUNK];
        for key in due {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let population = conn.population;
            let p = self.populations[population];
            conn.next_tick = now + p.every;
            if !conn.connected {
                // Not established within a tick: count it failed and try again.
                self.ledgers[population].failed_connects += 1;
                self.drop_conn(key, now);
                continue;
            }
            if conn.sent < self.openings[population].len() {
                // Still sending its opening (the server is not reading): nothing more.
                continue;
            }
            match p.behaviour {
                Behaviour::SlowRead => match conn.stream.read(&mut chunk) {
                    Ok(0) => self.cut_off(key, now, false),
                    Ok(n) => {
                        let keep = n.min(32usize.saturating_sub(conn.answer.len()));
                        conn.answer.extend_from_slice(&chunk[..keep]);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => self.cut_off(key, now, true),
                },
                Behaviour::Idle => {}
                behaviour => {
                    let drip = behaviour.drip();
                    match conn.stream.write(drip) {
                        Ok(n) => self.ledgers[population].bytes_sent += n as u64,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => self.cut_off(key, now, true),
                    }
                }
            }
        }
        let (now_due, later): (Vec<_>, Vec<_>) =
            self.waiting.drain(..).partition(|(_, at)| *at <= now);
        self.waiting = later;
        for (population, _) in now_due {
            self.open(population, now);
        }
    }

    /// Counts what is still open and closes it.
    fn finish(mut self) -> Vec<PopulationLedger> {
        for conn in self.conns.drain() {
            if conn.connected {
                self.ledgers[conn.population].open_at_end += 1;
            }
        }
        for (ledger, held) in self.ledgers.iter_mut().zip(&mut self.held) {
            held.sort_unstable();
            ledger.held_ms_p50 = held.get(held.len() / 2).copied();
            ledger.held_ms_max = held.last().copied();
        }
        self.ledgers
    }
}

/// Starts a non-blocking connect; a slow reader's socket gets a small receive buffer
/// first, so that the window it offers the server stays small.
fn connect(addr: SocketAddr, behaviour: Behaviour) -> std::io::Result<TcpStream> {
    if behaviour != Behaviour::SlowRead {
        return TcpStream::connect(addr);
    }
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_recv_buffer_size(SLOW_READ_WINDOW)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(socket)))
}

/// The status code at the start of an answer (`HTTP/1.1 408 ...`), if there is one.
fn status_of(answer: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(answer.get(9..12)?).ok()?;
    answer.starts_with(b"HTTP/1.").then_some(())?;
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_read_from_the_first_bytes_of_an_answer() {
        assert_eq!(status_of(b"HTTP/1.1 408 Request Timeout\r\n"), Some(408));
        assert_eq!(status_of(b"HTTP/1.1 4"), None);
        assert_eq!(status_of(b"garbage and more garbage"), None);
    }
}
