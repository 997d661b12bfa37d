//! Series A, conformance: the protocol of `docs/protocol.md`, over the wire.
//!
//! Each check opens its own connections, so that one broken behaviour fails one check.
//! Where an answer does not come in time, the check asks one more question before it
//! explains: it shuts its sending side and waits again. An answer that arrives only then
//! was held until the client closed, which is a different mistake (and message) from no
//! answer at all.

use loadgen::http::Response;

use super::{Ctx, Verdict};
use crate::wire::{one_shot, request, Client, WireError};

/// How long one answer may take in this series (stretched): generous, since a concurrent
/// server answers these at once and a sequential one has nobody else to serve.
const ANSWER_MS: u64 = 2000;

/// Reads the answer to `what`; on a timeout, half-closes and says whether the answer came
/// only then.
fn answer_or_explain(client: &mut Client, what: &str, ctx: &Ctx) -> Result<Response, String> {
    match client.read(what.starts_with("HEAD")) {
        Ok(response) => Ok(response),
        Err(WireError::Timeout) => Err(explain_timeout(client, what, ctx)),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// After no answer came in time: half-closes, and says whether the answer came only then.
fn explain_timeout(client: &mut Client, what: &str, ctx: &Ctx) -> String {
    client.half_close();
    match client.read_within(false, ctx.ms(ANSWER_MS)) {
        Ok(_) => format!(
            "the answer to {what} arrived only when the grader closed its side: answers must be sent as soon as they are ready"
        ),
        Err(_) => format!(
            "no answer to {what} within {:.1} s",
            ctx.ms(ANSWER_MS).as_secs_f64()
        ),
    }
}

/// A fresh connection that sends `bytes` and reads one answer, explained if it fails.
fn exchange(ctx: &Ctx, bytes: &[u8], what: &str) -> Result<(Client, Response), String> {
    let mut client = Client::connect(ctx.addr, ctx.ms(ANSWER_MS))
        .map_err(|e| format!("could not connect for {what}: {e}"))?;
    client
        .send(bytes)
        .map_err(|e| format!("could not send {what}: {e}"))?;
    let response = answer_or_explain(&mut client, what, ctx)?;
    Ok((client, response))
}

fn verdict(result: Result<String, String>) -> Verdict {
    match result {
        Ok(saw) => Verdict::Pass(saw),
        Err(why) => Verdict::Fail(why),
    }
}

/// A.get-root: `GET /` answered `HTTP/1.1 200 OK` with a `Content-Length` that is the
/// body's length.
pub(crate) fn get_root(ctx: &mut Ctx) -> Verdict {
    verdict(get_root_inner(ctx))
}

fn get_root_inner(ctx: &Ctx) -> Result<String, String> {
    let (client, response) = exchange(ctx, &request("GET", "/", b"", false), "GET /")?;
    let raw = client.raw();
    let line_end = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(raw.len());
    let line = String::from_utf8_lossy(&raw[..line_end]).into_owned();
    if line != "HTTP/1.1 200 OK" {
        return Err(format!(
            "GET / must be answered with the status line \"HTTP/1.1 200 OK\"; it was {line:?}"
        ));
    }
    let length = response.header("content-length").map(str::trim);
    match length.map(str::parse::<usize>) {
        Some(Ok(n)) if n == response.body.len() => Ok(format!(
            "GET / answered \"HTTP/1.1 200 OK\" with a {n}-byte body and its Content-Length"
        )),
        Some(Ok(n)) => Err(format!(
            "GET / announced Content-Length: {n} but the body had {} bytes",
            response.body.len()
        )),
        _ => Err(format!(
            "GET / must carry a Content-Length header with the body's length; it had {:?}",
            length
        )),
    }
}

/// One row of A.routes: method, path, body, the status, and the body it must answer.
type Route = (
    &'static str,
    &'static str,
    &'static [u8],
    u16,
    Option<&'static [u8]>,
);

/// A.routes: the routes and their statuses, each on a connection of its own.
pub(crate) fn routes(ctx: &mut Ctx) -> Verdict {
    let table: [Route; 7] = [
        ("GET", "/no-such-path", b"", 404, None),
        ("POST", "/", b"x", 405, None),
        ("GET", "/echo", b"", 405, None),
        ("GET", "/sleep/20", b"", 200, Some(b"slept 20 ms\n")),
        ("GET", "/sleep/abc", b"", 400, None),
        (
            "POST",
            "/echo",
            b"grader-echo-7f3a",
            200,
            Some(b"grader-echo-7f3a"),
        ),
        ("GET", "/stats", b"", 200, None),
    ];
    for (method, path, body, status, expected) in table {
        let what = format!("{method} {path}");
        let answer = one_shot(ctx.addr, method, path, body, ctx.ms(ANSWER_MS));
        let response = match answer {
            Ok(response) => response,
            Err(e) => return Verdict::Fail(format!("{what}: {e}")),
        };
        if response.status != status {
            return Verdict::Fail(format!(
                "{what} must be answered {status}; it was answered {}",
                response.status
            ));
        }
        if let Some(body) = expected {
            if response.body != body {
                return Verdict::Fail(format!(
                    "{what} must answer {:?}; it answered {:?}",
                    String::from_utf8_lossy(body),
                    String::from_utf8_lossy(&response.body)
                ));
            }
        }
        if path == "/stats" {
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&response.body);
            if !parsed.is_ok_and(|json| json.pointer("/requests/served").is_some()) {
                return Verdict::Fail(
                    "GET /stats must answer servelab's JSON document, with requests.served"
                        .to_owned(),
                );
            }
        }
    }
    Verdict::Pass("404, 405, /sleep, /echo and /stats answered as docs/protocol.md says".to_owned())
}

/// A.keep-alive: two requests on one connection, each answered while it stays open.
pub(crate) fn keep_alive(ctx: &mut Ctx) -> Verdict {
    verdict(keep_alive_inner(ctx))
}

fn keep_alive_inner(ctx: &Ctx) -> Result<String, String> {
    let (mut client, first) = exchange(ctx, &request("GET", "/", b"", false), "the first GET /")?;
    if first.close || client.closed_by_server() {
        return Err(
            "the server closed the connection after the first answer: HTTP/1.1 keeps a connection open for the next request unless the client asks to close".to_owned(),
        );
    }
    let ignored = "the server closed the connection after the first answer: HTTP/1.1 keeps a connection open for the next request unless the client asks to close";
    if client.send(&request("GET", "/", b"", false)).is_err() {
        return Err(ignored.to_owned());
    }
    let second = match client.read(false) {
        Ok(response) => response,
        // The close may reach the grader only after its second request went out.
        Err(WireError::Closed | WireError::Io(_)) => return Err(ignored.to_owned()),
        Err(WireError::Timeout) => {
            return Err(explain_timeout(
                &mut client,
                "a second GET / on the same connection",
                ctx,
            ))
        }
        Err(e) => return Err(format!("a second GET / on the same connection: {e}")),
    };
    if second.status != 200 {
        return Err(format!(
            "a second GET / on the same connection was answered {}, not 200",
            second.status
        ));
    }
    Ok("two requests on one connection, each answered while it stayed open".to_owned())
}

/// A.pipelining: four requests in one write, answered in order.
pub(crate) fn pipelining(ctx: &mut Ctx) -> Verdict {
    verdict(pipelining_inner(ctx))
}

fn pipelining_inner(ctx: &Ctx) -> Result<String, String> {
    let requests: [(&str, &str, &[u8]); 4] = [
        ("GET", "/sleep/50", b""),
        ("POST", "/echo", b"pipelined-second"),
        ("GET", "/no-such-path", b""),
        ("POST", "/echo", b"pipelined-fourth"),
    ];
    let expected: [(u16, Option<&[u8]>); 4] = [
        (200, Some(b"slept 50 ms\n")),
        (200, Some(b"pipelined-second")),
        (404, None),
        (200, Some(b"pipelined-fourth")),
    ];
    let bytes: Vec<u8> = requests
        .iter()
        .flat_map(|(m, p, b)| request(m, p, b, false))
        .collect();
    let mut client = Client::connect(ctx.addr, ctx.ms(ANSWER_MS))
        .map_err(|e| format!("could not connect: {e}"))?;
    client
        .send(&bytes)
        .map_err(|e| format!("could not send four pipelined requests: {e}"))?;
    for (i, (status, body)) in expected.iter().enumerate() {
        let what = format!(
            "pipelined request {} of 4 ({} {})",
            i + 1,
            requests[i].0,
            requests[i].1
        );
        let response = answer_or_explain(&mut client, &what, ctx)?;
        let matches = response.status == *status && body.is_none_or(|b| response.body == b);
        if !matches {
            let other = expected
                .iter()
                .position(|(s, b)| *s == response.status && b.is_none_or(|b| response.body == b));
            return Err(match other {
                Some(j) => format!(
                    "answer {} of 4 was the answer to request {}: pipelined requests must be answered in the order they were sent",
                    i + 1,
                    j + 1
                ),
                None => format!(
                    "{what} was answered {} {:?}, not {status}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                ),
            });
        }
    }
    Ok("four requests sent in one write were answered in order".to_owned())
}

/// A.body: a body in two pieces, then a body followed at once by the next request: each
/// read exactly.
pub(crate) fn body(ctx: &mut Ctx) -> Verdict {
    verdict(body_inner(ctx))
}

fn body_inner(ctx: &Ctx) -> Result<String, String> {
    let mut client = Client::connect(ctx.addr, ctx.ms(ANSWER_MS))
        .map_err(|e| format!("could not connect: {e}"))?;
    let first = request("POST", "/echo", b"hello, body", false);
    let split = first.len() - b"hello, body".len();
    client.send(&first[..split]).map_err(|e| e.to_string())?;
    // Lets the head arrive on its own, so that the body comes in a later read.
    std::thread::sleep(ctx.ms(100));
    client.send(&first[split..]).map_err(|e| e.to_string())?;
    let echo = answer_or_explain(
        &mut client,
        "POST /echo with its body sent after its head",
        ctx,
    )?;
    if echo.body != b"hello, body" {
        return Err(format!(
            "POST /echo with an 11-byte body sent after its head must echo it; it answered {} {:?}",
            echo.status,
            String::from_utf8_lossy(&echo.body)
        ));
    }
    let mut both = request("POST", "/echo", b"exactly-this", false);
    both.extend_from_slice(&request("GET", "/no-such-path", b"", false));
    client.send(&both).map_err(|e| e.to_string())?;
    let second = answer_or_explain(&mut client, "a POST /echo followed at once by a GET", ctx)?;
    if second.body != b"exactly-this" {
        return Err(format!(
            "POST /echo with Content-Length: 12 must echo exactly those 12 bytes; it answered {} {:?}",
            second.status,
            String::from_utf8_lossy(&second.body)
        ));
    }
    let third = answer_or_explain(&mut client, "the GET right after a POST body", ctx)?;
    if third.status != 404 {
        return Err(format!(
            "the GET /no-such-path right after a 12-byte body was answered {}, not 404: the body was not read exactly by its Content-Length",
            third.status
        ));
    }
    Ok(
        "bodies read exactly by their Content-Length, in pieces and followed by the next request"
            .to_owned(),
    )
}

/// A.hostile: every request of `protocol::hostile` answered with its status; then the
/// server still serves.
pub(crate) fn hostile(ctx: &mut Ctx) -> Verdict {
    let mut wrong = Vec::new();
    for hostile in protocol::hostile::REQUESTS {
        let got = Client::connect(ctx.addr, ctx.ms(ANSWER_MS)).and_then(|mut c| {
            c.send(hostile.bytes)?;
            c.read(false)
        });
        match got {
            Ok(r) if r.status == hostile.status => {}
            Ok(r) => wrong.push(format!(
                "{} got {}, not {}",
                hostile.what, r.status, hostile.status
            )),
            Err(e) => wrong.push(format!(
                "{} ({} expected): {e}",
                hostile.what, hostile.status
            )),
        }
        // A server that hangs on these would make this check last minutes.
        if wrong.len() >= 3 {
            break;
        }
    }
    if let Some(first) = wrong.first() {
        return Verdict::Fail(format!(
            "{} hostile request(s) were not refused with their precise status; the first: {first}",
            wrong.len()
        ));
    }
    match one_shot(ctx.addr, "GET", "/", b"", ctx.ms(ANSWER_MS)) {
        Ok(r) if r.status == 200 => Verdict::Pass(format!(
            "all {} hostile requests refused with their precise status, and the server still serves",
            protocol::hostile::REQUESTS.len()
        )),
        Ok(r) => Verdict::Fail(format!("after the hostile requests, GET / was answered {}", r.status)),
        Err(e) => Verdict::Fail(format!("after the hostile requests the server no longer serves: GET /: {e}")),
    }
}
