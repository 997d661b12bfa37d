//! The simulator against servers it did not start: `compare --target` and `probe`, the
//! commands the containers use. Each runs the real binary, with stdin closed (nothing may
//! need a terminal).

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use simulator::Servers;

fn simulator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the simulator")
}

fn server(arch: &str) -> server_core::RunningServer {
    let args = server_core::ServerArgs {
        shutdown_timeout: Duration::from_secs(2),
        ..server_core::ServerArgs::default()
    };
    Servers::default().start(arch, args).expect("server starts")
}

#[test]
fn compare_measures_each_running_target_and_names_its_architecture() {
    let single = server("single");
    let threads = server("thread-per-conn");
    let targets = format!("{},{}", single.addr(), threads.addr());
    // 4 clients of 100 ms each: single serves them one after another (400 ms), within the
    // 1 s deadline, and thread-per-conn all at once.
    let out = simulator(&[
        "compare",
        "--target",
        &targets,
        "--clients",
        "4",
        "--request",
        "GET /sleep/100",
        "--timeout",
        "1s",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |arch: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(arch))
            .unwrap_or_else(|| panic!("no {arch} row in\n{stdout}"))
            .to_string()
    };
    for arch in ["single", "thread-per-conn"] {
        let row = row(arch);
        assert!(row.contains(" 4/4 "), "{row}");
        assert!(row.contains("agrees"), "{row}");
    }
    assert_eq!(
        single.context().stats.served_total(),
        4 + 1,
        "4 clients and the probe"
    );
    single.stop().expect("stops");
    threads.stop().expect("stops");
}

#[test]
fn compare_with_a_target_where_nothing_listens_says_so_in_one_sentence() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let out = simulator(&["compare", "--target", &addr.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("simulator: nothing is listening on {addr} — is the server running?")
    );
    assert!(out.stdout.is_empty(), "no table before the error");
}

#[test]
fn probe_reports_a_healthy_server_and_exits_zero() {
    let running = server("prefork-pool");
    let target = running.addr().to_string();
    let out = simulator(&["probe", &target]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{target}: servelab prefork-pool is up, 0 requests served")
    );
    let out = simulator(&["probe", "--stats", &target]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(stats["architecture"], "prefork-pool");
    running.stop().expect("stops");
}

#[test]
fn probe_fails_when_nothing_listens_or_nothing_answers() {
    let free = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let out = simulator(&["probe", &free.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing is listening"));

    // A listener that never accepts: the kernel completes the handshake, nobody answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let out = simulator(&["probe", &addr.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("simulator: {addr} accepts connections but sent no answer within 3 s")
    );
}

#[test]
fn probe_cannot_resolve_a_name_and_says_which() {
    let out = simulator(&["probe", "no-such-host.invalid:7777"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("simulator: cannot resolve no-such-host.invalid:7777"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn a_count_of_zero_is_refused_with_the_servers_sentence() {
    // The same sentence as `prefork-pool --workers 0` (servers/prefork-pool/tests).
    let out = simulator(&["compare", "--workers", "0"]);
    testkit::assert_usage_error(
        &out,
        "error: invalid value '0' for '--workers <N>': 0 is not in 1..=65536",
    );
    assert!(out.stdout.is_empty(), "nothing ran");
}

#[test]
fn the_log_flag_describes_the_simulators_levels() {
    let out = simulator(&["run", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("each client's story"), "{help}");
    assert!(
        !help.contains("Start, shutdown and unusual events"),
        "the server's description leaked into the simulator's help: {help}"
    );
}

#[test]
fn the_compare_table_explains_its_columns_and_settings() {
    let out = simulator(&[
        "compare",
        "--archs",
        "single,prefork-pool",
        "--clients",
        "2",
        "--request",
        "GET /",
        "--workers",
        "3",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for column in ["conn_to:", "svc_to:", "bad:", "rejected:"] {
        assert!(
            stdout.contains(column),
            "{column} is not explained:\n{stdout}"
        );
    }
    assert!(stdout.contains("settings in force:"), "{stdout}");
    let pool = stdout
        .lines()
        .find(|l| l.starts_with("  prefork-pool"))
        .unwrap_or_else(|| panic!("no settings for the pool in\n{stdout}"));
    assert!(pool.contains("workers 3"), "{pool}");
    assert!(pool.contains("queue 64"), "{pool}");
}

#[test]
fn targets_may_be_host_names() {
    let running = server("single");
    let target = format!("localhost:{}", running.addr().port());
    let out = simulator(&["probe", &target]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    running.stop().expect("stops");
}

/// A reader that goes away (`simulator run --format csv | head`) ends the simulator
/// quietly, with no panic: the report is more than a pipe holds, so the write fails.
#[test]
fn a_reader_that_goes_away_ends_the_simulator_quietly() {
    let server = server("event-loop");
    let target = server.addr().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args([
            "run",
            "--target",
            &target,
            "--clients",
            "1500",
            "--timeout",
            "5s",
        ])
        .args(["--format", "csv"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the simulator starts");
    // Closes the only reading end: 1500 rows of CSV (over 64 KiB) cannot all be written.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("the simulator ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    server.stop().expect("stop");
}

/// `--slo`: every gate is judged after the run and printed as measured against required;
/// exit status 0 when all are met, 3 when one is missed (the report is still written, in
/// JSON too), and 2 with one sentence when the expression cannot be read.
#[test]
fn slo_gates_pass_fail_and_refuse_bad_expressions() {
    let server = server("event-loop");
    let target = server.addr().to_string();
    let load = [
        "run",
        "--target",
        &target,
        "--rate",
        "200",
        "--duration",
        "300ms",
        "--timeout",
        "1s",
    ];
    let met = simulator(&[&load[..], &["--slo", "served>=99%,errors<1%,p99<1s"]].concat());
    let text = String::from_utf8_lossy(&met.stdout);
    assert_eq!(met.status.code(), Some(0), "{text}");
    assert!(text.contains("gates (--slo): 3 of 3 met"), "{text}");
    // No request is served in under a microsecond, and no run of 300 ms serves a million a
    // second: both gates are missed; the first is met.
    let missed = simulator(
        &[
            &load[..],
            &[
                "--slo",
                "served>=50%,p50<1us,rps>1000000",
                "--format",
                "json",
            ],
        ]
        .concat(),
    );
    assert_eq!(
        missed.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&missed.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&missed.stdout).expect("a JSON report");
    let gates = json["gates"]
        .as_array()
        .expect("the gates in the JSON report");
    let met: Vec<bool> = gates.iter().map(|g| g["met"] == true).collect();
    assert_eq!(met, vec![true, false, false], "{gates:#?}");
    assert_eq!(gates[1]["gate"], "p50<1us");
    assert_eq!(gates[1]["required"], "< 1us");
    let bad = simulator(&[&load[..], &["--slo", "p98<5ms"]].concat());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"p98\" is not a metric"), "{stderr}");
    server.stop().expect("stop");
}

/// `--stages` refuses what cannot be a ramp, in one sentence with exit status 2, and does
/// not mix with `--rate` or `--duration` (the stages give both).
#[test]
fn stages_refuse_bad_ramps() {
    for (args, says) in [
        (&["run", "--stages", "1s:-3"][..], "is not a rate"),
        (
            &["run", "--stages", "1s:0,2s:0"][..],
            "every stage's rate is 0",
        ),
        (
            &["run", "--stages", "1s:100", "--rate", "5"][..],
            "cannot be used with",
        ),
        (
            &["run", "--stages", "1s:100", "--duration", "1s"][..],
            "cannot be used with",
        ),
    ] {
        let out = simulator(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
