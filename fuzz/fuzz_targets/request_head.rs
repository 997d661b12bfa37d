//! Fuzzes `protocol::request::parse_head`, the parser of a request line and its headers.
//!
//! The input is the bytes a client sent. Besides never panicking, the parser must keep
//! these promises, which the connection state machine relies on:
//!
//! * "need more" (`Ok(None)`) only while the bytes are within the header limit;
//! * a complete head lies inside the input and within the limit, its path is a path (it
//!   starts with `/` and has lost its query), its body within the body limit;
//! * a head does not depend on the bytes after it: parsing just its own bytes gives the
//!   same head, so a pipelined request behind it changes nothing;
//! * no shorter piece of a valid head is refused: the connection parses whatever has
//!   arrived, so a head split across reads at any byte must ask for more, never be
//!   answered with an error, and must not be taken for a complete head either;
//! * a refusal carries one of the statuses the protocol documents and a one-line reason;
//! * tighter limits never accept what the default limits refuse, and what they accept is
//!   the same head.

#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::request::{parse_head, Head, Limits, Method};
use protocol::Status;

/// The statuses a head can be refused with (docs/protocol.md, "Bad input").
const REFUSALS: [Status; 6] = [
    Status::BadRequest,
    Status::LengthRequired,
    Status::PayloadTooLarge,
    Status::ExpectationFailed,
    Status::HeaderFieldsTooLarge,
    Status::VersionNotSupported,
];

/// Tighter limits than the default ones, for the monotony check.
const TIGHT: Limits = Limits {
    max_header_bytes: 64,
    max_body_bytes: 16,
};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    match parse_head(data, &limits) {
        Ok(None) => assert!(
            data.len() <= limits.max_header_bytes,
            "asks for more after {} bytes, over the limit of {}",
            data.len(),
            limits.max_header_bytes
        ),
        Ok(Some(head)) => {
            check_head(&head, data, &limits);
            check_prefixes(&head, data, &limits);
        }
        Err(rejection) => {
            assert!(
                REFUSALS.contains(&rejection.status),
                "refused with {:?}, which the protocol never sends for a bad head",
                rejection.status
            );
            assert!(!rejection.reason.is_empty(), "a refusal without a reason");
            assert!(
                !rejection.reason.contains(['\r', '\n']),
                "the reason is not one line: {:?}",
                rejection.reason
            );
        }
    }
    if let Ok(Some(tight)) = parse_head(data, &TIGHT) {
        check_head(&tight, data, &TIGHT);
        match parse_head(data, &limits) {
            Ok(Some(head)) => assert_eq!(head, tight, "the limits changed the head"),
            other => panic!("accepted under tighter limits, but {other:?} under the default"),
        }
    }
});

/// What must hold of every head parsed from `data`.
fn check_head(head: &Head, data: &[u8], limits: &Limits) {
    assert!(
        head.len > 0 && head.len <= data.len(),
        "head of {} bytes in {}",
        head.len,
        data.len()
    );
    assert!(
        head.len <= limits.max_header_bytes,
        "a head of {} bytes accepted",
        head.len
    );
    assert!(head.path.starts_with('/'), "path {:?}", head.path);
    assert!(
        !head.path.contains(['?', '#']),
        "path {:?} kept its query",
        head.path
    );
    assert!(
        head.content_length <= limits.max_body_bytes,
        "body of {}",
        head.content_length
    );
    if let Method::Other(name) = &head.method {
        assert!(
            !matches!(name.as_str(), "GET" | "HEAD" | "POST"),
            "{name} as Other"
        );
    }
}

/// A complete head is the same head when the input ends right after it, and no shorter
/// piece of it is refused or taken for complete.
fn check_prefixes(head: &Head, data: &[u8], limits: &Limits) {
    let own = &data[..head.len];
    assert_eq!(
        parse_head(own, limits)
            .as_ref()
            .ok()
            .and_then(Option::as_ref),
        Some(head),
        "the head changed when the bytes after it were cut"
    );
    // Every cut of a short head; for a long one, 64 cuts spread over it, and the last bytes.
    let step = (head.len / 64).max(1);
    let cuts = (0..head.len)
        .step_by(step)
        .chain(head.len.saturating_sub(4)..head.len);
    for cut in cuts {
        match parse_head(&own[..cut], limits) {
            Ok(None) => {}
            other => panic!(
                "a valid head of {} bytes cut after {cut} bytes gives {other:?}: {:?}",
                head.len,
                String::from_utf8_lossy(&own[..cut])
            ),
        }
    }
}
