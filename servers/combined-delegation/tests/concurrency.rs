//! What combined delegation implies, measured with wide margins: four fixed threads, a
//! worker started on demand for every step of every request, never more than
//! --max-workers per step, and idle connections keeping their receivers.

use std::collections::HashSet;
use std::time::Duration;

use combined_delegation::CombinedDelegation;
use server_core::{RunningServer, ServerArgs};
use testkit::{burst, idle_holders, stop_cleanly, threads, timed_get, wait_until};

fn start(arch: CombinedDelegation) -> RunningServer {
    RunningServer::start(arch, ServerArgs::default()).expect("the server starts")
}

#[test]
fn a_burst_of_sleepers_gets_a_handler_each_at_once() {
    let _timing = testkit::timing();
    let server = start(CombinedDelegation::default());
    let (elapsed, replies) = burst(server.addr(), 16, "/sleep/200");
    assert!(replies.iter().all(|r| r.status == 200));
    // All at once: about 0.2 s, far below the 0.8 s four fixed handlers would take.
    assert!(elapsed >= Duration::from_millis(200), "took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(700), "took {elapsed:?}");
    let names: HashSet<_> = replies
        .iter()
        .filter_map(|r| r.header("x-servelab-thread"))
        .collect();
    assert_eq!(
        names.len(),
        16,
        "a handler thread of its own each: {names:?}"
    );
    assert!(names.iter().all(|n| n.starts_with("handler-")));
    // Every step started a thread per request, and the handlers overlapped.
    for role in ["receiver", "handler", "sender"] {
        assert!(threads(&server, role).started >= 16, "{role}");
    }
    assert!(threads(&server, "handler").peak >= 8);
    stop_cleanly(server);
}

#[test]
fn four_threads_are_fixed_and_the_workers_end_with_their_step() {
    let server = start(CombinedDelegation::default());
    let (_, replies) = burst(server.addr(), 8, "/");
    assert!(replies.iter().all(|r| r.status == 200));
    // The three managers (the main thread is the fourth) run for the server's life.
    assert_eq!(threads(&server, "manager").alive, 3);
    // The burst's connections closed; every worker ends after its one step.
    wait_until("every worker has ended", || {
        ["receiver", "handler", "sender"]
            .iter()
            .all(|role| threads(&server, role).alive == 0)
    });
    stop_cleanly(server);
}

#[test]
fn max_workers_bounds_each_step() {
    let _timing = testkit::timing();
    let server = start(CombinedDelegation {
        max_workers: 2,
        ..CombinedDelegation::default()
    });
    let (elapsed, replies) = burst(server.addr(), 8, "/sleep/100");
    assert!(replies.iter().all(|r| r.status == 200));
    // Two handlers at a time: four rounds of 100 ms at least.
    assert!(elapsed >= Duration::from_millis(400), "took {elapsed:?}");
    let limits = server.context().snapshot().limits;
    let handlers = limits
        .iter()
        .find(|l| l.name == "handlers")
        .expect("a handler limit");
    assert!(handlers.peak <= 2, "{handlers:?}");
    stop_cleanly(server);
}

#[test]
fn an_idle_connection_keeps_a_receiver_thread() {
    let server = RunningServer::start(
        CombinedDelegation::default(),
        ServerArgs {
            keep_alive_timeout: Duration::from_secs(3),
            ..ServerArgs::default()
        },
    )
    .expect("the server starts");
    let _holders = idle_holders(server.addr(), 4);
    wait_until("a receiver waits on each idle connection", || {
        threads(&server, "receiver").alive == 4
    });
    // A newcomer gets a receiver of its own at once.
    let (waited, reply) = timed_get(server.addr(), "/");
    assert_eq!(reply.status, 200);
    assert!(waited < Duration::from_secs(1), "served after {waited:?}");
    stop_cleanly(server);
}

#[test]
fn shutdown_gives_up_after_its_timeout() {
    testkit::shutdown_gives_up_after_its_timeout(&|args| {
        RunningServer::start(CombinedDelegation::default(), args).expect("the server starts")
    });
}

#[test]
fn a_computation_stops_when_its_client_leaves() {
    // The connection travels with the request, so the handler can look at it.
    testkit::a_computation_stops_when_its_client_leaves(&|args| {
        RunningServer::start(CombinedDelegation::default(), args).expect("the server starts")
    });
}
