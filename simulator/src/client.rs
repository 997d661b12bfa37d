//! One simulated client: what it does, and what is recorded about it.
//!
//! Every client is a thread of its own (`client-1` … `client-N`), as in the lecture's
//! simulator. All of them wait at a barrier and start together; from that moment each has
//! its own deadline, and every blocking call it makes (connect, write, read) is bounded by
//! what is left of it. So a client never waits past its deadline, and the whole run never
//! lasts longer than the deadline plus the hold.
//!
//! Blocking sockets and one thread per client are the honest model of the lecture's
//! clients. They are also fast enough for load runs: each client spends its life in
//! `write` and `read`, the kernel does the waiting, and the per-request work here is a few
//! hundred nanoseconds of parsing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::http::Connection;
use crate::outcome::{in_time, Failure, Outcome};
use crate::scenario::{DeadlineClock, Load, Scenario};
use crate::units::{micros, new_histogram};

/// Everything recorded about one client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientRecord {
    pub id: usize,
    pub outcome: Outcome,
    /// From the start to the completed TCP handshake.
    pub connect_us: Option<u64>,
    /// From the start to the first byte of the first response.
    pub first_byte_us: Option<u64>,
    /// From the start to the end of the last response.
    pub complete_us: Option<u64>,
    /// The wait the deadline was applied to, when it is known: from the start to the last
    /// response (`--deadline from-start`), or the longest single step, connecting or one
    /// response (`--deadline per-call`). A client whose deadline passed while it was still
    /// waiting has none: all we know is that it waited at least the deadline.
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
    /// Load runs: the latency of every request whose response arrived, in microseconds
    /// (request sent to response complete), late ones included.
    #[serde(skip)]
    pub latencies: Histogram<u64>,
    /// Load runs: requests still unanswered when their deadline passed. Their latency is
    /// unknown (censored): the distribution records them at the deadline.
    #[serde(skip)]
    pub censored: u64,
    /// Failed requests by outcome (load runs).
    #[serde(skip)]
    pub failures: Vec<Outcome>,
}

impl ClientRecord {
    /// The record of client `id` before it has done anything (a client that never started
    /// keeps it).
    pub fn new(id: usize) -> ClientRecord {
        ClientRecord {
            id,
            outcome: Outcome::Served,
            connect_us: None,
            first_byte_us: None,
            complete_us: None,
            waited_us: None,
            status: None,
            server_thread: None,
            served_requests: 0,
            failed_requests: 0,
            error: None,
            latencies: new_histogram(),
            censored: 0,
            failures: Vec::new(),
        }
    }
}

/// The fixed inputs of every client of a run.
pub struct Plan<'a> {
    pub addr: SocketAddr,
    pub host: String,
    pub scenario: &'a Scenario,
}

/// Runs client `id` from `start` to its end and returns its record. Called on the client's
/// own thread, right after the common barrier.
pub fn run(id: usize, plan: &Plan, start: Instant) -> ClientRecord {
    let mut record = ClientRecord::new(id);
    match plan.scenario.load {
        Load::Requests(count) => {
            if let Err(failure) = scenario_client(plan, start, count, &mut record) {
                let limit_us = micros(plan.scenario.timeout);
                if failure.outcome.timed_out()
                    && record.waited_us.is_some_and(|w| in_time(w, limit_us))
                {
                    // The step that ran out of time never ended, so the client's wait is
                    // unknown beyond "at least the deadline" (censored); what was recorded
                    // belongs to an earlier step.
                    record.waited_us = None;
                }
                fail(&mut record, failure);
            }
        }
        Load::Duration(length) => load_client(plan, start, length, &mut record),
    }
    tracing::info!("disconnected ...");
    record
}

