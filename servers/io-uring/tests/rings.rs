//! What the io_uring server implies, measured with wide margins: waits are ring timeouts
//! (many at once on one thread), idle connections cost no thread and no buffer, a
//! computation leaves the ring, a slow reader stalls nobody, one system call carries a
//! batch of work, and at the end every operation comes back from the kernel.

use std::io::Write;
use std::time::{Duration, Instant};

use io_uring_server::IoUring;
use server_core::{RunningServer, ServerArgs};
use testkit::{burst, idle_holders, stop_cleanly, threads, timed_get, wait_until, Client};

/// A prime: factorising it means trial division up to its square root, about 5 million
/// divisions, every time.
const PRIME: u64 = 100_000_000_000_031;

fn start(arch: IoUring) -> RunningServer {
    RunningServer::start(arch, ServerArgs::default()).expect("the server starts")
}

fn one_ring() -> IoUring {
    IoUring {
        rings: Some(1),
        helpers: Some(2),
        ..IoUring::default()
    }
}

#[test]
fn sixteen_sleepers_wait_at_once_on_one_thread() {
    let _timing = testkit::timing();
    let server = start(one_ring());
    let (elapsed, replies) = burst(server.addr(), 16, "/sleep/200");
    assert!(replies.iter().all(|r| r.status == 200));
    // One thread served all of them: the waits were timeouts in the kernel, not threads.
    assert!(replies
        .iter()
        .all(|r| r.header("x-servelab-thread") == Some("ring-1")));
    assert!(elapsed >= Duration::from_millis(200), "took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1000), "took {elapsed:?}");
    assert_eq!(threads(&server, "ring").started, 1, "no thread was added");
    stop_cleanly(server);
}

#[test]
fn idle_connections_cost_no_thread_and_no_buffer() {
    let _timing = testkit::timing();
    // Two provided buffers for 200 idle connections, each with a receive waiting in the
    // kernel: a receive holds a buffer only while bytes are being handed over.
    let server = start(IoUring {
        buffers: 2,
        ..one_ring()
    });
    let _holders = idle_holders(server.addr(), 200);
    let began = Instant::now();
    let mut newcomer = Client::connect(server.addr());
    assert_eq!(newcomer.get("/").status, 200);
    let waited = began.elapsed();
    assert!(waited < Duration::from_secs(1), "served after {waited:?}");
    let snapshot = server.context().snapshot();
    assert_eq!(snapshot.connections.open, 201);
    assert_eq!(snapshot.rings[0].connections, 201);
    assert_eq!(snapshot.rings[0].buffers, 2);
    // Each idle connection has its receive (and its deadline timeout) in the kernel.
    assert!(
        snapshot.rings[0].in_kernel >= 201,
        "{:?}",
        snapshot.rings[0]
    );
    assert_eq!(threads(&server, "ring").alive, 1);
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
fn a_computation_leaves_the_ring_free_and_comes_back_through_it() {
    let _timing = testkit::timing();
    let server = start(one_ring());
    let (hello, rest) = hello_during_a_factorisation(&server);
    assert!(
        hello < rest / 2,
        "GET / took {hello:?} while a helper computed for {rest:?} more"
    );
    let snapshot = server.context().snapshot();
    assert_eq!(snapshot.rings[0].offloaded, 1);
    assert_eq!(snapshot.queue("offload").map(|q| q.pushed), Some(1));
    stop_cleanly(server);
}

#[test]
fn a_client_that_does_not_read_stalls_nobody() {
    let _timing = testkit::timing();
    let server = start(one_ring());
    // A 1 MiB echo that the client does not read yet: far more than the socket buffers
    // hold, so a send stays in the kernel until the client makes room.
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
fn one_system_call_carries_a_batch() {
    let _timing = testkit::timing();
    let server = start(one_ring());
    let mut client = Client::connect(server.addr());
    assert_eq!(client.get("/").status, 200);
    let before = server.context().snapshot().rings[0].clone();
    // Sixteen pipelined requests in one write: one receive brings them all, and their
    // sixteen answers leave in one send.
    let sixteen = "GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(16);
    client.send(sixteen);
    for _ in 0..16 {
        assert_eq!(client.read_reply().status, 200);
    }
    wait_until("the last send has completed", || {
        let ring = &server.context().snapshot().rings[0];
        ring.completions >= before.completions + 2 && ring.in_kernel == before.in_kernel
    });
    let after = server.context().snapshot().rings[0].clone();
    let enters = after.enters - before.enters;
    // A receive's completion, a send's: a handful of rounds, not one per request (the
    // event loop needs a read and a write per batch, plus its epoll_wait).
    assert!(enters <= 6, "{enters} system calls for 16 requests");
    assert!(
        after.submissions_per_wakeup > 0.0 && after.completions_per_wakeup > 0.0,
        "{after:?}"
    );
    stop_cleanly(server);
}

#[test]
fn stats_describe_each_ring() {
    let server = start(IoUring {
        rings: Some(2),
        ..IoUring::default()
    });
    burst(server.addr(), 8, "/");
    let snapshot = server.context().snapshot();
    let names: Vec<&str> = snapshot.rings.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["ring-1", "ring-2"]);
    assert_eq!(snapshot.rings.iter().map(|r| r.accepted).sum::<u64>(), 8);
    assert!(snapshot.rings.iter().all(|r| r.wakeups > 0 && r.enters > 0));
    assert!(snapshot
        .rings
        .iter()
        .any(|r| r.completions_per_wakeup > 0.0));
    assert_eq!(snapshot.config.number("rings"), Some(2));
    assert_eq!(snapshot.config.number("buffers"), Some(1024));
    assert!(snapshot.capacity.concurrent.is_none());
    // The document as JSON has them too.
    let json = serde_json::to_value(&snapshot).expect("JSON");
    assert!(json["rings"][0]["submissions_per_wakeup"].is_number());
    stop_cleanly(server);
}

#[test]
fn every_operation_comes_back_from_the_kernel_at_the_end() {
    let server = start(IoUring {
        rings: Some(2),
        ..IoUring::default()
    });
    // Something of everything in the kernel at shutdown: idle receives and their
    // deadlines, a sleeping request, the accepts, the wake-up reads.
    let _idle = idle_holders(server.addr(), 4);
    let mut sleeper = Client::connect(server.addr());
    sleeper.send("GET /sleep/100 HTTP/1.1\r\nHost: t\r\n\r\n");
    let ctx = std::sync::Arc::clone(server.context());
    wait_until("the request sleeps", || ctx.stats.in_flight() == 1);
    server.stop().expect("stops");
    assert_eq!(sleeper.read_reply().status, 200, "the sleeper is answered");
    for ring in ctx.snapshot().rings {
        assert_eq!(ring.in_kernel, 0, "{ring:?}");
        assert_eq!(ring.connections, 0, "{ring:?}");
    }
    assert_eq!(ctx.open_connections(), 0);
}

#[test]
fn shutdown_gives_up_after_its_timeout() {
    testkit::shutdown_gives_up_after_its_timeout(&|args| {
        RunningServer::start(IoUring::default(), args).expect("the server starts")
    });
}

#[test]
fn a_client_that_pipelines_megabytes_gets_every_answer_in_order() {
    let _timing = testkit::timing();
    let server = start(one_ring());
    // 400 requests of 7 KiB each (a long header), 2.8 MB in all, received through 4 KiB
    // provided buffers: every answer arrives, in order, and the ring still serves a
    // newcomer. Each asks for a different factorisation, which two helpers may finish out
    // of order; the answers must come back in the order asked.
    let pad = "x".repeat(7 * 1024);
    let count = 400u64;
    let all: String = (2..2 + count)
        .map(|n| format!("GET /factor/{n} HTTP/1.1\r\nHost: t\r\nX-Pad: {pad}\r\n\r\n"))
        .collect();
    let mut greedy = Client::connect(server.addr());
    let writer = {
        let mut stream = greedy.stream().try_clone().expect("clone the socket");
        std::thread::spawn(move || stream.write_all(all.as_bytes()))
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
    // The helper computes without the socket; the ring sees the client close (its
    // receive completes with the end of the stream) and tells it.
    testkit::a_computation_stops_when_its_client_leaves(&|args| {
        RunningServer::start(IoUring::default(), args).expect("the server starts")
    });
}
