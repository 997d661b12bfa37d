//! Starting and stopping what is graded.
//!
//! A [`Subject::Command`] is a command line with `{addr}` in it. The grader finds a free
//! loopback port below the kernel's ephemeral range (binding it and letting it go; see
//! `free_port` for why below), writes it in place of `{addr}`, and runs the line with `sh -c 'exec ...'`, so that the shell is replaced by
//! the server and the child's process id is the server's own (SIGTERM then reaches the
//! server, not a shell). Between letting the port go and the server binding it, another
//! program may take it: a server that exits before it accepts is started again on a new
//! port, up to three times. Its standard error goes to a file, whose last line explains a
//! failed start.
//!
//! A [`Subject::Address`] is only checked to accept a connection. A
//! [`Subject::InProcess`] is launched through the caller's [`crate::Launch`].

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::procfs::{self, Usage};
use crate::{GradeError, Running, Subject};

/// How many times a command that exits before it accepts is started again on a new port.
const START_ATTEMPTS: u32 = 3;

/// How long a command may take to accept its first connection (stretched).
const START_WITHIN: Duration = Duration::from_secs(5);

/// A server the grader is grading now.
pub(crate) enum Started {
    /// A child process the grader started.
    Child(ChildServer),
    /// A server someone else runs.
    Address(SocketAddr),
    /// A server in this process.
    InProcess(Box<dyn Running>),
}

/// A command's process, with what is needed to explain it and to stop it.
pub(crate) struct ChildServer {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) line: String,
    log: PathBuf,
}

impl Started {
    pub(crate) fn addr(&self) -> SocketAddr {
        match self {
            Started::Child(c) => c.addr,
            Started::Address(addr) => *addr,
            Started::InProcess(running) => running.addr(),
        }
    }

    /// The server's threads, descriptors and memory, once two samples taken a little
    /// apart agree (bounded: about a second); `None` for a server the grader cannot see.
    pub(crate) fn usage_settled(&self) -> Option<Usage> {
        match self {
            Started::Child(c) => procfs::settled(Some(c.child.id())),
            Started::Address(_) => None,
            Started::InProcess(_) => procfs::settled(None),
        }
    }

    /// Stops the server: SIGTERM for a child (then SIGKILL if it has not exited within
    /// the shutdown timeout), the launcher's stop for an in-process server.
    pub(crate) fn stop(self, stretch: f64) -> Result<(), GradeError> {
        match self {
            Started::Child(mut c) => {
                let _ = c.terminate(stretched(Duration::from_secs(12), stretch));
                let _ = std::fs::remove_file(&c.log);
                Ok(())
            }
            Started::Address(_) => Ok(()),
            Started::InProcess(running) => running.stop(),
        }
    }
}

impl ChildServer {
    /// Sends SIGTERM and waits up to `within` for the process to exit; kills it if it does
    /// not. Returns its exit status, or `None` if it had to be killed.
    pub(crate) fn terminate(&mut self, within: Duration) -> std::io::Result<Option<ExitStatus>> {
        signal_term(self.child.id())?;
        let give_up = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= give_up {
                let _ = self.child.kill();
                // Waits for the killed process, so that it leaves no zombie.
                let _ = self.child.wait();
                return Ok(None);
            }
            // Waits a little before looking again whether the process has exited.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last line the server wrote on its standard error, if any.
    fn last_words(&self) -> Option<String> {
        let mut text = String::new();
        std::fs::File::open(&self.log)
            .and_then(|mut f| f.read_to_string(&mut text))
            .ok()?;
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
    }
}

fn signal_term(pid: u32) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::other("not a process id"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).map_err(std::io::Error::from)
}

fn stretched(d: Duration, stretch: f64) -> Duration {
    Duration::from_secs_f64(d.as_secs_f64() * stretch)
}

/// Starts (or finds) the subject for one run.
pub(crate) fn start(subject: &Subject, stretch: f64) -> Result<Started, GradeError> {
    match subject {
        Subject::Command(line) => start_command(line, stretch).map(Started::Child),
        Subject::Address(addr) => {
            // Blocks until the handshake completes, is refused, or 3 s pass.
            TcpStream::connect_timeout(addr, stretched(Duration::from_secs(3), stretch)).map_err(
                |source| GradeError::NothingListening {
                    addr: *addr,
                    source,
                },
            )?;
            Ok(Started::Address(*addr))
        }
        Subject::InProcess(launch) => launch.launch().map(Started::InProcess),
    }
}

/// Starts `line` on a free port, retrying when it exits before accepting (a port clash).
fn start_command(line: &str, stretch: f64) -> Result<ChildServer, GradeError> {
    let mut last = String::new();
    for attempt in 1..=START_ATTEMPTS {
        let addr = free_port()?;
        let mut server = spawn(line, addr, attempt)?;
        match wait_accepting(&mut server, stretched(START_WITHIN, stretch)) {
            Ok(()) => return Ok(server),
            Err(Exited(why)) => last = why,
            Err(Silent(why)) => {
                let _ = server.child.kill();
                // Waits for the killed process, so that it leaves no zombie.
                let _ = server.child.wait();
                return Err(GradeError::CannotStart(why));
            }
        }
    }
    Err(GradeError::CannotStart(last))
}

