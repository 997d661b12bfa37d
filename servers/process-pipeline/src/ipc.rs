//! The framing between the server and its handler processes.
//!
//! Each handler process is joined to the server by one Unix stream socket (a
//! `socketpair`). The server writes one request, the handler writes back one reply, and
//! only then does the next request go out: at most one request per process is in flight.
//!
//! Every message is a **frame**: a 4-byte big-endian length `N`, then `N` bytes. Inside:
//!
//! ```text
//! request (server → handler):
//!   u8   method: 0 GET, 1 HEAD, 2 POST, 3 other (then u16 length + the method's bytes)
//!   u16  path length, then the path's bytes
//!   u32  body length, then the body's bytes
//!
//! reply (handler → server):
//!   u8   kind: 0 a response, 1 "the server must answer this itself" (/stats)
//!   for a response:
//!   u16  status code
//!   u8   content type: 0 text/plain, 1 application/json, 2 application/octet-stream
//!   u8   Allow header: 0 none, 1 "GET, HEAD", 2 "POST"
//!   u32  Retry-After seconds + 1 (0: none)
//!   u8   1 if the response closes the connection
//!   u32  body length, then the body's bytes
//! ```
//!
//! Integers are big-endian. A frame longer than [`MAX_FRAME`] is refused: a corrupted length
//! must not make either side allocate gigabytes. Everything crosses the socket as a copy,
//! which is part of what a process costs per request.

use std::io::{self, ErrorKind, Read, Write};

use protocol::request::{Method, Version};
use protocol::response::{JSON, OCTETS, TEXT};
use protocol::routes::{ALLOW_GET, ALLOW_POST};
use protocol::{Request, Response, Status};

/// The longest frame either side accepts: a request body at servelab's largest
/// `--max-body-bytes` (1 GiB) plus its head. The server never sends more than its own
/// limits let in, so this bound only matters for a corrupted length: it is refused instead
/// of allocated.
pub const MAX_FRAME: usize = (1 << 30) + 64 * 1024;

/// What a handler process sends back.
#[derive(Debug)]
pub enum Reply {
    /// The answer, ready for a sender: the server adds only its own headers (`Server`,
    /// `Date`, `Connection`) and which process handled it.
    Response(Response),
    /// The request needs the server's own state (`/stats`): the server answers it.
    ServerAnswers,
}

/// Writes `request` as one frame. The relay calls it with the process's socket: it blocks
/// until the kernel has taken the whole frame, which for a small request is at once (the
/// socket's buffer is empty, since a process holds one request at a time), and for a large
/// body until the process has read enough of it to make room.
///
/// Only what the routes look at crosses: the method, the path and the body. The headers
/// stayed with the server, which has already used them (framing, keep-alive); the version
/// changes nothing a route answers.
pub fn write_request(out: &mut impl Write, request: &Request) -> io::Result<()> {
    // The whole frame is built first, so that it goes out in one write (see `write_frame`):
    // 1 byte of method, 2 + the path, 4 + the body, and a few bytes to spare.
    let mut frame = Vec::with_capacity(16 + request.path.len() + request.body.len());
    // The three methods the routes know get a code of their own; any other is spelled out,
    // so that the handler can answer it with the same 405 the server would.
    match &request.method {
        Method::Get => frame.push(0),
        Method::Head => frame.push(1),
        Method::Post => frame.push(2),
        Method::Other(name) => {
            frame.push(3);
            put_bytes16(&mut frame, name.as_bytes())?;
        }
    }
    put_bytes16(&mut frame, request.path.as_bytes())?;
    put_bytes32(&mut frame, &request.body)?;
    write_frame(out, &frame)
}

/// Reads one request frame; `Ok(None)` when the server closed the socket (time to exit).
/// The handler process calls it in its loop: it blocks until the server sends the next
/// request, which is how an idle handler process waits (it uses no CPU meanwhile). A frame
/// that does not decode is an error, and the process then exits: the server and its
/// handlers are one program, so a malformed frame is a bug, not input to forgive.
pub fn read_request(input: &mut impl Read) -> io::Result<Option<Request>> {
    let Some(frame) = read_frame(input)? else {
        return Ok(None);
    };
    // The fields in the order `write_request` wrote them; a missing or extra byte in the
    // frame is an error, not a shifted field.
    let mut r = Cursor(&frame);
    let method = match r.u8()? {
        0 => Method::Get,
        1 => Method::Head,
        2 => Method::Post,
        3 => Method::Other(r.string16()?),
        other => return Err(invalid(format!("unknown method code {other}"))),
    };
    let path = r.string16()?;
    // The body is copied out of the frame: the request owns it from here on, and the frame
    // is dropped as soon as this function returns.
    let body = r.bytes32()?.to_vec();
    Ok(Some(Request {
        method,
        path,
        // The version does not change what the routes answer.
        version: Version::Http11,
        body,
    }))
}

