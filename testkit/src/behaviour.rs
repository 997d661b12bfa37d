//! The behaviour list: what every architecture must do, whatever its threading model.
//!
//! Every case starts its own server in-process on `127.0.0.1:0` and talks raw bytes to it
//! over real sockets: every route, every bad-input status, keep-alive, pipelining,
//! HTTP/1.0, timeouts, and shutdown. A server crate joins the list with one line in its
//! `tests/behaviour.rs`:
//!
//! ```ignore
//! testkit::behaviour_tests!(|args| RunningServer::start(MyArch::default(), args).unwrap());
//! ```
//!
//! The cases are written once, inside the `cases!` invocation below, which makes each one
//! a function in [`cases`] *and* an entry of the `behaviour_tests!` macro. So a new case
//! cannot be forgotten in the list: there is no separate list to forget it in.

use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use server_core::{RunningServer, ServerArgs};

use crate::harness::*;

/// Defines the cases (each `fn name(start) { ... }`) as functions of `pub mod cases`, and
/// the `behaviour_tests!` macro that declares each of them as a `#[test]`.
macro_rules! cases {
    ($( $(#[$meta:meta])* fn $name:ident($start:ident) $body:block )*) => {
        /// The behaviour list. Each case takes the function that starts the server under test.
        pub mod cases {
            use super::*;
            $( $(#[$meta])* pub fn $name($start: Start) $body )*
        }

        /// Declares the whole behaviour list as `#[test]` functions for one architecture.
        /// `$server` is an expression of type `Fn(ServerArgs) -> RunningServer`.
        #[macro_export]
        macro_rules! behaviour_tests {
            ($server:expr) => {
                $(
                    #[test]
                    fn $name() {
                        $crate::cases::$name(&$server)
                    }
                )*
            };
        }
    };
}

fn arch(server: &RunningServer) -> &'static str {
    server.context().arch
}

/// Sends `request` and asserts that the server answers `status` and then closes.
fn rejected(start: Start, settings: ServerArgs, request: &[u8], status: u16) -> Reply {
    let server = start(settings);
    let mut client = Client::connect(server.addr());
    client.send(request);
    let reply = client.read_reply();
    assert_eq!(reply.status, status, "{}", reply.text());
    assert!(
        reply.closes(),
        "an error that breaks framing closes the connection"
    );
    assert_eq!(reply.text().lines().count(), 1, "a one-line reason");
    client.expect_closed();
    drop(client);
    // The server is still fine for everyone else.
    assert_eq!(get(server.addr(), "/").status, 200);
    stop_cleanly(server);
    reply
}

fn short_read_timeout() -> ServerArgs {
    ServerArgs {
        read_timeout: Duration::from_millis(150),
        ..args()
    }
}

/// Sends `partial`, then asserts a 408 and a close no earlier than the read timeout.
fn times_out(start: Start, partial: &str) {
    let _timing = timing();
    let server = start(short_read_timeout());
    let mut client = Client::connect(server.addr());
    let began = Instant::now();
    client.send(partial);
    let reply = client.read_reply();
    assert_eq!(reply.status, 408);
    assert!(
        began.elapsed() >= Duration::from_millis(100),
        "408 after only {:?}",
        began.elapsed()
    );
    client.expect_closed();
    drop(client);
    assert_eq!(get(server.addr(), "/").status, 200);
    stop_cleanly(server);
}

cases! {
    fn root(start) {
        let server = start(args());
        let reply = get(server.addr(), "/");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), format!("servelab {}\n", arch(&server)));
        assert_eq!(
            reply.header("server"),
            Some(format!("servelab-{}", arch(&server)).as_str())
        );
        assert!(reply.header("date").is_some_and(|d| d.ends_with(" GMT")));
        assert_eq!(
            reply.header("content-length").map(str::to_owned),
            Some(reply.body.len().to_string())
        );
        assert!(reply.header("x-servelab-thread").is_some());
        stop_cleanly(server);
    }

    fn head(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        client.send("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
        let reply = client.read_head_reply();
        assert_eq!(reply.status, 200);
        let expected = format!("servelab {}\n", arch(&server));
        assert_eq!(
            reply.header("content-length"),
            Some(expected.len().to_string().as_str())
        );
        // No body was sent: the next response on the connection starts right away.
        let next = client.get("/");
        assert_eq!(next.text(), expected);
        stop_cleanly(server);
    }

    fn echo(start) {
        let server = start(args());
        let uuid = "5f0c8e36-52a4-4b0b-9c53-1f0e5e0c1d2a";
        let mut client = Client::connect(server.addr());
        client.send(format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 36\r\n\r\n{uuid}"
        ));
        let reply = client.read_reply();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), uuid);
        // An empty body is echoed as an empty body.
        client.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        let reply = client.read_reply();
        assert_eq!((reply.status, reply.body.len()), (200, 0));
        // The lecture's heavy request: the same echo after a processing delay.
        let began = Instant::now();
        client.send(format!(
            "POST /echo/60 HTTP/1.1\r\nHost: t\r\nContent-Length: 36\r\n\r\n{uuid}"
        ));
        let reply = client.read_reply();
        assert_eq!((reply.status, reply.text()), (200, uuid.to_owned()));
        assert!(began.elapsed() >= Duration::from_millis(60));
        client.send("POST /echo/soon HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(client.read_reply().status, 400);
        stop_cleanly(server);
    }

    fn expect_continue(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        client.send(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        );
        let interim = client.read_head_reply();
        assert_eq!(interim.status, 100);
        client.send("hello");
        let reply = client.read_reply();
        assert_eq!((reply.status, reply.text().as_str()), (200, "hello"));
        stop_cleanly(server);
    }

    fn sleep(start) {
        let server = start(args());
        let began = Instant::now();
        let reply = get(server.addr(), "/sleep/40");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "slept 40 ms\n");
        assert!(began.elapsed() >= Duration::from_millis(40));
        assert_eq!(get(server.addr(), "/sleep/0").status, 200);
        stop_cleanly(server);
    }

    fn sleep_bad_parameter(start) {
        let server = start(ServerArgs {
            max_sleep: Duration::from_millis(500),
            ..args()
        });
        let mut client = Client::connect(server.addr());
        for path in [
            "/sleep/abc",
            "/sleep/501",
            "/sleep/-1",
            "/sleep/",
            "/sleep/99999999999999999999999",
        ] {
            let reply = client.get(path);
            assert_eq!(reply.status, 400, "{path}");
            assert!(
                reply.text().contains("milliseconds from 0 to 500"),
                "{path}: {}",
                reply.text()
            );
            assert_eq!(reply.text().lines().count(), 1);
        }
        // A bad parameter is not a framing error: the connection stays usable.
        assert_eq!(client.get("/sleep/1").status, 200);
        stop_cleanly(server);
    }

    fn factor(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        let reply = client.get("/factor/600851475143");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "600851475143 = 71 * 839 * 1471 * 6857\n");
        assert_eq!(client.get("/factor/97").text(), "97 = 97\n");
        assert_eq!(
            client.get("/factor/1024").text(),
            format!("1024 = {}\n", ["2"; 10].join(" * "))
        );
        stop_cleanly(server);
    }

    fn factoring_stops_at_the_cpu_limit(start) {
        // The largest prime below 2^64 would take seconds; the limit stops it at 50 ms.
        let server = start(ServerArgs {
            max_cpu: Duration::from_millis(50),
            ..args()
        });
        let mut client = Client::connect(server.addr());
        let began = Instant::now();
        let reply = client.get("/factor/18446744073709551557");
        assert_eq!(reply.status, 503);
        assert!(reply.text().contains("--max-cpu"), "{}", reply.text());
        assert!(began.elapsed() < Duration::from_secs(3), "{:?}", began.elapsed());
        // The connection serves on.
        assert_eq!(client.get("/factor/91").text(), "91 = 7 * 13\n");
        stop_cleanly(server);
    }

    fn factor_bad_parameter(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        for path in [
            "/factor/abc",
            "/factor/1",
            "/factor/0",
            "/factor/18446744073709551616",
            "/factor/",
        ] {
            let reply = client.get(path);
            assert_eq!(reply.status, 400, "{path}");
            assert!(reply.text().contains("whole number"), "{path}");
        }
        stop_cleanly(server);
    }

    fn time(start) {
        let server = start(args());
        let reply = get(server.addr(), "/time");
        assert_eq!(reply.status, 200);
        let stamp = humantime::parse_rfc3339(reply.text().trim()).expect("an RFC 3339 time");
        let skew = stamp
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_else(|e| e.duration());
        assert!(
            skew < Duration::from_secs(60),
            "the server's clock is off by {skew:?}"
        );
        stop_cleanly(server);
    }

    fn stats(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        assert_eq!(client.get("/nope").status, 404);
        let reply = client.get("/stats");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(json["architecture"], arch(&server));
        assert_eq!(json["connections"]["accepted"], 1);
        assert_eq!(json["connections"]["open"], 1);
        assert_eq!(json["responses"]["404"], 1);
        assert_eq!(json["requests"]["received"], 2);
        assert_eq!(json["config"]["backlog"], 1024);
        let threads = json["threads"].as_array().expect("a list of thread groups");
        assert!(!threads.is_empty());
        // Some thread is serving this request. (A group of workers started on demand may
        // have none alive between requests.)
        assert!(
            threads.iter().any(|g| g["alive"].as_u64() >= Some(1)),
            "{threads:?}"
        );
        assert!(
            threads
                .iter()
                .all(|g| g["started"].as_u64() >= g["alive"].as_u64()),
            "{threads:?}"
        );
        stop_cleanly(server);
    }

    fn a_crashing_handler_costs_only_its_request(start) {
        // Without --allow-crash there is no such route.
        let server = start(args());
        assert_eq!(get(server.addr(), "/crash").status, 404);
        stop_cleanly(server);
        // With it, the handler panics: that request gets a 500, and the server serves on.
        let server = start(ServerArgs {
            allow_crash: true,
            ..args()
        });
        for _ in 0..3 {
            let reply = get(server.addr(), "/crash");
            assert_eq!(reply.status, 500, "{}", reply.text());
            assert_eq!(get(server.addr(), "/").status, 200);
        }
        let mut client = Client::connect(server.addr());
        assert_eq!(client.get("/").status, 200);
        stop_cleanly(server);
    }

    fn not_found(start) {
        let server = start(args());
        let reply = get(server.addr(), "/missing/page");
        assert_eq!(reply.status, 404);
        assert!(reply.text().contains("/missing/page"));
        stop_cleanly(server);
    }

    fn method_not_allowed(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        client.send("DELETE / HTTP/1.1\r\nHost: t\r\n\r\n");
        let reply = client.read_reply();
        assert_eq!(reply.status, 405);
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
        let reply = client.get("/echo");
        assert_eq!(reply.status, 405);
        assert_eq!(reply.header("allow"), Some("POST"));
        client.send("POST /time HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(client.read_reply().status, 405);
        stop_cleanly(server);
    }

    fn query_is_ignored(start) {
        let server = start(args());
        let reply = get(server.addr(), "/?cache=bust");
        assert_eq!(reply.status, 200);
        stop_cleanly(server);
    }

    fn malformed(start) {
        rejected(start, args(), b"GARBAGE\r\n\r\n", 400);
    }

    fn bad_header_line(start) {
        rejected(start, args(), b"GET / HTTP/1.1\r\nHost t\r\n\r\n", 400);
    }

    fn bad_version(start) {
        rejected(start, args(), b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
    }

    fn absolute_target(start) {
        rejected(
            start,
            args(),
            b"GET http://example.com/ HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
        );
    }

    fn header_too_large(start) {
        let big = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "a".repeat(10 * 1024)
        );
        rejected(start, args(), big.as_bytes(), 431);
        // The limit is configurable.
        let small = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "a".repeat(300)
        );
        rejected(
            start,
            ServerArgs {
                max_header_bytes: 256,
                ..args()
            },
            small.as_bytes(),
            431,
        );
    }

    fn too_many_headers(start) {
        let mut request = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
        for i in 0..80 {
            request.push_str(&format!("X-{i}: y\r\n"));
        }
        request.push_str("\r\n");
        rejected(start, args(), request.as_bytes(), 431);
    }

    fn body_too_large(start) {
        rejected(
            start,
            args(),
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
            413,
        );
        rejected(
            start,
            ServerArgs {
                max_body_bytes: 10,
                ..args()
            },
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world",
            413,
        );
        // Too long for a 64-bit number: still just too large (docs/protocol.md).
        rejected(
            start,
            args(),
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            413,
        );
    }

    fn smuggling_and_malformed_input(start) {
        // Each gets its precise status and a close, and the server serves on (`rejected`).
        // The list is protocol::hostile's, shared with the fuzzers.
        for hostile in protocol::hostile::REQUESTS {
            let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rejected(start, args(), hostile.bytes, hostile.status)
            }));
            assert!(reply.is_ok(), "{}: not {} and a close", hostile.what, hostile.status);
        }
        // The same Content-Length twice is one length (RFC 9112, 6.3).
        let server = start(args());
        let mut client = Client::connect(server.addr());
        client.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(client.read_reply().text(), "hello");
        stop_cleanly(server);
    }

    fn a_slowloris_client_is_cut_off_by_the_pace(start) {
        let _timing = timing();
        // The read timeout alone would allow 5 s; the pace, 200 ms and a second per 500
        // bytes, cuts off a client that sends 10 bytes every 50 ms after about 210 ms.
        let server = start(ServerArgs {
            read_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_millis(200),
            min_rate: 500,
            ..args()
        });
        let mut client = Client::connect(server.addr());
        let began = Instant::now();
        client.send("GET / HTTP/1.1\r\n");
        let mut writer = client.stream().try_clone().expect("a second handle");
        // The slow client: a header line every 50 ms, at most 60 of them (3 s), until the
        // server has closed the connection.
        let dribble = std::thread::spawn(move || {
            use std::io::Write as _;
            for _ in 0..60 {
                std::thread::sleep(Duration::from_millis(50));
                if writer.write_all(b"X-Slow: 1\r\n").is_err() {
                    return;
                }
            }
        });
        let reply = client.read_reply();
        let took = began.elapsed();
        assert_eq!(reply.status, 408, "{}", reply.text());
        assert!(reply.text().contains("slower than 500 bytes"), "{}", reply.text());
        assert!(took >= Duration::from_millis(180), "cut off after only {took:?}");
        assert!(took < Duration::from_millis(2500), "cut off only after {took:?}");
        drop(client);
        let _ = dribble.join();
        assert_eq!(get(server.addr(), "/").status, 200);
        stop_cleanly(server);
    }

    fn a_connection_costs_the_server_one_descriptor(start) {
        // A second handle on a connection (one for reading, one for writing, say) doubles
        // what every connection costs under the limit on open files, and one can outlive
        // the other. The connection here is held between requests, and again while a
        // request is half sent.
        let server = start(args());
        let mut client = Client::connect(server.addr());
        assert_eq!(client.get("/").status, 200);
        let local = client.stream().local_addr().expect("the client's address");
        assert_eq!(server_descriptors(server.addr(), local), 1, "between requests");
        client.send("GET / HTTP/1.1\r\n");
        assert_eq!(server_descriptors(server.addr(), local), 1, "a request half sent");
        client.send("Host: t\r\n\r\n");
        assert_eq!(client.read_reply().status, 200);
        drop(client);
        stop_cleanly(server);
    }

    fn a_slow_reader_gets_its_whole_answer(start) {
        let _timing = timing();
        // An 8 MiB echo is far more than the kernel buffers between the two ends (this
        // client's receive buffer is a few KiB), so the server still holds most of it when
        // the keep-alive timeout (100 ms) has passed: the client starts reading only after
        // 300 ms. The timeout must not cut the answer off: it starts only once the answer
        // is written. (The event loop lost the rest of the answer here until the fuzzer
        // found it.)
        let size = 8 << 20;
        let server = start(ServerArgs {
            keep_alive_timeout: Duration::from_millis(100),
            max_body_bytes: size as u32,
            ..args()
        });
        let mut stream = connect_with_small_window(server.addr());
        let mut request = format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n"
        )
        .into_bytes();
        request.resize(request.len() + size, b'e');
        std::io::Write::write_all(&mut stream, &request).expect("send the request");
        // A slow client, not a synchronisation: it reads nothing for 300 ms.
        std::thread::sleep(Duration::from_millis(300));
        let mut received = Vec::with_capacity(size + 512);
        let mut chunk = vec![0u8; 256 * 1024];
        let head_end = |r: &[u8]| r.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
        // Reads until the whole echo is in or the server closes (each read blocks at most
        // the socket's timeout; the count bounds the loop).
        for _ in 0..100_000 {
            use std::io::Read as _;
            let n = stream.read(&mut chunk).unwrap_or(0);
            received.extend_from_slice(&chunk[..n]);
            if n == 0 || head_end(&received).is_some_and(|h| received.len() - h >= size) {
                break;
            }
        }
        assert!(received.starts_with(b"HTTP/1.1 200 "));
        let head_end = head_end(&received).expect("a response head");
        assert_eq!(received.len() - head_end, size, "the whole echo arrived");
        stop_cleanly(server);
    }

    fn bare_lf_ends_a_line_but_a_bare_cr_does_not(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        client.send("GET / HTTP/1.1\nHost: t\n\n");
        assert_eq!(client.read_reply().status, 200);
        rejected(start, args(), b"GET / HTTP/1.1\rHost: t\r\r\n\r\n", 400);
    }

    fn chunked_body(start) {
        let reply = rejected(
            start,
            args(),
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            411,
        );
        assert!(reply.text().contains("Content-Length"));
    }

    fn missing_host(start) {
        rejected(start, args(), b"GET / HTTP/1.1\r\n\r\n", 400);
    }

    fn bad_content_length(start) {
        rejected(
            start,
            args(),
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n",
            400,
        );
    }

    fn truncated_request(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        client.send("GET / HTTP/1.1\r\nHo");
        client
            .stream()
            .shutdown(Shutdown::Write)
            .expect("half-close");
        let reply = client.read_reply();
        assert_eq!(reply.status, 400);
        client.expect_closed();
        stop_cleanly(server);
    }

    fn a_request_then_a_half_close_is_answered_then_closed(start) {
        // The client sends one request and closes its sending side at once, as
        // `printf 'GET / ...' | nc -N` does, so the request and the end of its stream often
        // arrive together. The server answers, then closes at once: it must not wait for a
        // keep-alive timeout (set here far beyond the client's patience of IO_TIMEOUT).
        let server = start(ServerArgs {
            keep_alive_timeout: Duration::from_secs(60),
            ..args()
        });
        let mut client = Client::connect(server.addr());
        client.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        client
            .stream()
            .shutdown(Shutdown::Write)
            .expect("half-close");
        let reply = client.read_reply();
        assert_eq!(reply.status, 200);
        client.expect_closed();
        stop_cleanly(server);
    }

    fn keep_alive(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        for _ in 0..5 {
            let reply = client.get("/");
            assert_eq!(reply.status, 200);
            assert!(!reply.closes());
        }
        let json: serde_json::Value =
            serde_json::from_slice(&client.get("/stats").body).expect("JSON");
        assert_eq!(
            json["connections"]["accepted"], 1,
            "all requests used one connection"
        );
        stop_cleanly(server);
    }

    fn connection_close(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        client.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let reply = client.read_reply();
        assert_eq!(reply.status, 200);
        assert!(reply.closes());
        client.expect_closed();
        stop_cleanly(server);
    }

    fn http10_closes(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        client.send("GET / HTTP/1.0\r\n\r\n");
        let reply = client.read_reply();
        assert_eq!(reply.status, 200);
        client.expect_closed();
        stop_cleanly(server);
    }

    fn http10_keep_alive(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        for _ in 0..2 {
            client.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            let reply = client.read_reply();
            assert_eq!(reply.status, 200);
            assert_eq!(reply.header("connection"), Some("keep-alive"));
        }
        stop_cleanly(server);
    }

    fn pipelining(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        // Three requests in one write; the slow one first. Answers must come in order.
        client.send(
            "GET /sleep/50 HTTP/1.1\r\nHost: t\r\n\r\n\
             POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nsecond\
             GET /factor/91 HTTP/1.1\r\nHost: t\r\n\r\n",
        );
        assert_eq!(client.read_reply().text(), "slept 50 ms\n");
        assert_eq!(client.read_reply().text(), "second");
        assert_eq!(client.read_reply().text(), "91 = 7 * 13\n");
        // A bad request in a pipeline is answered in its turn, then the connection closes.
        client
            .send("GET / HTTP/1.1\r\nHost: t\r\n\r\nBAD\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(client.read_reply().status, 200);
        let reply = client.read_reply();
        assert_eq!(reply.status, 400);
        client.expect_closed();
        stop_cleanly(server);
    }

    fn idle_timeout(start) {
        let _timing = timing();
        let server = start(ServerArgs {
            keep_alive_timeout: Duration::from_millis(150),
            ..args()
        });
        let mut client = Client::connect(server.addr());
        assert_eq!(client.get("/").status, 200);
        let idle_since = Instant::now();
        client.expect_closed();
        let idled = idle_since.elapsed();
        assert!(
            idled >= Duration::from_millis(100),
            "closed after only {idled:?}"
        );
        assert!(
            idled < Duration::from_secs(3),
            "closed only after {idled:?}"
        );
        stop_cleanly(server);
    }

    fn keep_alive_disabled(start) {
        let server = start(ServerArgs {
            keep_alive_timeout: Duration::ZERO,
            ..args()
        });
        let mut client = Client::connect(server.addr());
        let reply = client.get("/");
        assert_eq!(reply.status, 200);
        assert!(reply.closes());
        client.expect_closed();
        stop_cleanly(server);
    }

    fn read_timeout_partial_head(start) {
        times_out(start, "GET / HTTP/1.1\r\nHost: t\r\n");
    }

    fn read_timeout_silent_client(start) {
        times_out(start, "");
    }

    fn read_timeout_body(start) {
        times_out(
            start,
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
        );
    }

    fn shutdown_with_request_in_flight(start) {
        let _timing = timing();
        let server = start(args());
        let mut client = Client::connect(server.addr());
        client.send("GET /sleep/300 HTTP/1.1\r\nHost: t\r\n\r\n");
        let ctx = std::sync::Arc::clone(server.context());
        wait_until("the request is in flight", || ctx.stats.in_flight() == 1);
        server.begin_shutdown();
        // The server stops accepting at once ...
        assert!(
            TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT).is_err(),
            "a shutting-down server must refuse new connections"
        );
        // ... but the request it accepted is answered in full, and then the connection closes.
        let reply = client.read_reply();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "slept 300 ms\n");
        assert!(reply.closes());
        client.expect_closed();
        stop_cleanly(server);
    }

    fn shutdown_while_a_body_is_arriving(start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        client.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
        let ctx = std::sync::Arc::clone(server.context());
        wait_until("the connection is open", || ctx.open_connections() == 1);
        server.begin_shutdown();
        // The rest of the body; the server may already have stopped reading.
        let _ = std::io::Write::write_all(&mut client.stream(), b"1234567");
        let reply = client.read_reply();
        // Either the upload completed and was answered, or the server says it stopped. It
        // never blames the client with a 400.
        match reply.status {
            200 => assert_eq!(reply.text(), "abc1234567"),
            503 => assert_eq!(reply.header("retry-after"), Some("1"), "{}", reply.text()),
            other => panic!("{other} for an upload cut off by shutdown: {}", reply.text()),
        }
        assert!(reply.closes());
        stop_cleanly(server);
    }

    fn shutdown_closes_idle_connections(start) {
        let _timing = timing();
        let server = start(ServerArgs {
            keep_alive_timeout: Duration::from_secs(60),
            ..args()
        });
        let mut idle = Client::connect(server.addr());
        assert_eq!(idle.get("/").status, 200);
        let began = Instant::now();
        server.begin_shutdown();
        idle.expect_closed();
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "idle connection closed only after {:?}",
            began.elapsed()
        );
        stop_cleanly(server);
    }

    /// Shutdown waits for the requests of clients that are still there, but not for one
    /// whose client has gone: nobody would read that answer. (The simulator's `compare`
    /// stops its servers right after its clients give up; it used to wait out the whole
    /// shutdown timeout for requests nobody wanted.)
    fn shutdown_does_not_wait_for_a_client_that_left(start) {
        let _timing = timing();
        let server = start(ServerArgs {
            shutdown_timeout: Duration::from_secs(30),
            ..args()
        });
        let ctx = std::sync::Arc::clone(server.context());
        let mut client = Client::connect(server.addr());
        client.send("GET /sleep/20000 HTTP/1.1\r\nHost: t\r\n\r\n");
        wait_until("the request is in flight", || ctx.stats.in_flight() == 1);
        // The client gives up on its answer; then the server is told to stop.
        drop(client);
        let began = Instant::now();
        stop_cleanly(server);
        // Far less than the 20 s the request would take, or the 30 s shutdown timeout.
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "stopping took {:?}",
            began.elapsed()
        );
        assert_eq!(ctx.stats.in_flight(), 0);
    }

    fn a_client_that_left_is_not_counted_as_served(start) {
        let server = start(args());
        let ctx = std::sync::Arc::clone(server.context());
        // The lecture's impatient client: it asks, then gives up and closes before the
        // answer is ready.
        let mut client = Client::connect(server.addr());
        client.send("GET /sleep/150 HTTP/1.1\r\nHost: t\r\n\r\n");
        wait_until("the request is in flight", || ctx.stats.in_flight() == 1);
        drop(client);
        wait_until("the server noticed the client left", || {
            ctx.stats.client_left_total() == 1
        });
        wait_until("the request is finished", || ctx.stats.in_flight() == 0);
        let reply = get(server.addr(), "/stats");
        let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(json["requests"]["client_left"], 1, "{json}");
        assert_eq!(
            json["responses"]["200"],
            serde_json::Value::Null,
            "the abandoned answer is not counted: {json}"
        );
        stop_cleanly(server);
    }

    fn random_bytes_get_an_answer_or_a_close(start) {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        let server = start(short_read_timeout());
        let addr = server.addr();
        let mut runner = TestRunner::new(Config {
            cases: 48,
            failure_persistence: None,
            ..Config::default()
        });
        // Printable-ish request-looking noise and raw bytes, up to 4 KiB.
        let noise = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..4096),
            "(GET|POST|HEAD|PUT) /[a-z0-9/]{0,20} HTTP/1\\.[01]\r\n([A-Za-z-]{1,10}: [ -~]{0,20}\r\n){0,5}\r?\n?"
                .prop_map(String::into_bytes),
        ];
        runner
            .run(&noise, |bytes| {
                let mut client = Client::connect(addr);
                client.send(&bytes);
                client
                    .stream()
                    .shutdown(Shutdown::Write)
                    .expect("half-close");
                let answer = client.read_to_close();
                prop_assert!(
                    answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
                    "not HTTP: {:?}",
                    String::from_utf8_lossy(&answer)
                );
                Ok(())
            })
            .expect("every input gets an HTTP answer or a close");
        assert_eq!(get(addr, "/").status, 200, "the server survived the noise");
        stop_cleanly(server);
    }
}

