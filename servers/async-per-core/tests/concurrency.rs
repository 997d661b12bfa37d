//! What one runtime per core implies, measured with wide margins: the kernel spreads
//! connections over the cores and a connection stays on its core; a computation on a core's
//! thread stalls that core's connections and no other core's; offloaded, it stalls none;
//! idle connections cost a task and no thread; `/stats` shows each core.
//!
//! Which core a connection lands on is the kernel's hash, so the tests do not guess: each
//! opens keep-alive connections and asks `GET /` on them until it has one on each core it
//! needs, reading the core from `X-Servelab-Thread` (the core's thread answered).

use std::time::{Duration, Instant};

use async_per_core::AsyncPerCore;
use async_work_stealing::{Offload, Sleep};
use server_core::{RunningServer, ServerArgs};
use testkit::{burst, idle_holders, stop_cleanly, threads, wait_until, Client};

/// A prime: factorising it means trial division up to its square root, about 5 million
/// divisions, every time.
const PRIME: u64 = 100_000_000_000_031;

fn start(arch: AsyncPerCore) -> RunningServer {
    RunningServer::start(arch, ServerArgs::default()).expect("the server starts")
}

fn two_cores(offload: Offload) -> AsyncPerCore {
    AsyncPerCore {
        cores: Some(2),
        offload,
        ..AsyncPerCore::default()
    }
}

/// The core that answers on `client` (it keeps its connection's core for good).
fn core_of(client: &mut Client) -> String {
    let reply = client.get("/");
    assert_eq!(reply.status, 200);
    reply
        .header("x-servelab-thread")
        .expect("the thread that answered")
        .to_owned()
}

/// Keep-alive connections on each of `wanted` cores, in that order (the kernel chooses;
/// connections on other cores are closed). Gives up after 200 tries, which all landing on
/// the wrong cores would take a probability of 2^-200 with two cores.
fn clients_on(server: &RunningServer, wanted: &[&str]) -> Vec<Client> {
    let mut found: Vec<Option<Client>> = wanted.iter().map(|_| None).collect();
    for _ in 0..200 {
        let mut client = Client::connect(server.addr());
        let core = core_of(&mut client);
        if let Some(slot) = wanted
            .iter()
            .zip(found.iter_mut())
            .find(|(w, f)| **w == core && f.is_none())
            .map(|(_, f)| f)
        {
            *slot = Some(client);
        }
        if found.iter().all(Option::is_some) {
            return found.into_iter().flatten().collect();
        }
    }
    panic!("no connection landed on each of {wanted:?} in 200 tries");
}

#[test]
fn the_kernel_spreads_connections_and_each_stays_on_its_core() {
    let server = start(two_cores(Offload::On));
    let mut clients: Vec<Client> = (0..32).map(|_| Client::connect(server.addr())).collect();
    for client in &mut clients {
        let first = core_of(client);
        for _ in 0..3 {
            assert_eq!(core_of(client), first, "a connection never moves");
        }
    }
    let snapshot = server.context().snapshot();
    let accepted: Vec<u64> = snapshot.runtimes.iter().map(|r| r.accepted).collect();
    assert_eq!(accepted.iter().sum::<u64>(), 32, "{accepted:?}");
    // Both got some: all 32 on one core has a probability of 2^-31.
    assert!(accepted.iter().all(|&n| n > 0), "{accepted:?}");
    let requests: u64 = snapshot.runtimes.iter().map(|r| r.requests).sum();
    assert_eq!(requests, 32 * 4);
    drop(clients);
    stop_cleanly(server);
}

/// How long a `GET /` takes on a connection of the core that computes, and on one of the
/// other core, while a factorisation of `PRIME` runs on core-1's connection; and how much
/// of the factorisation was still to come when they were sent.
fn hellos_during_a_factorisation(server: &RunningServer) -> (Duration, Duration, Duration) {
    let mut clients = clients_on(server, &["core-1", "core-1", "core-2"]);
    let other = clients.pop().expect("a client on core-2");
    let same = clients.pop().expect("a second client on core-1");
    let mut heavy = clients.pop().expect("a client on core-1");
    let began = Instant::now();
    heavy.send(format!("GET /factor/{PRIME} HTTP/1.1\r\nHost: t\r\n\r\n"));
    let ctx = server.context();
    wait_until("the factorisation has started", || {
        ctx.stats.in_flight() == 1
    });
    let sent = began.elapsed();
    let timed = |mut client: Client| {
        let asked = Instant::now();
        assert_eq!(client.get("/").status, 200);
        asked.elapsed()
    };
    // The other core first: it must answer at once, while core-1 is still computing.
    let on_other = timed(other);
    let on_same = timed(same);
    assert_eq!(heavy.read_reply().status, 200);
    (on_same, on_other, began.elapsed().saturating_sub(sent))
}

