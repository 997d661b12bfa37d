//! The blocking client connection: the one HTTP/1.1 client of the workspace that blocks.
//!
//! The thread-per-client engine measures with it ([`Connection::open`] and
//! [`Connection::exchange`], bounded by a client's deadline); the end-to-end benchmarks
//! drive servers with it; the test kit and the simulator's probe read whole responses with
//! it ([`Connection::connect`], [`Connection::send`], [`Connection::read_whole`]), headers
//! and body kept. All of them parse with the same [`ResponseReader`].

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{Reply, Response, ResponseReader};
use crate::outcome::{Failure, Outcome};

/// A blocking client connection.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    reader: ResponseReader,
    buf: Box<[u8]>,
    /// The read timeout last set, to skip redundant system calls.
    timeout_set: Option<Duration>,
}

impl Connection {
    /// Connects, waiting at most until `deadline`.
    pub fn open(addr: SocketAddr, deadline: Instant) -> Result<Connection, Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::new(
                Outcome::ConnectTimeout,
                "no time left to connect",
            ));
        }
        // Blocks until the handshake completes, the server refuses, or time runs out (when
        // the server's backlog is full, the kernel drops our SYN and retries after ~1 s).
        let stream =
            TcpStream::connect_timeout(&addr, left).map_err(|e| Failure::from_connect(&e, addr))?;
        let io = |e: io::Error| Failure::from_io(&e, "setting up the socket");
        stream.set_nodelay(true).map_err(io)?;
        stream.set_write_timeout(Some(left)).map_err(io)?;
        Ok(Connection {
            stream,
            reader: ResponseReader::new(),
            buf: vec![0; 16 * 1024].into_boxed_slice(),
            timeout_set: None,
        })
    }

    /// Connects within `timeout`, which also bounds every later read and write: a server
    /// that hangs makes a call fail instead of hanging the caller.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Connection> {
        // Blocks until the handshake completes, the server refuses, or `timeout` passes.
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Connection {
            stream,
            reader: ResponseReader::new(),
            buf: vec![0; 16 * 1024].into_boxed_slice(),
            timeout_set: Some(timeout),
        })
    }

    /// The socket, for what this client does not do itself (half-closes, options).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends `bytes` as they are: a request, part of one, or anything else.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        // Blocks until the kernel has taken the bytes (bounded by the write timeout).
        self.stream.write_all(bytes)
    }

    /// Reads one whole response, headers and body kept (an interim 1xx response counts as
    /// one), waiting at most the timeout given to [`Connection::connect`] for each read.
    /// `head_only` for the answer to a `HEAD` request, whose body is announced, not sent.
    pub fn read_whole(&mut self, head_only: bool) -> Result<Response, Failure> {
        self.reader.expect_whole(head_only);
        if let Some(response) = self.reader.poll()? {
            return Ok(response);
        }
        loop {
            let deadline = Instant::now() + self.timeout_set.unwrap_or(Duration::from_secs(5));
            let n = self.fill(deadline, false)?;
            let done = if n == 0 {
                Some(self.reader.closed()?)
            } else {
                self.reader.feed(&self.buf[..n])?
            };
            if let Some(response) = done {
                return Ok(response);
            }
        }
    }

    /// The bytes received after the last complete response, taken out of the reader.
    pub fn take_pending(&mut self) -> Vec<u8> {
        self.reader.take_pending()
    }

    /// Sends `request` and reads one complete response by `deadline`. With `exact` the
    /// read timeout is set afresh before every read; load runs skip that system call while
    /// the timeout already set ends before the deadline (see `fill`).
    pub fn exchange(
        &mut self,
        request: &[u8],
        deadline: Instant,
        exact: bool,
        head_only: bool,
        want_thread: bool,
    ) -> Result<Reply, Failure> {
        // Blocks until the kernel has taken the request (bounded by the write timeout).
        self.stream
            .write_all(request)
            .map_err(|e| Failure::from_io(&e, "sending the request"))?;
        self.reader.expect(head_only, want_thread);
        let mut first_byte = None;
        let mut size = 0;
        let mut done = if self.reader.has_pending() {
            first_byte = Some(Instant::now());
            self.reader.poll()?
        } else {
            None
        };
        while done.is_none() {
            let n = self.fill(deadline, exact)?;
            first_byte.get_or_insert_with(Instant::now);
            size += n;
            done = if n == 0 {
                Some(self.reader.closed()?)
            } else {
                self.reader.feed(&self.buf[..n])?
            };
        }
        let response = done.ok_or_else(|| Failure::new(Outcome::Reset, "no response"))?;
        Ok(Reply {
            status: response.status,
            first_byte: first_byte.unwrap_or_else(Instant::now),
            server_thread: response.server_thread,
            close: response.close,
            size,
        })
    }

    /// Reads more bytes into the buffer, waiting at most until `deadline`.
    ///
    /// The read timeout is a socket option, and setting it is a system call. With `exact`
    /// it is set to what is left before every read. Without, the one already set is kept
    /// while it does not reach past the deadline, and a read that times out before the
    /// deadline simply waits again for the rest: the deadline holds either way.
    fn fill(&mut self, deadline: Instant, exact: bool) -> Result<usize, Failure> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::no_answer());
            }
            let timeout = match self.timeout_set {
                Some(set) if !exact && set <= left => set,
                _ => left,
            };
            if self.timeout_set != Some(timeout) {
                self.stream
                    .set_read_timeout(Some(timeout))
                    .map_err(|e| Failure::from_io(&e, "setting the read timeout"))?;
                self.timeout_set = Some(timeout);
            }
            // Blocks until the server sends something, closes, or the timeout passes.
            match self.stream.read(&mut self.buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Timed out: the loop checks the deadline, and waits again if it is not yet
                // reached.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(Failure::from_io(&e, "reading the response")),
            }
        }
    }
}