/// A free port on 127.0.0.1 for the command to bind.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`, 32768 and up by
/// default) where there is room: every port-0 listener and every outgoing connection on the
/// machine (another test's server, the grader's own clients) gets its port from that
/// range, so one of them cannot take the port in the moment between the grader letting it
/// go and the command binding it, and the grader cannot end up talking to someone else's
/// server. Otherwise, or when no port below is free, the kernel picks one (port 0).
fn free_port() -> Result<SocketAddr, GradeError> {
    if let Some(addr) = free_port_below_ephemeral() {
        return Ok(addr);
    }
    // The listener is dropped at once: the port is free again for the server to bind.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| GradeError::CannotStart(format!("cannot find a free port on 127.0.0.1: {e}")))
}

/// The lowest port the grader picks from: below it are the well-known and the commonly
/// configured ports (8080, 7777, ...).
const LOWEST_PICKED: u16 = 20_000;

/// A port between [`LOWEST_PICKED`] and the start of the ephemeral range that nothing
/// listens on now, tried at up to 64 places; `None` if the range is too small or all were
/// taken.
fn free_port_below_ephemeral() -> Option<SocketAddr> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let ephemeral: u16 = range.split_whitespace().next()?.parse().ok()?;
    let room = ephemeral
        .checked_sub(LOWEST_PICKED)
        .filter(|r| *r >= 1_000)?;
    // Where to start: different for each call and each process (the clock's nanoseconds
    // and the process id), so that parallel graders spread out.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = u64::from(nanos) ^ (u64::from(std::process::id()) << 32);
    (0..64).find_map(|_| {
        // splitmix64's step: a well-spread next number from the last.
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let port = LOWEST_PICKED + (z % u64::from(room)) as u16;
        // Free now if it can be bound; the listener is dropped at once.
        TcpListener::bind(("127.0.0.1", port))
            .and_then(|l| l.local_addr())
            .ok()
    })
}

fn spawn(line: &str, addr: SocketAddr, attempt: u32) -> Result<ChildServer, GradeError> {
    let filled = line.replace("{addr}", &addr.to_string());
    let log = std::env::temp_dir().join(format!(
        "servelab-grader-{}-{attempt}-{}.stderr",
        std::process::id(),
        addr.port()
    ));
    let stderr = std::fs::File::create(&log)
        .map_err(|e| GradeError::CannotStart(format!("cannot create {}: {e}", log.display())))?;
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {filled}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| GradeError::CannotStart(format!("cannot run {filled:?}: {e}")))?;
    Ok(ChildServer {
        child,
        addr,
        line: filled,
        log,
    })
}

/// Why a started command is not serving.
enum NotServing {
    /// It exited (perhaps a port clash): try again.
    Exited(String),
    /// It runs but does not accept: give up.
    Silent(String),
}
use NotServing::{Exited, Silent};

/// Waits until the server accepts a connection, it exits, or `within` passes.
fn wait_accepting(server: &mut ChildServer, within: Duration) -> Result<(), NotServing> {
    let give_up = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            let said = server
                .last_words()
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            return Err(Exited(format!(
                "the command {:?} exited ({status}) before it accepted a connection on {}{said}",
                server.line, server.addr
            )));
        }
        // Blocks until the handshake completes or is refused (at once on loopback), or
        // 200 ms pass.
        if TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= give_up {
            return Err(Silent(format!(
                "the command {:?} did not accept a connection on {} within {:.1} s",
                server.line,
                server.addr,
                within.as_secs_f64()
            )));
        }
        // Waits a little before trying again: the server is still starting.
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grader's ports come from below the ephemeral range, where no port-0 listener
    /// and no outgoing connection takes them, and are spread over it.
    #[test]
    fn ports_are_picked_below_the_ephemeral_range_and_free() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .expect("Linux says its ephemeral range");
        let low: u16 = range
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port number");
        let mut ports = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let addr = free_port().expect("a free port");
            if low >= LOWEST_PICKED + 1_000 {
                assert!(
                    (LOWEST_PICKED..low).contains(&addr.port()),
                    "{addr} is not below {low}"
                );
            }
            ports.insert(addr.port());
        }
        // Spread out, so that graders running at once do not keep meeting on one port.
        assert!(ports.len() >= 15, "{ports:?}");
    }

    /// A command that exits before it accepts, as a server whose port was taken in the
    /// moment between the grader finding it free and the server binding it, is started
    /// again on another port; the second attempt serves.
    #[test]
    fn a_command_that_exits_before_accepting_is_started_again() {
        let dir = std::env::temp_dir().join(format!("servelab-clash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let mark = dir.join("tried");
        let script = dir.join("server.sh");
        std::fs::write(
            &script,
            format!(
                r#"# The first run fails as a port clash would; later runs listen on $1.
if [ ! -e "{mark}" ]; then touch "{mark}"; echo "Address already in use" >&2; exit 1; fi
exec python3 - "$1" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
server = socket.create_server((host, int(port)))
while True:
    server.accept()[0].close()
PY
"#,
                mark = mark.display()
            ),
        )
        .expect("write the script");
        let line = format!("sh {} {{addr}}", script.display());
        let mut server = start_command(&line, 1.0).expect("the second attempt serves");
        assert!(mark.exists(), "the first attempt ran and failed");
        let stopped = server.terminate(Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(stopped.is_ok(), "{stopped:?}");
    }
}
