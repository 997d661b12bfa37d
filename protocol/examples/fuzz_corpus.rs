//! Writes the seed corpus of the fuzz targets in `fuzz/`: one file per request of
//! [`protocol::hostile::REQUESTS`], and a handful of valid requests, so that the fuzzers
//! start from both sides of the line between served and refused.
//!
//! ```sh
//! cargo run -p protocol --example fuzz_corpus -- target/fuzz/corpus/seeds
//! ```
//!
//! Each file holds the bytes a client sends, nothing else; both fuzz targets read their
//! input that way. `scripts/fuzz.sh` runs this before the fuzzers. Files already in the
//! directory (what earlier runs found) are kept; a seed of the same name is overwritten.

use std::path::PathBuf;
use std::process::ExitCode;

use protocol::hostile::REQUESTS;

/// Valid requests, each exercising a different path through the connection: a plain GET,
/// two pipelined requests on a kept-alive connection, a body, a wait, a computation,
/// HTTP/1.0, `Expect: 100-continue` and HEAD.
const VALID: &[(&str, &[u8])] = &[
    ("get-root", b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"),
    (
        "keep-alive-pipelined-pair",
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /time HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ),
    (
        "post-echo-body",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 36\r\n\r\n5f0c8e36-52a4-4b0b-9c53-1f0e5e0c1d2a",
    ),
    ("sleep-1", b"GET /sleep/1 HTTP/1.1\r\nHost: t\r\n\r\n"),
    ("factor-91", b"GET /factor/91 HTTP/1.1\r\nHost: t\r\n\r\n"),
    (
        "http10-keep-alive",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    ),
    (
        "expect-continue",
        b"POST /echo/1 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    ),
    (
        "head-and-bare-lf",
        b"HEAD /stats HTTP/1.1\nHost: t\n\nDELETE /nope HTTP/1.1\nHost: t\n\n",
    ),
];

/// A file name from a description: lowercase letters and digits, words joined by `-`.
fn slug(what: &str) -> String {
    let mut slug = String::new();
    for c in what.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: fuzz_corpus DIRECTORY (the seed corpus is written into it)");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    let hostile = REQUESTS
        .iter()
        .enumerate()
        .map(|(i, h)| (format!("hostile-{i:02}-{}", slug(h.what)), h.bytes));
    let valid = VALID
        .iter()
        .map(|(name, bytes)| (format!("valid-{name}"), *bytes));
    let seeds: Vec<(String, &[u8])> = hostile.chain(valid).collect();
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        seeds
            .iter()
            .try_for_each(|(name, bytes)| std::fs::write(dir.join(name), bytes))
    });
    if let Err(e) = written {
        eprintln!("fuzz_corpus: cannot write into {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    println!(
        "{} seeds ({} hostile, {} valid) in {}",
        seeds.len(),
        REQUESTS.len(),
        VALID.len(),
        dir.display()
    );
    ExitCode::SUCCESS
}