/// The lecture's client: connect, be served `count` times, hold the connection, leave.
///
/// Each step is bounded by the deadline of the scenario's clock: with `from-start` one
/// deadline, `T` after the common start, bounds everything; with `per-call` each step gets
/// a fresh `T` from its own beginning, as the lecture's `settimeout(T)` does. The wait that
/// the deadline applies to is recorded in `waited_us` and judged by [`in_time`].
fn scenario_client(
    plan: &Plan,
    start: Instant,
    count: u32,
    record: &mut ClientRecord,
) -> Result<(), Failure> {
    let timeout = plan.scenario.timeout;
    let limit_us = micros(timeout);
    // Where the clock of a step that begins at `began` starts, by the scenario's rule.
    let origin = |began: Instant| match plan.scenario.deadline {
        DeadlineClock::FromStart => start,
        DeadlineClock::PerCall => began,
    };
    let mut conn = None;
    let mut request = Vec::with_capacity(256);
    plan.scenario.request.encode(&plan.host, &mut request);
    for i in 0..count {
        if conn.is_none() {
            tracing::info!("trying to connect to {} ...", plan.addr);
            let began = Instant::now();
            let clock = origin(began);
            let c = Connection::open(plan.addr, clock + timeout)?;
            let connected = Instant::now();
            record.connect_us.get_or_insert(micros(connected - start));
            let waited = micros(connected - clock);
            record.waited_us = Some(record.waited_us.unwrap_or(0).max(waited));
            if !in_time(waited, limit_us) {
                return Err(Failure::late(
                    Outcome::ConnectTimeout,
                    "connected",
                    waited,
                    limit_us,
                ));
            }
            tracing::info!("connected, waiting for service ...");
            conn = Some(c);
        }
        let Some(c) = conn.as_mut() else {
            return Ok(());
        };
        if i > 0 && plan.scenario.request.varies() {
            plan.scenario.request.encode(&plan.host, &mut request);
        }
        let sent = Instant::now();
        let clock = origin(sent);
        let reply = c.exchange(
            &request,
            clock + timeout,
            true,
            plan.scenario.request.is_head(),
            i == 0,
        )?;
        let done = Instant::now();
        record.complete_us = Some(micros(done - start));
        record.status = Some(reply.status);
        if i == 0 {
            record.first_byte_us = Some(micros(reply.first_byte - start));
            record.server_thread = reply.server_thread;
        }
        let waited = micros(done - clock);
        record.waited_us = Some(record.waited_us.unwrap_or(0).max(waited));
        if !in_time(waited, limit_us) {
            return Err(Failure::late(
                Outcome::ServiceTimeout,
                "the response arrived",
                waited,
                limit_us,
            ));
        }
        if !(200..300).contains(&reply.status) {
            return Err(Failure::new(
                Outcome::Rejected,
                format!("the server answered {}", reply.status),
            ));
        }
        record.served_requests += 1;
        if reply.close {
            conn = None;
        }
    }
    if !plan.scenario.hold.is_zero() {
        tracing::info!(
            "service available! keeping it busy for {} ...",
            humantime::format_duration(plan.scenario.hold)
        );
        // Holds the connection open and idle, as the lecture's clients do.
        std::thread::sleep(plan.scenario.hold);
        tracing::info!("finished using the service");
    }
    drop(conn);
    Ok(())
}

/// A load-run client: requests back to back on a keep-alive connection until `length` has
/// passed, each request with its own deadline. Reconnects when the server closes.
fn load_client(plan: &Plan, start: Instant, length: Duration, record: &mut ClientRecord) {
    let end = start + length;
    let timeout = plan.scenario.timeout;
    let limit_us = micros(timeout);
    let mut conn: Option<Connection> = None;
    let mut request = Vec::with_capacity(256);
    plan.scenario.request.encode(&plan.host, &mut request);
    while Instant::now() < end {
        let sent = Instant::now();
        if conn.is_none() {
            match Connection::open(plan.addr, sent + timeout) {
                Ok(c) => {
                    record.connect_us.get_or_insert(micros(start.elapsed()));
                    conn = Some(c);
                }
                Err(failure) => {
                    let stop = matches!(failure.outcome, Outcome::Refused);
                    if failure.outcome.timed_out() {
                        record.censored += 1;
                    }
                    note_failure(record, failure);
                    if stop {
                        // Nothing is listening any more; retrying would only spin.
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        if plan.scenario.request.varies() {
            plan.scenario.request.encode(&plan.host, &mut request);
        }
        let first = record.served_requests == 0;
        match c.exchange(
            &request,
            sent + timeout,
            false,
            plan.scenario.request.is_head(),
            first,
        ) {
            Ok(reply) => {
                let took = micros(sent.elapsed());
                let _ = record.latencies.record(took.max(1));
                record.status = Some(reply.status);
                if first {
                    record.first_byte_us = Some(micros(reply.first_byte - start));
                    record.server_thread = reply.server_thread;
                }
                if reply.close {
                    conn = None;
                }
                if !in_time(took, limit_us) {
                    note_failure(
                        record,
                        Failure::late(
                            Outcome::ServiceTimeout,
                            "a response arrived",
                            took,
                            limit_us,
                        ),
                    );
                } else if (200..300).contains(&reply.status) {
                    record.served_requests += 1;
                    record.complete_us = Some(micros(start.elapsed()));
                } else {
                    note_failure(
                        record,
                        Failure::new(
                            Outcome::Rejected,
                            format!("the server answered {}", reply.status),
                        ),
                    );
                }
            }
            Err(failure) => {
                conn = None;
                if failure.outcome.timed_out() {
                    record.censored += 1;
                }
                note_failure(record, failure);
            }
        }
    }
}

fn fail(record: &mut ClientRecord, failure: Failure) {
    if failure.outcome.timed_out() {
        tracing::info!("timeout waiting for service! ({})", failure.message);
    } else {
        tracing::info!("{}: {}", failure.outcome.name(), failure.message);
    }
    record.outcome = failure.outcome;
    record.failed_requests += 1;
    record.error = Some(failure.message);
}

fn note_failure(record: &mut ClientRecord, failure: Failure) {
    record.failures.push(failure.outcome);
    if record.outcome == Outcome::Served {
        record.outcome = failure.outcome;
        record.error = Some(failure.message);
    }
    record.failed_requests += 1;
}
