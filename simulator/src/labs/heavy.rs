//! Lab 5: heavy requests (the lecture's echo after a processing delay).
//!
//! Labs 1 to 4 occupy a server with clients that hold their connection; here the server
//! is occupied by work. Five clients each send a 36-byte UUID that the server echoes after
//! a processing delay `D` of 4 s (`/echo/{ms}`), and give up after `T` = 10 s. With `P`
//! requests processed at a time, the `k`-th answer comes at `(⌊k/P⌋ + 1)·D`:
//!
//! * `single` (`P` = 1): answers at 4 s and 8 s; the third would need 12 s. In general
//!   `⌊T/D⌋` = 2 served. The server then goes on processing the requests of clients who
//!   left: wasted work, which `/stats` counts as `requests.client_left`, not as served.
//! * `prefork-pool` (8 workers) and `thread-per-conn`: all five at 4 s.
//! * `pipeline` (4 handlers): four at 4 s, the fifth at 8 s, still before 10 s.
//!
//! The lecture gives no delay; its "2 of 5" on the sequential server needs a `D` between
//! 10/3 s and 5 s, and 4 s is the middle of that range, far from both edges, so the result
//! does not depend on the hand-over times.

use std::time::Duration;

use super::*;

/// Lab 5's entry in the list of labs ([`super::all`]).
/// The question before running: with a 4 s processing delay and a 10 s timeout, how
/// many of five does each architecture answer in time (`⌊T/D⌋` for the sequential one)?
pub(super) const LAB5: Lab = Lab {
    id: 5,
    title: "Heavy requests: 2 of 5 on the sequential server, all on the others",
    sheet: "labs/05-heavy-requests.md",
    targets: &["single", "prefork-pool", "pipeline", "thread-per-conn"],
    run: lab5,
};

/// Lab 5: five heavy requests against the sequential server, a pool of 8, the pipeline and
/// a thread per connection.
///
/// In its HTML report (`--report`): the heavy requests waiting side by side on the threaded
/// servers and one after another on the sequential one; inside the server, the busy
/// handlers.
pub(super) fn lab5(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    // The lecture gives no processing delay; 4 s is the middle of the range (10/3, 5) s
    // that makes its result, 2 of 5, come out with a 10 s timeout. The request is the
    // lecture's: a 36-byte UUID, echoed after the delay.
    let delay = env.lecture(4.0);
    let scenario = Scenario::new(
        5,
        RequestSpec::heavy(delay),
        env.lecture(10.0),
        Duration::ZERO,
    );
    let flags = Servers::default();
    let mut checks = Vec::new();
    // Each architecture with its defaults: the pool's 8 workers, the pipeline's 4 handlers,
    // the sequential server's one thread, a thread per connection. The expected counts are
    // the `(⌊k/P⌋ + 1)·D < T` of the module documentation.
    for (arch, expected, why) in [
        (
            "single",
            2,
            "one request at a time: replies at 4 and 8 s; the third would need 12 s",
        ),
        ("prefork-pool", 5, "8 workers: all five at once"),
        ("pipeline", 5, "4 handlers: four at 4 s, the fifth at 8 s"),
        ("thread-per-conn", 5, "a thread per client: all five at 4 s"),
    ] {
        // Against a student's server, only the step for its architecture runs.
        if skip_for_target(env, arch)? {
            continue;
        }
        // Blocks until the five answers are in, or their clients have given up at 10 s.
        checks.push(served_step(env, arch, &flags, &scenario, &[expected], why)?);
    }
    Ok(checks)
}
