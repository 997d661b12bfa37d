//! The listening socket and the accept step every architecture starts with.
//!
//! [`bind`] creates the socket with `socket2` because the standard library's
//! `TcpListener::bind` always asks for a backlog of 128, and the backlog is one of the
//! things this suite teaches: it is the kernel's queue of clients that have connected but
//! have not been accepted yet. While a sequential server is busy, new clients wait there.
//! When it is full, Linux drops further connection attempts (SYNs) and the clients retry
//! after about a second, which the simulator shows as a jump in connect time.
//!
//! [`Acceptor`] wraps the accept loop's one blocking call so that shutdown can interrupt it,
//! and hands out each accepted client as a [`BlockingConn`]. An event loop takes the
//! listening socket itself instead ([`Acceptor::into_listener`]) and accepts without
//! blocking.
//!
//! Accepting can fail for reasons that pass: a client that gave up between its handshake
//! and our `accept` (skipped at once), a signal (retried), or the limit on open files (every
//! connection is a descriptor). At that limit `accept` fails until some connection closes,
//! so the acceptor pauses 50 ms between tries instead of spinning, and says so in the log
//! at most once a second ([`crate::logging::RepeatLog`]), with a count of the tries it did
//! not report. The connections waiting meanwhile stay in the backlog, unharmed.

use std::io::{self, ErrorKind};
use std::net::{Shutdown as Direction, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::blocking::BlockingConn;
use crate::context::Context;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("could not listen on {addr}: {source}{}", hint(source))]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("could not start the {what}: {source}")]
    Start { what: String, source: io::Error },
    /// Shutdown gave up on requests still running after `--shutdown-timeout`: the final
    /// line of a server that did not answer every request it accepted.
    #[error("{0}")]
    Abandoned(String),
    /// The architecture cannot run on this machine (see `Architecture::available`).
    #[error(transparent)]
    Unavailable(#[from] crate::running::Unavailable),
}

fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        ErrorKind::AddrInUse => " (is another server already running on that port?)",
        ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
        ErrorKind::AddrNotAvailable => " (that address does not belong to this machine)",
        _ => "",
    }
}

/// The kind of a failed `accept`, for [`crate::logging::RepeatLog`]: every server logs its
/// failed accepts under this key, one line a second per error.
pub fn accept_failure(e: &io::Error) -> impl std::hash::Hash {
    ("accept", e.kind(), e.raw_os_error())
}

/// Creates a listening TCP socket on `addr` with the given backlog. The socket is blocking;
/// an architecture that wants it non-blocking (an event loop) changes that itself. Each
/// accepted connection's own options (no Nagle, a write timeout) are set when it is
/// accepted.
pub fn bind(addr: SocketAddr, backlog: u32) -> Result<TcpListener, ServerError> {
    bind_with(addr, backlog, false)
}

/// [`bind`], optionally with `SO_REUSEPORT`: then further sockets with the option may bind
/// the same address, and the kernel spreads new connections over all of them. An event
/// loop can give each of its loops a listener of its own this way.
pub fn bind_with(
    addr: SocketAddr,
    backlog: u32,
    reuse_port: bool,
) -> Result<TcpListener, ServerError> {
    let fail = |source| ServerError::Bind { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    // Lets a restarted server bind the port while connections of its previous run are
    // still in TIME_WAIT.
    socket.set_reuse_address(true).map_err(fail)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(fail)?;
    }
    socket.bind(&addr.into()).map_err(fail)?;
    socket
        .listen(i32::try_from(backlog).unwrap_or(i32::MAX))
        .map_err(fail)?;
    Ok(socket.into())
}

/// The accepting end of a server: hands out one [`BlockingConn`] per client until shutdown.
pub struct Acceptor {
    /// The listening socket, in blocking mode.
    listener: TcpListener,
    /// The server's shared state: the shutdown flag, and the context each connection gets.
    ctx: Arc<Context>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("listener", &self.listener)
            .field("arch", &self.ctx.arch)
            .finish()
    }
}

impl Acceptor {
    /// Wraps `listener` and registers the shutdown hook that interrupts a blocked accept.
    /// The hook needs a handle of its own on the socket (a second descriptor, `try_clone`),
    /// because it runs on whichever thread begins shutdown, while the acceptor's owner may
    /// be blocked in `accept` on the first.
    pub fn new(listener: TcpListener, ctx: Arc<Context>) -> Result<Acceptor, ServerError> {
        let waker = listener.try_clone().map_err(|source| ServerError::Start {
            what: "acceptor".into(),
            source,
        })?;
        ctx.shutdown.on_trigger(move || {
            // On Linux, shutting down a listening socket makes a thread blocked in accept()
            // return at once with an error, and refuses new connections.
            let _ = socket2::SockRef::from(&waker).shutdown(Direction::Both);
        });
        Ok(Acceptor { listener, ctx })
    }

    /// The address the socket is bound to (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The listening socket itself, for an architecture that accepts on its own (an event
    /// loop, which must never block in `accept`). The architecture then calls
    /// `Context::set_ready` itself once its threads are up.
    pub fn into_listener(self) -> TcpListener {
        self.listener
    }

    /// Waits for the next client and returns its connection, or `None` once the server is
    /// shutting down.
    pub fn accept(&self) -> Option<BlockingConn> {
        // The architecture has set itself up by the time it first accepts.
        self.ctx.set_ready();
        loop {
            if self.ctx.shutdown.is_triggered() {
                return None;
            }
            // Blocks until a client has completed the TCP handshake (it is then taken from
            // the backlog), or until shutdown interrupts it.
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    // Accepted just as shutdown began: dropped (closed), not served, like
                    // the clients the shut-down listener refuses from now on.
                    if self.ctx.shutdown.is_triggered() {
                        return None;
                    }
                    match BlockingConn::new(stream, peer, Arc::clone(&self.ctx)) {
                        Ok(conn) => {
                            tracing::debug!("conn #{} accepted from {peer}", conn.id);
                            return Some(conn);
                        }
                        // Setting the socket's options failed (the client reset it at
                        // once): dropped, and the next client is accepted.
                        Err(e) => tracing::debug!("could not set up a connection from {peer}: {e}"),
                    }
                }
                Err(_) if self.ctx.shutdown.is_triggered() => return None,
                // The client gave up between the handshake and our accept: try the next.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionAborted | ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    // Usually "too many open files". Retrying at once would spin, so pause
                    // briefly: other connections will close and free descriptors. While it
                    // lasts this fails twenty times a second: one line a second is enough.
                    self.ctx.repeats.warn(accept_failure(&e), || {
                        format!("accept failed: {e}; retrying in 50 ms")
                    });
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}
