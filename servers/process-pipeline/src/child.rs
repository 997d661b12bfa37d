//! A handler process: started by `fork`, it answers requests from its socket until the
//! server closes it.
//!
//! `fork` makes the child a copy of the server at that moment, with only the thread that
//! called it. That is how the lecture's Python `multiprocessing` starts its workers on Linux,
//! and it spares servelab a separate handler program: the child already has the routes'
//! code. The price is a rule: the other threads of the server vanished in the child, maybe
//! in the middle of holding a lock, so the child must touch nothing they may have held. It
//! takes no lock of the server's (no logging, no `/stats` counters, no queues), only its
//! socket, the routes (pure functions of the request) and the memory allocator (glibc's
//! `fork` takes the allocator's locks around the fork for exactly this reason).
//!
//! Right after the fork the child:
//!
//! * asks the kernel to kill it when its parent thread dies (`PR_SET_PDEATHSIG`), so that
//!   no handler outlives the server, whatever signal ended it;
//! * restores the default actions of SIGTERM, SIGINT and SIGHUP and unblocks every signal
//!   (the server's handlers would otherwise start the server's shutdown), and ignores
//!   SIGPIPE (a write to a closed socket then fails, and the child exits);
//! * closes every file descriptor it inherited but its socket (the server's listening
//!   socket and its clients' connections must close when the server closes them, not live
//!   on in a child);
//! * names itself `handler-N` (what `ps` and `top` show).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};

use protocol::{route, RouteConfig, Work};

use crate::ipc::{self, Reply};

/// A running handler process, seen from the server.
#[derive(Debug)]
pub struct Child {
    pub pid: rustix::process::Pid,
    /// The server's end of the process's socket.
    pub socket: UnixStream,
}

/// The descriptor the child's socket is moved to; every descriptor above it is closed.
const CHILD_SOCKET: libc::c_int = 3;

/// Starts handler process `index` with a copy of `routes`. Called on the thread that
/// supervises it: the child is killed when that thread ends.
// `fork` has no safe wrapper: what the child may do afterwards is the caller's promise.
#[allow(unsafe_code)]
pub fn spawn(index: usize, routes: &RouteConfig) -> io::Result<Child> {
    let (server_end, child_end) = UnixStream::pair()?;
    // What the child needs, prepared before the fork so that it allocates little.
    let name = format!("handler-{index}\0");
    let parent = std::process::id();
    // SAFETY: fork() duplicates this process with only the calling thread. In the child
    // branch below we call only `child_main`, which keeps to the rule in the module
    // documentation and never returns.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => child_main(child_end.as_raw_fd(), parent, name.as_bytes(), routes),
        pid => {
            // The child has its own copy; the server keeps only its end.
            drop(child_end);
            let pid = rustix::process::Pid::from_raw(pid)
                .ok_or_else(|| io::Error::other("fork returned no process id"))?;
            Ok(Child {
                pid,
                socket: server_end,
            })
        }
    }
}

/// The child's whole life. Never returns: it ends with `_exit`, which runs no destructor
/// and flushes nothing of the server's.
// The child's set-up is raw system calls on its own state, and its end is `_exit`.
#[allow(unsafe_code)]
fn child_main(fd: libc::c_int, parent: u32, name: &[u8], routes: &RouteConfig) -> ! {
    // SAFETY: each call below is a plain system call on this process's own state
    // (its signals, its descriptors, its name), made before anything else runs in it.
    unsafe {
        // Killed with SIGKILL if the server thread that started it ends (with the server).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        // The server may have died between fork() and prctl(): then nobody would kill us.
        if libc::getppid() as u32 != parent {
            libc::_exit(1);
        }
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(signal, libc::SIG_DFL);
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        if fd != CHILD_SOCKET && libc::dup2(fd, CHILD_SOCKET) < 0 {
            libc::_exit(1);
        }
        // Closes every descriptor above the socket (and the socket's old number).
        libc::syscall(
            libc::SYS_close_range,
            (CHILD_SOCKET + 1) as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
        libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong);
    }
    // SAFETY: descriptor 3 is the socket, open and owned by nothing else in this process.
    let socket = unsafe { UnixStream::from_raw_fd(CHILD_SOCKET) };
    serve(socket, routes);
    // SAFETY: ends the process at once, as the module documentation says.
    unsafe { libc::_exit(0) }
}

/// Answers requests from `socket`, one at a time, until the server closes it.
// A handler that panics ends its process with `_exit` (see below).
#[allow(unsafe_code)]
fn serve(mut socket: UnixStream, routes: &RouteConfig) {
    // Blocks until the server sends a request, or closes the socket (then this returns).
    while let Ok(Some(request)) = ipc::read_request(&mut socket) {
        let reply = catch_unwind(AssertUnwindSafe(|| match route(&request, routes) {
            Work::Respond(response) => Reply::Response(response),
            Work::Sleep { delay, then } => {
                // Blocks this process for the whole delay.
                std::thread::sleep(delay);
                Reply::Response(then)
            }
            // Runs as long as the computation takes, in this process.
            Work::Compute(job) => Reply::Response(job.run()),
            Work::Stats => Reply::ServerAnswers,
        }));
        let Ok(reply) = reply else {
            // A handler that panics ends its process, as a fault the language cannot catch
            // (an abort, a segmentation fault) would: the server answers the request with a
            // 500 and starts a new process.
            // SAFETY: ends this process at once (see `child_main`).
            unsafe { libc::_exit(101) }
        };
        // Blocks until the kernel has taken the reply; fails if the server is gone.
        if ipc::write_reply(&mut socket, &reply).is_err() {
            return;
        }
    }
}
