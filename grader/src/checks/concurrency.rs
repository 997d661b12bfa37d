//! Series C, concurrency, judged by interleavings rather than by timeouts.
//!
//! A timing threshold ("the echo must take under 100 ms") fails a correct server on a busy
//! machine and passes a wrong one on a fast machine. An *order* does neither: if a quick
//! request sent after a slow one, on another connection, finishes first, the server was
//! working on both at once, however slow the machine (CMU's proxy lab grades its
//! concurrency the same way, with PxyDrive). The waits below only bound how long the
//! grader waits for a broken server; none decides a verdict.

use std::time::Duration;

use super::{Ctx, Verdict};
use crate::wire::{request, served_count, Client};

/// C.overtake: `GET /sleep/800` on one connection, then `POST /echo` on another: on a
/// concurrent design the echo finishes first; on a sequential one, second.
///
/// No pause decides the order. The slow connection first makes one round trip (`GET /`,
/// keep-alive) and reads its answer, which proves the server has taken that connection and
/// is working on it; only then does the sleep go out on it, and the echo's connection
/// start. A design that serves one connection at a time is now busy with the slow one and
/// cannot even accept the echo's before the sleep is done; only a design that works on
/// both at once can finish the echo first. (A server that closes after every answer gets
/// the sleep on a new connection, sent whole before the echo's connection starts.)
///
/// Nor does a race between threads decide it. One thread waits for the echo's whole answer
/// and then looks, without waiting, whether any of the sleep's answer has arrived: the
/// echo finished first only if nothing of the sleep's had. A sequential server writes the
/// sleep's answer (and, asked to, closes) before it even accepts the echo's connection, so
/// by the time the echo's answer is in, the sleep's bytes are already waiting on its socket,
/// however late the grader's thread runs.
pub(crate) fn overtake(ctx: &mut Ctx) -> Verdict {
    let slow_ms = ctx.ms(800).as_millis() as u64;
    let wait = ctx.ms(800 + 3000);
    let sleep = request("GET", &format!("/sleep/{slow_ms}"), b"", true);
    let mut slow = match held_connection(ctx, wait).and_then(|mut client| {
        // Blocks until the kernel took the whole request (bounded by the write timeout).
        client
            .send(&sleep)
            .map_err(|e| format!("the sleep request could not be sent: {e}"))?;
        Ok(client)
    }) {
        Ok(client) => client,
        Err(why) => return Verdict::Fail(why),
    };
    let echo = request("POST", "/echo", b"overtake", true);
    let mut quick = match Client::connect(ctx.addr, wait)
        .and_then(|mut client| client.send(&echo).map(|()| client))
    {
        Ok(client) => client,
        Err(e) => return Verdict::Fail(format!("the echo request could not be sent: {e}")),
    };
    // Blocks until the echo's whole answer is in (bounded by `wait`: a sequential server
    // first finishes the sleep).
    let echoed = quick.read(false);
    // Looks without waiting: had any of the sleep's answer arrived by then?
    let sleep_begun = slow.answer_begun();
    // Blocks until the sleep's whole answer is in (bounded by `wait`).
    let slept = slow.read(false);
    for (name, result) in [("sleep", &slept), ("echo", &echoed)] {
        match result {
            Ok(r) if r.status == 200 => {}
            Ok(r) => {
                return Verdict::Fail(format!(
                    "the {name} request was answered {}, not 200",
                    r.status
                ))
            }
            Err(e) => return Verdict::Fail(format!("the {name} request failed: {e}")),
        }
    }
    let order = if sleep_begun {
        ["sleep", "echo"]
    } else {
        ["echo", "sleep"]
    };
    judge_overtake(ctx, &order, slow_ms)
}

/// A connection the server is known to be serving: one `GET /` answered on it. If the
/// answer says the server closes it, a fresh connection (the server may not have taken it
/// yet, but it is first in the kernel's queue).
fn held_connection(ctx: &Ctx, wait: Duration) -> Result<Client, String> {
    let fail = |e: crate::wire::WireError| format!("the sleep request could not be sent: {e}");
    // Blocks until the handshake completes (bounded by `wait`).
    let mut client = Client::connect(ctx.addr, wait).map_err(fail)?;
    client
        .send(&request("GET", "/", b"", false))
        .map_err(fail)?;
    // Blocks until the answer has come (bounded by the client's read timeout).
    let answer = client.read(false).map_err(fail)?;
    if answer.close {
        return Client::connect(ctx.addr, wait).map_err(fail);
    }
    Ok(client)
}

fn judge_overtake(ctx: &Ctx, order: &[&str], slow_ms: u64) -> Verdict {
    let expect = ctx.expect();
    let echo_first = order.first() == Some(&"echo");
    match (expect.is_sequential(), echo_first) {
        (false, true) => Verdict::Pass(format!(
            "a POST /echo sent after GET /sleep/{slow_ms} on another connection finished first"
        )),
        (false, false) => Verdict::Fail(format!(
            "a POST /echo sent right after GET /sleep/{slow_ms}, on another connection, finished only after it: the server worked on one request at a time, but --expect {expect} claims they are served at once"
        )),
        (true, false) => Verdict::Pass(format!(
            "as a sequential design should, the server finished GET /sleep/{slow_ms} before the POST /echo sent after it"
        )),
        (true, true) => Verdict::Fail(format!(
            "a POST /echo sent after GET /sleep/{slow_ms} on another connection finished first: the server is concurrent, but --expect sequential claims one request at a time"
        )),
    }
}

