//! Lab 10: the lecture's condvar queue against crossbeam.

use std::fmt::Write as _;
use std::time::Duration;

use super::*;

/// Lab 10's entry in the list of labs ([`super::all`]).
pub(super) const LAB10: Lab = Lab {
    id: 10,
    title: "Queues: the lecture's condvar queue against crossbeam",
    sheet: "labs/10-queues.md",
    targets: &[],
    run: lab10,
};

pub(super) fn lab10(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let mut checks = Vec::new();
    // In isolation: one producer hands 200 000 items to 4 consumers through a queue of 64.
    let items = 200_000u64;
    let mut rates = Vec::new();
    for kind in [QueueKind::Crossbeam, QueueKind::Condvar] {
        let (tx, rx) = queue::bounded::<u64>("bench", 64, kind);
        let started = Instant::now();
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || std::iter::from_fn(|| rx.pop()).fold(0u64, |n, _| n + 1))
            })
            .collect();
        drop(rx);
        for i in 0..items {
            let _ = tx.push(i);
        }
        drop(tx);
        let received: u64 = consumers.into_iter().map(|c| c.join().unwrap_or(0)).sum();
        let rate = items as f64 / started.elapsed().as_secs_f64();
        rates.push(rate);
        checks.push(check(
            format!("{kind:?} queue: 1 producer, 4 consumers, {items} hand-offs"),
            format!("{received} received, {rate:.0} hand-offs/s"),
            "every item delivered exactly once",
            received == items,
        ));
    }
    // In the server: new connection per request, so every request crosses the queue.
    let scenario = Scenario {
        load: Load::Duration(env.lecture(5.0)),
        ..Scenario::get(8, "/", Duration::from_secs(2), Duration::ZERO)
    };
    for kind in [QueueKind::Crossbeam, QueueKind::Condvar] {
        let flags = Servers::default().with("queue-impl", kind.name());
        let args = ServerArgs {
            keep_alive_timeout: Duration::ZERO,
            ..ServerArgs::default()
        };
        let (report, stats) = measure(env, "prefork-pool", &flags, args, &scenario)?;
        let t = report.throughput.clone();
        checks.push(check(
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
        ));
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
