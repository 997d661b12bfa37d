//! The client side of HTTP/1.1: reading one response at a time, and a blocking connection.
//!
//! [`ResponseReader`] is sans-IO, like the servers' `protocol::Connection`: it is handed the
//! bytes a socket returned and says when a complete response has arrived. It never reads a
//! socket or a clock itself, so the same code serves both engines: the blocking
//! [`Connection`] of the thread-per-client engine (and of the end-to-end benchmarks), and
//! the event-driven engine, which reads many non-blocking sockets on one thread.
//!
//! Responses may be framed by `Content-Length`, chunked encoding, or the end of the
//! connection, so the simulator works against any server, not only servelab's. Bodies are
//! counted and dropped as they pass, never stored: what a reader keeps is at most one
//! incomplete response head (bounded by [`MAX_HEAD`]) and the bytes that arrived after the
//! response it completed.

mod blocking;
mod reader;

pub use blocking::Connection;
pub use reader::{Response, ResponseReader, MAX_HEAD};

use std::time::Instant;

/// One complete response, with the moment its first byte arrived.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub first_byte: Instant,
    pub server_thread: Option<String>,
    /// The connection cannot carry another request.
    pub close: bool,
    /// The bytes of the answer read from the socket (what an emulated link's bandwidth
    /// has to carry).
    pub size: usize,
}