/// C.idle-and-active: idle keep-alive clients (one fewer than the workers of a pool, 16
/// otherwise), then an active one, which must be answered while they stay connected.
pub(crate) fn idle_and_active(ctx: &mut Ctx) -> Verdict {
    let idle_count = match ctx.expect().slots() {
        Some(1) => {
            return Verdict::Skip(
                "a sequential design serves one connection at a time, so an idle client holds it by design".to_owned(),
            )
        }
        Some(n) => (n - 1).min(16) as usize,
        None => 16,
    };
    let mut idle = Vec::with_capacity(idle_count);
    for i in 0..idle_count {
        let answered = Client::connect(ctx.addr, ctx.ms(2000)).and_then(|mut client| {
            client.send(&request("GET", "/", b"", false))?;
            client.read(false).map(|_| client)
        });
        match answered {
            Ok(client) => idle.push(client),
            Err(e) => {
                return Verdict::Fail(format!(
                    "idle client {} of {idle_count} got no answer to its first GET / ({e}), with the others connected and idle",
                    i + 1
                ))
            }
        }
    }
    let active = Client::connect(ctx.addr, ctx.ms(4000)).and_then(|mut client| {
        client.send(&request("GET", "/", b"", true))?;
        client.read(false)
    });
    let closed = idle.iter().filter(|c| c.closed_by_server()).count();
    match active {
        Ok(r) if r.status == 200 && closed == 0 => Verdict::Pass(format!(
            "with {idle_count} idle keep-alive clients connected, an active client was served"
        )),
        Ok(r) if r.status == 200 => Verdict::Fail(format!(
            "the active client was answered only after the server closed {closed} of the {idle_count} idle keep-alive connections: idle clients must not keep an active one waiting"
        )),
        Ok(r) => Verdict::Fail(format!(
            "with {idle_count} idle keep-alive clients connected, an active client's GET / was answered {}",
            r.status
        )),
        Err(e) => Verdict::Fail(format!(
            "with {idle_count} idle keep-alive clients connected, an active client's GET / got no answer ({e}): idle clients must not starve an active one"
        )),
    }
}

/// How many connections C.counter sends on at once, and requests on each.
const COUNTER_CONNECTIONS: usize = 8;
const COUNTER_EACH: usize = 25;

/// C.counter: `/stats` `requests.served` grows by exactly the requests sent concurrently.
pub(crate) fn counter(ctx: &mut Ctx) -> Verdict {
    let timeout = ctx.ms(3000);
    let before = served_count(ctx.addr, timeout).and_then(|first| {
        // Two readings in a row: how much one /stats request itself adds (its own answer
        // is counted after the figures are read, so usually 1).
        served_count(ctx.addr, timeout).map(|second| (second, second.saturating_sub(first)))
    });
    let (start, own) = match before {
        Ok(v) => v,
        Err(why) => return Verdict::Fail(format!("C.counter reads /stats: {why}")),
    };
    if let Err(why) = send_concurrently(ctx, timeout) {
        return Verdict::Fail(why);
    }
    let end = match served_count(ctx.addr, timeout) {
        Ok(n) => n,
        Err(why) => return Verdict::Fail(format!("C.counter reads /stats: {why}")),
    };
    let sent = (COUNTER_CONNECTIONS * COUNTER_EACH) as u64;
    let grew = end.saturating_sub(start);
    if grew == sent + own {
        Verdict::Pass(format!(
            "requests.served grew by exactly the {sent} requests sent on {COUNTER_CONNECTIONS} connections at once"
        ))
    } else {
        Verdict::Fail(format!(
            "/stats requests.served grew by {} while the grader sent {sent} requests on {COUNTER_CONNECTIONS} connections at once: updates of a shared counter were lost or invented; it needs an atomic or a lock",
            grew.saturating_sub(own)
        ))
    }
}

/// Sends `COUNTER_EACH` keep-alive requests on each of `COUNTER_CONNECTIONS` connections,
/// all at once; `Err` if any was not answered 200.
fn send_concurrently(ctx: &Ctx, timeout: Duration) -> Result<(), String> {
    let addr = ctx.addr;
    let threads: Vec<_> = (0..COUNTER_CONNECTIONS)
        .map(|_| {
            std::thread::spawn(move || -> Result<(), String> {
                let mut client = Client::connect(addr, timeout).map_err(|e| e.to_string())?;
                for i in 0..COUNTER_EACH {
                    let last = i + 1 == COUNTER_EACH;
                    client
                        .send(&request("GET", "/", b"", last))
                        .map_err(|e| e.to_string())?;
                    let r = client.read(false).map_err(|e| e.to_string())?;
                    if r.status != 200 {
                        return Err(format!("GET / was answered {}", r.status));
                    }
                }
                // The last request said `Connection: close`: once the server has closed,
                // it has counted every answer of this connection (a server may count an
                // answer just after writing it, so the answer alone does not say so).
                if !client.wait_closed() {
                    return Err(format!(
                        "the server did not close the connection after an answer to `Connection: close` within {timeout:?}"
                    ));
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        // Waits for the thread's requests (each read is bounded by the timeout).
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                return Err(format!(
                    "while {COUNTER_CONNECTIONS} clients sent {COUNTER_EACH} requests each at once: {why}"
                ))
            }
            Err(_) => return Err("a client thread of the grader panicked".to_owned()),
        }
    }
    Ok(())
}