/// Writes `reply` as one frame. The handler process calls it with its socket: it blocks
/// until the kernel has taken the reply, which is at once unless the body is larger than
/// the socket's buffer; then until the relay reads. It fails if the server is gone (the
/// handler ignores SIGPIPE, so the write returns an error instead), and the process exits.
pub fn write_reply(out: &mut impl Write, reply: &Reply) -> io::Result<()> {
    let mut frame = Vec::new();
    match reply {
        // `/stats` is answered by the server: the process only says so, in one byte.
        Reply::ServerAnswers => frame.push(1),
        Reply::Response(r) => {
            // 1 + 2 + 1 + 1 + 4 + 1 bytes of fixed fields, then 4 + the body.
            frame.reserve(16 + r.body.len());
            frame.push(0);
            frame.extend_from_slice(&r.status.code().to_be_bytes());
            frame.push(match r.content_type {
                JSON => 1,
                OCTETS => 2,
                _ => 0,
            });
            frame.push(match r.allow {
                Some(ALLOW_GET) => 1,
                Some(ALLOW_POST) => 2,
                _ => 0,
            });
            // Retry-After is optional and may be 0 seconds, so it crosses as seconds + 1, with
            // 0 meaning "none": one fixed-size field instead of a flag and a value.
            let retry = r.retry_after.map_or(0, |s| s.saturating_add(1));
            frame.extend_from_slice(&retry.to_be_bytes());
            frame.push(u8::from(r.close));
            put_bytes32(&mut frame, &r.body)?;
        }
    }
    write_frame(out, &frame)
}

/// Reads one reply frame; `Ok(None)` when the handler closed its end (it died, or exited).
/// The relay calls it once the process's socket is readable (see `supervisor`): it blocks
/// until the whole frame has arrived, or the socket ends. A process that dies in the middle
/// of its reply ends the socket too, and the partial frame is an error: the relay treats
/// both the same way, as a process that died with the request.
pub fn read_reply(input: &mut impl Read) -> io::Result<Option<Reply>> {
    let Some(frame) = read_frame(input)? else {
        return Ok(None);
    };
    let mut r = Cursor(&frame);
    match r.u8()? {
        1 => Ok(Some(Reply::ServerAnswers)),
        0 => {
            let code = r.u16()?;
            // Only the statuses servelab can send are accepted: a response built from an
            // unknown code could not be written back to the client correctly.
            let status = Status::ALL
                .into_iter()
                .find(|s| s.code() == code)
                .ok_or_else(|| invalid(format!("unknown status {code}")))?;
            // The content type and the Allow header are constants of the protocol crate,
            // so they cross as codes and come back as the same static strings.
            let content_type = match r.u8()? {
                1 => JSON,
                2 => OCTETS,
                _ => TEXT,
            };
            let allow = match r.u8()? {
                1 => Some(ALLOW_GET),
                2 => Some(ALLOW_POST),
                _ => None,
            };
            let retry_after = r.u32()?.checked_sub(1);
            let close = r.u8()? == 1;
            let body = r.bytes32()?.to_vec();
            let mut response = Response::new(status, content_type, body);
            response.allow = allow;
            response.retry_after = retry_after;
            response.close = close;
            Ok(Some(Reply::Response(response)))
        }
        other => Err(invalid(format!("unknown reply kind {other}"))),
    }
}

/// Writes one frame: the payload's length as 4 bytes, big-endian, then the payload. Blocks
/// until the kernel has taken all of it (or the peer is gone: an error). A payload over
/// [`MAX_FRAME`] is refused before anything is written, so the peer never sees a length
/// it would refuse.
fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    if payload.len() > MAX_FRAME {
        return Err(invalid(format!("a frame of {} bytes", payload.len())));
    }
    let length = u32::try_from(payload.len()).map_err(|_| invalid("a frame too long"))?;
    // One write for the length and the payload of a small frame: a frame split over two
    // writes would cost the reader a second wake-up.
    if payload.len() <= 4096 {
        let mut whole = Vec::with_capacity(4 + payload.len());
        whole.extend_from_slice(&length.to_be_bytes());
        whole.extend_from_slice(payload);
        return out.write_all(&whole);
    }
    out.write_all(&length.to_be_bytes())?;
    out.write_all(payload)
}

