//! The wire: one client connection, read and written with deadlines.
//!
//! Every wait here has an end. A [`Wire`] never blocks longer than the instant it is given
//! (`until`): before each `read` and `write` it sets the socket's timeout to the time left,
//! and a wait that reaches `until` comes back as [`Read::Hung`] or [`Sent::Hung`]. That is
//! how the fuzzer tells a server that is slow within its deadlines from one that holds a
//! connection past them: it gives the server its deadline plus a margin, and anything
//! longer is a hang.
//!
//! Responses are parsed with `httparse` and framed by `Content-Length` (servelab never
//! sends chunked bodies); interim `1xx` answers (`100 Continue`) are counted and skipped.
//! The bytes after a complete response stay in the buffer for the next one, since
//! pipelined answers often arrive in one read.

use std::io::{self, ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The largest response the fuzzer accepts: servelab echoes at most the body it was sent
/// (mutations stay under 64 KiB), and `/stats` is a few KiB.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// How many response headers the parser makes room for.
const MAX_HEADERS: usize = 64;

/// What waiting for the next response gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// A complete response.
    Response(Answer),
    /// The server closed the connection (a clean end of stream) before a response began.
    Closed,
    /// The connection was reset, or a read failed.
    Reset,
    /// Nothing complete and no close by the deadline: the server held the connection.
    Hung,
    /// Bytes that are not an HTTP response.
    Bad(String),
}

/// What writing gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Ok,
    /// The server reset the connection or had closed it.
    Reset,
    /// The server stopped reading and the write could not finish by the deadline.
    Hung,
}

/// A complete response: its status, and whether the server said it closes afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub close: bool,
}

/// One client connection. See the module documentation.
#[derive(Debug)]
pub struct Wire {
    stream: TcpStream,
    /// Bytes received and not consumed yet: `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    /// A read buffer, reused: responses are copied out of it into `buf`.
    chunk: Box<[u8]>,
    /// The server has closed its sending side.
    eof: bool,
    /// Interim (`1xx`) responses skipped so far.
    pub interim: u64,
}

