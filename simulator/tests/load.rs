//! Load runs: closed loops that end on time and say who was starved, open loops that keep
//! their schedule, request counts that match the server's own, the run's files and JSON
//! schema, and the limit on open files.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use loadgen::scenario::{Arrivals, Engine, Load, OpenLoop, Scenario, WhenBusy};
use loadgen::Outcome;
use server_core::{RunningServer, ServerArgs};
use simulator::measure as run;
use simulator::{Report, Servers};

mod common;

fn server(arch: &str, servers: Servers) -> RunningServer {
    servers
        .start(arch, ServerArgs::default())
        .expect("the server starts")
}

fn closed(clients: usize, path: &str, length_ms: u64, timeout_ms: u64) -> Scenario {
    Scenario {
        load: Load::Duration(Duration::from_millis(length_ms)),
        ..Scenario::get(
            clients,
            path,
            Duration::from_millis(timeout_ms),
            Duration::ZERO,
        )
    }
}

fn open(
    connections: usize,
    path: &str,
    rate: f64,
    length_ms: u64,
    when_busy: WhenBusy,
) -> Scenario {
    Scenario {
        load: Load::Rate(OpenLoop {
            rate,
            duration: Duration::from_millis(length_ms),
            arrivals: Arrivals::Constant,
            when_busy,
            seed: 7,
            stages: Default::default(),
        }),
        ..Scenario::get(connections, path, Duration::from_secs(5), Duration::ZERO)
    }
}

fn run_on(server: &RunningServer, scenario: &Scenario) -> Report {
    run::run_in_process(server, scenario, false).expect("the run completes")
}

/// A sequential server answering `/sleep/2000` serves one client and holds everyone else
/// for longer than the run lasts. The run still ends on time, the requests in flight are
/// unfinished (not failures), and the clients that got nothing are starved, not served.
fn a_load_run_ends_on_time_and_names_the_starved(engine: Engine) {
    let server = server("single", Servers::only("single"));
    let scenario = closed(50, "/sleep/2000", 300, 5000).on(engine);
    let began = Instant::now();
    let report = run_on(&server, &scenario);
    let took = began.elapsed();
    // Without the end, the first answer alone would come after 2 s.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(report.summary.elapsed_ms < 1000, "{}", report.to_text());
    let requests = report.requests.clone().expect("a load run counts requests");
    assert_eq!(requests.served, 0, "{}", report.to_text());
    assert_eq!(requests.errors(), 0, "nothing failed: {}", report.to_text());
    assert_eq!(requests.unfinished, requests.sent, "{}", report.to_text());
    assert!(requests.sent >= 1, "{}", report.to_text());
    assert_eq!(report.summary.starved, 50, "{}", report.to_text());
    assert!(report
        .clients
        .iter()
        .all(|c| c.outcome == Outcome::Starved && c.error.is_some()));
    server.stop().expect("stop");
}

/// Both engines time a closed loop the same way: a request's latency is at least its
/// route's work.
fn closed_loop_latency_includes_the_work(engine: Engine) {
    let server = server("thread-per-conn", Servers::only("thread-per-conn"));
    let report = run_on(&server, &closed(4, "/sleep/10", 300, 5000).on(engine));
    let requests = report.requests.clone().expect("counts");
    assert!(requests.served >= 4, "{}", report.to_text());
    assert!(report.latency_us.p50 >= 10_000, "{}", report.to_text());
    assert_eq!(report.summary.served, 4, "{}", report.to_text());
    server.stop().expect("stop");
}

on_both_engines!(
    a_load_run_ends_on_time_and_names_the_starved,
    closed_loop_latency_includes_the_work,
);

#[test]
fn the_request_count_agrees_with_the_servers_own_at_a_thousand_clients() {
    testkit::raise_fd_limit(4096);
    let server = server("event-loop", Servers::only("event-loop"));
    let before = server.context().snapshot().requests.received;
    let report = run_on(&server, &closed(1000, "/", 1000, 10_000));
    // The server reads what the clients sent before they hung up; wait until it has.
    let ctx = std::sync::Arc::clone(server.context());
    testkit::wait_until("the server has finished every request", || {
        ctx.snapshot().requests.in_flight == 0
    });
    let received = server.context().snapshot().requests.received - before;
    let requests = report.requests.clone().expect("counts");
    // Every request the simulator sent, the server received; every response it counted,
    // the server sent. Within 1%, and never more answers than requests received.
    let sent = requests.sent as f64;
    assert!(
        (sent - received as f64).abs() <= sent * 0.01,
        "simulator sent {} requests, the server received {received}\n{}",
        requests.sent,
        report.to_text()
    );
    assert!(requests.completed <= received, "{}", report.to_text());
    assert_eq!(report.summary.clients, 1000);
    assert_eq!(report.summary.served, 1000, "{}", report.to_text());
    server.stop().expect("stop");
}

