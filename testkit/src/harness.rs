//! The harness: a raw HTTP test client, and helpers that start, load and inspect a server.
//!
//! Every socket has read and write timeouts, so a server that hangs fails the test instead
//! of hanging it. Nothing synchronises by sleeping: a test that must wait for the server to
//! reach a state watches the server's counters with [`wait_until`].

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use loadgen::http::Connection;
use server_core::stats::ThreadGroupSnapshot;
use server_core::{RunningServer, ServerArgs};

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
///
/// It is the load generator's blocking client ([`loadgen::http::Connection`]), so tests and
/// measurements read responses with the same parser; this wrapper only turns every failure
/// into a test failure that says what went wrong.
#[derive(Debug)]
pub struct Client {
    conn: Connection,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let conn = Connection::connect(addr, IO_TIMEOUT).expect("connect to the server");
        Client { conn }
    }

    pub fn stream(&self) -> &TcpStream {
        self.conn.stream()
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.conn.send(bytes.as_ref()).expect("send to the server");
    }

    /// Sends a GET for `path` on this connection.
    pub fn get(&mut self, path: &str) -> Reply {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"));
        self.read_reply()
    }

    /// Reads one complete response (head, and a body of its Content-Length).
    pub fn read_reply(&mut self) -> Reply {
        self.read(false)
    }

    /// Reads one response head to a HEAD request: its body is announced but never sent.
    pub fn read_head_reply(&mut self) -> Reply {
        self.read(true)
    }

    fn read(&mut self, head_only: bool) -> Reply {
        let response = self.conn.read_whole(head_only).unwrap_or_else(|failure| {
            panic!(
                "no whole response from the server in time: {}",
                failure.message
            )
        });
        let reply = Reply {
            status: response.status,
            headers: response.headers,
            body: response.body,
        };
        // servelab's protocol frames every final response by its length.
        assert!(
            reply.status < 200 || reply.header("content-length").is_some(),
            "every response has Content-Length: {reply:?}"
        );
        reply
    }

    /// Asserts that the server closes the connection (end of stream or reset) within the
    /// I/O timeout without sending anything more.
    pub fn expect_closed(&mut self) {
        let pending = self.conn.take_pending();
        assert!(
            pending.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&pending)
        );
        let mut chunk = [0u8; 1024];
        // Blocks until the server sends, closes, or the read timeout passes.
        match self.stream().read(&mut chunk) {
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
        let mut all = self.conn.take_pending();
        let mut chunk = [0u8; 8192];
        loop {
            // Blocks until the server sends, closes, or the read timeout passes.
            match self.stream().read(&mut chunk) {
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

/// A connection whose receive buffer is a few KiB (set before connecting, so the window
/// it offers stays small), with the usual timeouts: a large answer then stays mostly in
/// the server while the test reads it slowly.
pub fn connect_with_small_window(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .expect("a socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket
        .connect_timeout(&addr.into(), IO_TIMEOUT)
        .expect("connect to the server");
    with_timeouts(TcpStream::from(socket))
}

/// `stream` with a read and a write timeout of `IO_TIMEOUT`: no test socket waits forever.
fn with_timeouts(stream: TcpStream) -> TcpStream {
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set write timeout");
    stream
}

/// How many file descriptors of this process refer to the server's end of the connection
/// from `client` to `server` (Linux: its socket's inode from `/proc/net/tcp`, then the links
/// in `/proc/self/fd`). 0 if the server has not accepted it.
pub fn server_descriptors(server: SocketAddr, client: SocketAddr) -> usize {
    let hex = |addr: SocketAddr| match addr {
        SocketAddr::V4(a) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        ),
        SocketAddr::V6(_) => String::new(),
    };
    let (local, remote) = (hex(server), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let inode = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 9 && f[1] == local && f[2] == remote)
        .map(|f| f[9].to_owned());
    let Some(inode) = inode.filter(|i| i != "0") else {
        return 0;
    };
    let link = format!("socket:[{inode}]");
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.as_os_str() == link.as_str())
        .count()
}

/// Waits until `condition` holds, failing the test after `IO_TIMEOUT`. It checks at
/// growing intervals (from 100 µs up to 10 ms), so a state that is reached quickly is seen
/// quickly without spinning a CPU that the server under test needs.
pub fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut pause = Duration::from_micros(100);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        // A bounded back-off between checks, not a synchronisation: the condition decides.
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
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
    for group in ctx.snapshot().threads {
        assert_eq!(group.alive, 0, "threads left running after stop: {group:?}");
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

/// A thread group's figures (`alive`, `busy`, `peak`, ...) from the server's `/stats`
/// snapshot, by the group's role.
pub fn threads(server: &RunningServer, role: &str) -> ThreadGroupSnapshot {
    let snapshot = server.context().snapshot();
    snapshot
        .thread_group(role)
        .cloned()
        .unwrap_or_else(|| panic!("no thread group {role} in {snapshot:?}"))
}

/// Settings for most cases: defaults, on an ephemeral loopback port.
pub fn args() -> ServerArgs {
    ServerArgs::default()
}

/// Holds the timing lock: tests that assert how long something took call this first, so
/// that they run one at a time instead of competing with each other for the CPU. (Tests in
/// one binary run on parallel threads; binaries run one after another.)
pub fn timing() -> std::sync::MutexGuard<'static, ()> {
    static TIMING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that failed while holding the lock poisons it; the next may still run.
    TIMING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Raises this process's soft limit on open files towards `wanted` (never above the hard
/// limit) and returns the limit now in force. A test that opens many connections calls it
/// and sizes itself to the answer: `ulimit -n` is 1024 by default on many machines.
pub fn raise_fd_limit(wanted: u64) -> u64 {
    server_core::rlimit::raise_open_files(wanted)
}

/// This process's resident memory in bytes, from `/proc/self/statm` (Linux).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm has a resident page count");
    let page = rustix::param::page_size();
    pages * u64::try_from(page).unwrap_or(4096)
}

/// Sends `signal` (`libc::SIGTERM`, ...) to process `pid`, which the test started (or its
/// server did): a test's `kill(2)`, without `unsafe`. Panics if it cannot be sent.
pub fn kill(pid: u32, signal: i32) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .expect("a process id");
    let signal = rustix::process::Signal::from_named_raw(signal).expect("a known signal");
    rustix::process::kill_process(pid, signal).expect("kill");
}

/// Runs a binary with `args`, no standard input, and collects what it printed.
pub fn run_binary(path: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the binary")
}

/// Asserts that a command was refused as a usage error (exit status 2), with an error that
/// starts with `sentence`, and that it printed nothing else on its standard output.
pub fn assert_usage_error(out: &std::process::Output, sentence: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with(sentence), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing ran");
}
