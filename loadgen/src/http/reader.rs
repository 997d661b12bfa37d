//! Reading one response at a time from the bytes a socket returned, without doing I/O.
//!
//! The reader is a state machine over the parts of a response: a head, then a body framed
//! one of three ways (a `Content-Length`, chunks, or the end of the connection). Bytes
//! come in whatever pieces the socket returned: a head split over two reads, two
//! responses in one read. The reader consumes what the current part needs and keeps the
//! rest, so that pieces never matter.
//!
//! In the common case, where a read returns whole responses, nothing is copied: the bytes
//! are parsed where they lie in the caller's buffer and only a remainder (an unfinished
//! head, or the start of the next response) is kept. A body is counted, not stored, unless
//! the caller asked to keep it.

use crate::outcome::{Failure, Outcome};

/// The longest response head the reader accepts. A server that sends more without ending
/// its head is answering with something that is not HTTP.
pub const MAX_HEAD: usize = 64 * 1024;

/// What a complete response said that the simulator records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server thread that answered, when it says (servelab's `X-Servelab-Thread`
    /// header) and the reader was asked to look.
    pub server_thread: Option<String>,
    /// The server announced it closes the connection (or the body ended with it).
    pub close: bool,
    /// Every header field, in order, and the body (without chunk framing): only when the
    /// reader was asked to keep them ([`ResponseReader::expect_whole`]); empty otherwise,
    /// so that a load run copies nothing.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (case-insensitive), if it was kept.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where the reader is within the current response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a complete head.
    Head,
    /// Counting `left` more body bytes.
    Length { left: usize },
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// Counting a chunk's data and the CRLF after it.
    ChunkData { left: usize },
    /// After the last chunk: waiting for the empty line that ends the (empty) trailer.
    Trailer,
    /// The body lasts until the server closes the connection.
    UntilClose,
}

/// Reads one response at a time from the bytes given to it. See the module documentation.
#[derive(Debug)]
pub struct ResponseReader {
    /// Bytes kept between calls: an incomplete head or chunk-size line, or what arrived
    /// after the last complete response. Empty in the common case, where a read returns
    /// whole responses.
    pending: Vec<u8>,
    state: State,
    /// The response being read, once its head is complete.
    response: Option<Response>,
    /// The request was `HEAD`: the response has no body whatever its headers say.
    head_only: bool,
    /// Look for the `X-Servelab-Thread` header.
    want_thread: bool,
    /// Keep every header and the body, and hand out interim (1xx) responses too: for tests
    /// and probes that look at what the server said, not only how fast.
    keep: bool,
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader::new()
    }
}

impl ResponseReader {
    pub fn new() -> ResponseReader {
        ResponseReader {
            pending: Vec::new(),
            state: State::Head,
            response: None,
            head_only: false,
            want_thread: false,
            keep: false,
        }
    }

    /// Prepares for the response to the request just sent: `head_only` for a `HEAD`
    /// request, `want_thread` to record the server thread.
    pub fn expect(&mut self, head_only: bool, want_thread: bool) {
        self.state = State::Head;
        self.response = None;
        self.head_only = head_only;
        self.want_thread = want_thread;
        self.keep = false;
    }

    /// Prepares for a response whose headers and body are kept ([`Response::headers`],
    /// [`Response::body`]); an interim (1xx) response is handed out as one of its own.
    pub fn expect_whole(&mut self, head_only: bool) {
        self.expect(head_only, true);
        self.keep = true;
    }