#[test]
fn an_open_loop_keeps_its_schedule_and_reports_both_latencies() {
    let server = server("event-loop", Servers::only("event-loop"));
    let report = run_on(&server, &open(8, "/", 2000.0, 500, WhenBusy::Queue));
    let requests = report.requests.clone().expect("counts");
    // 2000/s for 0.5 s: 1000 requests come due, however fast the server answers.
    assert_eq!(requests.due, 1000, "{}", report.to_text());
    assert!(requests.sent >= 990, "{}", report.to_text());
    assert_eq!(requests.dropped, 0);
    let corrected = &report.latency_us;
    let uncorrected = report
        .latency_uncorrected_us
        .as_ref()
        .expect("open loops keep the uncorrected latency too");
    // Counted from when it was due, a request never looks faster than from its send.
    assert!(corrected.p50 >= uncorrected.p50, "{}", report.to_text());
    assert!(corrected.max >= uncorrected.max, "{}", report.to_text());
    assert!(report.schedule_lag_us.is_some());
    assert!(!report.series.is_empty());
    server.stop().expect("stop");
}

/// One connection to a server that takes 50 ms per request, offered 100 requests a second:
/// half of them find the connection busy.
fn busy_connection(when_busy: WhenBusy) -> Report {
    let server = server("thread-per-conn", Servers::only("thread-per-conn"));
    let report = run_on(&server, &open(1, "/sleep/50", 100.0, 600, when_busy));
    server.stop().expect("stop");
    report
}

#[test]
fn requests_that_find_every_connection_busy_are_dropped_when_asked() {
    let report = busy_connection(WhenBusy::Drop);
    let r = report.requests.clone().expect("counts");
    assert_eq!(r.due, 60, "{}", report.to_text());
    assert!(r.dropped >= 20, "{}", report.to_text());
    assert_eq!(r.queued, 0);
    assert_eq!(r.due, r.sent + r.dropped, "{}", report.to_text());
    // Sent requests waited for nothing: corrected and uncorrected are alike.
    let u = report.latency_uncorrected_us.clone().expect("uncorrected");
    assert!(
        report.latency_us.p99 < u.p99 + 20_000,
        "{}",
        report.to_text()
    );
}

#[test]
fn requests_that_queue_for_a_connection_count_the_wait() {
    let report = busy_connection(WhenBusy::Queue);
    let r = report.requests.clone().expect("counts");
    assert!(r.queued >= 20, "{}", report.to_text());
    assert_eq!(r.dropped, 0);
    // The queue grows by 50 requests a second: the last waited hundreds of milliseconds
    // before they were sent, which only the corrected latency shows.
    let u = report.latency_uncorrected_us.clone().expect("uncorrected");
    assert!(u.p99 < 100_000, "{}", report.to_text());
    assert!(report.latency_us.p99 > 2 * u.p99, "{}", report.to_text());
}

#[test]
fn every_open_loop_request_is_accounted_for_when_nothing_listens() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    // The listener is gone: every connect is refused.
    let scenario = open(2, "/", 200.0, 300, WhenBusy::Queue);
    let report =
        run::run(addr, &addr.to_string(), &scenario, None, false).expect("the run completes");
    let r = report.requests.clone().expect("counts");
    assert_eq!(r.due, 60, "{}", report.to_text());
    assert_eq!(r.served, 0);
    assert!(r.refused >= 1, "{}", report.to_text());
    // Each request that came due was refused, is still waiting for a connection, or gave
    // up waiting: none vanished.
    assert_eq!(
        r.due,
        r.refused + r.unfinished + r.timed_out,
        "{}",
        report.to_text()
    );
}

