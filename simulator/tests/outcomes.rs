//! Outcome classification against tiny fake servers that refuse, reset, stall, answer
//! garbage or answer 503, plus servers that frame their responses differently.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use loadgen::scenario::{DeadlineClock, Engine, Scenario};
use loadgen::Outcome;
use simulator::measure as run;
use simulator::{target, Report};

mod common;

const IO: Duration = Duration::from_secs(5);

fn scenario(clients: usize, timeout_ms: u64) -> Scenario {
    Scenario::get(
        clients,
        "/",
        Duration::from_millis(timeout_ms),
        Duration::ZERO,
    )
}

/// Sets the fake server's socket timeouts, then waits for a whole request head (at most
/// `IO` for each byte).
fn read_head(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(IO));
    let _ = stream.set_write_timeout(Some(IO));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
}

/// A fake server: accepts `connections` connections, reads each request head, and lets
/// `answer` do what it likes with the stream. Returns its address.
fn fake(connections: usize, answer: fn(&mut TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for _ in 0..connections {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            read_head(&mut stream);
            answer(&mut stream);
        }
    });
    addr
}

fn run(engine: Engine, addr: SocketAddr, scenario: &Scenario) -> Report {
    let scenario = scenario.clone().on(engine);
    run::run(addr, &addr.to_string(), &scenario, None, false).expect("the run completes")
}

fn only(report: &Report, outcome: Outcome) {
    assert_eq!(
        report.summary.count(outcome),
        report.summary.clients,
        "{}",
        report.to_text()
    );
    assert!(report.clients.iter().all(|c| c.outcome == outcome));
}

fn refused(engine: Engine) {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    // The listener is dropped: nothing listens there now.
    only(&run(engine, addr, &scenario(2, 1000)), Outcome::Refused);
    assert!(matches!(
        target::probe(addr, &addr.to_string()),
        Err(simulator::SimError::NothingListening { .. })
    ));
}

fn reset(engine: Engine) {
    let addr = fake(2, |stream| {
        // Linger 0: closing sends a reset instead of an orderly close.
        let _ = socket2::SockRef::from(&*stream).set_linger(Some(Duration::ZERO));
    });
    only(&run(engine, addr, &scenario(2, 2000)), Outcome::Reset);
}

fn closed_without_an_answer_is_a_reset(engine: Engine) {
    let addr = fake(2, |_| {});
    only(&run(engine, addr, &scenario(2, 2000)), Outcome::Reset);
}

fn stall(engine: Engine) {
    let addr = fake(2, |stream| {
        // Never answers; waits until the client gives up and closes.
        let _ = stream.read(&mut [0u8; 16]);
    });
    let began = Instant::now();
    let report = run(engine, addr, &scenario(2, 300));
    only(&report, Outcome::ServiceTimeout);
    assert!(report.clients.iter().all(|c| c.connect_us.is_some()));
    // Never past the deadline (plus scheduling slack).
    assert!(
        began.elapsed() < Duration::from_millis(1300),
        "took {:?}",
        began.elapsed()
    );
    assert_eq!(report.latency_us.over_deadline, 2);
}

fn connect_timeout_on_a_full_backlog(engine: Engine) {
    // A listener with backlog 0 that never accepts: Linux keeps one handshake-completed
    // connection in its queue and then drops further SYNs.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    socket.listen(0).expect("listen");
    let addr = socket
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet");
    let filler: Vec<_> = (0..2)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok())
        .collect();
    assert!(!filler.is_empty());
    let report = run(engine, addr, &scenario(2, 400));
    only(&report, Outcome::ConnectTimeout);
    assert!(report.clients.iter().all(|c| c.connect_us.is_none()));
    drop(socket);
}

fn garbage(engine: Engine) {
    let addr = fake(2, |stream| {
        let _ = stream.write_all(b"HELLO THERE\r\n\r\n");
    });
    only(&run(engine, addr, &scenario(2, 2000)), Outcome::BadResponse);
}

fn service_unavailable(engine: Engine) {
    let addr = fake(2, |stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 4\r\n\r\nbusy",
        );
    });
    let report = run(engine, addr, &scenario(2, 2000));
    only(&report, Outcome::Rejected);
    assert!(report.clients.iter().all(|c| c.status == Some(503)));
}

fn chunked_and_close_delimited_responses_are_served(engine: Engine) {
    let chunked = fake(2, |stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    });
    only(&run(engine, chunked, &scenario(2, 2000)), Outcome::Served);
    let until_close = fake(2, |stream| {
        let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello until close");
    });
    only(
        &run(engine, until_close, &scenario(2, 2000)),
        Outcome::Served,
    );
}

fn a_load_run_against_an_http_1_0_server_reconnects_instead_of_failing(engine: Engine) {
    // HTTP/1.0 without keep-alive: each answer ends its connection, unannounced.
    let addr = fake(10_000, |stream| {
        let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    let scenario = Scenario {
        load: loadgen::Load::Duration(Duration::from_millis(300)),
        ..scenario(2, 2000)
    };
    let report = run(engine, addr, &scenario);
    let requests = report.requests.clone().expect("a load run counts requests");
    assert_eq!(requests.reset, 0, "{}", report.to_text());
    assert!(requests.served >= 4, "{}", report.to_text());
    assert_eq!(report.summary.served, 2, "{}", report.to_text());
}

fn json_report_has_the_documented_shape(engine: Engine) {
    let addr = fake(3, |stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Servelab-Thread: worker-7\r\n\r\nok",
        );
    });
    let report = run(engine, addr, &scenario(3, 2000));
    let json = serde_json::to_value(&report).expect("JSON");
    for field in [
        "clients",
        "served",
        "connect_timeout",
        "service_timeout",
        "refused",
        "reset",
        "rejected",
        "bad_response",
    ] {
        assert!(json["summary"][field].is_u64(), "summary.{field} in {json}");
    }
    assert_eq!(json["summary"]["served"], 3);
    for field in ["p50", "p90", "p99", "p99_9", "max", "over_deadline"] {
        assert!(json["latency_us"][field].is_u64(), "latency_us.{field}");
    }
    assert_eq!(json["clients"].as_array().map(Vec::len), Some(3));
    assert_eq!(json["clients"][0]["server_thread"], "worker-7");
    assert_eq!(json["clients"][0]["outcome"], "served");
}