impl Wire {
    /// Connects to `addr`, waiting at most `timeout` for the handshake (a full backlog
    /// makes a connect wait).
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Wire> {
        // Blocks until the kernel completes the handshake, or `timeout`.
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        // Requests go out in one write each; nothing is gained by Nagle's delay.
        stream.set_nodelay(true)?;
        // Every read and write below sets its own timeout first; these are the defaults
        // in case one ever does not.
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Wire {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            start: 0,
            chunk: vec![0; 64 * 1024].into_boxed_slice(),
            eof: false,
            interim: 0,
        })
    }

    /// Writes all of `bytes`, giving up at `until`.
    pub fn send(&mut self, bytes: &[u8], until: Instant) -> Sent {
        let mut written = 0;
        // Bounded: each pass writes at least one byte or returns; the deadline bounds the
        // passes that time out.
        while written < bytes.len() {
            let Some(left) = time_left(until) else {
                return Sent::Hung;
            };
            if self.stream.set_write_timeout(Some(left)).is_err() {
                return Sent::Reset;
            }
            // Blocks until the kernel takes some of the bytes (the server reads), or the
            // timeout.
            match self.stream.write(&bytes[written..]) {
                Ok(0) => return Sent::Reset,
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => return Sent::Reset,
            }
        }
        Sent::Ok
    }

    /// Shuts down the sending side: the server reads the end of the stream after what was
    /// sent.
    pub fn half_close(&mut self) -> Sent {
        match self.stream.shutdown(Shutdown::Write) {
            Ok(()) => Sent::Ok,
            Err(_) => Sent::Reset,
        }
    }

    /// Waits until `until` for the next complete response; `head` says that it answers a
    /// `HEAD` request and so has no body.
    pub fn next_response(&mut self, head: bool, until: Instant) -> Read {
        // Bounded: every pass either parses a response, reads more bytes (at most
        // MAX_RESPONSE of them before `Bad`) or runs into the deadline.
        loop {
            match parse(&self.buf[self.start..], head) {
                Parsed::Done {
                    consumed,
                    status,
                    close,
                } => {
                    self.consume(consumed);
                    if (100..200).contains(&status) {
                        self.interim += 1;
                        continue;
                    }
                    return Read::Response(Answer { status, close });
                }
                Parsed::UntilClose { status } if self.eof => {
                    self.consume(self.buf.len() - self.start);
                    return Read::Response(Answer {
                        status,
                        close: true,
                    });
                }
                Parsed::Bad(why) => return Read::Bad(why),
                Parsed::Incomplete | Parsed::UntilClose { .. } => {}
            }
            if self.eof {
                return if self.start == self.buf.len() {
                    Read::Closed
                } else {
                    Read::Bad(format!(
                        "the connection closed in the middle of a response ({} bytes of it)",
                        self.buf.len() - self.start
                    ))
                };
            }
            if self.buf.len() - self.start > MAX_RESPONSE {
                return Read::Bad(format!("a response longer than {MAX_RESPONSE} bytes"));
            }
            if let Err(read) = self.fill(until) {
                return read;
            }
        }
    }

    /// Reads and throws away whatever arrives until the server closes, or `until`:
    /// [`Read::Closed`], [`Read::Reset`] or [`Read::Hung`].
    pub fn drain(&mut self, until: Instant) -> Read {
        // Bounded by the deadline: each pass reads or times out.
        loop {
            self.consume(self.buf.len() - self.start);
            if self.eof {
                return Read::Closed;
            }
            if let Err(read) = self.fill(until) {
                return read;
            }
        }
    }

    /// Reads once, waiting at most until `until`: more bytes in the buffer, or the end of
    /// the stream noted in `eof`. `Err` is the reason to stop.
    fn fill(&mut self, until: Instant) -> Result<(), Read> {
        let Some(left) = time_left(until) else {
            return Err(Read::Hung);
        };
        if self.stream.set_read_timeout(Some(left)).is_err() {
            return Err(Read::Reset);
        }
        // Blocks until the server sends something or closes, or the timeout.
        match self.stream.read(&mut self.chunk) {
            Ok(0) => {
                self.eof = true;
                Ok(())
            }
            Ok(n) => {
                if self.start > 0 && self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                self.buf.extend_from_slice(&self.chunk[..n]);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::Interrupted || is_timeout(&e) => Ok(()),
            Err(_) => Err(Read::Reset),
        }
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// The time left until `until`, or `None` once it has passed. Never zero: a zero timeout
/// means "no timeout" to the socket API.
fn time_left(until: Instant) -> Option<Duration> {
    let left = until.checked_duration_since(Instant::now())?;
    (left >= Duration::from_micros(100)).then_some(left)
}

/// A socket timeout shows as `WouldBlock` on Linux and `TimedOut` elsewhere.
fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// What the bytes at the front of the buffer are.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Incomplete,
    /// A whole response of `consumed` bytes.
    Done {
        consumed: usize,
        status: u16,
        close: bool,
    },
    /// A head without `Content-Length`: the body lasts until the server closes.
    UntilClose {
        status: u16,
    },
    Bad(String),
}

fn parse(bytes: &[u8], head_request: bool) -> Parsed {
    if bytes.is_empty() {
        return Parsed::Incomplete;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(e) => {
            let shown: String = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into();
            return Parsed::Bad(format!("not an HTTP response ({e}): {shown:?}"));
        }
    };
    let status = response.code.unwrap_or(0);
    let mut length: Option<usize> = None;
    let mut close = false;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            {
                Some(n) => length = Some(n),
                None => return Parsed::Bad("a response with a bad Content-Length".into()),
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= h.value.eq_ignore_ascii_case(b"close");
        }
    }
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let body = match (no_body, length) {
        (true, _) => 0,
        (false, Some(n)) => n,
        (false, None) => return Parsed::UntilClose { status },
    };
    if body > MAX_RESPONSE {
        return Parsed::Bad(format!("a response body of {body} bytes"));
    }
    if bytes.len() < head + body {
        return Parsed::Incomplete;
    }
    Parsed::Done {
        consumed: head + body,
        status,
        close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_their_length() {
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 400 Bad\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let Parsed::Done {
            consumed,
            status: 200,
            close: false,
        } = parse(two, false)
        else {
            panic!("the first response");
        };
        assert_eq!(
            parse(&two[consumed..], false),
            Parsed::Done {
                consumed: two.len() - consumed,
                status: 400,
                close: true
            }
        );
        assert_eq!(parse(&two[..40], false), Parsed::Incomplete);
        // A HEAD answer has no body, whatever its length says.
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        assert!(matches!(
            parse(head, true),
            Parsed::Done { status: 200, .. }
        ));
        assert!(matches!(parse(b"garbage\r\n\r\n", false), Parsed::Bad(_)));
    }
}
