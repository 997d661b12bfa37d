//! What the event loop implies, measured with wide margins: waits are timers (many at once
//! on a few threads), idle connections cost no thread, CPU work leaves the loop unless told
//! otherwise, and a slow reader does not stall anyone else.

use std::time::{Duration, Instant};

use event_loop::{Accept, EventLoop, Offload};
use server_core::{RunningServer, ServerArgs};
use testkit::{burst, idle_holders, stop_cleanly, threads, timed_get, wait_until, Client};

/// A prime: factorising it means trial division up to its square root, about 5 million
/// divisions, every time.
const PRIME: u64 = 100_000_000_000_031;

fn start(arch: EventLoop) -> RunningServer {
    RunningServer::start(arch, ServerArgs::default()).expect("the server starts")
}

fn one_reactor(offload: Offload) -> EventLoop {
    EventLoop {
        reactors: Some(1),
        helpers: Some(2),
        offload,
        ..EventLoop::default()
    }
}

#[test]
fn sixteen_sleepers_wait_at_once_on_one_thread() {
    let _timing = testkit::timing();
    let server = start(one_reactor(Offload::On));
    let (elapsed, replies) = burst(server.addr(), 16, "/sleep/200");
    assert!(replies.iter().all(|r| r.status == 200));
    // One thread served all of them: the waits were timers, not blocked threads.
    assert!(replies
        .iter()
        .all(|r| r.header("x-servelab-thread") == Some("reactor-1")));
    assert!(elapsed >= Duration::from_millis(200), "took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1000), "took {elapsed:?}");
    assert_eq!(
        threads(&server, "reactor").started,
        1,
        "no thread was added"
    );
    stop_cleanly(server);
}

#[test]
fn idle_connections_cost_no_thread_and_hold_up_nobody() {
    let _timing = testkit::timing();
    let server = start(one_reactor(Offload::On));
    let _holders = idle_holders(server.addr(), 200);
    let began = Instant::now();
    let mut newcomer = Client::connect(server.addr());
    assert_eq!(newcomer.get("/").status, 200);
    let waited = began.elapsed();
    assert!(waited < Duration::from_secs(1), "served after {waited:?}");
    let snapshot = server.context().snapshot();
    assert_eq!(snapshot.connections.open, 201);
    assert_eq!(snapshot.reactors[0].connections, 201);
    assert_eq!(threads(&server, "reactor").alive, 1);
    stop_cleanly(server);
}

/// How long a plain `GET /` takes while another client's factorisation of `PRIME` runs, and
/// how much of the factorisation was still to come when it was sent.
fn hello_during_a_factorisation(server: &RunningServer) -> (Duration, Duration) {
    let mut heavy = Client::connect(server.addr());
    let began = Instant::now();
    heavy.send(format!("GET /factor/{PRIME} HTTP/1.1\r\nHost: t\r\n\r\n"));
    wait_until("the factorisation has started", || {
        server.context().stats.in_flight() == 1
    });
    let hello_sent = began.elapsed();
    let (hello, reply) = timed_get(server.addr(), "/");
    assert_eq!(reply.status, 200);
    assert_eq!(heavy.read_reply().status, 200);
    (hello, began.elapsed().saturating_sub(hello_sent))
}

#[test]
fn computing_on_the_loop_stalls_its_other_connections() {
    let _timing = testkit::timing();
    let server = start(one_reactor(Offload::Off));
    let (hello, rest) = hello_during_a_factorisation(&server);
    // The loop was computing: the newcomer waited for the rest of the factorisation.
    assert!(
        hello >= rest / 2,
        "GET / took {hello:?} while the loop computed for {rest:?} more"
    );
    stop_cleanly(server);
}

#[test]
fn offloaded_computation_leaves_the_loop_free() {
    let _timing = testkit::timing();
    let server = start(one_reactor(Offload::On));
    let (hello, rest) = hello_during_a_factorisation(&server);
    assert!(
        hello < rest / 2,
        "GET / took {hello:?} while a helper computed for {rest:?} more"
    );
    let snapshot = server.context().snapshot();
    assert_eq!(snapshot.reactors[0].offloaded, 1);
    assert_eq!(snapshot.queue("offload").map(|q| q.pushed), Some(1));
    stop_cleanly(server);
}

#[test]
fn a_client_that_does_not_read_stalls_nobody() {
    let _timing = testkit::timing();
    let server = start(one_reactor(Offload::On));
    // A 1 MiB echo that the client does not read yet: far more than the socket buffers
    // hold, so the loop can write only part of it and must wait for room.
    let body = vec![b'x'; 1024 * 1024];
    let mut slow = Client::connect(server.addr());
    slow.send(format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    slow.send(&body);
    let (waited, reply) = timed_get(server.addr(), "/");
    assert_eq!(reply.status, 200);
    assert!(waited < Duration::from_secs(1), "served after {waited:?}");
    // Now it reads: the whole echo arrives intact.
    let echoed = slow.read_reply();
    assert_eq!(echoed.body.len(), body.len());
    assert!(echoed.body.iter().all(|b| *b == b'x'));
    stop_cleanly(server);
}

#[test]
fn stats_describe_each_reactor() {
    let server = start(EventLoop {
        reactors: Some(2),
        ..EventLoop::default()
    });
    burst(server.addr(), 8, "/");
    let snapshot = server.context().snapshot();
    let names: Vec<&str> = snapshot.reactors.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["reactor-1", "reactor-2"]);
    assert_eq!(snapshot.reactors.iter().map(|r| r.accepted).sum::<u64>(), 8);
    assert!(snapshot.reactors.iter().any(|r| r.events_per_wakeup > 0.0));
    assert_eq!(snapshot.config.number("reactors"), Some(2));
    assert!(snapshot.capacity.concurrent.is_none());
    stop_cleanly(server);
}

#[test]
fn a_shared_listener_sends_no_newcomer_to_a_stalled_reactor() {
    let _timing = testkit::timing();
    // Two reactors that compute on their own thread; the computation is cut at 3 s.
    let server = RunningServer::start(
        EventLoop {
            reactors: Some(2),
            offload: Offload::Off,
            accept: Accept::Shared,
            ..EventLoop::default()
        },
        ServerArgs {
            max_cpu: Duration::from_millis(3000),
            ..ServerArgs::default()
        },
    )
    .expect("the server starts");
    // The largest prime below 2^64: trial division would take minutes, so the reactor that
    // reads it computes until `--max-cpu` stops it.
    let mut heavy = Client::connect(server.addr());
    heavy.send("GET /factor/18446744073709551557 HTTP/1.1\r\nHost: t\r\n\r\n");
    let ctx = std::sync::Arc::clone(server.context());
    wait_until("the factorisation is being computed", || {
        ctx.stats.in_flight() == 1
    });
    // Eight newcomers, each on a new connection, during the stall: all are accepted and
    // answered by the reactor that is free, at once.
    let (elapsed, replies) = burst(server.addr(), 8, "/");
    assert!(elapsed < Duration::from_millis(2000), "took {elapsed:?}");
    let free: Vec<&str> = replies
        .iter()
        .filter_map(|r| r.header("x-servelab-thread"))
        .collect();
    assert_eq!(free.len(), 8);
    assert!(free.iter().all(|name| *name == free[0]), "{free:?}");
    // The stalled reactor accepted the factorisation's connection and nothing else.
    let snapshot = ctx.snapshot();
    let accepted = |name: &str| {
        snapshot
            .reactors
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.accepted)
    };
    assert_eq!(accepted(free[0]), Some(8));
    assert_eq!(snapshot.connections.accepted, 9);
    assert!(snapshot.reactors.iter().all(|r| r.cpu.is_none()));
    assert_eq!(heavy.read_reply().status, 503);
    stop_cleanly(server);
}