#[test]
fn the_cli_says_one_sentence_when_nothing_listens() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args(["run", "--target", &addr.to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the simulator");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        format!("simulator: nothing is listening on {addr} — is the server running?")
    );
}

/// A fake server that answers each request `delay` after the request arrived. (Not after
/// the accept: the kernel completes a handshake before the client's engine sees it, so a
/// delay counted from the accept could end before the client's own clock says it should.)
fn answers_after(connections: usize, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let handlers: Vec<_> = (0..connections)
            .filter_map(|_| listener.accept().ok())
            .map(|(mut stream, _)| {
                std::thread::spawn(move || {
                    read_head(&mut stream);
                    std::thread::sleep(delay);
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    let _ = stream.read(&mut [0u8; 64]);
                })
            })
            .collect();
        for handler in handlers {
            let _ = handler.join();
        }
    });
    addr
}

fn an_answer_just_after_the_deadline_is_late_on_both_clocks(engine: Engine) {
    // The answer comes about half a millisecond after each client's deadline: a read
    // timeout that the kernel rounds up would still deliver it. It must never count as
    // served, and the distribution must say the same as the ledger.
    for clock in [DeadlineClock::FromStart, DeadlineClock::PerCall] {
        let timeout = Duration::from_millis(200);
        let addr = answers_after(4, timeout + Duration::from_micros(500));
        let report = run(engine, addr, &scenario(4, 200).with_clock(clock));
        only(&report, Outcome::ServiceTimeout);
        assert_eq!(report.latency_us.over_deadline, 4, "{clock:?}");
        for client in &report.clients {
            assert!(
                client.waited_us.is_none_or(|w| w >= 200_000),
                "{clock:?}: {client:?}"
            );
        }
    }
}

fn an_answer_just_before_the_deadline_is_served(engine: Engine) {
    let addr = answers_after(3, Duration::from_millis(100));
    let report = run(engine, addr, &scenario(3, 300));
    only(&report, Outcome::Served);
    assert_eq!(report.latency_us.over_deadline, 0);
    assert!(report
        .clients
        .iter()
        .all(|c| c.waited_us.is_some_and(|w| (100_000..300_000).contains(&w))));
}

#[test]
fn the_deadline_rule_is_strict() {
    use loadgen::outcome::in_time;
    assert!(in_time(14_999_999, 15_000_000));
    assert!(!in_time(15_000_000, 15_000_000));
    assert!(!in_time(15_002_387, 15_000_000));
}

#[test]
fn a_client_thread_the_system_refuses_releases_the_others() {
    // The third thread cannot be started. Before the fix the first two waited forever at
    // their start barrier; now the run is called off and returns an error at once.
    let addr = fake(0, |_| {});
    let mut started = 0;
    let began = Instant::now();
    let result = run::run_with(addr, "fake", &scenario(5, 2000), None, &mut |name, job| {
        started += 1;
        if started == 3 {
            return Err(std::io::Error::other("no more threads"));
        }
        std::thread::Builder::new().name(name).spawn(job)
    });
    let error = result.expect_err("the run fails");
    assert!(
        error.to_string().contains("refused to start client 3 of 5"),
        "{error}"
    );
    assert!(
        began.elapsed() < IO,
        "returned only after {:?}",
        began.elapsed()
    );
}

#[test]
fn csv_quotes_what_needs_quoting() {
    let mut client = loadgen::record::ClientRecord::new(1);
    client.outcome = Outcome::Reset;
    client.error = Some("reset, then \"closed\"\nfor good".into());
    let report = Report::new(
        "x",
        None,
        &scenario(1, 1000),
        loadgen::record::Finished::from_records(vec![client]),
    );
    let csv = report.to_csv();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().expect("a header").clone();
    let error_column = headers
        .iter()
        .position(|h| h == "error")
        .expect("an error column");
    let row = reader
        .records()
        .next()
        .expect("one row")
        .expect("a valid row");
    assert_eq!(&row[error_column], "reset, then \"closed\"\nfor good");
    assert_eq!(&row[1], "reset");
}

fn a_load_run_without_timeouts_has_no_sample_at_the_deadline(engine: Engine) {
    let addr = answers_after(64, Duration::ZERO);
    let scenario = Scenario {
        load: loadgen::Load::Duration(Duration::from_millis(100)),
        ..scenario(2, 3000)
    };
    let report = run(engine, addr, &scenario);
    assert_eq!(report.latency_us.over_deadline, 0);
    assert!(
        report.latency_us.max < 3_000_000,
        "max {} µs is the deadline, not a measurement",
        report.latency_us.max
    );
}

on_both_engines!(
    a_load_run_against_an_http_1_0_server_reconnects_instead_of_failing,
    refused,
    reset,
    closed_without_an_answer_is_a_reset,
    stall,
    connect_timeout_on_a_full_backlog,
    garbage,
    service_unavailable,
    chunked_and_close_delimited_responses_are_served,
    json_report_has_the_documented_shape,
    an_answer_just_after_the_deadline_is_late_on_both_clocks,
    an_answer_just_before_the_deadline_is_served,
    a_load_run_without_timeouts_has_no_sample_at_the_deadline,
);
