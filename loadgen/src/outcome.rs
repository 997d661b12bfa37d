//! What happened to a client, and the one rule that decides whether it was in time.
//!
//! Every client ends with exactly one [`Outcome`]. A [`Failure`] is an exchange that went
//! wrong, with its class and a sentence for people. [`in_time`] is the deadline rule; every
//! judgement of time in the simulator goes through it.

use std::io::{self, ErrorKind};

use crate::units::human_us;

/// Whether `e` says the simulator's side ran out of something a connection needs: a file
/// descriptor (this process's, or the system's), or a local port to connect from (all of
/// them in use or waiting out TIME_WAIT). Neither is the server's doing.
pub fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::EADDRNOTAVAIL)
    )
}

/// What happened to a client (or, in a load run, to one request). Exactly one per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Complete 2xx responses, in time.
    Served,
    /// Not even connected by the deadline: what a full backlog looks like.
    ConnectTimeout,
    /// Connected, but no complete response by the deadline.
    ServiceTimeout,
    /// The connection was refused: nothing listening, or the listener is shutting down.
    Refused,
    /// The server closed or reset the connection before a complete response.
    Reset,
    /// The server answered with an error status: 503 or another 5xx (or any non-2xx).
    Rejected,
    /// What came back was not valid HTTP.
    BadResponse,
    /// Load runs: the client sent its request and waited, but not one response came back
    /// before the run ended. Not a timeout (its deadline had not passed), not served: it
    /// was starved, as the connections a pool never picks up are.
    Starved,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Served,
        Outcome::ConnectTimeout,
        Outcome::ServiceTimeout,
        Outcome::Refused,
        Outcome::Reset,
        Outcome::Rejected,
        Outcome::BadResponse,
        Outcome::Starved,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Served => "served",
            Outcome::ConnectTimeout => "connect_timeout",
            Outcome::ServiceTimeout => "service_timeout",
            Outcome::Refused => "refused",
            Outcome::Reset => "reset",
            Outcome::Rejected => "rejected",
            Outcome::BadResponse => "bad_response",
            Outcome::Starved => "starved",
        }
    }

    /// Ran out of time: counted "over the deadline" in the latency distribution.
    pub fn timed_out(self) -> bool {
        matches!(self, Outcome::ConnectTimeout | Outcome::ServiceTimeout)
    }
}

/// The deadline rule, in one place: a wait meets its limit only if it ended strictly
/// before it. A response that completes at the deadline, or a few microseconds after it
/// because the kernel rounded a read timeout up, is late.
///
/// Every judgement of "in time" goes through this function: the client's outcome, each
/// load-run request, and the "over the deadline" count of the latency distribution, so the
/// ledger and the distribution can never disagree.
pub fn in_time(waited_us: u64, limit_us: u64) -> bool {
    waited_us < limit_us
}

/// A failed exchange: its class and a sentence about it.
#[derive(Debug)]
pub struct Failure {
    pub outcome: Outcome,
    pub message: String,
    /// The simulator itself ran out of a resource (file descriptors, local ports): not
    /// something the server did, so the run cannot go on and report it as the server's
    /// result. The error to stop the run with.
    pub fatal: Option<crate::Error>,
}

impl Failure {
    pub fn new(outcome: Outcome, message: impl Into<String>) -> Failure {
        Failure {
            outcome,
            message: message.into(),
            fatal: None,
        }
    }

    /// No complete response by the deadline.
    pub fn no_answer() -> Failure {
        Failure::new(
            Outcome::ServiceTimeout,
            "no complete response by the deadline",
        )
    }

    /// Not connected by the deadline.
    pub fn not_connected() -> Failure {
        Failure::new(Outcome::ConnectTimeout, "not connected by the deadline")
    }

    /// A connection attempt to `addr` that failed with `e`.
    pub fn from_connect(e: &io::Error, addr: std::net::SocketAddr) -> Failure {
        if out_of_resources(e) {
            let doing = "the simulator could not open another connection";
            return Failure {
                fatal: Some(crate::Error::RanOut {
                    doing,
                    // `e` is borrowed; its OS error code is all it carries.
                    source: e.raw_os_error().map_or_else(
                        || io::Error::new(e.kind(), e.to_string()),
                        io::Error::from_raw_os_error,
                    ),
                }),
                ..Failure::new(Outcome::Refused, format!("{doing}: {e}"))
            };
        }
        let outcome = match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::ConnectTimeout,
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => Outcome::Reset,
            _ => Outcome::Refused,
        };
        Failure::new(outcome, format!("connecting to {addr}: {e}"))
    }

    pub fn from_io(e: &io::Error, doing: &str) -> Failure {
        let outcome = match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::ServiceTimeout,
            _ => Outcome::Reset,
        };
        Failure::new(outcome, format!("{doing}: {e}"))
    }

    /// A step that completed, but not in time.
    pub fn late(outcome: Outcome, what: &str, waited_us: u64, limit_us: u64) -> Failure {
        Failure::new(
            outcome,
            format!(
                "{what} {} after the deadline",
                human_us(waited_us - limit_us.min(waited_us))
            ),
        )
    }
}
