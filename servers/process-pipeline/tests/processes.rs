//! What handler processes imply: they are processes of their own, a handler killed in the
//! middle of a request costs only that request, and none outlives the server, whatever
//! signal ends it.

use std::net::SocketAddr;
use std::time::Duration;

use process_pipeline::ProcessPipeline;
use server_core::stats::ProcessSnapshot;
use server_core::{RunningServer, ServerArgs};
use testkit::{get, stop_cleanly, timed_get, wait_until, Client};

fn start(processes: u32) -> RunningServer {
    RunningServer::start(
        ProcessPipeline {
            handler_processes: Some(processes),
            ..ProcessPipeline::default()
        },
        ServerArgs::default(),
    )
    .expect("the server starts")
}

fn processes(server: &RunningServer) -> Vec<ProcessSnapshot> {
    server.context().snapshot().processes
}

/// Whether process `pid` is running (a zombie waiting to be reaped is not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

#[test]
fn every_handler_is_a_process_of_its_own() {
    let server = start(2);
    let procs = processes(&server);
    assert_eq!(procs.len(), 2, "{procs:?}");
    let me = std::process::id();
    for p in &procs {
        assert!(p.pid != 0 && p.pid != me, "{p:?}");
        assert!(running(p.pid), "{p:?}");
        let name = std::fs::read_to_string(format!("/proc/{}/comm", p.pid)).expect("its name");
        assert_eq!(name.trim(), p.name);
    }
    assert_ne!(procs[0].pid, procs[1].pid);
    // Requests are answered by the processes, and /stats (which only the server knows)
    // by the server.
    let reply = get(server.addr(), "/factor/91");
    assert_eq!(reply.text(), "91 = 7 * 13\n");
    assert!(reply
        .header("x-servelab-thread")
        .is_some_and(|t| t.starts_with("handler-process-")));
    assert_eq!(get(server.addr(), "/stats").status, 200);
    let handled: u64 = processes(&server).iter().map(|p| p.handled).sum();
    assert!(handled >= 2, "{:?}", processes(&server));
    stop_cleanly(server);
    for p in &procs {
        assert!(!running(p.pid), "handler {p:?} outlived the server");
    }
}

#[test]
fn a_handler_killed_mid_request_costs_only_that_request() {
    let _timing = testkit::timing();
    let server = start(2);
    let addr = server.addr();
    // One client's request keeps a handler process busy for three seconds...
    let victim = std::thread::spawn(move || {
        let mut client = Client::connect(addr);
        let began = std::time::Instant::now();
        let reply = client.get("/sleep/3000");
        (reply, began.elapsed(), client)
    });
    wait_until("a handler process is busy with the request", || {
        processes(&server).iter().any(|p| p.busy)
    });
    let busy = processes(&server)
        .into_iter()
        .find(|p| p.busy)
        .expect("a busy process");
    // ... and is killed in the middle of it.
    // A process this test's server started.
    testkit::kill(busy.pid, libc::SIGKILL);
    let (reply, waited, mut client) = victim.join().expect("the victim's thread");
    // That request gets an honest 500 at once, not after its three seconds...
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(reply.text().contains("died"), "{}", reply.text());
    assert!(waited < Duration::from_secs(2), "answered after {waited:?}");
    // ... on a connection that goes on working.
    assert_eq!(client.get("/").status, 200);
    // Everyone else is served as before, and the process was replaced.
    for _ in 0..20 {
        let (waited, reply) = timed_get(addr, "/factor/91");
        assert_eq!(reply.status, 200);
        assert!(waited < Duration::from_secs(1));
    }
    let after = processes(&server);
    let replaced = after
        .iter()
        .find(|p| p.name == busy.name)
        .expect("the same slot");
    assert_eq!(replaced.restarts, 1, "{after:?}");
    assert_ne!(replaced.pid, busy.pid);
    assert!(running(replaced.pid));
    assert!(!running(busy.pid));
    assert_eq!(after.iter().map(|p| p.restarts).sum::<u64>(), 1);
    stop_cleanly(server);
}

#[test]
fn a_handler_that_died_while_idle_is_replaced_before_its_next_request() {
    let server = start(1);
    let before = processes(&server)[0].clone();
    // A process this test's server started.
    testkit::kill(before.pid, libc::SIGKILL);
    wait_until("the process is dead", || !running(before.pid));
    // No request was in it: the next one goes to its replacement and is served.
    assert_eq!(get(server.addr(), "/factor/91").status, 200);
    let after = processes(&server)[0].clone();
    assert_eq!(after.restarts, 1);
    assert_ne!(after.pid, before.pid);
    stop_cleanly(server);
}

fn pids_of(addr: SocketAddr) -> Vec<u32> {
    let stats: serde_json::Value = serde_json::from_slice(&get(addr, "/stats").body).expect("JSON");
    stats["processes"]
        .as_array()
        .expect("the processes")
        .iter()
        .map(|p| p["pid"].as_u64().expect("a pid") as u32)
        .collect()
}

#[test]
fn no_handler_outlives_the_server_whatever_signal_ends_it() {
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let server = testkit::binary::Binary::start(
            env!("CARGO_BIN_EXE_process-pipeline"),
            &["--handler-processes", "2", "--shutdown-timeout", "2s"],
        );
        let pids = pids_of(server.addr);
        assert_eq!(pids.len(), 2);
        assert!(pids.iter().all(|p| running(*p)));
        server.signal(signal);
        let (status, log) = server.wait(Duration::from_secs(10));
        if signal == libc::SIGTERM {
            assert!(status.success(), "{status:?}: {log:#?}");
        }
        wait_until("every handler process has ended", || {
            pids.iter().all(|p| !running(*p))
        });
    }
}
