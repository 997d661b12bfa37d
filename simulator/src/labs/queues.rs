//! Lab 10: the lecture's condvar queue against crossbeam.
//!
//! The pre-fork pool hands each accepted connection from its main thread to a worker
//! through a bounded queue. The lecture builds that queue from a mutex and a condition
//! variable; servelab has two implementations behind one interface (`server_core::queue`):
//! the lecture's design, repaired (it is FIFO, it re-checks its condition in a loop after
//! every wake-up, and it is bounded), and crossbeam's channel.
//!
//! The lab measures a hand-off twice. In isolation, one producer hands 200 000 items to 4
//! consumers through a queue of 64: there the queue is all the work, and the two designs
//! differ in how consumers compete. With the condvar every consumer fights for the one
//! mutex on every pop; crossbeam takes no lock and wakes only a consumer that sleeps.
//! Then in the server, where a hand-off (about a microsecond) sits beside a TCP connection
//! (accept, read, write, close: tens of microseconds or more), so the difference all but
//! disappears. The lesson is Amdahl's: speeding up a part speeds up the whole only by that
//! part's share.
//!
//! Both checks judge only correctness (every item delivered exactly once; every request
//! served). The speeds are printed, not judged: which queue wins by how much depends on how
//! the scheduler places four consumers on a busy machine.

use std::fmt::Write as _;
use std::time::Duration;

use super::*;

/// Lab 10's entry in the list of labs ([`super::all`]).
/// The question before running: which queue hands over more items per second, and
/// does the difference show in the server's requests per second?
pub(super) const LAB10: Lab = Lab {
    id: 10,
    title: "Queues: the lecture's condvar queue against crossbeam",
    sheet: "labs/10-queues.md",
    targets: &[],
    run: lab10,
};

/// Lab 10: both queues in isolation, then both inside the pre-fork pool.
///
/// In its HTML report (`--report`): inside the server, the queue's depth and the busy
/// workers under the closed loop; over time, the requests per second of each queue.
pub(super) fn lab10(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let mut checks = Vec::new();
    let mut rates = Vec::new();
    for kind in [QueueKind::Crossbeam, QueueKind::Condvar] {
        let (check, rate) = in_isolation(kind);
        rates.push(rate);
        checks.push(check);
    }
    for kind in [QueueKind::Crossbeam, QueueKind::Condvar] {
        checks.push(in_the_pool(env, kind)?);
    }
    // The two queues' speeds are reported, not judged: with one producer and four
    // consumers crossbeam is usually ahead, but by how much depends on how the threads are
    // scheduled, and on a busy machine either can win a run (see the sheet).
    if let (Some(first), Some(rate)) = (checks.first_mut(), rates.get(1)) {
        let _ = write!(
            first.measured,
            "; condvar {rate:.0} hand-offs/s, crossbeam ÷ condvar = {:.2}",
            rates[0] / rate.max(1.0)
        );
    }
    Ok(checks)
}

/// In isolation: one producer hands 200 000 items to 4 consumers through a queue of 64 of
/// `kind`. Returns the check (every item delivered once) and the hand-offs per second. The
/// queue is all the work here, so the rate is the queue's: four consumers contend for
/// every item, the case where the two designs differ most.
fn in_isolation(kind: QueueKind) -> (Check, f64) {
    let items = 200_000u64;
    // Capacity 64: when it is full the producer's push blocks until a consumer takes an
    // item, so the producer can never run ahead by more than 64.
    let (tx, rx) = queue::bounded::<u64>("bench", 64, kind);
    let started = Instant::now();
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let rx = rx.clone();
            // Each consumer counts what it takes. Its pop blocks while the queue is empty,
            // and returns None once it is empty and the producer is gone.
            std::thread::spawn(move || std::iter::from_fn(|| rx.pop()).fold(0u64, |n, _| n + 1))
        })
        .collect();
    drop(rx);
    // A push fails only when every receiver is gone, which cannot happen while the
    // consumers are counting.
    for i in 0..items {
        let _ = tx.push(i);
    }
    // Dropping the only sender ends the consumers once they have drained the queue; the
    // joins wait for that.
    drop(tx);
    let received: u64 = consumers.into_iter().map(|c| c.join().unwrap_or(0)).sum();
    let rate = items as f64 / started.elapsed().as_secs_f64();
    let check = check(
        format!("{kind:?} queue: 1 producer, 4 consumers, {items} hand-offs"),
        format!("{received} received, {rate:.0} hand-offs/s"),
        "every item delivered exactly once",
        received == items,
    );
    (check, rate)
}

/// In the server: the pre-fork pool with a queue of `kind`, 8 clients in a closed loop with
/// keep-alive off, so every request is a new connection that crosses the queue. With
/// keep-alive a worker would keep its connection, and the queue would be crossed once per
/// client instead of once per request.
fn in_the_pool(env: &LabEnv, kind: QueueKind) -> Result<Check, SimError> {
    let scenario = Scenario {
        load: Load::Duration(env.lecture(5.0)),
        ..Scenario::get(8, "/", Duration::from_secs(2), Duration::ZERO)
    };
    let flags = Servers::default().with("queue-impl", kind.name());
    let args = ServerArgs {
        keep_alive_timeout: Duration::ZERO,
        ..ServerArgs::default()
    };
    // Blocks for the 5 lecture seconds of the closed loop, then reads the pool's queue from
    // its `/stats`: how many connections crossed it and how long each waited.
    let (report, stats) = measure(env, "prefork-pool", &flags, args, &scenario)?;
    let t = report.throughput.clone();
    Ok(check(
        format!("prefork-pool with the {kind:?} queue, keep-alive off: 8 clients"),
        format!(
            "{:.0} requests/s, {} failed, {} connections through the queue (mean wait {})",
            t.as_ref().map_or(0.0, |t| t.per_second),
            t.as_ref().map_or(0, |t| t.failed),
            stats.queues[0].pushed,
            human_us(stats.queues[0].mean_wait_us as u64)
        ),
        "every request served: a hand-off costs microseconds, a connection far more, so the queue choice barely shows",
        t.as_ref().is_some_and(|t| t.failed == 0 && t.requests > 0),
    ))
}
