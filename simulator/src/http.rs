//! A small HTTP/1.1 client connection: send a request, read one complete response.
//!
//! It reads responses framed by `Content-Length`, chunked encoding, or the end of the
//! connection, so it works against any server, not only servelab's. Every read waits at
//! most until the caller's deadline. The simulator's clients and the end-to-end benchmarks
//! use it.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::outcome::{Failure, Outcome};

/// One complete response.
pub struct Reply {
    pub status: u16,
    pub first_byte: Instant,
    pub server_thread: Option<String>,
    /// The server announced it closes the connection.
    pub close: bool,
}

/// A client connection with a read buffer. Also used by the end-to-end benchmarks.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` that hold unread data.
    len: usize,
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
        let stream = TcpStream::connect_timeout(&addr, left).map_err(|e| {
            let outcome = match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::ConnectTimeout,
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => Outcome::Reset,
                _ => Outcome::Refused,
            };
            Failure::new(outcome, format!("connecting to {addr}: {e}"))
        })?;
        let io = |e: io::Error| Failure::from_io(&e, "setting up the socket");
        stream.set_nodelay(true).map_err(io)?;
        stream.set_write_timeout(Some(left)).map_err(io)?;
        Ok(Connection {
            stream,
            buf: vec![0; 16 * 1024],
            len: 0,
            timeout_set: None,
        })
    }

    /// Sends `request` and reads one complete response by `deadline`. With `exact` the
    /// read timeout is recomputed before every read so the deadline holds to the
    /// millisecond; load runs skip that system call and check the time afterwards instead.
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
        let mut first_byte = None;
        loop {
            if self.len > 0 {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buf[..self.len]) {
                    Ok(httparse::Status::Complete(head_len)) => {
                        let status = response.code.unwrap_or(0);
                        if (100..200).contains(&status) {
                            // An interim response: skip it and read the real one.
                            self.consume(head_len);
                            continue;
                        }
                        let framing = Framing::of(
                            response.headers,
                            head_only || status == 204 || status == 304,
                        );
                        let close = response.headers.iter().any(|h| {
                            h.name.eq_ignore_ascii_case("connection")
                                && h.value.eq_ignore_ascii_case(b"close")
                        });
                        let server_thread = want_thread
                            .then(|| {
                                response
                                    .headers
                                    .iter()
                                    .find(|h| h.name.eq_ignore_ascii_case("x-servelab-thread"))
                                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
                            })
                            .flatten();
                        let framing = framing?;
                        self.consume(head_len);
                        self.skip_body(framing, deadline, exact)?;
                        return Ok(Reply {
                            status,
                            first_byte: first_byte.unwrap_or_else(Instant::now),
                            server_thread,
                            close: close || framing == Framing::UntilClose,
                        });
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => {
                        return Err(Failure::new(
                            Outcome::BadResponse,
                            format!("not an HTTP response: {e}"),
                        ))
                    }
                }
            }
            let n = self.fill(deadline, exact)?;
            if n == 0 {
                return Err(Failure::new(
                    Outcome::Reset,
                    "the server closed the connection before a complete response",
                ));
            }
            first_byte.get_or_insert_with(Instant::now);
        }
    }

    /// Reads and discards the body described by `framing`.
    fn skip_body(
        &mut self,
        framing: Framing,
        deadline: Instant,
        exact: bool,
    ) -> Result<(), Failure> {
        match framing {
            Framing::Empty => Ok(()),
            Framing::Length(mut left) => loop {
                let take = left.min(self.len);
                self.consume(take);
                left -= take;
                if left == 0 {
                    return Ok(());
                }
                if self.fill(deadline, exact)? == 0 {
                    return Err(Failure::new(
                        Outcome::Reset,
                        "the server closed the connection in the middle of a body",
                    ));
                }
            },
            Framing::Chunked => loop {
                match httparse::parse_chunk_size(&self.buf[..self.len]) {
                    Ok(httparse::Status::Complete((size_len, size))) => {
                        let size = usize::try_from(size).unwrap_or(usize::MAX);
                        if size == 0 {
                            // The last chunk; then an empty trailer line.
                            self.consume(size_len);
                            while self.len < 2 {
                                if self.fill(deadline, exact)? == 0 {
                                    return Err(Failure::new(
                                        Outcome::Reset,
                                        "closed in a chunked body",
                                    ));
                                }
                            }
                            self.consume(2);
                            return Ok(());
                        }
                        self.consume(size_len);
                        // The chunk's data and its CRLF.
                        self.skip_body(Framing::Length(size.saturating_add(2)), deadline, exact)?;
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.fill(deadline, exact)? == 0 {
                            return Err(Failure::new(Outcome::Reset, "closed in a chunked body"));
                        }
                    }
                    Err(_) => {
                        return Err(Failure::new(
                            Outcome::BadResponse,
                            "a malformed chunked body",
                        ))
                    }
                }
            },
            Framing::UntilClose => {
                self.len = 0;
                while self.fill(deadline, exact)? > 0 {
                    self.len = 0;
                }
                Ok(())
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Reads more bytes, waiting at most until `deadline`.
    fn fill(&mut self, deadline: Instant, exact: bool) -> Result<usize, Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::new(
                Outcome::ServiceTimeout,
                "no complete response by the deadline",
            ));
        }
        let timeout = if exact {
            left
        } else {
            self.timeout_set.unwrap_or(left)
        };
        if self.timeout_set != Some(timeout) {
            self.stream
                .set_read_timeout(Some(timeout))
                .map_err(|e| Failure::from_io(&e, "setting the read timeout"))?;
            self.timeout_set = Some(timeout);
        }
        if self.len == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            // Blocks until the server sends something, closes, or the time is up.
            match self.stream.read(&mut self.buf[self.len..]) {
                Ok(n) => {
                    self.len += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(Failure::new(
                        Outcome::ServiceTimeout,
                        "no complete response by the deadline",
                    ))
                }
                Err(e) => return Err(Failure::from_io(&e, "reading the response")),
            }
        }
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

impl Framing {
    fn of(headers: &[httparse::Header], no_body: bool) -> Result<Framing, Failure> {
        if no_body {
            return Ok(Framing::Empty);
        }
        let mut framing = Framing::UntilClose;
        for header in headers {
            if header.name.eq_ignore_ascii_case("transfer-encoding") {
                if header.value.eq_ignore_ascii_case(b"chunked") {
                    return Ok(Framing::Chunked);
                }
            } else if header.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| {
                        Failure::new(Outcome::BadResponse, "an unreadable Content-Length")
                    })?;
                framing = if n == 0 {
                    Framing::Empty
                } else {
                    Framing::Length(n)
                };
            }
        }
        Ok(framing)
    }
}
