//! The test harness and the behaviour list every architecture must pass.
//!
//! Enabled by the `testing` feature, which server crates turn on for their tests only. A
//! server crate joins the list with one line in its `tests/behaviour.rs`:
//!
//! ```ignore
//! protocol::behaviour_tests!(|args| RunningServer::start(MyArch::default(), args).unwrap());
//! ```
//!
//! Every case starts its own server in-process on `127.0.0.1:0` and talks raw bytes to it
//! over real sockets. Every socket has read and write timeouts, so a server that hangs
//! fails the test instead of hanging it, and nothing waits by sleeping: a case that must
//! wait for the server to reach a state watches the server's counters.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::config::ServerArgs;
use crate::server::RunningServer;

/// How long any test socket waits for the server before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts a server of the architecture under test with the given settings.
pub type Start<'a> = &'a dyn Fn(ServerArgs) -> RunningServer;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the server announced that it closes the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A test client: one connection with timeouts, reading responses one at a time.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to the server");
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set read timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set write timeout");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .write_all(bytes.as_ref())
            .expect("send to the server");
    }

    /// Sends a GET for `path` on this connection.
    pub fn get(&mut self, path: &str) -> Reply {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"));
        self.read_reply()
    }

    /// Reads one complete response (head, and a body of its Content-Length).
    pub fn read_reply(&mut self) -> Reply {
        self.read_reply_inner(true)
    }

    /// Reads one response head to a HEAD request: its body is announced but never sent.
    pub fn read_head_reply(&mut self) -> Reply {
        self.read_reply_inner(false)
    }

    fn read_reply_inner(&mut self, with_body: bool) -> Reply {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buf).expect("the server sent valid HTTP") {
                httparse::Status::Complete(len) => {
                    let status = parsed.code.expect("status code");
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    let mut reply = Reply {
                        status,
                        headers,
                        body: Vec::new(),
                    };
                    // Interim (1xx) responses have no body and no length.
                    let length: usize = if status >= 200 {
                        reply
                            .header("content-length")
                            .expect("every response has Content-Length")
                            .parse()
                            .expect("Content-Length is a number")
                    } else {
                        0
                    };
                    let length = if with_body { length } else { 0 };
                    while self.buf.len() < len + length {
                        self.fill();
                    }
                    reply.body = self.buf[len..len + length].to_vec();
                    self.buf.drain(..len + length);
                    return reply;
                }
                httparse::Status::Partial => self.fill(),
            }
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = self
            .stream
            .read(&mut chunk)
            .expect("read from the server in time");
        assert!(
            n > 0,
            "the server closed the connection before a whole response; got {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Asserts that the server closes the connection (end of stream or reset) within the
    /// I/O timeout without sending anything more.
    pub fn expect_closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let mut chunk = [0u8; 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {}
            Ok(n) => panic!(
                "expected a close, got {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected a close, got {e}"),
        }
    }

    /// Reads everything until the server closes; for clients that sent garbage.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 8192];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return all,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return all,
                Err(e) => panic!(
                    "the server neither answered nor closed: {e}; got {:?}",
                    String::from_utf8_lossy(&all)
                ),
            }
        }
    }
}

/// One GET on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    Client::connect(addr).get(path)
}

/// Waits (without sleeping) until `condition` holds, failing the test after `IO_TIMEOUT`.
pub fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

/// Stops the server and checks that it left nothing behind: no open connection, no live
/// thread in any of its groups.
pub fn stop_cleanly(server: RunningServer) {
    let ctx = std::sync::Arc::clone(server.context());
    server.stop().expect("the server stops cleanly");
    assert_eq!(
        ctx.open_connections(),
        0,
        "connections left open after stop"
    );
    let snapshot = ctx.snapshot();
    for group in snapshot["threads"].as_array().into_iter().flatten() {
        assert_eq!(
            group["alive"], 0,
            "threads left running after stop: {group}"
        );
    }
}

/// Starts `clients` client threads together (behind a barrier); each opens its own
/// connection, sends `GET path` with `Connection: close`, and reads the reply. Returns the
/// time from the barrier to the last reply, and the replies. Fails the test if any client
/// does not get a complete response.
pub fn burst(addr: SocketAddr, clients: usize, path: &str) -> (Duration, Vec<Reply>) {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let barrier = std::sync::Arc::clone(&barrier);
            let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
            std::thread::Builder::new()
                .name(format!("client-{}", i + 1))
                .spawn(move || {
                    barrier.wait();
                    let mut client = Client::connect(addr);
                    client.send(request);
                    client.read_reply()
                })
                .expect("start a client thread")
        })
        .collect();
    barrier.wait();
    let began = Instant::now();
    let replies: Vec<Reply> = threads
        .into_iter()
        .map(|t| t.join().expect("a client thread failed"))
        .collect();
    (began.elapsed(), replies)
}

