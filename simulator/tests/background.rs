//! Hostile clients in the background (`--background`): each population's ledger says what
//! the server did to it, and the scenario's own clients keep theirs.

use std::time::Duration;

use loadgen::attack::Population;
use loadgen::Scenario;
use server_core::ServerArgs;
use simulator::Servers;

/// Two ordinary clients that stay connected for `hold` after their answer (which keeps the
/// run going that long), with `background` beside them.
fn attacked(background: &[&str], hold: Duration) -> Scenario {
    let mut scenario = Scenario::get(2, "/", Duration::from_secs(2), hold);
    scenario.background = background
        .iter()
        .map(|p| Population::parse(p).expect("a population"))
        .collect();
    scenario
}

#[test]
fn a_slowloris_population_is_cut_off_with_408_and_the_foreground_is_served() {
    // The pace: 150 ms, and a second for every 500 bytes. A header line of 11 bytes every
    // 100 ms (110 bytes a second) runs out of it after about 280 ms; the run lasts the
    // foreground's hold of 1.2 s, so every attacker is cut off at least once.
    let args = ServerArgs {
        header_timeout: Duration::from_millis(150),
        read_timeout: Duration::from_secs(5),
        ..ServerArgs::default()
    };
    let server = Servers::only("event-loop")
        .start("event-loop", args)
        .expect("the server starts");
    let report = simulator::measure::run_in_process(
        &server,
        &attacked(&["10:slow-headers:100ms"], Duration::from_millis(1200)),
        false,
    )
    .expect("the run");
    server.stop().expect("the server stops");

    assert_eq!(report.summary.served, 2, "the foreground is served");
    let [ledger] = &report.background[..] else {
        panic!("one ledger per population: {:?}", report.background)
    };
    assert_eq!(ledger.population, "10:slow-headers:100ms");
    assert!(ledger.cut_off >= 10, "{ledger:?}");
    assert_eq!(
        ledger.statuses.get(&408),
        Some(&ledger.cut_off),
        "{ledger:?}"
    );
    // Cut off by the pace (about 280 ms), far before the read timeout of 5 s.
    let held = ledger.held_ms_p50.expect("a median");
    assert!((150..2000).contains(&held), "held {held} ms: {ledger:?}");
    // Cut-off connections come back: more connected than the population's size.
    assert!(ledger.connected > 10, "{ledger:?}");
    assert_eq!(ledger.failed_connects, 0, "{ledger:?}");
    // The prediction is shown but does not judge a run under attack.
    assert_eq!(report.agrees, None);
}

#[test]
fn idle_connections_on_a_pool_starve_the_foreground_until_the_read_timeout() {
    // Two workers, each taken by an idle connection until the read timeout (400 ms); the
    // foreground's deadline of 300 ms passes first. The idle ones are still held when the
    // foreground gives up.
    let args = ServerArgs {
        read_timeout: Duration::from_millis(400),
        ..ServerArgs::default()
    };
    let server = Servers::only("prefork-pool")
        .with("workers", "2")
        .start("prefork-pool", args)
        .expect("the server starts");
    let mut scenario = attacked(&["4:idle"], Duration::ZERO);
    scenario.timeout = Duration::from_millis(300);
    let report = simulator::measure::run_in_process(&server, &scenario, false).expect("the run");
    server.stop().expect("the server stops");

    assert_eq!(report.summary.served, 0, "{}", report.to_text());
    let [ledger] = &report.background[..] else {
        panic!("one ledger per population: {:?}", report.background)
    };
    assert_eq!(ledger.connected, 4, "{ledger:?}");
    assert_eq!(ledger.open_at_end, 4, "{ledger:?}");
    assert_eq!(ledger.bytes_sent, 0, "{ledger:?}");
}
