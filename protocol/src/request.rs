//! Parsing one request head: the request line and the header section.
//!
//! This module turns the bytes a client sent into a [`Head`], or into a [`Rejection`] that
//! says which HTTP error the client deserves. It never touches a socket: it looks at a byte
//! slice and answers "complete", "need more bytes" or "bad". That keeps the rules of the
//! protocol in one place that a property test can hammer with random input (see the tests at
//! the bottom), while `conn.rs` deals with reading, timeouts and bodies.
//!
//! The grammar itself is parsed by `httparse`, a zero-copy HTTP/1.x parser used by hyper.
//! What this module adds is servelab's strict subset on top of it:
//!
//! * only `origin-form` targets (`/path?query`), so proxies' absolute URLs are refused;
//! * HTTP/1.1 requests must carry exactly one `Host` header;
//! * bodies are framed by `Content-Length` only. A `Transfer-Encoding` header (chunked
//!   uploads) is answered with 411 Length Required: the server will not guess where the body
//!   ends, and the client is told to send a length instead.

use crate::response::Status;

/// The most headers a request may carry. More than this is answered with 431.
pub const MAX_HEADERS: usize = 64;

/// The HTTP version of a request. servelab always answers as HTTP/1.1, which is allowed for
/// HTTP/1.0 clients as long as the server does not use 1.1-only features on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// The methods the handler knows. Anything else is kept as text so that a 405 can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other(String),
}

impl Method {
    fn parse(text: &str) -> Method {
        match text {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            other => Method::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Other(other) => other,
        }
    }
}

/// Everything servelab needs to know from a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The path part of the target, without the query string.
    pub path: String,
    pub version: Version,
    /// Length of the body that follows the head, from `Content-Length` (0 when absent).
    pub content_length: usize,
    /// Whether the client wants the connection kept open after this exchange: the default
    /// for HTTP/1.1 unless it sent `Connection: close`, and only on request for HTTP/1.0.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue` and waits for a go-ahead before the body.
    pub expect_continue: bool,
    /// How many bytes the head took, including the blank line that ends it.
    pub len: usize,
}

/// The limits a request is checked against. All are set from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest header section (request line and headers) accepted; more is a 431.
    pub max_header_bytes: usize,
    /// The largest body accepted; more is a 413.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// A request that will not be served, with the status the client gets and a one-line reason
/// that goes into the response body. Every rejection closes the connection afterwards,
/// because after a framing error the server can no longer tell where the next request starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status:?}: {reason}")]
pub struct Rejection {
    pub status: Status,
    pub reason: String,
}

impl Rejection {
    pub fn new(status: Status, reason: impl Into<String>) -> Self {
        Rejection {
            status,
            reason: reason.into(),
        }
    }

