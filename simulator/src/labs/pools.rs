//! Labs 3, 4 and 8: threads that serve everyone, a pool of four, and keep-alive timeouts
//! against a pool.

use std::time::Duration;

use super::*;

/// Lab 3's entry in the list of labs ([`super::all`]).
pub(super) const LAB3: Lab = Lab {
    id: 3,
    title: "Thread-per-connection and a pre-fork pool of 8: all served",
    sheet: "labs/03-threads-serve-everyone.md",
    targets: &["thread-per-conn", "prefork-pool"],
    run: lab3,
};

pub(super) fn lab3(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let scenario = Scenario::get(5, "/", env.lecture(5.0), env.lecture(30.0));
    let flags = Servers::default();
    let mut checks = Vec::new();
    for arch in ["thread-per-conn", "prefork-pool"] {
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
pub(super) const LAB4: Lab = Lab {
    id: 4,
    title: "A pool of 4: the fifth client is handled after it left",
    sheet: "labs/04-pool-of-four.md",
    targets: &[],
    run: lab4,
};

pub(super) fn lab4(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let hold = env.lecture(30.0);
    let timeout = env.lecture(5.0);
    let scenario = Scenario::get(5, "/", timeout, hold);
    let flags = Servers::default().with("workers", 4);
    let server = flags.start("prefork-pool", flags.server_args(&scenario))?;
    let (report, _) = run_against(env, &server, &scenario)?;
    // The fifth connection still sits in the queue until a holder leaves and frees a
    // worker. Wait (bounded) until a worker has taken it, then read the queue's figures.
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
    // Four connections were taken at once; the whole queue wait is the fifth's.
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
            pushed == 5 && fifth_waited >= hold.mul_f64(0.8) && fifth_waited > timeout,
        ),
        check(
            "what the worker found when it finally took the 5th connection",
            format!("/stats requests.client_left = {left}"),
            "the client had left: the server logs \"left before the server could handle it\" and does not count it as served",
            left == 1,
        ),
    ])
}

/// Lab 8's entry in the list of labs ([`super::all`]).
pub(super) const LAB8: Lab = Lab {
    id: 8,
    title: "Keep-alive timeout: idle clients and a pool",
    sheet: "labs/08-keep-alive-timeout.md",
    targets: &[],
    run: lab8,
};

pub(super) fn lab8(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let scenario = Scenario::get(4, "/", env.lecture(10.0), env.lecture(30.0));
    let flags = Servers::default().with("workers", 2);
    let mut checks = Vec::new();
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
        let args = ServerArgs {
            keep_alive_timeout: env.lecture(keep_alive),
            ..flags.server_args(&scenario)
        };
        let (report, _) = measure(env, "prefork-pool", &flags, args, &scenario)?;
        let mut c = served_check("prefork-pool", &scenario, &report, &[expected], why);
        c.what = format!(
            "{} (keep-alive timeout {})",
            c.what,
            humantime::format_duration(env.lecture(keep_alive))
        );
        checks.push(c);
    }
    Ok(checks)
}
