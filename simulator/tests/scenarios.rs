//! The lecture's experiments, scaled from seconds to milliseconds, against the real
//! servers. Every deadline sits at least 100 ms away from the nearest predicted completion
//! (see "the boundary rule" in docs/simulator.md).

use std::time::Duration;

use loadgen::scenario::Engine;
use loadgen::scenario::{DeadlineClock, Load, RequestSpec, Scenario};
use simulator::measure::run_one;
use simulator::Report;
use simulator::Servers;

mod common;

fn scenario(timeout_ms: u64, hold_ms: u64, path: &str) -> Scenario {
    Scenario::get(
        5,
        path,
        Duration::from_millis(timeout_ms),
        Duration::from_millis(hold_ms),
    )
}

fn run(engine: Engine, arch: &str, servers: Servers, scenario: &Scenario) -> Report {
    run_one(arch, &scenario.clone().on(engine), &servers, false).expect("the run completes")
}

/// Asserts the served count, that the others timed out, and that the prediction agrees.
fn check(report: &Report, served: usize) {
    let s = &report.summary;
    assert_eq!(s.served, served, "{}", report.to_text());
    assert_eq!(
        s.service_timeout + s.connect_timeout,
        s.clients - served,
        "{}",
        report.to_text()
    );
    assert_eq!(
        report.prediction.as_ref().and_then(|p| p.served),
        Some(served),
        "{}",
        report.to_text()
    );
    assert_eq!(report.agrees, Some(true), "{}", report.to_text());
    // Nobody waited past the deadline plus the hold.
    let limit = report.scenario.timeout + report.scenario.hold + Duration::from_millis(500);
    assert!(
        Duration::from_millis(report.summary.elapsed_ms) < limit,
        "{}",
        report.to_text()
    );
}

fn sequential_five_patient_clients_three_served(engine: Engine) {
    // The lecture's E1 off its boundary: hold 5 → 500 ms, timeout 15 → 14 s scaled to 1.4 s.
    check(
        &run(
            engine,
            "single",
            Servers::default(),
            &scenario(1400, 500, "/"),
        ),
        3,
    );
}

fn sequential_short_patience_long_hold_one_served(engine: Engine) {
    check(
        &run(
            engine,
            "single",
            Servers::default(),
            &scenario(500, 3000, "/"),
        ),
        1,
    );
}

fn thread_per_conn_serves_all_five_holders(engine: Engine) {
    check(
        &run(
            engine,
            "thread-per-conn",
            Servers::default(),
            &scenario(500, 3000, "/"),
        ),
        5,
    );
}

fn a_pool_of_eight_serves_all_five_holders(engine: Engine) {
    check(
        &run(
            engine,
            "prefork-pool",
            Servers::default(),
            &scenario(500, 3000, "/"),
        ),
        5,
    );
}

fn a_pool_of_four_serves_four_holders(engine: Engine) {
    let flags = Servers::default().with("workers", 4);
    check(
        &run(engine, "prefork-pool", flags, &scenario(500, 3000, "/")),
        4,
    );
}

fn sequential_heavy_requests_two_served(engine: Engine) {
    check(
        &run(
            engine,
            "single",
            Servers::default(),
            &scenario(1000, 0, "/sleep/400"),
        ),
        2,
    );
}

fn thread_per_conn_heavy_requests_all_served(engine: Engine) {
    check(
        &run(
            engine,
            "thread-per-conn",
            Servers::default(),
            &scenario(1000, 0, "/sleep/400"),
        ),
        5,
    );
}

fn a_load_run_reports_throughput(engine: Engine) {
    let scenario = Scenario {
        clients: 4,
        timeout: Duration::from_secs(2),
        hold: Duration::ZERO,
        request: RequestSpec::get("/sleep/20"),
        load: Load::Duration(Duration::from_millis(400)),
        deadline: DeadlineClock::FromStart,
        engine,
        engine_threads: None,
        shard: None,
        start_at: None,
        background: Vec::new(),
        link: Default::default(),
        clients_ramp: Default::default(),
    };
    let report = run(engine, "thread-per-conn", Servers::default(), &scenario);
    let throughput = report
        .throughput
        .clone()
        .expect("a load run has throughput");
    // What the architecture implies, however busy the machine: every request takes at
    // least 20 ms, so four clients cannot exceed 200 requests per second, and each served
    // request waited at least its 20 ms.
    assert!(throughput.requests > 0, "{}", report.to_text());
    assert!(throughput.per_second <= 210.0, "{}", report.to_text());
    assert_eq!(report.summary.served, 4);
    assert!(report.latency_us.p50 >= 20_000);
}

fn distant_clients_wait_for_their_round_trips(engine: Engine) {
    // Two clients 40 ms away, each sending GET / twice, against the sequential server.
    // Connecting takes a round trip and each request one more: the first client's last
    // answer cannot come before 120 ms. The second waits for the first to leave (the one
    // thread is held through the first's round trips), then needs a trip and a half more:
    // 180 ms at the earliest.
    let mut far = Scenario::get(2, "/", Duration::from_secs(1), Duration::ZERO);
    far.load = Load::Requests(2);
    far.link.rtt = loadgen::link::Rtt::parse("40ms").expect("a round trip");
    let report = run(engine, "single", Servers::default(), &far);
    check(&report, 2);
    let mut done: Vec<u64> = report
        .clients
        .iter()
        .filter_map(|c| c.complete_us)
        .collect();
    done.sort_unstable();
    assert!(
        done.len() == 2 && done[0] >= 120_000 && done[1] >= 180_000,
        "{done:?}\n{}",
        report.to_text()
    );
    // A deadline shorter than the trips: connected in time, never answered in time.
    far.timeout = Duration::from_millis(100);
    check(&run(engine, "single", Servers::default(), &far), 0);
}

on_both_engines!(
    distant_clients_wait_for_their_round_trips,
    sequential_five_patient_clients_three_served,
    sequential_short_patience_long_hold_one_served,
    thread_per_conn_serves_all_five_holders,
    a_pool_of_eight_serves_all_five_holders,
    a_pool_of_four_serves_four_holders,
    sequential_heavy_requests_two_served,
    thread_per_conn_heavy_requests_all_served,
    a_load_run_reports_throughput,
);