/// Opens `n` connections that each make one request and then stay open and idle, like the
/// lecture's clients that "stay connected". Keep the returned clients alive while measuring.
pub fn idle_holders(addr: SocketAddr, n: usize) -> Vec<Client> {
    (0..n)
        .map(|_| {
            let mut client = Client::connect(addr);
            assert_eq!(client.get("/").status, 200);
            client
        })
        .collect()
}

/// The idle-holder experiment: `holders` clients make one request each and then stay
/// connected and idle; once `settled` says the server is in that state, a newcomer sends
/// `GET /`. Returns how long the newcomer waited. Start the server with a short keep-alive
/// timeout to see how long idle clients can hold it up.
pub fn newcomer_wait_behind_idle_holders(
    server: &RunningServer,
    holders: usize,
    settled: impl Fn() -> bool,
) -> Duration {
    let _holders = idle_holders(server.addr(), holders);
    wait_until("the idle holders occupy the server", settled);
    let (waited, reply) = timed_get(server.addr(), "/");
    assert_eq!(reply.status, 200);
    waited
}

/// Server settings with a 300 ms keep-alive timeout, for the idle-holder experiment.
pub fn short_keep_alive() -> ServerArgs {
    ServerArgs {
        keep_alive_timeout: Duration::from_millis(300),
        ..ServerArgs::default()
    }
}

/// How long one fresh client waits for `GET path`.
pub fn timed_get(addr: SocketAddr, path: &str) -> (Duration, Reply) {
    let began = Instant::now();
    let reply = get(addr, path);
    (began.elapsed(), reply)
}

/// A thread group's figure (`alive`, `busy`, `peak`, ...) from the server's `/stats`
/// snapshot, by the group's role.
pub fn thread_figure(server: &RunningServer, role: &str, figure: &str) -> u64 {
    let snapshot = server.context().snapshot();
    snapshot["threads"]
        .as_array()
        .and_then(|groups| groups.iter().find(|g| g["role"] == role))
        .and_then(|g| g[figure].as_u64())
        .unwrap_or_else(|| panic!("no figure {figure} for thread group {role} in {snapshot}"))
}

/// Settings for most cases: defaults, on an ephemeral loopback port.
pub fn args() -> ServerArgs {
    ServerArgs::default()
}

/// Declares the whole behaviour list as `#[test]` functions for one architecture.
/// `$start` is an expression of type `Fn(ServerArgs) -> RunningServer`.
#[macro_export]
macro_rules! behaviour_tests {
    ($start:expr) => {
        $crate::behaviour_tests!(@cases $start;
            root, head, echo, expect_continue, sleep, sleep_bad_parameter, factor,
            factor_bad_parameter, time, stats, not_found, method_not_allowed, query_is_ignored,
            malformed, bad_header_line, bad_version, absolute_target, header_too_large,
            too_many_headers, body_too_large, chunked_body, missing_host, bad_content_length,
            truncated_request, keep_alive, connection_close, http10_closes, http10_keep_alive,
            pipelining, idle_timeout, keep_alive_disabled, read_timeout_partial_head,
            read_timeout_silent_client, read_timeout_body, shutdown_with_request_in_flight,
            shutdown_closes_idle_connections, random_bytes_get_an_answer_or_a_close,
            a_client_that_left_is_not_counted_as_served,
        );
    };
    (@cases $start:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::cases::$case(&$start)
            }
        )*
    };
}

/// The behaviour list. Each case takes the function that starts the server under test.
pub mod cases {
    use super::*;

