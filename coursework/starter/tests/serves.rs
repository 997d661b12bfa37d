//! The starter serves the protocol as it stands, before a student changes anything: one
//! test starts it in this process and asks for `GET /` over a real socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use server_core::{Architecture, RunningServer, ServerArgs};
use starter::Starter;

#[test]
fn the_starter_serves_get_root() {
    let server = RunningServer::start(Starter::default(), ServerArgs::default())
        .expect("the starter starts on an ephemeral port");
    let mut stream = TcpStream::connect(server.addr()).expect("connect to the starter");
    // Every test socket has timeouts: a server that never answers fails the test in 5 s.
    stream
        .set_read_timeout(Some(Duration::from_millis(5000)))
        .expect("set the read timeout");
    stream
        .set_write_timeout(Some(Duration::from_millis(5000)))
        .expect("set the write timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("send GET /");
    let mut answer = String::new();
    // With `Connection: close` the server closes after its answer: read to the end.
    stream.read_to_string(&mut answer).expect("read the answer");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains(&format!("\r\nServer: servelab-{}\r\n", Starter::NAME)),
        "{answer}"
    );
    // The body names the server: `NAME` in src/lib.rs.
    let body = format!("\r\n\r\nservelab {}\n", Starter::NAME);
    assert!(answer.ends_with(&body), "{answer}");
    server.stop().expect("the starter stops cleanly");
}

/// The starter's binary graded as a student's would be, with the design it has: sequential.
/// Series A (the protocol) must pass; this is what a newcomer's first grade looks like.
#[test]
fn the_starter_binary_passes_series_a_graded_as_sequential() {
    let command = format!("{} --addr {{addr}}", env!("CARGO_BIN_EXE_starter"));
    let mut options = grader::Options::new(grader::Subject::Command(command));
    options.expect = Some(grader::Expect::Sequential);
    options.spec = grader::Spec::default().only("A.");
    let grade = grader::grade(&options).expect("the starter can be graded");
    let failed: Vec<String> = grade
        .checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| format!("{} {}: {}", c.status(), c.name, c.message))
        .collect();
    assert!(
        failed.is_empty(),
        "the starter fails series A:\n{}",
        failed.join("\n")
    );
    assert!(grade.passed());
}
