//! Lab 9: the lecture's shared-state bug in its logical form, and the fix.
//!
//! The lecture's threaded servers kept the client's address in one global variable,
//! `client_addr`, written by the main thread at every accept and read by the workers when
//! they log. Thirty seconds into the service every worker read it, and every worker
//! reported the last client. Rust rejects an unsynchronised global written by one thread
//! and read by others (a data race), but it cannot stop a program from *sharing* the wrong
//! thing correctly: a "current client" behind a Mutex compiles, never races, and is still
//! wrong. The fix is the same as in the lecture's object-oriented version: each worker
//! owns its own client's address.
//!
//! The lab needs no server and no network: the bug is in who reads what, not in sockets.
//! It replays the lecture's timing with a barrier instead of a 30-second hold. Every worker
//! logs only after the main thread has "accepted" all five clients, which is what the
//! lecture's hold guaranteed; by then the shared variable holds the last address, and
//! every worker reads it. The prediction is certain, not statistical: five workers, one
//! address, the last one. servelab's servers do what the fix does: a connection's address
//! lives in its `Conn`, which one thread holds at a time, so logs and the
//! `X-Servelab-Thread` header always name the right client.

use std::net::SocketAddr;
use std::sync::{Arc, Barrier, Mutex};

use super::*;

/// Lab 9's entry in the list of labs ([`super::all`]).
/// The question before running: every worker logs the "current client" 30 s after
/// it started; what does each read, and does Rust's refusal of data races prevent it?
pub(super) const LAB9: Lab = Lab {
    id: 9,
    title: "Shared state: every worker reports the last client",
    sheet: "labs/09-shared-state.md",
    targets: &[],
    run: lab9,
};

/// Lab 9: the shared "current client" and its fix, each serving the lecture's five
/// clients; the check reads the address each worker logged.
///
/// In its HTML report (`--report`): the checks only: the bug is in what the workers log,
/// not in who is served.
pub(super) fn lab9(_env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let clients = lecture_clients();
    let buggy = serve_with_shared_current_client(&clients);
    let fixed = serve_with_per_connection_address(&clients);
    let last = clients.last().map(ToString::to_string).unwrap_or_default();
    // Each log line ends with the address the worker believed it served.
    let reported = |logs: &[String]| {
        logs.iter()
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    let buggy_addrs = reported(&buggy);
    let fixed_addrs = reported(&fixed);
    // Threads end in any order, so the fix is checked as a set: each client exactly once.
    let expected_fixed: Vec<String> = clients.iter().map(ToString::to_string).collect();
    let mut sorted_fixed = fixed_addrs.clone();
    sorted_fixed.sort();
    Ok(vec![
        check(
            "one shared \"current client\" behind a Mutex: each worker logs who it served",
            buggy_addrs.join(", "),
            format!("all five report {last}, the last client accepted"),
            buggy_addrs.iter().all(|a| *a == last) && buggy_addrs.len() == clients.len(),
        ),
        check(
            "the address moved into each worker: each logs who it served",
            fixed_addrs.join(", "),
            "five different addresses, one per client",
            sorted_fixed == expected_fixed,
        ),
    ])
}

/// The five client addresses of the lecture's Figure 4.8: loopback, ports 40429 to 40433,
/// in the order the main thread accepted them; 40433 is the one every worker reported.
pub fn lecture_clients() -> Vec<SocketAddr> {
    (40429..=40433)
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        .collect()
}

/// The bug. The main thread "accepts" each client by storing its address in the shared
/// `current_client` and starts a worker. Each worker serves (here: waits at a barrier
/// until every client has been accepted, as the lecture's 30-second hold guaranteed),
/// then logs who it served by reading `current_client`.
pub fn serve_with_shared_current_client(clients: &[SocketAddr]) -> Vec<String> {
    // Shared by the main thread and every worker: that is the bug.
    let current_client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
    // The workers and the main thread meet here once every client has been accepted: the
    // end of the lecture's 30-second service, without the 30 seconds.
    let service_over = Arc::new(Barrier::new(clients.len() + 1));
    let workers: Vec<_> = clients
        .iter()
        .map(|addr| {
            *current_client.lock().unwrap_or_else(|e| e.into_inner()) = Some(*addr);
            let (current_client, service_over) =
                (Arc::clone(&current_client), Arc::clone(&service_over));
            std::thread::spawn(move || {
                // Blocks until every client has been accepted (the service time).
                service_over.wait();
                let who = *current_client.lock().unwrap_or_else(|e| e.into_inner());
                format!(
                    "finished using service: client {}",
                    who.map(|a| a.to_string()).unwrap_or_default()
                )
            })
        })
        .collect();
    // Blocks until every worker is waiting too: all five clients have been accepted, and
    // the last address is the one stored. Then every worker reads it.
    service_over.wait();
    // Blocks until each worker has written its log line.
    workers
        .into_iter()
        .map(|w| w.join().unwrap_or_default())
        .collect()
}

/// The fix: the address is moved into the worker that serves that client.
pub fn serve_with_per_connection_address(clients: &[SocketAddr]) -> Vec<String> {
    let service_over = Arc::new(Barrier::new(clients.len() + 1));
    let workers: Vec<_> = clients
        .iter()
        .map(|addr| {
            let (addr, service_over) = (*addr, Arc::clone(&service_over));
            std::thread::spawn(move || {
                // Blocks until every client has been accepted, as in the bug: the same
                // timing, but nothing shared to read.
                service_over.wait();
                format!("finished using service: client {addr}")
            })
        })
        .collect();
    // Blocks until every worker is at the barrier, then until each has logged.
    service_over.wait();
    workers
        .into_iter()
        .map(|w| w.join().unwrap_or_default())
        .collect()
}
