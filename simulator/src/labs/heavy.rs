//! Lab 5: heavy requests (the lecture's echo after a processing delay).

use std::time::Duration;

use super::*;

/// Lab 5's entry in the list of labs ([`super::all`]).
pub(super) const LAB5: Lab = Lab {
    id: 5,
    title: "Heavy requests: 2 of 5 on the sequential server, all on the others",
    sheet: "labs/05-heavy-requests.md",
    targets: &["single", "prefork-pool", "pipeline", "thread-per-conn"],
    run: lab5,
};

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
        if skip_for_target(env, arch)? {
            continue;
        }
        checks.push(served_step(env, arch, &flags, &scenario, &[expected], why)?);
    }
    Ok(checks)
}
