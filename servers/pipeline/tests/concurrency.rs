//! What the pipeline implies, measured with wide margins: the handler stage bounds how many
//! requests are computed at once, and receivers can be held by idle connections.

use std::time::Duration;

use pipeline::{HandlerPool, Pipeline};
use server_core::stages::Stages;
use server_core::{RunningServer, ServerArgs};
use testkit::{burst, newcomer_wait_behind_idle_holders, short_keep_alive, stop_cleanly, threads};

fn start(pipeline: Pipeline, args: ServerArgs) -> RunningServer {
    RunningServer::start(pipeline, args).expect("the server starts")
}

#[test]
fn four_handlers_serve_eight_sleepers_in_two_rounds() {
    let _timing = testkit::timing();
    let server = start(Pipeline::default(), ServerArgs::default());
    let (elapsed, replies) = burst(server.addr(), 8, "/sleep/200");
    assert!(replies.iter().all(|r| r.status == 200));
    assert!(replies.iter().all(|r| r
        .header("x-servelab-thread")
        .is_some_and(|t| t.starts_with("handler-"))));
    assert!(elapsed >= Duration::from_millis(400), "took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1200), "took {elapsed:?}");
    stop_cleanly(server);
}

#[test]
fn a_rayon_pool_sized_to_the_cpus_serialises_blocking_work() {
    let _timing = testkit::timing();
    let server = start(
        Pipeline {
            handler_pool: HandlerPool::Rayon,
            ..Pipeline::default()
        },
        ServerArgs::default(),
    );
    let cpus = threads(&server, "handler").alive;
    assert!(cpus >= 1);
    let (elapsed, replies) = burst(server.addr(), 8, "/sleep/200");
    assert!(replies.iter().all(|r| r.status == 200));
    // Sleeping blocks a pool thread, so only `cpus` requests sleep at a time.
    let rounds = 8u64.div_ceil(cpus);
    let floor = Duration::from_millis(200 * rounds);
    assert!(
        elapsed >= floor,
        "took {elapsed:?} with {cpus} pool threads"
    );
    stop_cleanly(server);
}

#[test]
fn idle_clients_occupy_receivers_until_the_keep_alive_timeout() {
    let _timing = testkit::timing();
    let pipeline = Pipeline {
        stages: Stages {
            receivers: 2,
            ..Stages::default()
        },
        ..Pipeline::default()
    };
    let server = start(pipeline, short_keep_alive());
    // Both connections went back to the receivers, which then wait on them.
    let waited =
        newcomer_wait_behind_idle_holders(&server, 2, || threads(&server, "receiver").busy == 2);
    assert!(
        waited >= Duration::from_millis(250),
        "served after only {waited:?}"
    );
    stop_cleanly(server);
}

#[test]
fn stats_show_the_three_queues() {
    let _timing = testkit::timing();
    let server = start(Pipeline::default(), ServerArgs::default());
    burst(server.addr(), 4, "/");
    let snapshot = server.context().snapshot();
    let names: Vec<_> = snapshot.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["connections", "requests", "responses"]);
    assert_eq!(snapshot.queues[1].capacity, 64);
    assert!(snapshot.queues[1].pushed >= 4);
    let roles: Vec<_> = snapshot.threads.iter().map(|g| g.role.as_str()).collect();
    assert_eq!(roles, ["receiver", "handler", "sender"]);
    stop_cleanly(server);
}

#[test]
fn shutdown_gives_up_after_its_timeout() {
    testkit::shutdown_gives_up_after_its_timeout(&|args| {
        RunningServer::start(pipeline::Pipeline::default(), args).expect("the server starts")
    });
}

#[test]
fn counts_that_would_overflow_are_refused_in_one_sentence() {
    for flags in [
        ["--max-connections", "4294967295"],
        ["--receivers", "4294967295"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(flags)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the server");
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!(
                "error: invalid value '4294967295' for '{}",
                flags[0]
            )),
            "{stderr}"
        );
    }
}

#[test]
fn a_computation_stops_when_its_client_leaves() {
    // The connection travels with the request, so the handler can look at it.
    testkit::a_computation_stops_when_its_client_leaves(&|args| start(Pipeline::default(), args));
    let rayon = || Pipeline {
        handler_pool: HandlerPool::Rayon,
        ..Pipeline::default()
    };
    testkit::a_computation_stops_when_its_client_leaves(&|args| start(rayon(), args));
}