    /// Whether bytes of a response (or after one) are held, i.e. the server has said
    /// something the caller has not yet seen as a complete response.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes the bytes held after the last complete response out of the reader (for a
    /// caller that goes on reading the raw stream).
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// Takes the bytes a read returned. `Ok(Some(..))` when they complete the response
    /// (bytes after it are kept for the next one), `Ok(None)` when more are needed.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Response>, Failure> {
        // Nothing held: parse the new bytes where they are and keep only what is left.
        // Something held: append and parse the whole, then drop what was used.
        let done = if self.pending.is_empty() {
            let (used, done) = self.advance(data)?;
            self.pending.extend_from_slice(&data[used..]);
            done
        } else {
            self.pending.extend_from_slice(data);
            let pending = std::mem::take(&mut self.pending);
            let result = self.advance(&pending);
            self.pending = pending;
            let (used, done) = result?;
            self.pending.drain(..used);
            done
        };
        if done.is_none() && self.pending.len() > MAX_HEAD {
            // Only an unfinished head (or chunk-size line) is ever kept while waiting.
            return Err(Failure::new(
                Outcome::BadResponse,
                format!("a response head longer than {} KiB", MAX_HEAD / 1024),
            ));
        }
        Ok(done)
    }

    /// Parses what is already held, without new bytes: a response that arrived together
    /// with the previous one.
    pub fn poll(&mut self) -> Result<Option<Response>, Failure> {
        self.feed(&[])
    }

    /// The server closed the connection: completes a response delimited by the close, or
    /// says what was missing.
    pub fn closed(&mut self) -> Result<Response, Failure> {
        match (self.state, self.response.take()) {
            (State::UntilClose, Some(mut response)) => {
                response.close = true;
                self.state = State::Head;
                Ok(response)
            }
            (State::Head, _) => Err(Failure::new(
                Outcome::Reset,
                "the server closed the connection before a complete response",
            )),
            (State::Length { .. }, _) => Err(Failure::new(
                Outcome::Reset,
                "the server closed the connection in the middle of a body",
            )),
            _ => Err(Failure::new(Outcome::Reset, "closed in a chunked body")),
        }
    }

    /// Consumes as much of `input` as the current response needs. Returns how many bytes
    /// were used and the response, if it is now complete.
    ///
    /// Each state has a method that reads what it can of the rest of the input and says
    /// how far it got ([`Consumed`]): either it moved to another state and the loop goes
    /// on with the bytes after it, or reading stops here, because a response is complete or
    /// because the input ran out in the middle of one.
    fn advance(&mut self, input: &[u8]) -> Result<(usize, Option<Response>), Failure> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            let consumed = match self.state {
                State::Head => self.head(rest)?,
                State::Length { left } => self.length(rest, left),
                State::ChunkSize => self.chunk_size(rest)?,
                State::ChunkData { left } => self.chunk_data(rest, left),
                State::Trailer => self.trailer(rest),
                State::UntilClose => {
                    self.keep_body(rest);
                    Consumed::Stop(rest.len(), None)
                }
            };
            match consumed {
                Consumed::More(used) => at += used,
                Consumed::Stop(used, response) => return Ok((at + used, response)),
            }
        }
    }

    /// [`State::Head`]: parses a complete head, if `rest` holds one. An interim (1xx)
    /// response is skipped, or handed out by a reader that keeps everything; a final one
    /// decides how its body is delimited, and is complete at once when it has none.
    fn head(&mut self, rest: &[u8]) -> Result<Consumed, Failure> {
        // httparse borrows the header names and values from `rest`: nothing is copied
        // unless the reader keeps them.
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        let head_len = match parsed.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(Consumed::Stop(0, None)),
            Err(e) => {
                return Err(Failure::new(
                    Outcome::BadResponse,
                    format!("not an HTTP response: {e}"),
                ))
            }
        };
        let status = parsed.code.unwrap_or(0);
        let headers = parsed.headers;
        let kept: Vec<(String, String)> = if self.keep {
            headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).into_owned();
                    (h.name.to_owned(), value)
                })
                .collect()
        } else {
            Vec::new()
        };
        if (100..200).contains(&status) {
            // An interim response: the real one follows. Only a reader that keeps
            // everything hands it out.
            if self.keep {
                let interim = Response {
                    status,
                    server_thread: None,
                    close: false,
                    headers: kept,
                    body: Vec::new(),
                };
                return Ok(Consumed::Stop(head_len, Some(interim)));
            }
            return Ok(Consumed::More(head_len));
        }
        let close = closes(parsed.version, headers);
        let server_thread = self
            .want_thread
            .then(|| {
                headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("x-servelab-thread"))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            })
            .flatten();
        // HEAD answers, 204 and 304 have no body whatever their headers announce.
        let no_body = self.head_only || status == 204 || status == 304;
        self.state = body_state(headers, no_body)?;
        self.response = Some(Response {
            status,
            server_thread,
            close: close || self.state == State::UntilClose,
            headers: kept,
            body: Vec::new(),
        });
        if self.state == (State::Length { left: 0 }) {
            return Ok(Consumed::Stop(head_len, self.finish()));
        }
        Ok(Consumed::More(head_len))
    }

    /// [`State::Length`]: counts `left` more body bytes; the response is complete when
    /// they are all in.
    fn length(&mut self, rest: &[u8], left: usize) -> Consumed {
        let take = left.min(rest.len());
        self.keep_body(&rest[..take]);
        if take < left {
            self.state = State::Length { left: left - take };
            return Consumed::Stop(take, None);
        }
        Consumed::Stop(take, self.finish())
    }

    /// [`State::ChunkSize`]: reads a chunk-size line. Size 0 is the last chunk, which the
    /// trailer follows; any other size is that many bytes of data and a CRLF.
    fn chunk_size(&mut self, rest: &[u8]) -> Result<Consumed, Failure> {
        match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete((line, 0))) => {
                self.state = State::Trailer;
                Ok(Consumed::More(line))
            }
            Ok(httparse::Status::Complete((line, size))) => {
                // The chunk's data and the CRLF after it.
                let left = usize::try_from(size)
                    .unwrap_or(usize::MAX)
                    .saturating_add(2);
                self.state = State::ChunkData { left };
                Ok(Consumed::More(line))
            }
            Ok(httparse::Status::Partial) => Ok(Consumed::Stop(0, None)),
            Err(_) => Err(Failure::new(
                Outcome::BadResponse,
                "a malformed chunked body",
            )),
        }
    }

    /// [`State::ChunkData`]: counts `left` more bytes of a chunk's data and the CRLF after
    /// it, then expects the next chunk-size line.
    fn chunk_data(&mut self, rest: &[u8], left: usize) -> Consumed {
        let take = left.min(rest.len());
        // The last two bytes of `left` are the CRLF after the chunk's data.
        self.keep_body(&rest[..take.min(left.saturating_sub(2))]);
        if take < left {
            self.state = State::ChunkData { left: left - take };
            return Consumed::Stop(take, None);
        }
        self.state = State::ChunkSize;
        Consumed::More(take)
    }

    /// [`State::Trailer`]: skips trailer fields, each ended by CRLF; the empty line that
    /// ends them completes the response.
    fn trailer(&mut self, rest: &[u8]) -> Consumed {
        let Some(line) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Consumed::Stop(0, None);
        };
        if line == 0 {
            return Consumed::Stop(2, self.finish());
        }
        Consumed::More(line + 2)
    }

    /// Adds body bytes to the response, if this reader keeps them.
    fn keep_body(&mut self, bytes: &[u8]) {
        if let (true, Some(response)) = (self.keep, self.response.as_mut()) {
            response.body.extend_from_slice(bytes);
        }
    }

    /// The response is complete: hands it out and waits for the next head.
    fn finish(&mut self) -> Option<Response> {
        self.state = State::Head;
        self.response.take()
    }
}

