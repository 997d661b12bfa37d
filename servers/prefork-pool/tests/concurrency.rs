//! What the pre-fork pool implies, measured with wide margins: --workers clients at once,
//! the rest queued, and a full queue either blocks or answers 503.

use std::time::Duration;

use prefork_pool::{PreforkPool, WhenFull};
use server_core::queue::QueueKind;
use server_core::{RunningServer, ServerArgs};
use testkit::{
    burst, newcomer_wait_behind_idle_holders, short_keep_alive, stop_cleanly, threads, timed_get,
    wait_until, Client,
};

fn start(pool: PreforkPool, args: ServerArgs) -> RunningServer {
    RunningServer::start(pool, args).expect("the server starts")
}

fn pool(workers: u32) -> PreforkPool {
    PreforkPool {
        workers,
        ..PreforkPool::default()
    }
}

#[test]
fn four_workers_serve_eight_sleepers_in_two_rounds() {
    let _timing = testkit::timing();
    for queue_impl in [QueueKind::Crossbeam, QueueKind::Condvar] {
        let server = start(
            PreforkPool {
                queue_impl,
                ..pool(4)
            },
            ServerArgs::default(),
        );
        let (elapsed, replies) = burst(server.addr(), 8, "/sleep/200");
        assert!(replies.iter().all(|r| r.status == 200));
        // Two rounds of four: at least 0.4 s, about 0.4 s.
        assert!(
            elapsed >= Duration::from_millis(400),
            "{queue_impl:?}: took {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_millis(1200),
            "{queue_impl:?}: took {elapsed:?}"
        );
        stop_cleanly(server);
    }
}

#[test]
fn eight_workers_serve_eight_sleepers_at_once() {
    let _timing = testkit::timing();
    let server = start(pool(8), ServerArgs::default());
    let (elapsed, _) = burst(server.addr(), 8, "/sleep/200");
    assert!(elapsed < Duration::from_millis(900), "took {elapsed:?}");
    assert_eq!(
        threads(&server, "worker").started,
        8,
        "the pool never grows"
    );
    stop_cleanly(server);
}

/// One worker, a queue of one: client A is being served (it sleeps `ms`), client B waits in
/// the queue.
fn fill_the_pool(server: &RunningServer, ms: u64) -> (Client, Client) {
    let mut a = Client::connect(server.addr());
    a.send(format!(
        "GET /sleep/{ms} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    ));
    wait_until("the worker is busy", || {
        server.context().stats.in_flight() == 1
    });
    let mut b = Client::connect(server.addr());
    b.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    wait_until("B is queued", || {
        server.context().snapshot().queues[0].depth == 1
    });
    (a, b)
}

#[test]
fn reject_answers_503_when_the_queue_is_full() {
    let _timing = testkit::timing();
    let server = start(
        PreforkPool {
            queue: 1,
            when_full: WhenFull::Reject,
            ..pool(1)
        },
        ServerArgs::default(),
    );
    let (mut a, mut b) = fill_the_pool(&server, 300);
    let mut c = Client::connect(server.addr());
    c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let reply = c.read_reply();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(reply.closes());
    c.expect_closed();
    // The accepted clients are still served.
    assert_eq!(a.read_reply().status, 200);
    assert_eq!(b.read_reply().status, 200);
    let snapshot = server.context().snapshot();
    assert_eq!(snapshot.connections.rejected, 1);
    let admission = snapshot.limit("admission").expect("an admission limit");
    assert_eq!((admission.refused, admission.max), (1, 2));
    stop_cleanly(server);
}

#[test]
fn a_burst_is_admitted_up_to_workers_plus_queue_however_fast_the_workers_wake() {
    let _timing = testkit::timing();
    // Two workers, a queue of one: of a burst of five, exactly three are admitted. The
    // acceptor can outrun workers that are still waking up; admission must not depend on it.
    for _ in 0..3 {
        let server = start(
            PreforkPool {
                queue: 1,
                when_full: WhenFull::Reject,
                ..pool(2)
            },
            ServerArgs::default(),
        );
        let (_, replies) = burst(server.addr(), 5, "/sleep/100");
        let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            3,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 503).count(),
            2,
            "{statuses:?}"
        );
        stop_cleanly(server);
    }
}

#[test]
fn block_makes_the_newcomer_wait_instead() {
    let _timing = testkit::timing();
    let server = start(
        PreforkPool {
            queue: 1,
            ..pool(1)
        },
        ServerArgs::default(),
    );
    let (mut a, mut b) = fill_the_pool(&server, 300);
    // C is accepted, but the main thread then waits for room in the queue, so C waits
    // until A is done (about 300 ms) and B too.
    let (waited, reply) = timed_get(server.addr(), "/");
    assert_eq!(reply.status, 200);
    assert!(
        waited >= Duration::from_millis(100),
        "served after only {waited:?}"
    );
    assert_eq!(a.read_reply().status, 200);
    assert_eq!(b.read_reply().status, 200);
    assert_eq!(server.context().stats.rejected_total(), 0);
    stop_cleanly(server);
}

#[test]
fn idle_clients_occupy_workers_until_the_keep_alive_timeout() {
    let _timing = testkit::timing();
    let server = start(pool(2), short_keep_alive());
    // Each worker owns its holder's connection, so no further settling is needed.
    let waited = newcomer_wait_behind_idle_holders(&server, 2, || true);
    assert!(
        waited >= Duration::from_millis(250),
        "served after only {waited:?}"
    );
    stop_cleanly(server);
}

#[test]
fn shutdown_gives_up_after_its_timeout() {
    testkit::shutdown_gives_up_after_its_timeout(&|args| {
        RunningServer::start(prefork_pool::PreforkPool::default(), args).expect("the server starts")
    });
}

#[test]
fn a_pool_of_zero_workers_is_refused_in_one_sentence() {
    // The same sentence as `simulator compare --workers 0` (simulator/tests/targets.rs).
    let out = testkit::run_binary(env!("CARGO_BIN_EXE_prefork-pool"), &["--workers", "0"]);
    testkit::assert_usage_error(
        &out,
        "error: invalid value '0' for '--workers <N>': 0 is not in 1..=65536",
    );
}

#[test]
fn shutdown_wakes_a_main_thread_waiting_for_room() {
    let _timing = testkit::timing();
    // One worker busy for 3 s, one connection queued: the main thread waits for room.
    let server = start(
        PreforkPool {
            queue: 1,
            ..pool(1)
        },
        ServerArgs {
            shutdown_timeout: Duration::from_millis(200),
            ..ServerArgs::default()
        },
    );
    let (_a, _b) = fill_the_pool(&server, 3000);
    let _c = Client::connect(server.addr());
    // Stopping must not wait for the 3 s request: the main thread is woken at once, and the
    // grace period counts from the moment shutdown began.
    let began = std::time::Instant::now();
    server.stop().expect("stops");
    let took = began.elapsed();
    assert!(took < Duration::from_millis(1500), "stopping took {took:?}");
}
