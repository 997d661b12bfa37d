//! A load generator as a library: many HTTP/1.1 clients at once, each with a deadline, and
//! the ledger of who was served in time, who gave up, and why.
//!
//! The lecture's simulator (chapter 4, Figure 4.5) starts several clients together; each
//! connects, waits for service, keeps the server busy for a while, and gives up if it is not
//! served within its timeout. This crate is that simulator grown into a measuring tool that
//! works against any HTTP/1.1 server. It knows nothing of servelab's servers: the
//! `simulator` crate on top adds them (starting them in-process, reading their `/stats`,
//! predicting their capacity) and everything that is printed or saved.
//!
//! The layers, from the bottom:
//!
//! * [`units`], [`outcome`]: microseconds and histograms; what happened to a client, and
//!   the one deadline rule ([`outcome::in_time`]);
//! * [`scenario`]: what the clients do (how many, deadline and its clock, request, load,
//!   shards) and the hostile populations in the background ([`attack::Population`]);
//! * [`http`]: reading responses without I/O, and the one blocking client connection that
//!   the simulator, the benchmarks and the test kit share;
//! * [`client`]: one client as a state machine without I/O: what it does next;
//! * [`tally`]: counting as it happens, one tally per engine thread: requests by outcome,
//!   the latency histograms, the live counters, the per-second series, interval logs;
//! * [`record`]: what a run leaves behind ([`record::ClientRecord`] per client,
//!   [`record::Finished`] for the run), plain data;
//! * [`engine`]: what runs the clients: a few threads driving thousands of non-blocking
//!   sockets (`events`, the default), or the lecture's thread per client (`threads`), all
//!   starting together behind a [`gate::StartGate`], watched by a [`engine::Monitor`];
//! * [`attack`]: the background populations of hostile clients, on a thread of their own;
//! * [`ledger`]: the records added up (clients by outcome, latency, throughput).
//!
//! A run in three lines: describe it, plan it against an address, run it.
//!
//! ```no_run
//! use std::time::Duration;
//! use loadgen::{client::Plan, engine, ledger, scenario::Scenario};
//!
//! let scenario = Scenario::get(16, "/", Duration::from_secs(1), Duration::ZERO);
//! let addr = "127.0.0.1:7777".parse().expect("an address");
//! let finished = engine::run(Plan::new(addr, "127.0.0.1:7777", &scenario), &mut ())?;
//! let (summary, _latency, _throughput) = ledger::tally(&scenario, &finished);
//! println!("{} of {} served in time", summary.served, summary.clients);
//! # Ok::<(), loadgen::Error>(())
//! ```

pub mod attack;
pub mod client;
pub mod engine;
pub mod gate;
pub mod http;
pub mod ledger;
pub mod link;
pub mod outcome;
pub mod record;
pub mod scenario;
pub mod slo;
pub mod tally;
pub mod units;

pub use outcome::Outcome;
pub use scenario::{Load, RequestSpec, Scenario};

/// Why a run could not be made. Each reads as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value given to the library makes no sense (a shard `0/3`, a request without a
    /// path, an unknown hostile behaviour); the sentence says what was expected.
    #[error("{0}")]
    Invalid(String),
    /// The operating system refused a thread the run needs; `what` says which, as a
    /// phrase ("could not start engine thread 2 of 4").
    #[error("{what}: {source}")]
    Thread {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A thread of the run ended without handing in its result.
    #[error("{0} ended without a result (it panicked)")]
    Panicked(&'static str),
    /// Checked before any client starts: the run's sockets do not fit under the limit on
    /// open files, so it would measure the simulator running out, not the server.
    #[error("{clients} clients need about {needed} open files{}, but this process may open at most {limit} (see `ulimit -n` and `ulimit -Hn`); at most {fit} clients fit", if *.in_process { " (a socket each for the client and for the in-process server)" } else { "" })]
    TooFewFiles {
        clients: u64,
        needed: u64,
        limit: u64,
        fit: u64,
        in_process: bool,
    },
    /// The simulator's side ran out of something during the run (file descriptors, local
    /// ports) or its own machinery failed; the run stopped, as what followed would not be
    /// the server's doing.
    #[error("{doing}: {source}")]
    RanOut {
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
}
