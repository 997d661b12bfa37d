//! The benchmark driver against real servers: every request of a batch is answered, and the
//! clients hang up so that one-connection-per-thread servers get through the whole batch.

use std::time::Duration;

use benches::{drive, Workload};
use protocol::Status;

#[test]
fn every_architecture_serves_a_whole_batch_from_many_clients() {
    for arch in architectures::ALL {
        if let Err(why) = arch.available() {
            // Only where the kernel forbids it (io_uring in a default Docker container).
            eprintln!("{}: skipped: {why}", arch.name);
            continue;
        }
        let args = server_core::ServerArgs {
            shutdown_timeout: Duration::from_secs(2),
            ..server_core::ServerArgs::default()
        };
        let server = arch.start(&[], args).expect("server starts");
        let arch = arch.name;
        // 16 clients share 200 requests of the mixed workload; with only one connection
        // served at a time (single), this ends only if clients hang up when done.
        let elapsed = drive(server.addr(), 16, 200, Workload::Mixed);
        // The server counts a response after writing it, so read the count after stopping
        // it (which joins its threads), not the moment the last response arrives.
        let ctx = server.context().clone();
        server.stop().expect("server stops");
        let ok = ctx.snapshot().responses_with(Status::Ok.code());
        assert_eq!(ok, 200, "{arch}: every request answered with 200");
        // 20 of the 200 are /sleep/5: even all 16 clients at once need 10 ms for them.
        assert!(elapsed >= Duration::from_millis(10), "{arch}: {elapsed:?}");
    }
}

#[test]
fn fewer_requests_than_clients_is_fine() {
    let server = architectures::find("single")
        .expect("registered")
        .start(&[], server_core::ServerArgs::default())
        .expect("server starts");
    drive(server.addr(), 8, 3, Workload::Hello);
    let ctx = server.context().clone();
    server.stop().expect("server stops");
    assert_eq!(ctx.snapshot().responses_with(Status::Ok.code()), 3);
}

#[test]
fn a_server_that_is_not_there_fails_the_benchmark_instead_of_hanging_it() {
    // A port nothing listens on: every client's connect fails. The driver must report
    // that with a panic (criterion shows it), not leave the clients waiting at the barrier.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(|| drive(addr, 4, 10, Workload::Hello));
        let _ = done.send(outcome.is_err());
    });
    // Waits for the driver to give up; a hang fails here instead of stalling the suite.
    let panicked = finished
        .recv_timeout(Duration::from_secs(10))
        .expect("the driver returned within 10 s");
    assert!(panicked, "the driver reported the failed connections");
}
