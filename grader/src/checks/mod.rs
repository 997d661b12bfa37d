//! The checks, in five series, and the run that plays them in order.
//!
//! Every check is a function from the run's context ([`Ctx`]: the server's address, the
//! claim, the stretch, the server's process for hygiene) to a [`Verdict`]: passed with
//! what it saw, failed with one or two sentences saying what was expected and what
//! happened, or skipped with why it cannot apply. The names are fixed (courses and the
//! mutant tests refer to them), and so is the order: conformance first, so that a server
//! that cannot answer `GET /` fails there with a clear message rather than everywhere.
//!
//! * [`conformance`] (A): the protocol over the wire;
//! * [`robustness`] (B): clients that leave, half-close, send garbage or crawl;
//! * [`concurrency`] (C): the order in which answers complete, and a shared counter;
//! * [`capacity`] (D): a burst and an open loop sized from the claim, against the
//!   queueing prediction;
//! * [`hygiene`] (E): threads, descriptors and memory back to baseline, and SIGTERM.

pub mod capacity;
pub mod concurrency;
pub mod conformance;
pub mod hygiene;
pub mod robustness;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::procfs::Usage;
use crate::subject::Started;
use crate::{CheckResult, Expect, GradeError, Leaderboard, Spec};

/// One check: its fixed name, its series, what it catches, and its function.
#[derive(Clone, Copy)]
pub struct Check {
    pub name: &'static str,
    pub series: char,
    /// What it catches, in a line (for `--help`-like listings and the docs).
    pub catches: &'static str,
    run: fn(&mut Ctx) -> Verdict,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

const fn check(name: &'static str, catches: &'static str, run: fn(&mut Ctx) -> Verdict) -> Check {
    let series = name.as_bytes()[0] as char;
    Check {
        name,
        series,
        catches,
        run,
    }
}

/// Every check, in the order a run plays them.
pub const ALL: [Check; 19] = [
    check(
        "A.get-root",
        "GET / answered 200 with an exact status line and a correct Content-Length",
        conformance::get_root,
    ),
    check(
        "A.routes",
        "the routes of docs/protocol.md with their statuses (404, 405, /sleep, /echo, /stats)",
        conformance::routes,
    ),
    check(
        "A.keep-alive",
        "answers held until close, keep-alive ignored",
        conformance::keep_alive,
    ),
    check(
        "A.pipelining",
        "pipelined answers missing or out of order",
        conformance::pipelining,
    ),
    check(
        "A.body",
        "a request body read too little or too much (Content-Length not honoured)",
        conformance::body,
    ),
    check(
        "A.hostile",
        "a malformed or smuggling request accepted or answered with the wrong status",
        conformance::hostile,
    ),
    check(
        "B.disconnect-mid-answer",
        "a server that dies or stalls when a client leaves before its answer",
        robustness::disconnect_mid_answer,
    ),
    check(
        "B.half-close",
        "a request not answered because the client shut its sending side",
        robustness::half_close,
    ),
    check(
        "B.wire-fuzz",
        "a connection held past the deadlines, or a server gone, under random and mutated requests",
        robustness::wire_fuzz,
    ),
    check(
        "B.slowloris",
        "slow clients that hold every worker so that nobody else is served",
        robustness::slowloris,
    ),
    check(
        "C.overtake",
        "a design that works on one request at a time while claiming concurrency",
        concurrency::overtake,
    ),
    check(
        "C.idle-and-active",
        "idle keep-alive clients that starve an active one",
        concurrency::idle_and_active,
    ),
    check(
        "C.counter",
        "a shared counter updated without synchronisation",
        concurrency::counter,
    ),
    check(
        "D.burst",
        "fewer clients served than the design predicts, or a queue that never turns anyone away",
        capacity::burst,
    ),
    check(
        "D.open-loop",
        "requests at a steady rate not served in time",
        capacity::open_loop,
    ),
    check(
        "E.threads",
        "threads left behind after load",
        hygiene::threads,
    ),
    check(
        "E.descriptors",
        "file descriptors leaked",
        hygiene::descriptors,
    ),
    check(
        "E.memory",
        "memory that grows with load and stays",
        hygiene::memory,
    ),
    check(
        "E.sigterm",
        "SIGTERM ignored, a request in flight lost, or a non-zero exit",
        hygiene::sigterm,
    ),
];

/// A check's verdict in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Passed; what it saw.
    Pass(String),
    /// Failed; what was expected and what happened.
    Fail(String),
    /// Cannot apply here; why.
    Skip(String),
}

