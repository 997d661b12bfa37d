//! Series E, hygiene: what the server holds after the load of series A to D, against what
//! it held before, and how it ends on SIGTERM.
//!
//! Counts come from `/proc` (see `procfs`): the threads, open descriptors and resident
//! memory of the server's process and every process under it, or of this process for an
//! in-process server. They are read once they have settled (the same in samples a little
//! apart), so a thread that is just exiting is not taken for a leak. A server someone else
//! runs (`--target`) cannot be seen: these checks are skipped for it.

use std::time::Duration;

use super::{Ctx, Verdict};
use crate::procfs::Usage;
use crate::subject::Started;
use crate::wire::{request, Client};

/// Before and after, or why they cannot be had.
fn before_after(ctx: &Ctx) -> Result<(Usage, Usage), String> {
    let server = ctx
        .server
        .as_ref()
        .ok_or("the server was already stopped")?;
    let before = ctx
        .baseline
        .ok_or("the grader cannot see the process of a server it did not start")?;
    let after = server
        .usage_settled()
        .ok_or("the server's /proc entries could not be read")?;
    Ok((before, after))
}

fn judge(
    ctx: &Ctx,
    what: &str,
    pick: fn(&Usage) -> u64,
    allowed: fn(u64) -> u64,
    unit: &str,
) -> Verdict {
    let (before, after) = match before_after(ctx) {
        Ok(pair) => pair,
        Err(why) => return Verdict::Skip(why.to_owned()),
    };
    let (b, a) = (pick(&before), pick(&after));
    if a <= b + allowed(b) {
        Verdict::Pass(format!(
            "{what}: {b}{unit} before the load, {a}{unit} after it"
        ))
    } else {
        Verdict::Fail(format!(
            "{what}: {b}{unit} before the load and {a}{unit} after it had ended and settled: the server keeps what it no longer needs (at most {} more is allowed)",
            allowed(b)
        ))
    }
}

/// E.threads: threads back to baseline after the load, within a few kept by pools that
/// grow on demand.
pub(crate) fn threads(ctx: &mut Ctx) -> Verdict {
    judge(ctx, "threads", |u| u.threads, |b| 8 + b / 4, "")
}

/// E.descriptors: open descriptors back to baseline after the load.
pub(crate) fn descriptors(ctx: &mut Ctx) -> Verdict {
    judge(ctx, "open file descriptors", |u| u.fds, |_| 8, "")
}

/// E.memory: resident memory within a generous bound of baseline after the load.
pub(crate) fn memory(ctx: &mut Ctx) -> Verdict {
    judge(
        ctx,
        "resident memory",
        |u| u.rss_kib / 1024,
        |b| 64 + b,
        " MiB",
    )
}

/// E.sigterm: a request in flight, then SIGTERM: the request is answered and the server
/// exits 0 within its shutdown timeout (10 s by default).
pub(crate) fn sigterm(ctx: &mut Ctx) -> Verdict {
    let mut child = match ctx.server.take() {
        Some(Started::Child(child)) => child,
        other => {
            ctx.server = other;
            return Verdict::Skip(
                "only a server the grader starts as a command can be sent SIGTERM".to_owned(),
            );
        }
    };
    let work = ctx.ms(300);
    let in_flight = Client::connect(ctx.addr, ctx.ms(3000)).and_then(|mut client| {
        client.send(&request(
            "GET",
            &format!("/sleep/{}", work.as_millis()),
            b"",
            false,
        ))?;
        Ok(client)
    });
    // Lets the request reach the server before the signal does.
    std::thread::sleep(ctx.ms(100));
    let within = ctx.ms(12_000);
    let (answer_tx, answer_rx) = std::sync::mpsc::channel();
    let reader = in_flight.map(|mut client| {
        std::thread::spawn(move || {
            let _ = answer_tx.send(client.read(false).map(|r| r.status));
        })
    });
    let exit = child.terminate(within);
    // The answer came before the exit, or never will: the reader thread has finished.
    let answer = answer_rx.recv_timeout(Duration::from_millis(100)).ok();
    if let Ok(reader) = reader {
        let _ = reader.join();
    }
    judge_sigterm(exit, answer, within, work)
}

fn judge_sigterm(
    exit: std::io::Result<Option<std::process::ExitStatus>>,
    answer: Option<Result<u16, crate::wire::WireError>>,
    within: Duration,
    work: Duration,
) -> Verdict {
    let status = match exit {
        Err(e) => return Verdict::Fail(format!("SIGTERM could not be sent: {e}")),
        Ok(None) => {
            return Verdict::Fail(format!(
                "the server did not exit within {:.0} s of SIGTERM (it was killed): a server must shut down on SIGTERM",
                within.as_secs_f64()
            ))
        }
        Ok(Some(status)) => status,
    };
    let answered = matches!(answer, Some(Ok(200)));
    match (status.success(), answered) {
        (true, true) => Verdict::Pass(format!(
            "on SIGTERM the GET /sleep/{} in flight was answered and the server exited 0",
            work.as_millis()
        )),
        (false, _) => Verdict::Fail(format!(
            "on SIGTERM the server exited with {status}: a graceful shutdown exits 0"
        )),
        (true, false) => Verdict::Fail(format!(
            "on SIGTERM the server exited 0 but the GET /sleep/{} in flight was never answered: a shutdown finishes the requests it has read",
            work.as_millis()
        )),
    }
}