#[test]
fn shutdown_gives_up_after_its_timeout() {
    testkit::shutdown_gives_up_after_its_timeout(&|args| {
        RunningServer::start(EventLoop::default(), args).expect("the server starts")
    });
}

#[test]
fn a_client_that_pipelines_megabytes_gets_every_answer_in_order() {
    let _timing = testkit::timing();
    let server = start(one_reactor(Offload::On));
    // 400 requests of 7 KiB each (a long header), 2.8 MB in all, more than one turn of the
    // loop reads (16 × 64 KiB): every answer arrives, in order, and the loop still serves a
    // newcomer. (A turn that ends with bytes unread and nothing more arriving would get no
    // readiness event for them; the loop comes back to such connections by itself. While a
    // client is still sending, each arrival raises a new event anyway, so this test covers
    // the pipelining, not that rare case.)
    let pad = "x".repeat(7 * 1024);
    let count = 400u64;
    // Each asks for a different factorisation, which two helpers may finish out of order;
    // the answers must come back in the order asked.
    let all: String = (2..2 + count)
        .map(|n| format!("GET /factor/{n} HTTP/1.1\r\nHost: t\r\nX-Pad: {pad}\r\n\r\n"))
        .collect();
    let mut greedy = Client::connect(server.addr());
    let writer = {
        let mut stream = greedy.stream().try_clone().expect("clone the socket");
        std::thread::spawn(move || std::io::Write::write_all(&mut stream, all.as_bytes()))
    };
    for n in 2..2 + count {
        let reply = greedy.read_reply();
        assert_eq!(reply.status, 200);
        assert!(
            reply.text().starts_with(&format!("{n} = ")),
            "{}",
            reply.text()
        );
    }
    writer
        .join()
        .expect("the writer")
        .expect("every request written");
    let (waited, reply) = timed_get(server.addr(), "/");
    assert_eq!(reply.status, 200);
    assert!(waited < Duration::from_secs(1), "served after {waited:?}");
    stop_cleanly(server);
}

#[test]
fn a_computation_stops_when_its_client_leaves() {
    // The helper computes without the socket; the reactor sees the client close and tells it.
    testkit::a_computation_stops_when_its_client_leaves(&|args| {
        RunningServer::start(EventLoop::default(), args).expect("the server starts")
    });
}
