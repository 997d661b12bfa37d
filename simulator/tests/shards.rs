//! Shards: one run split over several simulator processes (here, threads of the test, each
//! running its shard as a separate process would, against a real server on a real socket),
//! saved, and merged. The merge must equal one run with all the clients: the ledger counts
//! exactly, the percentiles within noise, and the merged histograms exactly the sum of
//! the shards'. A shard that failed or never reported is named, never silently left out.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use loadgen::scenario::{Arrivals, Load, OpenLoop, Scenario, Shard, Stage, Stages, WhenBusy};
use loadgen::Outcome;
use server_core::{RunningServer, ServerArgs};
use simulator::measure as run;
use simulator::output::files as save;
use simulator::shards as merge;
use simulator::target::ServerInfo;
use simulator::{Report, Servers, SimError};

fn server() -> RunningServer {
    Servers::only("thread-per-conn")
        .start("thread-per-conn", ServerArgs::default())
        .expect("the server starts")
}

/// A fresh directory for one test's shards.
fn dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("shards-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `scenario` once in one process, as the reference.
fn single(server: &RunningServer, scenario: &Scenario) -> Report {
    let info = ServerInfo::from(server.context().snapshot());
    let addr = server.addr();
    run::run(addr, &addr.to_string(), scenario, Some(&info), false)
        .expect("the single run completes")
}

/// Runs the shards `which` of `count` at once, all starting at the same moment, as
/// separate processes on separate machines would, and saves each into `into`.
fn shards(
    server: &RunningServer,
    scenario: &Scenario,
    count: usize,
    which: &[usize],
    into: &Path,
) -> Vec<Report> {
    let info = ServerInfo::from(server.context().snapshot());
    let addr = server.addr();
    let start_at = SystemTime::now() + Duration::from_millis(200);
    std::thread::scope(|scope| {
        let runs: Vec<_> = which
            .iter()
            .map(|&index| {
                let shard = Shard::new(index, count).expect("a valid shard");
                let scenario = Scenario {
                    shard: Some(shard),
                    start_at: Some(start_at),
                    ..scenario.clone()
                };
                let info = info.clone();
                scope.spawn(move || {
                    let report = run::run(addr, &addr.to_string(), &scenario, Some(&info), false)
                        .expect("the shard runs");
                    save::save(&report, &save::run_dir(into, Some(shard)))
                        .expect("the shard's files are written");
                    report
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("the shard's thread"))
            .collect()
    })
}

fn whole_histogram(reports: &[Report]) -> Histogram<u64> {
    let mut sum = loadgen::units::new_histogram();
    for r in reports {
        let (corrected, _) = r.histograms.as_ref().expect("histograms");
        sum.add(corrected).expect("same bounds");
    }
    sum
}

/// The lecture's shape, 12 clients that each send one request, split over 3 shards.
#[test]
fn a_merged_scenario_equals_one_run_with_all_the_clients() {
    let server = server();
    let scenario = Scenario::get(12, "/sleep/30", Duration::from_secs(5), Duration::ZERO);
    let one = single(&server, &scenario);
    let into = dir("scenario");
    let parts = shards(&server, &scenario, 3, &[1, 2, 3], &into);
    server.stop().expect("the server stops");

    // Each shard ran its own clients: 1, 4, 7, 10 for shard 1 of 3, and so on.
    for (part, index) in parts.iter().zip(1..) {
        let ids: Vec<usize> = part.clients.iter().map(|c| c.id).collect();
        let expected: Vec<usize> = (index..=12).step_by(3).collect();
        assert_eq!(ids, expected);
        assert!(part.prediction.is_none(), "a shard does not predict");
    }

    let merged = merge::merge(std::slice::from_ref(&into)).expect("the shards merge");
    let coverage = merged
        .shards
        .clone()
        .expect("a merged report says what it covers");
    assert!(coverage.complete(), "{coverage:?}");
    assert_eq!(
        (coverage.count, coverage.covered, coverage.clients),
        (3, 12, 12)
    );
    // The ledger, exactly.
    let ids: Vec<usize> = merged.clients.iter().map(|c| c.id).collect();
    assert_eq!(ids, (1..=12).collect::<Vec<_>>());
    for outcome in Outcome::ALL {
        assert_eq!(
            merged.summary.count(outcome),
            one.summary.count(outcome),
            "{outcome:?}\nmerged:\n{}\nsingle:\n{}",
            merged.to_text(),
            one.to_text()
        );
    }
    assert_eq!(merged.summary.served, 12);
    assert_eq!(merged.latency_us.samples, 12);
    // The prediction is made again, for the whole run, and agrees.
    assert_eq!(merged.agrees, Some(true), "{}", merged.to_text());
    // Percentiles within noise of the single run: every client waits its 30 ms and a little.
    for (m, s) in [
        (merged.latency_us.p50, one.latency_us.p50),
        (merged.latency_us.max, one.latency_us.max),
    ] {
        assert!(m >= 30_000 && s >= 30_000, "merged {m} µs, single {s} µs");
        assert!(m.abs_diff(s) < 150_000, "merged {m} µs, single {s} µs");
    }
    // The shards started together: the merged clock puts every client near the start.
    assert!(
        merged.summary.start_spread_ms < 1_000,
        "{}",
        merged.to_text()
    );
    assert!(merged
        .to_text()
        .contains("merged 3 of 3 shards (1, 2, 3): 12 of the run's 12 clients"));
}

/// A closed loop split over 3 shards: the request counts add up exactly, and the merged
/// histogram, built from the shards' interval logs, is exactly the sum of the shards'.
#[test]
fn merged_histograms_are_the_sum_of_the_shards() {
    let server = server();
    let scenario = Scenario {
        load: Load::Duration(Duration::from_millis(400)),
        ..Scenario::get(9, "/sleep/5", Duration::from_secs(2), Duration::ZERO)
    };
    let into = dir("closed");
    let parts = shards(&server, &scenario, 3, &[1, 2, 3], &into);
    let one = single(&server, &scenario);
    server.stop().expect("the server stops");
    let merged = merge::merge(std::slice::from_ref(&into)).expect("the shards merge");

    let requests = merged.requests.clone().expect("a load run counts requests");
    let sum = |f: fn(&loadgen::tally::Requests) -> u64| {
        parts
            .iter()
            .map(|p| f(p.requests.as_ref().expect("counts")))
            .sum::<u64>()
    };
    assert_eq!(requests.sent, sum(|r| r.sent));
    assert_eq!(requests.served, sum(|r| r.served));
    assert_eq!(requests.completed, sum(|r| r.completed));

    let expected = whole_histogram(&parts);
    let (corrected, _) = merged.histograms.as_ref().expect("histograms");
    assert_eq!(corrected.len(), expected.len());
    for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
        assert_eq!(
            corrected.value_at_quantile(q),
            expected.value_at_quantile(q),
            "quantile {q}"
        );
    }
    assert_eq!(merged.latency_us.p99, expected.value_at_quantile(0.99));
    // The time series adds up to the run's counts.
    let sent: u64 = merged.series.iter().map(|r| r.sent).sum();
    assert_eq!(sent, requests.sent);

    // Within noise of the same load from one process: 9 clients, each a request per
    // 5 ms and a little, for 400 ms.
    let (m, s) = (
        merged.throughput.as_ref().expect("throughput").per_second,
        one.throughput.as_ref().expect("throughput").per_second,
    );
    assert!(
        m > s * 0.5 && m < s * 2.0,
        "merged {m:.0}/s, single {s:.0}/s"
    );
    assert!(merged.latency_us.p50 >= 5_000 && merged.latency_us.p50 < 200_000);
}

/// An open loop's schedule is dealt out, not approximated: three shards with constant
/// arrivals send exactly the requests one process would.
#[test]
fn shards_of_an_open_loop_keep_the_whole_schedule() {
    let server = server();
    let scenario = Scenario {
        load: Load::Rate(OpenLoop {
            rate: 400.0,
            duration: Duration::from_millis(500),
            arrivals: Arrivals::Constant,
            when_busy: WhenBusy::Queue,
            seed: 3,
            stages: Default::default(),
        }),
        ..Scenario::get(6, "/", Duration::from_secs(2), Duration::ZERO)
    };
    let into = dir("open");
    shards(&server, &scenario, 3, &[1, 2, 3], &into);
    let one = single(&server, &scenario);
    server.stop().expect("the server stops");
    let merged = merge::merge(std::slice::from_ref(&into)).expect("the shards merge");
    let (m, s) = (
        merged.requests.clone().expect("counts"),
        one.requests.clone().expect("counts"),
    );
    assert_eq!(m.due, 200, "{}", merged.to_text());
    assert_eq!(m.due, s.due);
    assert_eq!(m.served, s.served, "{}", merged.to_text());
    assert!(merged.latency_uncorrected_us.is_some() && merged.schedule_lag_us.is_some());
}

/// A ramp is dealt out the same way: two shards of an open loop on `--stages` together
/// send the requests one process would on the ramped schedule, and the merged report
/// carries the stages.
#[test]
fn shards_of_a_ramp_keep_the_ramped_schedule_and_its_stages() {
    let server = server();
    let stages = Stages::new(&[
        Stage {
            duration: Duration::from_millis(500),
            rate: 400.0,
        },
        Stage {
            duration: Duration::from_millis(250),
            rate: 400.0,
        },
    ])
    .expect("two stages");
    let scenario = Scenario {
        load: Load::Rate(OpenLoop {
            // The ramp's mean: 100 requests while it rises, 100 at its top, over 750 ms.
            rate: 200.0 / 0.75,
            duration: Duration::from_millis(750),
            arrivals: Arrivals::Constant,
            when_busy: WhenBusy::Queue,
            seed: 3,
            stages,
        }),
        ..Scenario::get(6, "/", Duration::from_secs(2), Duration::ZERO)
    };
    let into = dir("ramp");
    shards(&server, &scenario, 2, &[1, 2], &into);
    let one = single(&server, &scenario);
    server.stop().expect("the server stops");
    let merged = merge::merge(std::slice::from_ref(&into)).expect("the shards merge");
    let (m, s) = (
        merged.requests.clone().expect("counts"),
        one.requests.clone().expect("counts"),
    );
    assert!((195..=205).contains(&m.due), "{}", merged.to_text());
    assert_eq!(m.due, s.due, "{}", merged.to_text());
    assert_eq!(m.served, s.served, "{}", merged.to_text());
    match merged.scenario.load {
        Load::Rate(open) => assert_eq!(open.stages, stages),
        other => panic!("the merged report lost its open loop: {other:?}"),
    }
}

/// A shard that failed says why in its directory; one that never ran leaves nothing. The
/// merge names both, covers only what ran, makes no claim about the prediction, and the
/// command exits 1.
#[test]
fn missing_shards_are_named_and_fail_the_merge() {
    let server = server();
    let scenario = Scenario::get(12, "/", Duration::from_secs(2), Duration::ZERO);
    let into = dir("missing");
    shards(&server, &scenario, 4, &[1, 3], &into);
    server.stop().expect("the server stops");
    let failure = SimError::NothingListening {
        target: "server:7777".into(),
        source: std::io::ErrorKind::ConnectionRefused.into(),
    };
    save::save_failure(&into, Shard::new(2, 4).expect("a shard"), &failure)
        .expect("the failure is written");

    let merged = merge::merge(std::slice::from_ref(&into)).expect("the shards merge");
    let coverage = merged.shards.clone().expect("coverage");
    assert_eq!(coverage.merged, [1, 3]);
    assert_eq!(coverage.covered, 6);
    let missing: Vec<usize> = coverage.missing.iter().map(|m| m.index).collect();
    assert_eq!(missing, [2, 4]);
    assert!(coverage.missing[0]
        .reason
        .contains("nothing is listening on server:7777"));
    assert!(coverage.missing[1].reason.contains("never reported"));
    assert_eq!(merged.agrees, None);

    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .arg("merge")
        .arg(&into)
        .output()
        .expect("the simulator runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("MISSING shard 2/4: it failed: nothing is listening"),
        "{stdout}"
    );
    assert!(
        stdout.contains("MISSING shard 4/4: it never reported"),
        "{stdout}"
    );
    assert!(stdout.contains("served within deadline: 6/6"), "{stdout}");
}

/// Results that cannot be parts of one run are refused in one sentence.
#[test]
fn results_of_different_runs_do_not_merge() {
    let server = server();
    let into = dir("different");
    let a = Scenario::get(4, "/", Duration::from_secs(2), Duration::ZERO);
    let b = Scenario::get(4, "/sleep/1", Duration::from_secs(2), Duration::ZERO);
    shards(&server, &a, 2, &[1], &into);
    shards(&server, &b, 2, &[2], &into);
    let twice = dir("twice");
    shards(&server, &a, 2, &[1], &twice);
    shards(&server, &a, 2, &[1], &twice.join("again"));
    server.stop().expect("the server stops");

    let e = merge::merge(std::slice::from_ref(&into)).expect_err("different scenarios");
    assert!(e.to_string().contains("ran different scenarios"), "{e}");
    let e = merge::merge(&[twice.clone(), twice.join("again")]).expect_err("a shard twice");
    assert!(e.to_string().contains("shard 1/2 appears twice"), "{e}");
    let e = merge::merge(&[dir("empty-but-absent")]).expect_err("nothing there");
    assert!(e.to_string().contains("cannot read the directory"), "{e}");
}

/// The command line: a shard from --shard or from the orchestrator's environment, and
/// mistakes in one sentence.
#[test]
fn the_shard_comes_from_the_flag_or_the_orchestrator() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_simulator"));
        cmd.args(["run", "--target", "127.0.0.1:1"]).args(args);
        for var in [
            "SIMULATOR_SHARD",
            "SIMULATOR_SHARDS",
            "TASK_SLOT",
            "JOB_COMPLETION_INDEX",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("the simulator runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--shard", "4/3"], &[]);
    assert_eq!(code, Some(2), "clap's usage error");
    assert!(err.contains("1 ≤ I ≤ N"), "{err}");
    let (code, err) = run(&["--shards", "3"], &[]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("neither TASK_SLOT (Docker Swarm) nor JOB_COMPLETION_INDEX"),
        "{err}"
    );
    let (code, err) = run(&["--clients", "2"], &[("SIMULATOR_SHARD", "3/3")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("shard 3/3 has no clients"), "{err}");
    // A valid shard gets as far as the server, which is not there: the usual sentence.
    let (code, err) = run(
        &[],
        &[("SIMULATOR_SHARDS", "3"), ("JOB_COMPLETION_INDEX", "2")],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("nothing is listening on 127.0.0.1:1"), "{err}");
    let (code, err) = run(&["--start-at", "soon"], &[]);
    assert_eq!(code, Some(2), "clap's usage error");
    assert!(err.contains("RFC 3339"), "{err}");

    let orchestrated = |env: &[(&str, &str)]| {
        Shard::from_orchestrator(3, |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    };
    assert_eq!(
        orchestrated(&[("TASK_SLOT", "3")]).expect("swarm"),
        Shard::new(3, 3).expect("a shard")
    );
    assert_eq!(
        orchestrated(&[("JOB_COMPLETION_INDEX", "0")]).expect("kubernetes"),
        Shard::new(1, 3).expect("a shard")
    );
}