#[test]
fn the_json_report_matches_its_schema() {
    let schema_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/schema/report-v1.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("the schema file"))
            .expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let server = server("event-loop", Servers::only("event-loop"));
    let mut uuid = closed(2, "/", 200, 1000);
    uuid.request = loadgen::RequestSpec::heavy(Duration::ZERO);
    let mut text = Scenario::get(1, "/", Duration::from_secs(1), Duration::ZERO);
    text.request.method = "POST".into();
    text.request.path = "/echo".into();
    text.request.body = loadgen::scenario::Body::Text("hi".into());
    let mut attacked = Scenario::get(2, "/", Duration::from_secs(1), Duration::from_millis(300));
    attacked.background =
        vec![loadgen::attack::Population::parse("3:slow-headers:50ms").expect("parses")];
    let mut far = Scenario::get(2, "/", Duration::from_secs(1), Duration::ZERO);
    far.link = loadgen::link::Link {
        rtt: loadgen::link::Rtt::parse("10ms..30ms").expect("a range"),
        bandwidth_bits_per_s: Some(1_000_000),
    };
    let ramped_clients = {
        let clients_ramp = loadgen::scenario::Stage::parse_list("0s:2,200ms:0").expect("valid");
        Scenario {
            clients_ramp,
            ..closed(2, "/", 200, 1000)
        }
    };
    for scenario in [
        Scenario::get(3, "/", Duration::from_secs(1), Duration::from_millis(10)),
        far,
        ramped_clients,
        attacked,
        text,
        uuid,
        open(4, "/", 500.0, 300, WhenBusy::Drop),
        Scenario {
            load: Load::Rate(OpenLoop::staged(
                loadgen::scenario::Stage::parse_list("0s:200,300ms:500").expect("valid"),
                Arrivals::Poisson,
                WhenBusy::Queue,
                5,
            )),
            ..open(4, "/", 1.0, 300, WhenBusy::Queue)
        },
    ] {
        let mut report = run_on(&server, &scenario);
        // Gates (`--slo`) are part of the report when asked for.
        report.judge(&loadgen::slo::Gates::parse("p99<1s,served>=1%").expect("valid gates"));
        let json = serde_json::to_value(&report).expect("serializable");
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:#?}\n{json:#}");
        assert_eq!(json["schema_version"], 1);
    }
    server.stop().expect("stop");
}

#[test]
fn a_runs_files_agree_with_its_report() {
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let server = server("event-loop", Servers::only("event-loop"));
    let report = run_on(&server, &open(4, "/", 1000.0, 1500, WhenBusy::Queue));
    server.stop().expect("stop");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("saved-run");
    let _ = std::fs::remove_dir_all(&dir);
    let files = simulator::output::files::save(&report, &dir).expect("the files are written");
    assert_eq!(files.len(), 7);
    let requests = report.requests.clone().expect("counts");

    // The time series adds up to the run's counts.
    let series = std::fs::read_to_string(dir.join("series.csv")).expect("series.csv");
    let mut reader = csv::Reader::from_reader(series.as_bytes());
    let (mut sent, mut completed, mut rows) = (0u64, 0u64, 0);
    for row in reader.deserialize::<std::collections::HashMap<String, u64>>() {
        let row = row.expect("a numeric row");
        sent += row["sent"];
        completed += row["completed"];
        rows += 1;
    }
    assert_eq!(sent, requests.sent);
    assert_eq!(completed, requests.completed);
    assert!((2..=3).contains(&rows), "{rows} rows for a 1.5 s run");

    // The interval log holds, per second, both tags, and adds up to the whole histogram.
    let log = std::fs::read(dir.join("latency.hlog")).expect("latency.hlog");
    let mut deserializer = Deserializer::new();
    let (mut corrected, mut uncorrected) = (0u64, 0u64);
    for entry in IntervalLogIterator::new(&log) {
        if let Ok(LogEntry::Interval(h)) = entry {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(h.encoded_histogram())
                .expect("base64");
            let histogram: hdrhistogram::Histogram<u64> = deserializer
                .deserialize(&mut bytes.as_slice())
                .expect("a histogram");
            match h.tag().map(|t| t.as_str()) {
                Some("corrected") => corrected += histogram.len(),
                Some("uncorrected") => uncorrected += histogram.len(),
                // The engine's own lateness, for requests that found a connection free.
                Some("lag") => assert!(histogram.len() <= report.latency_us.samples),
                other => panic!("unexpected tag {other:?}"),
            }
        }
    }
    assert_eq!(corrected, report.latency_us.samples);
    assert_eq!(uncorrected, report.latency_us.samples);

    // The percentile spectrum ends at the 100th percentile with every sample counted.
    let hgrm = std::fs::read_to_string(dir.join("corrected.hgrm")).expect("corrected.hgrm");
    assert!(hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
    let last = hgrm
        .lines()
        .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
        .expect("rows");
    let fields: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(fields[1], "1.000000000000", "{last}");
    assert_eq!(fields[2], report.latency_us.samples.to_string(), "{last}");
    assert!(hgrm.contains(&format!(
        "Total count    = {:>12}",
        report.latency_us.samples
    )));
}

#[test]
fn more_clients_than_open_files_is_one_sentence() {
    let server = server("single", Servers::only("single"));
    let addr: SocketAddr = server.addr();
    // A shell that lowers both limits to 200 before the simulator starts; it cannot raise
    // them again.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 200 && exec {} run --target {addr} --clients 1000",
            env!("CARGO_BIN_EXE_simulator")
        ))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the simulator");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing ran");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "simulator: 1000 clients need about 1064 open files, but this process may open at most 200"
        ),
        "{stderr}"
    );
    server.stop().expect("stop");
}

