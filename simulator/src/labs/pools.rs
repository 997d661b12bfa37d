//! Labs 3, 4 and 8: threads that serve everyone, a pool of four, and keep-alive timeouts
//! against a pool.
//!
//! The lecture's answer to lab 2's queue is more threads, in two shapes: a thread started
//! for every connection (`thread-per-conn`), and a pool of threads started before the
//! first client and fed by a queue of accepted connections (`prefork-pool`, 8 workers by
//! default). Both serve `P` clients at once, and the arithmetic of lab 1 still holds with
//! `P` slots: client `k` is answered at `⌊k/P⌋·O`.
//!
//! * Lab 3: lab 2's clients (5 at once, 5 s patience, 30 s hold) against both. With a
//!   thread per client, or 8 workers for 5 clients, `⌊k/P⌋ = 0` for every client: all five
//!   are served at once. What differs is what bounds the threads: the clients, or the pool.
//! * Lab 4: the pool with 4 workers. Four clients are served and hold their workers for
//!   30 s; the fifth connection is accepted by the main thread and waits in the pool's
//!   queue, where no worker is free. Its client gives up after 5 s, but the connection
//!   stays queued until a worker frees up, 30 s in, and only then is it found closed. The
//!   lab reads the pool's queue and request counters to see exactly that.
//! * Lab 8: idle clients and a pool. A served client that stays connected keeps its
//!   worker, so a pool of 2 serves 2 of 4 clients whose hold outlasts their patience,
//!   unless the server closes idle connections first: with a keep-alive timeout of 2 s a
//!   client occupies a worker for `min(hold, keep-alive)` = 2 s, and all four are served.
//!
//! What to look at: the served counts, and in lab 4 the queue's wait and
//! `requests.client_left` in `/stats`, the server's side of a client who left.

use std::time::Duration;

use super::*;

/// Lab 3's entry in the list of labs ([`super::all`]).
/// The question before running: how many clients do a thread per connection and a
/// pool of 8 serve, and how many threads does each have while the clients hold them?
pub(super) const LAB3: Lab = Lab {
    id: 3,
    title: "Thread-per-connection and a pre-fork pool of 8: all served",
    sheet: "labs/03-threads-serve-everyone.md",
    targets: &["thread-per-conn", "prefork-pool"],
    run: lab3,
};

/// Lab 3: lab 2's five impatient clients against a thread per connection and a pool of 8.
///
/// In its HTML report (`--report`): every row answered at once, each by a different server
/// thread (`conn-N` on thread-per-conn, `worker-N` on the pool).
pub(super) fn lab3(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let scenario = Scenario::get(5, "/", env.lecture(5.0), env.lecture(30.0));
    let flags = Servers::default();
    let mut checks = Vec::new();
    for arch in ["thread-per-conn", "prefork-pool"] {
        // Against a student's server, only the step for its architecture runs.
        if skip_for_target(env, arch)? {
            continue;
        }
        checks.push(served_step(
            env,
            arch,
            &flags,
            &scenario,
            &[5],
            "every client gets its own thread (8 workers ≥ 5 clients)",
        )?);
    }
    Ok(checks)
}

/// Lab 4's entry in the list of labs ([`super::all`]).
/// The question before running: how many clients does a pool of 4 serve, and what
/// happens to the fifth client's connection on the server, and when?
pub(super) const LAB4: Lab = Lab {
    id: 4,
    title: "A pool of 4: the fifth client is handled after it left",
    sheet: "labs/04-pool-of-four.md",
    targets: &[],
    run: lab4,
};

