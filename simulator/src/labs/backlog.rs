//! Lab 7: the listen backlog, and the two deadline clocks under late connects.

use std::time::Duration;

use super::*;

/// Lab 7's entry in the list of labs ([`super::all`]).
pub(super) const LAB7: Lab = Lab {
    id: 7,
    title: "The listen backlog: 1 against 1024",
    sheet: "labs/07-listen-backlog.md",
    targets: &[],
    run: lab7,
};

pub(super) fn lab7(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let _ = env;
    // Not scaled: the retry interval is the kernel's.
    let scenario = Scenario::get(10, "/sleep/20", Duration::from_secs(5), Duration::ZERO);
    let flags = Servers::default();
    let mut checks = Vec::new();
    for backlog in [1u32, 1024] {
        let args = ServerArgs {
            backlog,
            ..flags.server_args(&scenario)
        };
        let (report, _) = measure(env, "single", &flags, args, &scenario)?;
        let late = report
            .clients
            .iter()
            .filter(|c| c.connect_us.is_some_and(|us| us >= 900_000))
            .count();
        let slowest = report
            .clients
            .iter()
            .filter_map(|c| c.connect_us)
            .max()
            .unwrap_or(0);
        let (expected, agrees) = if backlog == 1 {
            ("several clients connect about 1 s late: the full backlog dropped their SYN and their kernel retried", late >= 3)
        } else {
            (
                "every client connects at once: the backlog holds them all",
                late == 0,
            )
        };
        checks.push(check(
            format!("single with backlog {backlog}: 10 clients at once"),
            format!(
                "{late} clients connected after ≥ 0.9 s; slowest connect {}",
                human_us(slowest)
            ),
            expected,
            agrees && report.summary.served == 10,
        ));
    }

    // The same late connects under the two clocks. Five clients, each wanting 300 ms of the
    // sequential server, a 1.5 s deadline, and the lecture's backlog of 1: two or three
    // connect at once, the others' SYNs are dropped and retried about 1 s later.
    let scenario = Scenario::get(5, "/sleep/300", Duration::from_millis(1500), Duration::ZERO);
    let args = ServerArgs {
        backlog: 1,
        ..flags.server_args(&scenario)
    };
    let (common, _) = measure(env, "single", &flags, args.clone(), &scenario)?;
    let per_call = scenario.clone().with_clock(DeadlineClock::PerCall);
    let (own, _) = measure(env, "single", &flags, args, &per_call)?;
    let late = |r: &Report| {
        r.clients
            .iter()
            .filter(|c| c.connect_us.is_some_and(|us| us >= 900_000))
            .count()
    };
    // Under the common clock, only clients that connected late can miss the deadline.
    let missed_only_late = common.clients.iter().all(|c| {
        c.outcome == loadgen::outcome::Outcome::Served
            || c.connect_us.is_some_and(|us| us >= 900_000)
    });
    checks.push(check(
        "backlog 1, 5 clients of GET /sleep/300, deadline 1.5 s from the common start (servelab's clock)",
        format!(
            "{}/5 served; {} connected ≥ 0.9 s late; {}",
            common.summary.served,
            late(&common),
            answers(&common)
        ),
        "3 or 4 served: the late connectors are answered at 1.3 s and later, and their deadline was running while their kernel waited to retry the SYN",
        (3..=4).contains(&common.summary.served) && late(&common) >= 1 && missed_only_late,
    ));
    checks.push(check(
        "the same with a deadline of 1.5 s per call (the lecture's clock: settimeout on the socket)",
        format!(
            "{}/5 served; {} connected ≥ 0.9 s late",
            own.summary.served,
            late(&own)
        ),
        "all 5 served: a late connector's clock starts again when it sends its request, so the second it lost connecting does not count",
        own.summary.served == 5 && late(&own) >= 1,
    ));
    Ok(checks)
}
