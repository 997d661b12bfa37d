//! servelab's client simulator.
//!
//! The lecture's simulator (chapter 4, Figure 4.5) starts several clients at once; each
//! connects to the server, waits for service, keeps the server busy for a while, and gives
//! up if it is not served within its timeout. This crate is that simulator grown into a
//! measuring tool:
//!
//! * [`scenario`]: what the clients do (how many, deadline, hold, request, load);
//! * [`client`]: one client on its own thread, every blocking call bounded by its deadline,
//!   and the classification of what happened to it;
//! * [`report`]: running a scenario against a target and reporting it (text, JSON, CSV),
//!   with an hdrhistogram latency distribution;
//! * [`predict`]: the queueing arithmetic that predicts how many clients will be served;
//! * [`compare`]: the same scenario against all four architectures, in-process;
//! * [`labs`]: the lecture's experiments as one-command labs (`simulator lab <id>`).

pub mod client;
pub mod compare;
pub mod labs;
pub mod predict;
pub mod report;
pub mod scenario;

pub use client::Outcome;
pub use report::Report;
pub use scenario::{Load, RequestSpec, Scenario};

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
    #[error("{0}")]
    Server(protocol::ServerError),
}
