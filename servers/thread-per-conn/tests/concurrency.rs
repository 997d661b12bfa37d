//! What thread-per-connection implies, measured with wide margins: every client at once,
//! but never more than --max-threads threads.

use std::collections::HashSet;
use std::time::Duration;

use protocol::testing::{burst, idle_holders, stop_cleanly, thread_figure, timed_get, Client};
use protocol::{RunningServer, ServerArgs};
use thread_per_conn::ThreadPerConn;

fn start(arch: ThreadPerConn, args: ServerArgs) -> RunningServer {
    RunningServer::start(arch, args).expect("the server starts")
}

#[test]
fn eight_sleepers_are_served_at_once() {
    let server = start(ThreadPerConn::default(), ServerArgs::default());
    let (elapsed, replies) = burst(server.addr(), 8, "/sleep/200");
    assert!(replies.iter().all(|r| r.status == 200));
    assert!(elapsed >= Duration::from_millis(200), "took {elapsed:?}");
    // In parallel: about 0.2 s, far below the 1.6 s of one-at-a-time.
    assert!(elapsed < Duration::from_millis(900), "took {elapsed:?}");
    // Each connection had its own thread.
    let names: HashSet<_> = replies
        .iter()
        .filter_map(|r| r.header("x-servelab-thread"))
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("conn-")));
    stop_cleanly(server);
}

#[test]
fn idle_clients_do_not_hold_up_a_newcomer() {
    let server = start(
        ThreadPerConn::default(),
        ServerArgs {
            keep_alive_timeout: Duration::from_secs(3),
            ..ServerArgs::default()
        },
    );
    let _holders = idle_holders(server.addr(), 4);
    let (waited, reply) = timed_get(server.addr(), "/");
    assert_eq!(reply.status, 200);
    assert!(waited < Duration::from_secs(1), "served after {waited:?}");
    // The holders' threads are still there, waiting on their idle connections.
    assert!(thread_figure(&server, "conn", "alive") >= 4);
    stop_cleanly(server);
}

#[test]
fn max_threads_bounds_threads_under_2000_connections() {
    let max = 32;
    let server = start(
        ThreadPerConn {
            max_threads: max,
            ..ThreadPerConn::default()
        },
        ServerArgs::default(),
    );
    let addr = server.addr();
    // 8 client threads open 250 connections each, sending a request on each at once and
    // reading the answers only after all are open: up to 2000 connections at the same time.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut open: Vec<Client> = (0..250)
                    .map(|_| {
                        let mut client = Client::connect(addr);
                        client.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                        client
                    })
                    .collect();
                open.iter_mut()
                    .map(|c| c.read_reply().status)
                    .filter(|s| *s == 200)
                    .count()
            })
        })
        .collect();
    let served: usize = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .sum();
    assert_eq!(served, 2000, "every connection was served");
    // Connection threads serving at once never exceeded the bound. (A thread that has
    // returned its permit may still be exiting for a moment, so the raw thread count can
    // briefly read a few more.)
    let peak = server.context().snapshot()["thread_limit"]["peak"].as_u64();
    assert!(
        peak <= Some(u64::from(max)),
        "peak of {peak:?} connection threads with --max-threads {max}"
    );
    assert!(peak >= Some(2), "the connections were served concurrently");
    assert_eq!(server.context().stats.accepted_total(), 2000);
    stop_cleanly(server);
}

#[test]
fn shutdown_gives_up_after_its_timeout() {
    protocol::testing::cases::shutdown_gives_up_after_its_timeout(&|args| {
        RunningServer::start(thread_per_conn::ThreadPerConn::default(), args)
            .expect("the server starts")
    });
}