    fn arch(server: &RunningServer) -> &'static str {
        server.context().arch
    }

    pub fn root(start: Start) {
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

    pub fn head(start: Start) {
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

    pub fn echo(start: Start) {
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

    pub fn expect_continue(start: Start) {
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

    pub fn sleep(start: Start) {
        let server = start(args());
        let began = Instant::now();
        let reply = get(server.addr(), "/sleep/40");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "slept 40 ms\n");
        assert!(began.elapsed() >= Duration::from_millis(40));
        assert_eq!(get(server.addr(), "/sleep/0").status, 200);
        stop_cleanly(server);
    }

    pub fn sleep_bad_parameter(start: Start) {
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

    pub fn factor(start: Start) {
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

    pub fn factor_bad_parameter(start: Start) {
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

    pub fn time(start: Start) {
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

    pub fn stats(start: Start) {
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
        assert!(
            threads.iter().all(|g| g["alive"].as_u64() >= Some(1)),
            "{threads:?}"
        );
        stop_cleanly(server);
    }

    pub fn not_found(start: Start) {
        let server = start(args());
        let reply = get(server.addr(), "/missing/page");
        assert_eq!(reply.status, 404);
        assert!(reply.text().contains("/missing/page"));
        stop_cleanly(server);
    }

    pub fn method_not_allowed(start: Start) {
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

    pub fn query_is_ignored(start: Start) {
        let server = start(args());
        let reply = get(server.addr(), "/?cache=bust");
        assert_eq!(reply.status, 200);
        stop_cleanly(server);
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

    pub fn malformed(start: Start) {
        rejected(start, args(), b"GARBAGE\r\n\r\n", 400);
    }

    pub fn bad_header_line(start: Start) {
        rejected(start, args(), b"GET / HTTP/1.1\r\nHost t\r\n\r\n", 400);
    }

    pub fn bad_version(start: Start) {
        rejected(start, args(), b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
    }

    pub fn absolute_target(start: Start) {
        rejected(
            start,
            args(),
            b"GET http://example.com/ HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
        );
    }

    pub fn header_too_large(start: Start) {
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

    pub fn too_many_headers(start: Start) {
        let mut request = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
        for i in 0..80 {
            request.push_str(&format!("X-{i}: y\r\n"));
        }
        request.push_str("\r\n");
        rejected(start, args(), request.as_bytes(), 431);
    }

    pub fn body_too_large(start: Start) {
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
    }

    pub fn chunked_body(start: Start) {
        let reply = rejected(
            start,
            args(),
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            411,
        );
        assert!(reply.text().contains("Content-Length"));
    }

    pub fn missing_host(start: Start) {
        rejected(start, args(), b"GET / HTTP/1.1\r\n\r\n", 400);
    }

    pub fn bad_content_length(start: Start) {
        rejected(
            start,
            args(),
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n",
            400,
        );
    }

    pub fn truncated_request(start: Start) {
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

    pub fn keep_alive(start: Start) {
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

    pub fn connection_close(start: Start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        client.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let reply = client.read_reply();
        assert_eq!(reply.status, 200);
        assert!(reply.closes());
        client.expect_closed();
        stop_cleanly(server);
    }

    pub fn http10_closes(start: Start) {
        let server = start(args());
        let mut client = Client::connect(server.addr());
        client.send("GET / HTTP/1.0\r\n\r\n");
        let reply = client.read_reply();
        assert_eq!(reply.status, 200);
        client.expect_closed();
        stop_cleanly(server);
    }

    pub fn http10_keep_alive(start: Start) {
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

    pub fn pipelining(start: Start) {
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

    pub fn idle_timeout(start: Start) {
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

    pub fn keep_alive_disabled(start: Start) {
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

    fn short_read_timeout() -> ServerArgs {
        ServerArgs {
            read_timeout: Duration::from_millis(150),
            ..args()
        }
    }

    /// Sends `partial`, then asserts a 408 and a close no earlier than the read timeout.
    fn times_out(start: Start, partial: &str) {
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

    pub fn read_timeout_partial_head(start: Start) {
        times_out(start, "GET / HTTP/1.1\r\nHost: t\r\n");
    }

    pub fn read_timeout_silent_client(start: Start) {
        times_out(start, "");
    }

    pub fn read_timeout_body(start: Start) {
        times_out(
            start,
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
        );
    }

    pub fn shutdown_with_request_in_flight(start: Start) {
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

    pub fn shutdown_closes_idle_connections(start: Start) {
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

    /// Not in the shared list: the sequential server's only thread is the one stuck in the
    /// handler, so in-process it cannot give up (its binary has a watchdog for that).
    pub fn shutdown_gives_up_after_its_timeout(start: Start) {
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

    pub fn a_client_that_left_is_not_counted_as_served(start: Start) {
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

    pub fn random_bytes_get_an_answer_or_a_close(start: Start) {
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
