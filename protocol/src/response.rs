//! Responses: what the handler returns, and how it is written on the wire.
//!
//! A [`Response`] is plain data (status, body, a few optional headers) so that it can be
//! built on one thread and written on another, as the pipeline server does, or built by a
//! helper thread and written by an event loop. Writing it out
//! is [`Response::encode`], which adds the headers every servelab response carries:
//! `Server`, `Date`, `Content-Length`, `Content-Type`, the name of the thread that handled
//! the request (`X-Servelab-Thread`, so clients can see who served them), and `Connection`
//! when the connection is about to close or an HTTP/1.0 client is being kept alive.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

/// The statuses servelab sends. Keeping them in one enum lets `/stats` count responses by
/// status without a map, and makes it impossible to send a status without a reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    LengthRequired,
    PayloadTooLarge,
    ExpectationFailed,
    HeaderFieldsTooLarge,
    InternalError,
    ServiceUnavailable,
    VersionNotSupported,
}

impl Status {
    /// Every status, in the order `/stats` lists them.
    pub const ALL: [Status; 12] = [
        Status::Ok,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::LengthRequired,
        Status::PayloadTooLarge,
        Status::ExpectationFailed,
        Status::HeaderFieldsTooLarge,
        Status::InternalError,
        Status::ServiceUnavailable,
        Status::VersionNotSupported,
    ];

    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::LengthRequired => 411,
            Status::PayloadTooLarge => 413,
            Status::ExpectationFailed => 417,
            Status::HeaderFieldsTooLarge => 431,
            Status::InternalError => 500,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::LengthRequired => "Length Required",
            Status::PayloadTooLarge => "Payload Too Large",
            Status::ExpectationFailed => "Expectation Failed",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalError => "Internal Server Error",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }

    /// The position of this status in [`Status::ALL`], used to index counters.
    pub fn index(self) -> usize {
        Status::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or_default()
    }
}

/// A response, ready to be encoded by whichever thread sends it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: Status,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// For 405: the methods the resource does allow.
    pub allow: Option<&'static str>,
    /// For 503: how many seconds the client should wait before trying again.
    pub retry_after: Option<u32>,
    /// The response ends the connection: errors after which the byte stream cannot be
    /// trusted (a malformed request, a timeout) set it; a 404 or 405 does not, because the
    /// request was well-framed and the next one can be read.
    pub close: bool,
    /// The thread that produced the response.
    pub handled_by: Option<Arc<str>>,
}

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";
pub const OCTETS: &str = "application/octet-stream";

