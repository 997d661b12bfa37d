//! Hostile input: the malformed and smuggling requests the parser must refuse, each with
//! the status it deserves.
//!
//! One list, used in four places: a unit test in `connection.rs` feeds every entry to the
//! connection machine; the behaviour case `smuggling_and_malformed_input` sends every
//! entry to every architecture over a real socket; the fuzz targets in `fuzz/` start their
//! corpus from it; and the wire fuzzer (`wirefuzz`, run against every architecture by
//! `scripts/fuzz-wire.sh`) mutates it. Each request here is one a careless parser would
//! accept or read differently from a proxy in front of it (RFC 9112, section 11.2,
//! "Request smuggling"), so the answer is an error and a close, never a guess.

/// A request that must be refused: what it is, its bytes, and the status it gets.
#[derive(Debug, Clone, Copy)]
pub struct Hostile {
    /// What is wrong with it, in a few words.
    pub what: &'static str,
    /// The bytes on the wire.
    pub bytes: &'static [u8],
    /// The status servelab answers with before it closes the connection.
    pub status: u16,
}

const fn hostile(what: &'static str, bytes: &'static [u8], status: u16) -> Hostile {
    Hostile {
        what,
        bytes,
        status,
    }
}

/// A request line of 10 000 bytes: longer than any head servelab reads (8 KiB).
const LONG_LINE: &[u8] = &{
    let mut line = [b'a'; 10_027];
    let head = b"GET /";
    let tail = b" HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut i = 0;
    while i < head.len() {
        line[i] = head[i];
        i += 1;
    }
    let mut j = 0;
    while j < tail.len() {
        line[line.len() - tail.len() + j] = tail[j];
        j += 1;
    }
    line
};

/// Every hostile request servelab knows, in the order of `docs/protocol.md`'s table.
pub const REQUESTS: &[Hostile] = &[
    hostile("Content-Length and Transfer-Encoding", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello", 411),
    hostile("Transfer-Encoding and Content-Length", b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", 411),
    hostile("conflicting Content-Lengths", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    hostile("a list as Content-Length", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    hostile("a sign in Content-Length", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello", 400),
    hostile("hex in Content-Length", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    hostile("obs-fold", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n", 400),
    hostile("whitespace before the colon", b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
    hostile("NUL in a value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n", 400),
    hostile("CR in a value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n", 400),
    hostile("an 8-bit byte in a name", b"GET / HTTP/1.1\r\nHost: t\r\nX-\xe9: a\r\n\r\n", 400),
    hostile("an 8-bit byte in a value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: \xe9\r\n\r\n", 400),
    hostile("two Host headers", b"GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", 400),
    hostile("absolute-form", b"GET http://t/ HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    hostile("HTTP/2.0 on an HTTP/1 connection", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    hostile("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: t\r\n\r\n", 505),
    hostile("an unknown protocol name", b"GET / HTTQ/1.1\r\nHost: t\r\n\r\n", 505),
    hostile("an oversized request line", LONG_LINE, 431),
    hostile("a bare CR as a line end", b"GET / HTTP/1.1\rHost: t\r\r\n\r\n", 400),
    hostile("a Content-Length too long for 64 bits", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_line_is_a_request_line_of_10_000_bytes() {
        let line_end = LONG_LINE.windows(2).position(|w| w == b"\r\n");
        // "GET /", 10 000 letters, " HTTP/1.1".
        assert_eq!(line_end, Some(5 + 10_000 + 9));
        assert!(LONG_LINE.starts_with(b"GET /aaa"));
        assert!(LONG_LINE.ends_with(b"aaa HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
}
