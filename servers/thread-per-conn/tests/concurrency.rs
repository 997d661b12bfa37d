//! What thread-per-connection implies, measured with wide margins: every client at once,
//! but never more than --max-threads threads.

use std::collections::HashSet;
use std::time::Duration;

use server_core::{RunningServer, ServerArgs};
use testkit::{burst, idle_holders, stop_cleanly, threads, timed_get, Client};
use thread_per_conn::ThreadPerConn;

fn start(arch: ThreadPerConn, args: ServerArgs) -> RunningServer {
    RunningServer::start(arch, args).expect("the server starts")
}

#[test]
fn eight_sleepers_are_served_at_once() {
    let _timing = testkit::timing();
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
    let _timing = testkit::timing();
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
    assert!(threads(&server, "conn").alive >= 4);
    stop_cleanly(server);
}

#[test]
fn max_threads_bounds_threads_under_2000_connections() {
    let _timing = testkit::timing();
    // Every connection costs this process two descriptors (the client's end and the
    // server's). With a soft limit of 1024 the test raises it, up to the hard limit, and
    // uses fewer connections if it must.
    let limit = testkit::raise_fd_limit(4400);
    let per_client = usize::try_from(limit.saturating_sub(300) / 2 / 8)
        .unwrap_or(250)
        .min(250);
    let total = per_client * 8;
    let max = 32;
    let server = start(
        ThreadPerConn {
            max_threads: max,
            ..ThreadPerConn::default()
        },
        ServerArgs::default(),
    );
    let addr = server.addr();
    // 8 client threads open 250 connections each (fewer if the descriptor limit says so),
    // sending a request on each at once and reading the answers only after all are open: up
    // to 2000 connections at the same time.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut open: Vec<Client> = (0..per_client)
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
    assert_eq!(served, total, "every connection was served");
    // Connection threads serving at once never exceeded the bound. (A thread that has
    // returned its permit may still be exiting for a moment, so the raw thread count can
    // briefly read a few more.)
    let peak = server
        .context()
        .snapshot()
        .limit("threads")
        .map(|l| l.peak)
        .expect("a thread limit");
    assert!(
        peak <= u64::from(max),
        "peak of {peak} connection threads with --max-threads {max}"
    );
    assert!(peak >= 2, "the connections were served concurrently");
    assert_eq!(server.context().stats.accepted_total(), total as u64);
    stop_cleanly(server);
}

#[test]
fn shutdown_gives_up_after_its_timeout() {
    testkit::shutdown_gives_up_after_its_timeout(&|args| {
        RunningServer::start(thread_per_conn::ThreadPerConn::default(), args)
            .expect("the server starts")
    });
}

#[test]
fn an_announced_body_costs_only_what_arrives() {
    let _timing = testkit::timing();
    // 200 clients each announce a 1 MB body and send 3 bytes of it. Reserving what they
    // announce would cost 200 MB; the server must hold only what arrived.
    let clients = usize::try_from(testkit::raise_fd_limit(1024).saturating_sub(200) / 2)
        .unwrap_or(200)
        .min(200);
    let server = start(ThreadPerConn::default(), ServerArgs::default());
    let before = testkit::rss_bytes();
    let _uploads: Vec<Client> = (0..clients)
        .map(|_| {
            let mut client = Client::connect(server.addr());
            client.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\nabc");
            client
        })
        .collect();
    testkit::wait_until("every upload is being received", || {
        server.context().snapshot().connections.receiving == clients as u64
    });
    let grown = testkit::rss_bytes().saturating_sub(before);
    assert!(
        grown < 64 * 1024 * 1024,
        "{clients} announced uploads grew memory by {} MiB",
        grown / (1024 * 1024)
    );
}

/// A thread that holds the connection notices when the client leaves in the middle of a
/// long computation and stops it (between chunks of work), rather than computing seconds
/// for nobody.
#[test]
fn a_computation_stops_when_its_client_leaves() {
    testkit::a_computation_stops_when_its_client_leaves(&|args| {
        start(ThreadPerConn::default(), args)
    });
}