#[test]
fn a_long_run_is_silent_on_stderr_when_it_is_not_a_terminal() {
    let server = server("event-loop", Servers::only("event-loop"));
    let addr = server.addr().to_string();
    let out = testkit::run_binary(
        env!("CARGO_BIN_EXE_simulator"),
        &[
            "run",
            "--target",
            &addr,
            "--clients",
            "2",
            "--duration",
            "2100ms",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("served within deadline: 2/2"));
    server.stop().expect("stop");
}

/// `--stages`: along a ramp the engine sends what the ramp asks for, second by second (0 →
/// 1000/s over the first second is 500 requests, then 1000 at 1000/s), serves them all
/// from a server with room to spare, and reports the ramp's mean as the offered rate.
#[test]
fn a_ramp_is_sent_as_asked_second_by_second() {
    let server = server("event-loop", Servers::only("event-loop"));
    let mut scenario = open(8, "/", 1.0, 1000, WhenBusy::Queue);
    scenario.load = Load::Rate(OpenLoop::staged(
        loadgen::scenario::Stage::parse_list("1s:1000,1s:1000").expect("valid stages"),
        Arrivals::Constant,
        WhenBusy::Queue,
        1,
    ));
    let report = run_on(&server, &scenario);
    server.stop().expect("stop");
    let requests = report.requests.clone().expect("a load run counts requests");
    assert_eq!(requests.due, 1500, "{}", report.to_text());
    let sent: Vec<u64> = report.series.iter().map(|row| row.sent).collect();
    // Within 3% of each second's ask: a request due just before a second's end may leave
    // just after it on a busy machine.
    for (second, asked) in [(0, 500.0), (1, 1000.0)] {
        let got = sent.get(second).copied().unwrap_or(0) as f64;
        assert!(
            (got - asked).abs() <= asked * 0.03,
            "second {second}: sent {got}, the ramp asked {asked} ({sent:?})"
        );
    }
    assert!(requests.served >= 1490, "{}", report.to_text());
    let offered = report
        .throughput
        .as_ref()
        .and_then(|t| t.offered_per_second)
        .expect("an open loop offers a rate");
    assert!((offered - 750.0).abs() < 1e-6, "the ramp's mean: {offered}");
}

/// A ramp's corrected latency counts from the ramped schedule: request i is due when the
/// area under the rate reaches i, not at i over the mean rate.
///
/// A ramp from 0 to 50/s over a second (25 requests) against the sequential server, whose
/// `/sleep/10` serves 100 a second: never saturated, so each request is answered about
/// 10 ms after it is due, and the corrected latency stays near the uncorrected one. Counted
/// from a steady schedule at the mean rate (25/s), request i would be due at i/25 s while
/// the ramp sends it at √(i/25) s, up to 240 ms later: a corrected latency in the hundreds
/// of milliseconds. Then a ramp to 200/s, twice what the server serves, shows the other
/// side: the queue that forms in the ramp's second half is counted (its oldest request has
/// waited about 250 ms by the end), while each answer still takes 10 ms from its actual send.
#[test]
fn a_ramps_corrected_latency_counts_from_the_ramped_schedule() {
    let server = server("single", Servers::only("single"));
    let ramp = |stages: &str| Scenario {
        load: Load::Rate(OpenLoop::staged(
            loadgen::scenario::Stage::parse_list(stages).expect("valid stages"),
            Arrivals::Constant,
            WhenBusy::Queue,
            1,
        )),
        ..open(1, "/sleep/10", 1.0, 1000, WhenBusy::Queue)
    };
    let gentle = run_on(&server, &ramp("1s:50"));
    let overload = run_on(&server, &ramp("1s:200"));
    server.stop().expect("stop");
    let latency = |report: &Report| {
        (
            report.latency_us.max,
            report
                .latency_uncorrected_us
                .as_ref()
                .expect("an open loop reports both")
                .max,
        )
    };
    let (corrected, uncorrected) = latency(&gentle);
    let served = |report: &Report| report.requests.as_ref().map_or(0, |r| r.served);
    assert_eq!(served(&gentle), 25, "{}", gentle.to_text());
    assert!(
        corrected < 80_000 && uncorrected >= 10_000,
        "not saturated: corrected max {corrected} µs, uncorrected max {uncorrected} µs\n{}",
        gentle.to_text()
    );
    let (corrected, uncorrected) = latency(&overload);
    // The requests still queued when the ramp ends are unfinished, not counted; those
    // served include the queue's worst.
    assert!(served(&overload) >= 50, "{}", overload.to_text());
    assert!(
        corrected >= 120_000 && uncorrected < corrected / 2,
        "a queue from the ramp's second half: corrected max {corrected} µs, uncorrected max {uncorrected} µs\n{}",
        overload.to_text()
    );
}

/// `--closed --stages`: a closed loop whose clients the ramp adds and removes. Client k
/// runs while the ramp is at k or above, finishes the request it is on, and leaves.
#[test]
fn a_closed_loops_ramp_adds_and_removes_clients() {
    let server = server("thread-per-conn", Servers::only("thread-per-conn"));
    let ramp = |stages: &str| {
        let clients_ramp = loadgen::scenario::Stage::parse_list(stages).expect("valid stages");
        Scenario {
            clients: clients_ramp.peak() as usize,
            clients_ramp,
            ..closed(
                1,
                "/sleep/10",
                clients_ramp.total().as_millis() as u64,
                1000,
            )
        }
    };
    // Four clients at once for 500 ms, then down to none over 500 ms: client k leaves when
    // the ramp falls below k, at 500 + 125·(4 − k) ms.
    let down = run_on(&server, &ramp("0s:4,500ms:4,500ms:0"));
    let mut ends: Vec<(usize, u64)> = down
        .clients
        .iter()
        .map(|c| (c.id, c.complete_us.unwrap_or(0)))
        .collect();
    ends.sort_unstable();
    let last = |k: usize| ends[k - 1].1;
    assert!(
        ends.len() == 4 && last(4) < last(3) && last(3) < last(2) && last(2) < last(1),
        "the highest client leaves first: {ends:?}"
    );
    assert!(
        (450_000..800_000).contains(&last(4)) && (800_000..1_300_000).contains(&last(1)),
        "client 4 leaves at about 500 ms, client 1 at about 875 ms: {ends:?}"
    );
    // Two clients, one for a while, two again: client 2 leaves and comes back on a new
    // connection, so the server accepts three in all.
    let before = server.context().snapshot().connections.accepted;
    let again = run_on(&server, &ramp("0s:2,200ms:2,0s:1,200ms:1,0s:2,200ms:2"));
    let accepted = server.context().snapshot().connections.accepted - before;
    server.stop().expect("stop");
    assert_eq!(accepted, 3, "{}", again.to_text());
    assert!(
        again.clients.iter().all(|c| c.served_requests > 0),
        "{}",
        again.to_text()
    );
}

/// `sweep --ramp`: one run on a ramp from 50 to 400 requests per second over 4 s against a
/// pool of 4 workers and 4 connections, whose `/sleep/20` serves 200 a second. Each second
/// is judged as a step: the first (about 94/s) meets the goal, the last (about 356/s, far
/// past the capacity) cannot, and the knee lies between.
#[test]
fn a_sweep_on_a_ramp_finds_the_knee_it_passes() {
    use simulator::measure::sweep::{self, SweepSpec};
    let spec = SweepSpec {
        scenario: Scenario {
            timeout: Duration::from_millis(100),
            ..open(4, "/sleep/20", 1.0, 1000, WhenBusy::Queue)
        },
        rates: vec![50.0, 400.0],
        step: Duration::from_secs(1),
        goal: 0.99,
        refine: 0,
        ramp: Some(Duration::from_secs(4)),
    };
    let servers = Servers::only("prefork-pool").with("workers", 4);
    let reports = sweep::sweep_in_process(&servers, &spec).expect("the sweep runs");
    let report = &reports[0];
    let rates: Vec<f64> = report.steps.iter().map(|s| s.offered_per_second).collect();
    assert_eq!(
        rates,
        [94.0, 181.0, 269.0, 356.0],
        "a row per second of the ramp"
    );
    assert!(report.steps[0].meets_goal, "{:#?}", report.steps);
    assert!(!report.steps[3].meets_goal, "{:#?}", report.steps);
    let knee = report
        .knee_per_second
        .expect("the first second meets the goal");
    assert!(
        (94.0..=269.0).contains(&knee),
        "knee {knee}: {:#?}",
        report.steps
    );
}