/// How far one state's step got through the input (see [`ResponseReader::advance`]).
enum Consumed {
    /// It used this many bytes and moved to another state, which reads what follows.
    More(usize),
    /// It used this many bytes and reading stops: with the response when it is complete,
    /// without when the input ran out before it was.
    Stop(usize, Option<Response>),
}

/// The most header fields a response may have.
const MAX_HEADERS: usize = 100;

/// Whether the server closes the connection after this response: `Connection: close`, or
/// an HTTP/1.0 response that did not ask to keep it alive.
fn closes(version: Option<u8>, headers: &[httparse::Header]) -> bool {
    let says = |token: &[u8]| {
        headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && tokens(h.value).any(|t| t.eq_ignore_ascii_case(token))
        })
    };
    says(b"close") || (version == Some(0) && !says(b"keep-alive"))
}

/// The comma-separated tokens of a header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(|t| t.trim_ascii())
}

/// How the body after a head with `headers` is delimited.
fn body_state(headers: &[httparse::Header], no_body: bool) -> Result<State, Failure> {
    if no_body {
        return Ok(State::Length { left: 0 });
    }
    let mut state = State::UntilClose;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // The body is chunked when chunked is the last coding applied.
            if tokens(header.value)
                .last()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
            {
                return Ok(State::ChunkSize);
            }
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| {
                    Failure::new(Outcome::BadResponse, "an unreadable Content-Length")
                })?;
            state = State::Length { left: n };
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(reader: &mut ResponseReader, pieces: &[&[u8]]) -> Vec<Response> {
        let mut out = Vec::new();
        for piece in pieces {
            if let Some(r) = reader.feed(piece).expect("valid") {
                out.push(r);
            }
            while let Some(r) = reader.poll().expect("valid") {
                out.push(r);
            }
        }
        out
    }

    #[test]
    fn a_response_split_anywhere_is_read_once() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Servelab-Thread: w-1\r\n\r\nhello";
        for cut in 0..bytes.len() {
            let mut reader = ResponseReader::new();
            reader.expect(false, true);
            let got = read_all(&mut reader, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(got.len(), 1, "cut at {cut}");
            assert_eq!(got[0].status, 200);
            assert_eq!(got[0].server_thread.as_deref(), Some("w-1"));
            assert!(!got[0].close);
            assert!(!reader.has_pending());
        }
    }

    #[test]
    fn chunked_bodies_and_interim_responses() {
        let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        for cut in 0..bytes.len() {
            let mut reader = ResponseReader::new();
            reader.expect(false, false);
            let got = read_all(&mut reader, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(got.len(), 1, "cut at {cut}");
            assert_eq!(got[0].status, 200);
        }
    }

    #[test]
    fn two_responses_in_one_read_are_both_found() {
        let one = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let mut both = one.to_vec();
        both.extend_from_slice(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let mut reader = ResponseReader::new();
        let first = reader.feed(&both).expect("valid").expect("complete");
        assert_eq!(first.status, 200);
        assert!(reader.has_pending());
        let second = reader.poll().expect("valid").expect("complete");
        assert_eq!(second.status, 503);
        assert!(second.close);
    }

    #[test]
    fn a_body_until_close_ends_with_the_connection() {
        let mut reader = ResponseReader::new();
        assert_eq!(
            reader
                .feed(b"HTTP/1.0 200 OK\r\n\r\nsome body")
                .expect("valid"),
            None
        );
        assert_eq!(reader.feed(b" more").expect("valid"), None);
        let response = reader.closed().expect("complete at the close");
        assert!(response.close);
        // A close in the middle of a head or a counted body is a reset.
        let mut reader = ResponseReader::new();
        reader
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .expect("valid");
        assert_eq!(reader.closed().expect_err("short").outcome, Outcome::Reset);
    }

    #[test]
    fn http_1_0_closes_unless_it_keeps_alive() {
        let mut reader = ResponseReader::new();
        let r = reader
            .feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert!(r.close);
        let r = reader
            .feed(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert!(!r.close);
        let r = reader
            .feed(b"HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\nContent-Length: 0\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert!(r.close);
    }

    #[test]
    fn chunked_with_trailers_and_other_codings() {
        let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\nX-Check: 1\r\nX-More: 2\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        for cut in 0..bytes.len() {
            let mut reader = ResponseReader::new();
            let got = read_all(&mut reader, &[&bytes[..cut], &bytes[cut..]]);
            let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
            assert_eq!(statuses, [200, 204], "cut at {cut}");
        }
    }

    #[test]
    fn head_responses_have_no_body() {
        let mut reader = ResponseReader::new();
        reader.expect(true, false);
        let r = reader
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            .expect("valid")
            .expect("complete without a body");
        assert_eq!(r.status, 200);
    }

    #[test]
    fn garbage_and_endless_heads_are_bad_responses() {
        let mut reader = ResponseReader::new();
        let e = reader
            .feed(b"SSH-2.0-OpenSSH\r\n\r\n")
            .expect_err("not HTTP");
        assert_eq!(e.outcome, Outcome::BadResponse);
        let mut reader = ResponseReader::new();
        reader.feed(b"HTTP/1.1 200 OK\r\n").expect("partial");
        let line = [b'a'; 1024];
        let mut failed = None;
        for _ in 0..100 {
            if let Err(e) = reader.feed(&line) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("the reader refuses an endless head");
        assert_eq!(e.outcome, Outcome::BadResponse);
        assert!(reader.pending.len() <= MAX_HEAD + line.len());
    }

    #[test]
    fn a_reader_that_keeps_hands_out_headers_bodies_and_interim_answers() {
        let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope";
        for cut in 0..bytes.len() {
            let mut reader = ResponseReader::new();
            reader.expect_whole(false);
            let got = read_all(&mut reader, &[&bytes[..cut], &bytes[cut..]]);
            let seen: Vec<(u16, &[u8])> = got.iter().map(|r| (r.status, &r.body[..])).collect();
            assert_eq!(
                seen,
                [(100, &b""[..]), (200, &b"abcde"[..]), (404, &b"nope"[..])],
                "cut at {cut}"
            );
            assert_eq!(got[1].header("x-a"), Some("b"));
        }
    }
}