/// Not in the shared list: only a design whose computing thread can reach the connection, or
/// is told by the thread that can (every thread-based design and the event loop's helpers;
/// not the process pipeline's handler processes), can see that the client has gone. A computation of seconds (the largest 64-bit prime, with
/// `--max-cpu` out of the way) stops within a chunk of work once its client closes.
pub fn a_computation_stops_when_its_client_leaves(start: Start) {
    let server = start(ServerArgs {
        max_cpu: Duration::from_secs(600),
        ..args()
    });
    let ctx = std::sync::Arc::clone(server.context());
    let mut client = Client::connect(server.addr());
    client.send("GET /factor/18446744073709551557 HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_until("the computation runs", || ctx.stats.in_flight() == 1);
    drop(client);
    // Stopped within a chunk or so of work, far from the whole (wait_until gives up after
    // 5 s; the whole takes longer even in a release build): the request is over and no
    // thread of the server is still busy with it.
    wait_until("the computation stops", || {
        ctx.stats.in_flight() == 0 && ctx.snapshot().threads.iter().all(|g| g.busy == 0)
    });
    assert_eq!(ctx.stats.client_left_total(), 1);
    stop_cleanly(server);
}

/// Not in the shared list: the sequential server's only thread is the one stuck in the
/// handler, so in-process it cannot give up (its binary has a watchdog for that).
pub fn shutdown_gives_up_after_its_timeout(start: Start) {
    let _timing = timing();
    let server = start(ServerArgs {
        shutdown_timeout: Duration::from_millis(200),
        ..args()
    });
    let mut client = Client::connect(server.addr());
    client.send("GET /sleep/3000 HTTP/1.1\r\nHost: t\r\n\r\n");
    let ctx = std::sync::Arc::clone(server.context());
    wait_until("the request is in flight", || ctx.stats.in_flight() == 1);
    let began = Instant::now();
    server.stop().expect("stop");
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(190),
        "gave up after only {took:?}"
    );
    assert!(
        took < Duration::from_millis(2500),
        "waited {took:?} for a 3 s request"
    );
}
