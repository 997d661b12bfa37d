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
//! * [`run`]: running a scenario, every client on its own thread, all starting together
//!   (behind a [`gate::StartGate`]);
//! * [`client`]: one client's behaviour and its record;
//! * [`http`]: the small HTTP/1.1 client connection the clients (and the benchmarks) use;
//! * [`outcome`]: what happened to a client, and the one deadline rule;
//! * [`ledger`]: the records added up (outcomes, latency distribution, throughput);
//! * [`predict`]: the queueing arithmetic that predicts how many clients will be served;
//! * [`report`] and [`render`]: one run's results, and how they are printed;
//! * [`servers`] and [`compare`]: the same scenario against the registered architectures
//!   in-process, or against running servers;
//! * [`labs`]: the lecture's experiments as one-command labs (`simulator lab <id>`);
//! * [`units`]: microseconds and histograms.

pub mod client;
pub mod compare;
pub mod gate;
pub mod http;
pub mod labs;
pub mod ledger;
pub mod outcome;
pub mod predict;
pub mod render;
pub mod report;
pub mod run;
pub mod scenario;
pub mod servers;
pub mod target;
pub mod units;

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
    /// An in-process server could not start or stop.
    #[error("{0}")]
    Server(String),
}