/// Lab 4: the pool of 4 and lab 2's clients. Four served; the fifth connection waits in
/// the queue for the whole hold, long after its client left, and the worker that finally
/// takes it finds it closed.
///
/// In its HTML report (`--report`): four rows held by `worker-1` to `worker-4` for the
/// whole hold, a fifth that ends at the deadline, and inside the server the connections
/// queue holding the fifth connection.
pub(super) fn lab4(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let hold = env.lecture(30.0);
    let timeout = env.lecture(5.0);
    let scenario = Scenario::get(5, "/", timeout, hold);
    let flags = Servers::default().with("workers", 4);
    // The lab starts the pool itself: it reads the queue after the clients are done,
    // which `measure` (start, run, stop) would not let it do.
    let server = flags.start("prefork-pool", flags.server_args(&scenario))?;
    // Blocks until the five clients are done: four served (each after its 30 s hold), the
    // fifth gone after 5 s. The run ends when the last holder leaves.
    let (report, _) = run_against(env, &server, &scenario)?;
    // The fifth connection still sits in the queue until a holder leaves and frees a
    // worker. Wait (bounded) until a worker has taken it, then read the queue's figures.
    // The wait polls the server's counters in-process every 5 ms: the queue has no
    // notification to wait on, and a poll that sees the queue empty a few milliseconds
    // late changes nothing measured.
    let ctx = Arc::clone(server.context());
    let deadline = Instant::now() + hold + Duration::from_secs(5);
    while ctx.snapshot().queues[0].depth != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let snapshot = ctx.snapshot();
    let queue = snapshot.queues[0].clone();
    let left = snapshot.requests.client_left;
    stop(server)?;
    let pushed = queue.pushed;
    // The queue records its mean wait over every connection pushed. Four connections were
    // taken at once (a wait of microseconds); the whole queue wait is the fifth's, so the
    // mean times the count is the fifth's wait.
    let fifth_waited = Duration::from_micros((queue.mean_wait_us * pushed as f64) as u64);
    Ok(vec![
        served_check("prefork-pool", &scenario, &report, &[4], "4 workers each hold a client for 30 s; the 5th waits in the queue and gives up after 5 s"),
        check(
            "the 5th connection's time in the queue before a worker took it",
            humantime::format_duration(Duration::from_millis(u64::try_from(fifth_waited.as_millis()).unwrap_or(0))),
            format!(
                "about the hold ({}), long after its client left at {}",
                humantime::format_duration(hold),
                humantime::format_duration(timeout)
            ),
            // Five connections crossed the queue, and the fifth waited at least 80% of the
            // hold: a worker was freed only when a holder left, long after its client did.
            pushed == 5 && fifth_waited >= hold.mul_f64(0.8) && fifth_waited > timeout,
        ),
        check(
            "what the worker found when it finally took the 5th connection",
            format!("/stats requests.client_left = {left}"),
            "the client had left: the server logs \"left before the server could handle it\" and does not count it as served",
            // Exactly one request found its client gone: the fifth's.
            left == 1,
        ),
    ])
}

/// Lab 8's entry in the list of labs ([`super::all`]).
/// The question before running: how many clients does a pool of 2 serve when served
/// clients idle for 30 s, and who decides when an idle client frees its worker?
pub(super) const LAB8: Lab = Lab {
    id: 8,
    title: "Keep-alive timeout: idle clients and a pool",
    sheet: "labs/08-keep-alive-timeout.md",
    targets: &[],
    run: lab8,
};

/// Lab 8: four clients that hold their connection idle for 30 s, a pool of 2, and two
/// keep-alive timeouts: who decides when an idle client stops occupying a worker.
///
/// In its HTML report (`--report`): the idle holders keep the server's threads busy, and
/// the newcomers wait until the keep-alive timeout lets them in.
pub(super) fn lab8(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    // 4 clients with 10 s patience, each holding its connection idle for 30 s once served.
    let scenario = Scenario::get(4, "/", env.lecture(10.0), env.lecture(30.0));
    let flags = Servers::default().with("workers", 2);
    let mut checks = Vec::new();
    // A client occupies a worker for min(hold, keep-alive timeout): 30 s with a 60 s
    // timeout (the waiting two give up at 10 s), 2 s with a 2 s timeout (the waiting two
    // are answered at about 2 s).
    for (keep_alive, expected, why) in [
        (
            60.0,
            2,
            "2 workers, each held by an idle client for 30 s; the other 2 clients give up",
        ),
        (
            2.0,
            4,
            "the server closes idle connections after 2 s, freeing the workers in time",
        ),
    ] {
        // The keep-alive timeout is the server's setting, so each step starts its own pool
        // (this lab cannot run against a server someone else started).
        let args = ServerArgs {
            keep_alive_timeout: env.lecture(keep_alive),
            ..flags.server_args(&scenario)
        };
        // Blocks until the four clients are served or have given up at 10 s; with the long
        // timeout the run lasts the holders' 30 s.
        let (report, _) = measure(env, "prefork-pool", &flags, args, &scenario)?;
        let mut c = served_check("prefork-pool", &scenario, &report, &[expected], why);
        // The step names its keep-alive timeout: the one setting that differs.
        c.what = format!(
            "{} (keep-alive timeout {})",
            c.what,
            humantime::format_duration(env.lecture(keep_alive))
        );
        checks.push(c);
    }
    Ok(checks)
}