#[test]
fn a_computation_on_a_core_stalls_its_connections_and_no_others() {
    let _timing = testkit::timing();
    let server = start(two_cores(Offload::Off));
    let (on_same, on_other, rest) = hellos_during_a_factorisation(&server);
    assert!(
        on_same >= rest / 2,
        "GET / on the computing core took {on_same:?}, with {rest:?} of computation to go"
    );
    assert!(
        on_other < rest / 2,
        "GET / on the other core took {on_other:?}, with {rest:?} of computation to go"
    );
    stop_cleanly(server);
}

#[test]
fn an_offloaded_computation_stalls_no_connection() {
    let _timing = testkit::timing();
    let server = start(two_cores(Offload::On));
    let (on_same, on_other, rest) = hellos_during_a_factorisation(&server);
    assert!(
        on_same < rest / 2 && on_other < rest / 2,
        "GET / took {on_same:?} on the core of the computation and {on_other:?} on the other, with {rest:?} of computation to go"
    );
    let snapshot = server.context().snapshot();
    let core1 = &snapshot.runtimes[0];
    assert_eq!((core1.name.as_str(), core1.offloaded), ("core-1", 1));
    assert_eq!(snapshot.runtimes[1].offloaded, 0);
    stop_cleanly(server);
}

#[test]
fn blocking_sleeps_hold_the_core() {
    let _timing = testkit::timing();
    // `--sleep block` on one core: each /sleep/100 holds the core's thread, so four of them
    // take turns; as timers they would all end together after 100 ms.
    let server = start(AsyncPerCore {
        cores: Some(1),
        sleep: Sleep::Block,
        ..AsyncPerCore::default()
    });
    let (elapsed, replies) = burst(server.addr(), 4, "/sleep/100");
    assert!(replies.iter().all(|r| r.status == 200));
    assert!(elapsed >= Duration::from_millis(400), "took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    stop_cleanly(server);
}

#[test]
fn idle_connections_cost_a_task_and_no_thread() {
    let _timing = testkit::timing();
    let server = start(AsyncPerCore {
        cores: Some(1),
        ..AsyncPerCore::default()
    });
    let before = threads(&server, "core").alive + threads(&server, "blocking").alive;
    let _holders = idle_holders(server.addr(), 200);
    let began = Instant::now();
    let mut newcomer = Client::connect(server.addr());
    assert_eq!(newcomer.get("/").status, 200);
    assert!(began.elapsed() < Duration::from_secs(1));
    let snapshot = server.context().snapshot();
    assert_eq!(snapshot.runtimes[0].connections, 201);
    // A task per connection (the accept loop is the core's `block_on` itself).
    assert!(snapshot.runtimes[0].alive_tasks >= 201);
    let after = threads(&server, "core").alive + threads(&server, "blocking").alive;
    assert_eq!(after, before, "no thread per connection");
    stop_cleanly(server);
}

#[test]
fn stats_describe_each_core() {
    let server = start(AsyncPerCore {
        cores: Some(3),
        blocking_threads: 2,
        ..AsyncPerCore::default()
    });
    burst(server.addr(), 12, "/");
    let snapshot = server.context().snapshot();
    let names: Vec<&str> = snapshot.runtimes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["core-1", "core-2", "core-3"]);
    assert!(snapshot.runtimes.iter().all(|r| r.workers == 1));
    assert_eq!(
        snapshot.runtimes.iter().map(|r| r.accepted).sum::<u64>(),
        12
    );
    assert_eq!(snapshot.config.number("cores"), Some(3));
    assert_eq!(threads(&server, "core").alive, 3);
    assert_eq!(threads(&server, "blocking").alive, 6, "two per core");
    assert!(snapshot.capacity.concurrent.is_none() && snapshot.capacity.per_client);
    stop_cleanly(server);
}

#[test]
fn shutdown_gives_up_after_its_timeout() {
    testkit::shutdown_gives_up_after_its_timeout(&|args| {
        RunningServer::start(AsyncPerCore::default(), args).expect("the server starts")
    });
}

#[test]
fn a_computation_stops_when_its_client_leaves() {
    testkit::a_computation_stops_when_its_client_leaves(&|args| {
        RunningServer::start(AsyncPerCore::default(), args).expect("the server starts")
    });
}
