//! What thread-per-request implies, measured with wide margins: a thread for every request
//! and none for an idle connection, never more than --max-threads, and a connection's
//! requests served by successive threads.

use std::collections::HashSet;
use std::time::Duration;

use server_core::{RunningServer, ServerArgs};
use testkit::{burst, idle_holders, stop_cleanly, threads, timed_get, wait_until, Client};
use thread_per_request::ThreadPerRequest;

fn start(arch: ThreadPerRequest) -> RunningServer {
    RunningServer::start(
        arch,
        ServerArgs {
            keep_alive_timeout: Duration::from_secs(5),
            ..ServerArgs::default()
        },
    )
    .expect("the server starts")
}

#[test]
fn a_burst_of_heavy_requests_gets_a_thread_each() {
    let _timing = testkit::timing();
    let server = start(ThreadPerRequest::default());
    let (elapsed, replies) = burst(server.addr(), 16, "/sleep/200");
    assert!(replies.iter().all(|r| r.status == 200));
    assert!(elapsed >= Duration::from_millis(200), "took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(700), "took {elapsed:?}");
    let names: HashSet<_> = replies
        .iter()
        .filter_map(|r| r.header("x-servelab-thread"))
        .collect();
    assert_eq!(names.len(), 16, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("req-")));
    stop_cleanly(server);
}

#[test]
fn idle_connections_cost_no_thread() {
    let server = start(ThreadPerRequest::default());
    let _holders = idle_holders(server.addr(), 200);
    // Every holder's request was answered and its thread has ended: the 200 idle
    // connections wait with the main thread, in one poll.
    wait_until("every request thread has ended", || {
        threads(&server, "request").alive == 0
    });
    assert!(threads(&server, "request").started >= 200);
    let (waited, reply) = timed_get(server.addr(), "/");
    assert_eq!(reply.status, 200);
    assert!(waited < Duration::from_secs(1), "served after {waited:?}");
    stop_cleanly(server);
}

#[test]
fn each_request_of_a_connection_has_its_own_thread() {
    let server = start(ThreadPerRequest::default());
    let mut client = Client::connect(server.addr());
    // Three requests sent at once: the connection goes back to the main thread after each
    // answer, and the next (already read) goes to a new thread.
    client.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(3));
    let names: Vec<String> = (0..3)
        .map(|_| {
            let reply = client.read_reply();
            assert_eq!(reply.status, 200);
            reply
                .header("x-servelab-thread")
                .expect("the thread header")
                .to_owned()
        })
        .collect();
    let distinct: HashSet<_> = names.iter().collect();
    assert_eq!(distinct.len(), 3, "{names:?}");
    // And a later request on the same connection, after it waited idle.
    assert_eq!(client.get("/").status, 200);
    stop_cleanly(server);
}

#[test]
fn max_threads_bounds_the_request_threads() {
    let _timing = testkit::timing();
    let server = start(ThreadPerRequest {
        max_threads: 2,
        ..ThreadPerRequest::default()
    });
    let (elapsed, replies) = burst(server.addr(), 8, "/sleep/100");
    assert!(replies.iter().all(|r| r.status == 200));
    // Two threads at a time: four rounds of 100 ms at least.
    assert!(elapsed >= Duration::from_millis(400), "took {elapsed:?}");
    let peak = server
        .context()
        .snapshot()
        .limit("threads")
        .map(|l| l.peak)
        .expect("a thread limit");
    assert!(peak <= 2, "peak {peak}");
    stop_cleanly(server);
}

#[test]
fn shutdown_gives_up_after_its_timeout() {
    testkit::shutdown_gives_up_after_its_timeout(&|args| {
        RunningServer::start(ThreadPerRequest::default(), args).expect("the server starts")
    });
}
