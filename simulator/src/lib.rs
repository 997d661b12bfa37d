//! servelab's client simulator: many clients at once, each with a deadline, against
//! servelab's servers or any other HTTP/1.1 server.
//!
//! The clients, the engines that run them and the ledger that adds them up are the
//! `loadgen` library, which knows nothing of servelab. This crate is what servelab adds on
//! top, one concern per module:
//!
//! * [`commands`]: the command line, one module per command (`run`, `compare`, `sweep`,
//!   `lab`, `merge`, `probe`, `architectures`, `grade`); `main.rs` only parses, runs the command and
//!   turns its result into an exit status;
//! * [`target`]: resolving a server's name and asking it for servelab's `/stats`
//!   ([`target::ServerInfo`]);
//! * [`measure`]: measuring servers: probe one, start the hostile background, run the
//!   clients while [`watch`] reads the server's `/stats`, and make the [`Report`]; several
//!   in turn (`compare`); rising rates until the knee ([`measure::sweep`]);
//! * [`shards`]: the shards of one run spread over several processes, added up exactly;
//! * [`predict`]: the queueing arithmetic that predicts how many clients will be served,
//!   from the capacity a servelab server states in `/stats`;
//! * [`report`]: one run's results beside the prediction, as plain data;
//! * [`servers`]: the architectures of the registry, started in this process;
//! * [`labs`]: the lecture's experiments as one-command labs (`simulator lab <id>`);
//! * [`output`]: everything the program leaves behind: text, CSV, JSON, the files of
//!   `--save`, the HTML report;
//! * [`progress`]: the line a long run shows on a terminal while it goes on; `live`, the
//!   full-screen view of `--live` that shows each client's state as it happens.
//!
//! It is the only crate of the two that depends on the `architectures` registry.

pub mod commands;
pub mod labs;
pub(crate) mod live;
pub mod measure;
pub mod output;
pub mod predict;
pub mod progress;
pub mod report;
pub mod servers;
pub mod shards;
pub mod target;
pub mod watch;

pub use report::Report;
pub use servers::Servers;

use std::path::PathBuf;

/// Why the simulator could not do its job. Each reads as one sentence; where another error
/// caused it, that error is its [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("nothing is listening on {target} — is the server running?")]
    NothingListening {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{target} accepts connections but sent no answer within 3 s")]
    Silent { target: String },
    #[error("cannot resolve {target}: {source}")]
    Unresolvable {
        target: String,
        #[source]
        source: std::io::Error,
    },
    /// The command line asks for something that makes no sense; the sentence says what
    /// would.
    #[error("{0}")]
    Usage(String),
    /// The load generator could not run the clients.
    #[error(transparent)]
    Load(#[from] loadgen::Error),
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file was read but does not hold what it should.
    #[error("{} {problem}", path.display())]
    BadFile { path: PathBuf, problem: String },
    /// A file could not be written.
    #[error("could not write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The shards given to `merge` are not the shards of one run.
    #[error("{0}")]
    Shards(String),
    /// An in-process server could not start or stop.
    #[error("{source}")]
    Server {
        #[source]
        source: architectures::StartError,
    },
    /// A thread of the simulator's own (a lab's helper client) panicked.
    #[error("{0} panicked")]
    Panicked(&'static str),
    /// A lab could not make the measurement it needs.
    #[error("{0}")]
    Lab(String),
}

impl SimError {
    /// An in-process server's failure to start or stop.
    pub fn server(source: impl Into<architectures::StartError>) -> SimError {
        SimError::Server {
            source: source.into(),
        }
    }
}