/// What a run's checks share.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub expect: Expect,
    pub stretch: f64,
    pub seed: u64,
}

/// One run's context, handed to every check in turn.
pub struct Ctx<'a> {
    pub addr: SocketAddr,
    pub settings: &'a Settings,
    /// The server's process or in-process handle, for hygiene; `None` once E.sigterm
    /// stopped it.
    pub(crate) server: Option<Started>,
    /// The server's threads, descriptors and memory before any load, when it can be read.
    pub(crate) baseline: Option<Usage>,
    /// The open loop's figures, filled in by D.open-loop.
    pub leaderboard: Leaderboard,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Ctx<'_> {
    /// `ms` milliseconds, stretched.
    pub fn ms(&self, ms: u64) -> Duration {
        Duration::from_secs_f64(ms as f64 * self.settings.stretch / 1000.0)
    }

    /// The claim.
    pub fn expect(&self) -> Expect {
        self.settings.expect
    }
}

/// Every check's runs added up, across repetitions.
#[derive(Debug)]
pub(crate) struct Tallies {
    order: Vec<CheckResult>,
    index: BTreeMap<String, usize>,
}

impl Tallies {
    pub(crate) fn new(spec: &Spec) -> Tallies {
        let mut order = Vec::new();
        let mut index = BTreeMap::new();
        for entry in &spec.checks {
            index.insert(entry.name.clone(), order.len());
            order.push(CheckResult {
                name: entry.name.clone(),
                series: entry.name.chars().next().unwrap_or('?'),
                weight: entry.weight,
                required: entry.required,
                runs: 0,
                passes: 0,
                skipped: None,
                message: String::new(),
            });
        }
        Tallies { order, index }
    }

    fn record(&mut self, name: &str, verdict: Verdict) {
        let Some(result) = self.index.get(name).and_then(|&i| self.order.get_mut(i)) else {
            return;
        };
        match verdict {
            Verdict::Skip(why) => result.skipped = Some(why),
            Verdict::Pass(saw) => {
                result.runs += 1;
                result.passes += 1;
                // A failure's message is kept over any later pass's.
                if result.passes == result.runs {
                    result.message = saw;
                }
            }
            Verdict::Fail(why) => {
                result.runs += 1;
                if result.passes + 1 == result.runs {
                    // The first failure.
                    result.message = why;
                }
            }
        }
    }

    pub(crate) fn finish(self) -> Vec<CheckResult> {
        self.order
    }
}

/// One run: every check of the spec against the server just started, in order; then the
/// server is stopped (unless E.sigterm already did). Returns the open loop's figures.
pub(crate) fn run_all(
    spec: &Spec,
    settings: &Settings,
    server: Started,
    tallies: &mut Tallies,
) -> Result<Leaderboard, GradeError> {
    let addr = server.addr();
    let baseline = server.usage_settled();
    let mut ctx = Ctx {
        addr,
        settings,
        server: Some(server),
        baseline,
        leaderboard: Leaderboard::default(),
    };
    for entry in &spec.checks {
        let Some(check) = ALL.iter().find(|c| c.name == entry.name) else {
            continue;
        };
        let verdict = (check.run)(&mut ctx);
        tallies.record(check.name, verdict);
    }
    if let Some(server) = ctx.server.take() {
        server.stop(settings.stretch)?;
    }
    Ok(ctx.leaderboard)
}