/// Reads one frame; `Ok(None)` at the end of the stream before a frame began. Blocks until
/// the length has arrived, then until the whole payload has. The payload's buffer is
/// allocated only once its length is known to be at most [`MAX_FRAME`].
fn read_frame(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut length = [0u8; 4];
    // The end of the stream here, before the first byte of a frame, is the peer closing
    // cleanly between messages; anywhere later it is an error (`read_exact` says so).
    match input.read_exact(&mut length) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_FRAME {
        return Err(invalid(format!("a frame of {length} bytes")));
    }
    let mut frame = vec![0; length];
    input.read_exact(&mut frame)?;
    Ok(Some(frame))
}

/// Appends a field of at most 64 KiB (a path, a method's name): its length as 2 bytes,
/// then its bytes. The server's head limit (1 MiB at most) is larger, so a longer path is
/// possible in principle; it is refused here rather than cut.
fn put_bytes16(frame: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    let n = u16::try_from(bytes.len()).map_err(|_| invalid("a field longer than 64 KiB"))?;
    frame.extend_from_slice(&n.to_be_bytes());
    frame.extend_from_slice(bytes);
    Ok(())
}

/// Appends a body: its length as 4 bytes, then its bytes. `--max-body-bytes` (1 GiB at
/// most) keeps it well under the 4 GiB a length of 4 bytes can say.
fn put_bytes32(frame: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    let n = u32::try_from(bytes.len()).map_err(|_| invalid("a body longer than 4 GiB"))?;
    frame.extend_from_slice(&n.to_be_bytes());
    frame.extend_from_slice(bytes);
    Ok(())
}

/// The error for a frame that cannot be encoded or decoded.
fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what.into())
}

/// Reads fields off the front of a frame. Every read checks that the frame still holds the
/// field, so a frame shorter than it claims is an error, never a panic or a read past its
/// end. Fields borrow from the frame: only the caller decides what to copy.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    /// The next `n` bytes, or an error if fewer are left.
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(invalid("a frame shorter than its fields"));
        }
        let (field, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(field)
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian number of 2 bytes (and `u32`, of 4): the order the writers use.
    fn u16(&mut self) -> io::Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A field written by `put_bytes16` that must be text (a path, a method's name).
    fn string16(&mut self) -> io::Result<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| invalid("a field that is not UTF-8"))
    }

    /// A field written by `put_bytes32` (a body), borrowed from the frame.
    fn bytes32(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_cross_intact() {
        let request = Request {
            method: Method::Other("PUT".into()),
            path: "/echo/10".into(),
            version: Version::Http11,
            body: b"0123456789abcdef".repeat(1000),
        };
        let mut wire = Vec::new();
        write_request(&mut wire, &request).expect("written");
        let back = read_request(&mut wire.as_slice())
            .expect("valid")
            .expect("a request");
        assert_eq!(back.method, request.method);
        assert_eq!(back.path, request.path);
        assert_eq!(back.body, request.body);

        let mut response = Response::new(Status::MethodNotAllowed, JSON, b"{}".to_vec());
        response.allow = Some(ALLOW_POST);
        response.retry_after = Some(0);
        response.close = true;
        let mut wire = Vec::new();
        write_reply(&mut wire, &Reply::Response(response)).expect("written");
        write_reply(&mut wire, &Reply::ServerAnswers).expect("written");
        let mut input = wire.as_slice();
        let Some(Reply::Response(back)) = read_reply(&mut input).expect("valid") else {
            panic!("a response");
        };
        assert_eq!(back.status, Status::MethodNotAllowed);
        assert_eq!(back.content_type, JSON);
        assert_eq!(back.allow, Some(ALLOW_POST));
        assert_eq!(back.retry_after, Some(0));
        assert!(back.close);
        assert!(matches!(
            read_reply(&mut input).expect("valid"),
            Some(Reply::ServerAnswers)
        ));
        assert!(read_reply(&mut input).expect("the end").is_none());
    }

    #[test]
    fn a_corrupt_frame_is_an_error_not_an_allocation() {
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert!(read_reply(&mut huge.as_slice()).is_err());
        let short = [0, 0, 0, 3, 0, 0];
        assert!(read_reply(&mut short.as_slice()).is_err());
        let nonsense = [0, 0, 0, 1, 9];
        assert!(read_request(&mut nonsense.as_slice()).is_err());
    }
}
