//! What a run leaves behind, as plain data: each client's record, and the run's raw results
//! before the ledger adds them up.
//!
//! These types sit below both the engines that fill them in and the ledger that reads
//! them, so neither needs the other.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::outcome::Outcome;
use crate::tally::{Live, Row, Series, Tally};

/// Everything recorded about one client (in an open-loop run, one connection of the pool).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClientRecord {
    pub id: usize,
    pub outcome: Outcome,
    /// From the common start to this client's first action (its first connect). Shows how
    /// evenly the engine started its clients.
    pub started_us: Option<u64>,
    /// From the start to the completed TCP handshake.
    pub connect_us: Option<u64>,
    /// From the start to the first byte of the first response.
    pub first_byte_us: Option<u64>,
    /// From the start to the end of the last response served.
    pub complete_us: Option<u64>,
    /// From the start to the moment the client finished.
    pub ended_us: Option<u64>,
    /// The wait the deadline was applied to, when it is known: from the start to the last
    /// response (`--deadline from-start`), or the longest single step, connecting or one
    /// response (`--deadline per-call`). A client whose deadline passed while it was still
    /// waiting has none: all we know is that it waited at least the deadline. (Scenario
    /// runs only.)
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
}

/// A stretch of a client's life, as its record shows it (see [`ClientRecord::phases`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// From its first step to the completed handshake.
    Connecting,
    /// Connected, waiting for the first byte of an answer.
    Waiting,
    /// From the first byte of the first answer to the end of the last one served.
    Answering,
    /// Served, keeping the connection open and idle (`--hold`).
    Holding,
}

impl Phase {
    /// The phase in the lecture's words.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connecting => "waiting to connect",
            Phase::Waiting => "connected, waiting for service",
            Phase::Answering => "being answered",
            Phase::Holding => "holding the connection",
        }
    }
}

impl ClientRecord {
    /// The client's life as consecutive phases, each `(phase, from µs, to µs)` since the
    /// common start; a client that never ended is drawn to `end_us`. Empty for a client that
    /// never started.
    pub fn phases(&self, end_us: u64) -> Vec<(Phase, u64, u64)> {
        let Some(start) = self.started_us else {
            return Vec::new();
        };
        let ended = self.ended_us.unwrap_or(end_us).max(start);
        let mut out = vec![(Phase::Connecting, start, self.connect_us.unwrap_or(ended))];
        let Some(connected) = self.connect_us else {
            return out;
        };
        out.push((
            Phase::Waiting,
            connected,
            self.first_byte_us.unwrap_or(ended),
        ));
        let Some(first) = self.first_byte_us else {
            return out;
        };
        let complete = self.complete_us.unwrap_or(first).max(first);
        out.push((Phase::Answering, first, complete));
        if self.outcome == Outcome::Served && ended > complete {
            out.push((Phase::Holding, complete, ended));
        }
        out
    }

    /// The record of client `id` before it has done anything (a client that never started
    /// keeps it).
    pub fn new(id: usize) -> ClientRecord {
        ClientRecord {
            id,
            outcome: Outcome::Served,
            started_us: None,
            connect_us: None,
            first_byte_us: None,
            complete_us: None,
            ended_us: None,
            waited_us: None,
            status: None,
            server_thread: None,
            served_requests: 0,
            failed_requests: 0,
            error: None,
        }
    }
}

/// A run's raw results, before the ledger adds them up.
#[derive(Debug)]
pub struct Finished {
    /// Every client's record, ordered by id.
    pub records: Vec<ClientRecord>,
    /// Every engine thread's tally, merged.
    pub tally: Tally,
    /// The per-second time series.
    pub rows: Vec<Row>,
    /// The HdrHistogram interval log.
    pub interval_log: String,
    /// From the moment the first client really started to the moment the last one really
    /// finished.
    pub elapsed: Duration,
    /// The threads that ran the clients.
    pub threads: usize,
    /// The wall-clock moment the clients were let go (every client's times count from it).
    pub started_at: SystemTime,
}

impl Finished {
    /// Adds up what the engine threads returned: the records in order of id, the tallies
    /// merged into one, and the time series closed.
    pub fn assemble(
        mut records: Vec<ClientRecord>,
        tallies: Vec<Tally>,
        series: &Series,
        started_at: SystemTime,
        threads: usize,
    ) -> Finished {
        records.sort_by_key(|r| r.id);
        let mut tallies = tallies.into_iter();
        let mut tally = tallies.next().unwrap_or_else(|| {
            Tally::new(
                Instant::now(),
                1,
                Arc::new(Series::new(1)),
                Arc::new(Live::new(1)),
                0,
            )
        });
        for other in tallies {
            tally.merge(&other);
        }
        let (rows, interval_log) = series.finish(started_at);
        let elapsed = span(&records);
        Finished {
            records,
            tally,
            rows,
            interval_log,
            elapsed,
            threads,
            started_at,
        }
    }

    /// The results of a run that produced `records` and nothing else (no requests counted):
    /// for tools and tests that render reports.
    pub fn from_records(records: Vec<ClientRecord>) -> Finished {
        Finished::assemble(records, Vec::new(), &Series::new(1), SystemTime::now(), 1)
    }
}

/// The run's real length: from the first client's first step to the last client's end.
pub fn span(clients: &[ClientRecord]) -> Duration {
    let first = clients
        .iter()
        .filter_map(|c| c.started_us)
        .min()
        .unwrap_or(0);
    let last = clients
        .iter()
        .filter_map(|c| c.ended_us)
        .max()
        .unwrap_or(first);
    Duration::from_micros(last.saturating_sub(first))
}
