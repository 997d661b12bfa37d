//! Series B, robustness: clients that misbehave, and the next client still served.
//!
//! Every check here ends the same way: a plain `GET /` on a new connection must still be
//! answered `200`, because the one thing a misbehaving client must not do is take the
//! server down for everyone else.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Ctx, Verdict};
use crate::wire::{one_shot, request, Client};

/// How long the next client's `GET /` may take after a misbehaving one (stretched).
const NEXT_MS: u64 = 3000;

/// `GET /` on a new connection, answered 200; `Err` says what happened instead, after
/// `after` (what came before, for the message).
fn still_serves(ctx: &Ctx, after: &str) -> Result<(), String> {
    match one_shot(ctx.addr, "GET", "/", b"", ctx.ms(NEXT_MS)) {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(format!(
            "after {after}, the next client's GET / was answered {}",
            r.status
        )),
        Err(e) => Err(format!(
            "after {after}, the next client's GET / failed: {e}"
        )),
    }
}

/// B.disconnect-mid-answer: a client resets its connection while a large answer is being
/// written, another leaves during a `/sleep`; the next client is served.
pub(crate) fn disconnect_mid_answer(ctx: &mut Ctx) -> Verdict {
    // A 512 KiB echo: the answer is far larger than the socket buffers, so the server is
    // still writing when the client resets.
    let body = vec![b'x'; 512 * 1024];
    if let Ok(mut client) = Client::connect(ctx.addr, ctx.ms(NEXT_MS)) {
        if client.send(&request("POST", "/echo", &body, false)).is_ok() {
            let mut some = [0u8; 1024];
            // Blocks until the first bytes of the answer arrive (bounded by the timeout).
            let _ = std::io::Read::read(&mut client.stream(), &mut some);
        }
        reset(client.stream());
    }
    if let Ok(mut client) = Client::connect(ctx.addr, ctx.ms(NEXT_MS)) {
        let _ = client.send(&request("GET", "/sleep/300", b"", false));
        // The client leaves at once, before its answer is ready.
    }
    match still_serves(ctx, "a client reset its connection in the middle of a 512 KiB answer and another left during GET /sleep/300") {
        Ok(()) => Verdict::Pass("clients that left in the middle of an answer did not stop the server".to_owned()),
        Err(why) => Verdict::Fail(why),
    }
}

/// Closes the connection with a reset (SO_LINGER 0), as a client that crashed would.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// B.half-close: a request, then the client shuts its sending side; the answer must still
/// come.
pub(crate) fn half_close(ctx: &mut Ctx) -> Verdict {
    let answered = Client::connect(ctx.addr, ctx.ms(NEXT_MS)).and_then(|mut client| {
        client.send(&request("GET", "/", b"", false))?;
        client.half_close();
        client.read(false)
    });
    match answered {
        Ok(r) if r.status == 200 => {}
        Ok(r) => {
            return Verdict::Fail(format!(
                "GET / followed by a half-close was answered {}, not 200",
                r.status
            ))
        }
        Err(e) => {
            return Verdict::Fail(format!(
                "GET / followed by a half-close (shutdown of the client's sending side) was not answered: {e}; a client that has finished sending still reads its answer"
            ))
        }
    }
    match still_serves(ctx, "a half-closed connection") {
        Ok(()) => Verdict::Pass("a request followed by a half-close was answered".to_owned()),
        Err(why) => Verdict::Fail(why),
    }
}

/// B.wire-fuzz: a short run of the wire fuzzer (random and mutated requests, pipelined,
/// half-closed): no connection held past the deadlines, nothing that is not HTTP.
pub(crate) fn wire_fuzz(ctx: &mut Ctx) -> Verdict {
    let connections = match ctx.expect().slots() {
        Some(n) => n.clamp(1, 2) as usize,
        None => 2,
    };
    let settings = wirefuzz::run::Settings {
        target: ctx.addr,
        requests: 300,
        connections,
        seed: ctx.settings.seed,
        // Every plan ends in a close or a half-close (no stalls), so a server has no
        // reason to stay silent for long.
        deadline: ctx.ms(3000),
        margin: ctx.ms(1000),
        duration: Some(ctx.ms(1500)),
        rate: None,
        stalls: 0,
        mix: wirefuzz::generate::Mix::default(),
    };
    // Blocks until the fuzzer's workers are done: its requests are written, or its
    // duration is over (plus one connection's deadline at most).
    let summary = match wirefuzz::run::run(settings, None, |_, _| {}) {
        Ok(summary) => summary,
        Err(e) => return Verdict::Fail(format!("the wire fuzz could not run: {e}")),
    };
    if !summary.ok {
        let first = summary
            .tally
            .violations
            .first()
            .cloned()
            .or(summary.stopped_early.clone())
            .unwrap_or_default();
        return Verdict::Fail(format!(
            "{} of {} fuzzed requests hung and {} got answers that are not HTTP (seed {}); the first: {first}",
            summary.tally.hung, summary.tally.requests, summary.tally.bad, summary.seed
        ));
    }
    match still_serves(ctx, "the wire fuzz") {
        Ok(()) => Verdict::Pass(format!(
            "{} random and mutated requests, every connection answered or closed in time",
            summary.tally.requests
        )),
        Err(why) => Verdict::Fail(why),
    }
}

/// B.slowloris: as many slow clients as the design has workers (8 at most) trickle a
/// request head a byte at a time; a new client must still be served.
pub(crate) fn slowloris(ctx: &mut Ctx) -> Verdict {
    let count = ctx.expect().slots().map_or(8, |n| n.min(8)) as usize;
    let mut slow = Vec::new();
    for _ in 0..count {
        if let Ok(mut client) = Client::connect(ctx.addr, ctx.ms(NEXT_MS)) {
            if client
                .send(b"GET / HTTP/1.1\r\nHost: grader\r\nX-Slow: ")
                .is_ok()
            {
                slow.push(client);
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = Arc::clone(&stop);
        let every = ctx.ms(250);
        std::thread::spawn(move || {
            // Bounded: at most 40 rounds (10 s unstretched), or until told to stop.
            for _ in 0..40 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for client in &mut slow {
                    let _ = client.send(b"a");
                }
                // Waits between bytes: this is what makes the client slow.
                std::thread::sleep(every);
            }
        })
    };
    // Lets the slow clients be accepted and begun before the next one comes.
    std::thread::sleep(ctx.ms(300));
    let probe = one_shot(ctx.addr, "GET", "/", b"", ctx.ms(4000));
    stop.store(true, Ordering::Relaxed);
    // Waits for the trickling thread's current round (at most one pause).
    let _ = trickle.join();
    match probe {
        Ok(r) if r.status == 200 => Verdict::Pass(format!(
            "with {count} slow clients trickling a request head, a new client was served"
        )),
        Ok(r) => Verdict::Fail(format!(
            "with {count} slow clients trickling a request head, a new client's GET / was answered {}",
            r.status
        )),
        Err(e) => Verdict::Fail(format!(
            "with {count} slow clients trickling a request head, a new client's GET / failed ({e}): slow clients must not hold the server; cut a request that arrives too slowly, or serve others meanwhile"
        )),
    }
}