    fn bad(reason: impl Into<String>) -> Self {
        Rejection::new(Status::BadRequest, reason)
    }
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` when the head is not complete yet (read more bytes and call again),
/// `Ok(Some(head))` when it is, and `Err` when the bytes can never become a valid request or
/// the head is over the size limit.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, Rejection> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            // A head that has not ended within the limit never will, as far as we care.
            if buf.len() > limits.max_header_bytes {
                return Err(too_large(limits));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Rejection::new(
                Status::HeaderFieldsTooLarge,
                format!("more than {MAX_HEADERS} header fields"),
            ))
        }
        Err(httparse::Error::Version) => {
            return Err(Rejection::new(
                Status::VersionNotSupported,
                "only HTTP/1.0 and HTTP/1.1 are spoken here",
            ))
        }
        Err(e) => return Err(Rejection::bad(format!("malformed request: {e}"))),
    };
    if len > limits.max_header_bytes {
        return Err(too_large(limits));
    }

    // httparse only returns Complete once method, path and version are all present.
    let method = Method::parse(req.method.unwrap_or_default());
    let target = req.path.unwrap_or_default();
    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    if !target.starts_with('/') {
        return Err(Rejection::bad(
            "the request target must be a path starting with '/'",
        ));
    }
    let path = target.split(['?', '#']).next().unwrap_or(target).to_owned();

    let HeaderFacts {
        content_length,
        hosts,
        connection_close,
        connection_keep_alive,
        expect_continue,
    } = HeaderFacts::read(req.headers)?;
    if version == Version::Http11 && hosts != 1 {
        return Err(Rejection::bad(
            "an HTTP/1.1 request must carry exactly one Host header",
        ));
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > limits.max_body_bytes {
        return Err(Rejection::new(
            Status::PayloadTooLarge,
            format!(
                "the body is {content_length} bytes; the limit is {} bytes",
                limits.max_body_bytes
            ),
        ));
    }
    let keep_alive = match version {
        Version::Http11 => !connection_close,
        Version::Http10 => connection_keep_alive && !connection_close,
    };
    Ok(Some(Head {
        method,
        path,
        version,
        content_length,
        keep_alive,
        expect_continue,
        len,
    }))
}

/// What the header fields of a request head say that the server acts on.
#[derive(Debug, Default)]
struct HeaderFacts {
    /// The body's length; `None` without a Content-Length field.
    content_length: Option<usize>,
    /// How many Host fields there are (HTTP/1.1 needs exactly one).
    hosts: usize,
    /// `Connection: close`, and `Connection: keep-alive` (which HTTP/1.0 needs to stay open).
    connection_close: bool,
    connection_keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before it sends the body.
    expect_continue: bool,
}

impl HeaderFacts {
    /// Reads `headers`, refusing what servelab does not accept: a field that is not text,
    /// conflicting lengths, Transfer-Encoding, an expectation other than 100-continue.
    fn read(headers: &[httparse::Header<'_>]) -> Result<HeaderFacts, Rejection> {
        let mut facts = HeaderFacts::default();
        for header in headers {
            let name = header.name;
            let value = std::str::from_utf8(header.value)
                .map_err(|_| Rejection::bad(format!("header {name} is not valid text")))?
                .trim();
            if name.eq_ignore_ascii_case("content-length") {
                let n = parse_content_length(value)?;
                if facts.content_length.is_some_and(|earlier| earlier != n) {
                    return Err(Rejection::bad("conflicting Content-Length headers"));
                }
                facts.content_length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(Rejection::new(
                    Status::LengthRequired,
                    "request bodies must be sent with Content-Length; Transfer-Encoding (chunked) is not supported",
                ));
            } else if name.eq_ignore_ascii_case("host") {
                facts.hosts += 1;
            } else if name.eq_ignore_ascii_case("connection") {
                for token in value.split(',').map(str::trim) {
                    facts.connection_close |= token.eq_ignore_ascii_case("close");
                    facts.connection_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                }
            } else if name.eq_ignore_ascii_case("expect") {
                if !value.eq_ignore_ascii_case("100-continue") {
                    return Err(Rejection::new(
                        Status::ExpectationFailed,
                        format!("unsupported expectation: {value}"),
                    ));
                }
                facts.expect_continue = true;
            }
        }
        Ok(facts)
    }
}

fn too_large(limits: &Limits) -> Rejection {
    Rejection::new(
        Status::HeaderFieldsTooLarge,
        format!(
            "the header section is over the limit of {} bytes",
            limits.max_header_bytes
        ),
    )
}

/// `Content-Length` is one or more decimal digits and nothing else: no sign, no spaces
/// inside, no list. Anything looser is how request-smuggling bugs start.
fn parse_content_length(value: &str) -> Result<usize, Rejection> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::bad(format!(
            "Content-Length must be a decimal number, not {value:?}"
        )));
    }
    // Too many digits for usize is certainly over the body limit.
    Ok(value.parse().unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<Option<Head>, Rejection> {
        parse_head(text.as_bytes(), &Limits::default())
    }

    #[test]
    fn complete_get() {
        let head = parse("GET /sleep/5?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.path, "/sleep/5");
        assert!(head.keep_alive);
        assert_eq!(head.content_length, 0);
    }

    #[test]
    fn partial_head_asks_for_more() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a\r\n").unwrap(), None);
    }

    #[test]
    fn http10_closes_unless_asked() {
        let head = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!head.keep_alive);
        let head = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.keep_alive);
    }

    #[test]
    fn strict_content_length() {
        let err =
            parse("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n").unwrap_err();
        assert_eq!(err.status, Status::BadRequest);
        let err = parse(
            "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(err.status, Status::BadRequest);
    }

    #[test]
    fn chunked_is_refused_with_411() {
        let err = parse("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap_err();
        assert_eq!(err.status, Status::LengthRequired);
    }

    #[test]
    fn oversized_head_is_431_even_when_incomplete() {
        let mut text = String::from("GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
        text.push_str(&"a".repeat(9000));
        let err = parse(&text).unwrap_err();
        assert_eq!(err.status, Status::HeaderFieldsTooLarge);
    }

    proptest! {
        // Random bytes must never panic the parser, and whatever it says must be consistent:
        // a complete head is never longer than the input.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(Some(head)) = parse_head(&bytes, &Limits::default()) {
                prop_assert!(head.len <= bytes.len());
            }
        }

        // A valid request with random header noise still parses to the same path.
        #[test]
        fn header_values_do_not_change_the_path(value in "[a-zA-Z0-9 ,;=]{0,100}") {
            let text = format!("GET /time HTTP/1.1\r\nHost: h\r\nX-Noise: {value}\r\n\r\n");
            let head = parse(&text).unwrap().unwrap();
            prop_assert_eq!(head.path, "/time");
        }
    }
}
