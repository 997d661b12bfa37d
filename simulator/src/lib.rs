//! servelab's client simulator.
//!
//! The lecture's simulator (chapter 4, Figure 4.5) starts several clients at once; each
//! connects to the server, waits for service, keeps the server busy for a while, and gives
//! up if it is not served within its timeout. This crate is that simulator grown into a
//! measuring tool. One concern per module:
//!
//! * [`scenario`]: what the clients do (how many, deadline and its clock, hold, request,
//!   load);
//! * [`target`]: resolving the server's name and asking it for servelab's `/stats`;
//! * [`run`]: running a scenario against a server, and turning what was measured into a
//!   [`Report`];
//! * [`attack`]: background populations of hostile clients (slow headers, slow body, slow
//!   read, idle) that run beside the scenario's own clients, each with its own ledger;
//! * [`client`]: one client as a state machine without I/O: what it does next, and its
//!   record;
//! * [`engine`]: what runs the clients: a few threads driving thousands of non-blocking
//!   sockets (`events`, the default), or the lecture's thread per client (`threads`), all
//!   starting together behind a [`gate::StartGate`];
//! * [`http`]: reading HTTP/1.1 responses (sans-IO), and a blocking client connection;
//! * [`tally`]: per-request counts, the two latency histograms and the time series, one
//!   per engine thread;
//! * [`progress`]: the live progress line of long runs;
//! * [`outcome`]: what happened to a client, and the one deadline rule;
//! * [`ledger`]: the records added up (outcomes, latency distribution, throughput);
//! * [`predict`]: the queueing arithmetic that predicts how many clients will be served;
//! * [`report`] and [`render`]: one run's results, and how they are printed; [`save`]: the
//!   run's files (JSON, CSV, HdrHistogram logs);
//! * [`html`]: the report as one self-contained page with its charts (`--report`), and
//!   [`watch`]: a servelab server's `/stats` read during the run for it;
//! * [`merge`]: the shards of a run spread over several processes or machines, added up
//!   into one report (histograms merged, never percentiles averaged);
//! * [`servers`] and [`compare`]: the same scenario against the registered architectures
//!   in-process, or against running servers;
//! * [`sweep`]: rising open-loop rates against a server, to find the knee;
//! * [`labs`]: the lecture's experiments as one-command labs (`simulator lab <id>`);
//! * [`units`]: microseconds and histograms.

pub mod attack;
pub mod client;
pub mod compare;
pub mod engine;
pub mod gate;
pub mod html;
pub mod http;
pub mod labs;
pub mod ledger;
pub mod merge;
pub mod outcome;
pub mod predict;
pub mod progress;
pub mod render;
pub mod report;
pub mod run;
pub mod save;
pub mod scenario;
pub mod servers;
pub mod sweep;
pub mod tally;
pub mod target;
pub mod units;
pub mod watch;

pub use outcome::Outcome;
pub use report::Report;
pub use scenario::{Load, RequestSpec, Scenario};
pub use servers::Servers;

/// Why the simulator could not do its job. Each reads as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("nothing is listening on {target} — is the server running?")]
    NothingListening { target: String },
    #[error("{target} accepts connections but sent no answer within 3 s")]
    Silent { target: String },
    #[error("cannot resolve {target}: {reason}")]
    Unresolvable { target: String, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("could not start the client threads: {0}")]
    Threads(String),
    /// The simulator itself is short of something (open files) for the run asked of it.
    #[error("{0}")]
    Resources(String),
    /// A file of `--save` could not be written.
    #[error("{0}")]
    Output(String),
    /// An in-process server could not start or stop.
    #[error("{0}")]
    Server(String),
}