impl Response {
    pub fn new(status: Status, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
            allow: None,
            retry_after: None,
            close: false,
            handled_by: current_thread_name(),
        }
    }

    pub fn text(status: Status, body: impl Into<String>) -> Self {
        Response::new(status, TEXT, body.into())
    }

    /// An error response: a one-line reason as the body, and the connection is kept open
    /// (use [`Response::closing`] for errors after which the stream cannot be trusted).
    pub fn error(status: Status, reason: &str) -> Self {
        Response::text(
            status,
            format!("{} {}: {reason}\n", status.code(), status.reason()),
        )
    }

    /// Marks the response as the last one on its connection.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// Serialises the response into `out` (which is cleared first). See
    /// [`Response::encode_into`] for the arguments.
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        server: &str,
        close: bool,
        keep_alive_header: bool,
        include_body: bool,
    ) {
        out.clear();
        self.encode_into(out, server, close, keep_alive_header, include_body);
    }

    /// Appends the response to `out`.
    ///
    /// * `server` is the value of the `Server` header, e.g. `servelab-single`.
    /// * `close` says whether the connection closes after this response; the caller decides
    ///   it from the request, the response and the server's state.
    /// * `keep_alive_header` adds `Connection: keep-alive`, which HTTP/1.0 clients need to
    ///   hear before they reuse a connection.
    /// * `include_body` is false for HEAD requests: the headers, including the length the
    ///   body would have had, but no body.
    ///
    /// It copies bytes rather than going through `write!`: formatting machinery costs more
    /// than the rest of a small response, and this runs once per request.
    pub fn encode_into(
        &self,
        out: &mut Vec<u8>,
        server: &str,
        close: bool,
        keep_alive_header: bool,
        include_body: bool,
    ) {
        out.reserve(192 + server.len() + if include_body { self.body.len() } else { 0 });
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, u64::from(self.status.code()));
        out.push(b' ');
        out.extend_from_slice(self.status.reason().as_bytes());
        out.extend_from_slice(b"\r\nServer: ");
        out.extend_from_slice(server.as_bytes());
        out.extend_from_slice(b"\r\nDate: ");
        out.extend_from_slice(HttpDateCache::now().as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(self.content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        push_decimal(out, self.body.len() as u64);
        out.extend_from_slice(b"\r\n");
        if let Some(thread) = &self.handled_by {
            out.extend_from_slice(b"X-Servelab-Thread: ");
            out.extend_from_slice(thread.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some(allow) = self.allow {
            out.extend_from_slice(b"Allow: ");
            out.extend_from_slice(allow.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some(seconds) = self.retry_after {
            out.extend_from_slice(b"Retry-After: ");
            push_decimal(out, u64::from(seconds));
            out.extend_from_slice(b"\r\n");
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if keep_alive_header {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if include_body {
            out.extend_from_slice(&self.body);
        }
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The `Date` header's value, formatted at most once per second per thread. The header has
/// a resolution of one second, and formatting a date costs more than the rest of a small
/// response's head.
struct HttpDateCache;

impl HttpDateCache {
    fn now() -> Rc<str> {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        DATE.with(|cell| {
            let mut cached = cell.borrow_mut();
            match &*cached {
                Some((s, text)) if *s == second => Rc::clone(text),
                _ => {
                    let text: Rc<str> = Rc::from(httpdate::fmt_http_date(now));
                    *cached = Some((second, Rc::clone(&text)));
                    text
                }
            }
        })
    }
}

thread_local! {
    // This thread's last formatted Date: the second it is for, and the text.
    static DATE: RefCell<Option<(u64, Rc<str>)>> = const { RefCell::new(None) };

    // Each thread's name, made once, so that tagging every response with it costs a
    // reference count instead of an allocation.
    static THREAD_NAME: Option<Arc<str>> = std::thread::current().name().map(Arc::from);
}

/// The name of the calling thread, if it has one.
pub fn current_thread_name() -> Option<Arc<str>> {
    THREAD_NAME.with(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_header_and_the_body() {
        let mut response = Response::error(Status::ServiceUnavailable, "busy");
        response.retry_after = Some(1);
        response.allow = Some("GET, HEAD");
        response.handled_by = Some(Arc::from("worker-7"));
        let mut out = b"earlier".to_vec();
        response.encode_into(&mut out, "servelab-test", true, false, true);
        let text = String::from_utf8(out).expect("text");
        let (head, body) = text
            .strip_prefix("earlier")
            .and_then(|t| t.split_once("\r\n\r\n"))
            .expect("appended, with a head and a body");
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(lines[0], "HTTP/1.1 503 Service Unavailable");
        assert_eq!(lines[1], "Server: servelab-test");
        assert!(lines[2].starts_with("Date: ") && lines[2].ends_with(" GMT"));
        assert_eq!(lines[3], "Content-Type: text/plain; charset=utf-8");
        assert_eq!(lines[4], format!("Content-Length: {}", body.len()));
        assert_eq!(
            &lines[5..],
            [
                "X-Servelab-Thread: worker-7",
                "Allow: GET, HEAD",
                "Retry-After: 1",
                "Connection: close"
            ]
        );
        assert_eq!(body, "503 Service Unavailable: busy\n");
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 404, 1_048_576, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
