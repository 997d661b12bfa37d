//! What the sequential model implies, measured with wide margins: one client at a time.

use std::time::Duration;

use server_core::{RunningServer, ServerArgs};
use single::Single;
use testkit::{burst, newcomer_wait_behind_idle_holders, short_keep_alive, stop_cleanly};

fn start(args: ServerArgs) -> RunningServer {
    RunningServer::start(Single::default(), args).expect("the server starts")
}

#[test]
fn eight_sleepers_are_served_one_after_another() {
    let _timing = testkit::timing();
    let server = start(ServerArgs::default());
    let (elapsed, replies) = burst(server.addr(), 8, "/sleep/200");
    assert!(replies.iter().all(|r| r.status == 200));
    // Eight 200 ms sleeps on one thread cannot take less than 1.6 s.
    assert!(elapsed >= Duration::from_millis(1590), "took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    stop_cleanly(server);
}

#[test]
fn one_idle_client_holds_up_everyone_until_the_keep_alive_timeout() {
    let _timing = testkit::timing();
    let server = start(short_keep_alive());
    // The newcomer is accepted only when the idle connection times out.
    let waited = newcomer_wait_behind_idle_holders(&server, 1, || true);
    assert!(
        waited >= Duration::from_millis(250),
        "served after only {waited:?}"
    );
    stop_cleanly(server);
}

#[test]
fn every_response_names_the_one_thread() {
    let _timing = testkit::timing();
    let server = start(ServerArgs::default());
    let (_, replies) = burst(server.addr(), 4, "/");
    assert!(replies
        .iter()
        .all(|r| r.header("x-servelab-thread") == Some("main")));
    stop_cleanly(server);
}
