//! Series D, capacity: load sized from the claim, judged by a ledger and a prediction.
//!
//! Each client of a burst, and each request of the open loop, ends with one outcome in the
//! ledger: served (a 2xx before its deadline), turned away (an error status, a refused or
//! reset connection, before its deadline), or late (nothing by its deadline). The
//! prediction is the queueing arithmetic of `simulator/src/predict.rs` in its simplest
//! form: with `P` slots (the claim's workers; one for a sequential design; every client
//! for the others) and requests of `D`, client `k` of a burst is answered at
//! `(⌊k/P⌋ + 1)·D`, and served if that is before the deadline `T`. The verdict is whether
//! the ledger agrees, with a margin of a client or so for a busy machine.

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::{Ctx, Verdict};
use crate::wire::{one_shot, request, Client, WireError};
use crate::Leaderboard;

/// What became of one client or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A 2xx before its deadline, after this long.
    Served(Duration),
    /// An error status, a refused or reset connection, before the deadline.
    TurnedAway,
    /// Nothing by the deadline (or an answer after it).
    Late,
}

/// One request on a fresh connection that asks the server to close, judged against
/// `deadline` (an instant) from `due`.
fn one(addr: SocketAddr, path: &str, due: Instant, deadline: Instant) -> Outcome {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Outcome::Late;
    }
    let result = Client::connect(addr, left).and_then(|mut client| {
        client.send(&request("GET", path, b"", true))?;
        client.read_within(false, deadline.saturating_duration_since(Instant::now()))
    });
    let now = Instant::now();
    match result {
        _ if now >= deadline => Outcome::Late,
        Ok(r) if (200..300).contains(&r.status) => Outcome::Served(now - due),
        Ok(_) => Outcome::TurnedAway,
        Err(WireError::Timeout) => Outcome::Late,
        Err(_) => Outcome::TurnedAway,
    }
}

/// D.burst: clients all at once, each `GET /sleep/200` with a 700 ms deadline.
pub(crate) fn burst(ctx: &mut Ctx) -> Verdict {
    let slots = ctx.expect().slots();
    let clients = match slots {
        Some(n) => (4 * n as usize + 4).min(48),
        None => 24,
    };
    let work = ctx.ms(200);
    let limit = ctx.ms(700);
    let rounds = (limit.as_secs_f64() / work.as_secs_f64()).ceil() as usize - 1;
    let predicted = slots.map_or(clients, |p| (p as usize * rounds).min(clients));
    let path = format!("/sleep/{}", work.as_millis());
    let gate = Arc::new(Barrier::new(clients));
    let addr = ctx.addr;
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let gate = Arc::clone(&gate);
            let path = path.clone();
            std::thread::spawn(move || {
                // Waits until every client's thread is ready: they start together.
                gate.wait();
                let start = Instant::now();
                one(addr, &path, start, start + limit)
            })
        })
        .collect();
    // Waits for every client (each bounded by its deadline).
    let outcomes: Vec<Outcome> = threads
        .into_iter()
        .map(|t| t.join().unwrap_or(Outcome::Late))
        .collect();
    let served = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Served(_)))
        .count();
    let late = outcomes.iter().filter(|o| **o == Outcome::Late).count();
    // The late clients' requests may still be queued at the server: let them finish, so
    // that the checks after this one find it idle.
    drain(ctx);
    let margin = 1 + predicted / 8;
    let agrees = served + margin >= predicted && served <= predicted + margin;
    let expect = ctx.expect();
    let ledger = format!(
        "{clients} clients of {path} with a {} ms deadline: {served} served, {} turned away, {late} late; --expect {expect} predicts {predicted} served",
        limit.as_millis(),
        clients - served - late
    );
    if !agrees {
        return Verdict::Fail(format!(
            "{ledger}: the measurement disagrees with the claim"
        ));
    }
    if expect.rejects() && late > 0 {
        return Verdict::Fail(format!(
            "{ledger}: a bounded pool must turn away (503) the clients it cannot serve in time, but {late} waited past their deadline (an unbounded or too long queue)"
        ));
    }
    Verdict::Pass(format!("{ledger}: agrees"))
}

/// Waits until the server answers a `GET /` on a new connection (at most 5 s, stretched):
/// a server that queues its connections answers it only once those before it are done.
fn drain(ctx: &Ctx) {
    // Blocks until the answer comes or the time is up; the answer itself does not matter.
    let _ = one_shot(ctx.addr, "GET", "/", b"", ctx.ms(5000));
}

/// The open loop's fixed rate (requests per second, unstretched), length and request.
const RATE: f64 = 40.0;
const OPEN_LOOP_MS: u64 = 1000;
const OPEN_LOOP_WORK_MS: u64 = 10;
const OPEN_LOOP_DEADLINE_MS: u64 = 500;

/// D.open-loop: `GET /sleep/10` at a fixed 40 a second for a second, each on its own
/// connection and due on schedule whether or not earlier ones were answered; each must be
/// served within 500 ms of when it was due, as the prediction says for every claim.
pub(crate) fn open_loop(ctx: &mut Ctx) -> Verdict {
    let rate = RATE / ctx.settings.stretch;
    let count = (rate * ctx.ms(OPEN_LOOP_MS).as_secs_f64()).round().max(1.0) as usize;
    let work = ctx.ms(OPEN_LOOP_WORK_MS);
    let limit = ctx.ms(OPEN_LOOP_DEADLINE_MS);
    let path = format!("/sleep/{}", work.as_millis());
    let start = Instant::now() + Duration::from_millis(20);
    let addr = ctx.addr;
    let mut threads = Vec::with_capacity(count);
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        // Waits until the next request is due: the schedule, not the answers, sets the
        // pace (an open loop).
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let path = path.clone();
        threads.push(std::thread::spawn(move || {
            one(addr, &path, due, due + limit)
        }));
    }
    // Waits for every request (each bounded by its deadline).
    let outcomes: Vec<Outcome> = threads
        .into_iter()
        .map(|t| t.join().unwrap_or(Outcome::Late))
        .collect();
    let mut latencies: Vec<Duration> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Served(d) => *d,
            _ => limit,
        })
        .collect();
    latencies.sort();
    let served = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Served(_)))
        .count();
    let p99 = latencies[((latencies.len() * 99).div_ceil(100)).saturating_sub(1)];
    ctx.leaderboard = Leaderboard {
        rate,
        served_fraction: Some(served as f64 / count as f64),
        p99_ms: Some(p99.as_secs_f64() * 1000.0),
    };
    let ledger = format!(
        "{count} requests of {path} at {rate:.0} a second, each with a {} ms deadline from when it was due: {served} served, p99 {:.1} ms",
        limit.as_millis(),
        p99.as_secs_f64() * 1000.0
    );
    // Every claim has at least one slot: 100 requests a second of 10 ms, above the 40 a
    // second offered, so the prediction is that all are served; one miss is allowed for
    // a busy machine.
    if served + 1 >= count {
        Verdict::Pass(format!(
            "{ledger}: agrees with the prediction that all are served"
        ))
    } else {
        Verdict::Fail(format!(
            "{ledger}: a design with --expect {} serves all of them in time; {} were not",
            ctx.expect(),
            count - served
        ))
    }
}
