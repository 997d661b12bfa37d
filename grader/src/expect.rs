//! What the student claims about the design, and what follows from the claim.
//!
//! The concurrency and capacity checks cannot know a server's design from outside, so the
//! student declares it (`--expect pool:4`) and the checks predict from it: how many
//! requests are worked on at once ([`Expect::slots`]), whether a slow request may hold up a
//! quick one on another connection, and whether a burst beyond the pool must be turned
//! away. A claim that does not parse is an error in one sentence that lists the claims
//! there are.

use std::fmt;
use std::str::FromStr;

use crate::GradeError;

/// A design's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expect {
    /// One request at a time: a slow request holds up everyone.
    Sequential,
    /// A thread (or process) per connection, as many as there are clients.
    #[default]
    PerConnection,
    /// `N` workers and a bounded queue that turns away (503) what it cannot take.
    Pool(u32),
    /// `N` workers; clients beyond them wait their turn (a blocking queue, a backlog).
    Workers(u32),
    /// A few threads, each watching many sockets; waits are timers.
    EventLoop,
    /// An async runtime: a task per connection.
    Async,
}

impl Expect {
    /// How many requests of `/sleep` the design works on at once; `None` for as many as
    /// there are clients.
    pub fn slots(self) -> Option<u32> {
        match self {
            Expect::Sequential => Some(1),
            Expect::Pool(n) | Expect::Workers(n) => Some(n),
            Expect::PerConnection | Expect::EventLoop | Expect::Async => None,
        }
    }

    /// Whether a slow request on one connection may hold up a quick one on another.
    pub fn is_sequential(self) -> bool {
        self.slots() == Some(1)
    }

    /// Whether the design must turn away what it cannot serve in time.
    pub fn rejects(self) -> bool {
        matches!(self, Expect::Pool(_))
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Sequential => f.write_str("sequential"),
            Expect::PerConnection => f.write_str("per-connection"),
            Expect::Pool(n) => write!(f, "pool:{n}"),
            Expect::Workers(n) => write!(f, "workers:{n}"),
            Expect::EventLoop => f.write_str("event-loop"),
            Expect::Async => f.write_str("async"),
        }
    }
}

/// The claims there are, for the error message.
const KINDS: &str = "sequential, per-connection, pool:N, workers:N, event-loop, async";

impl FromStr for Expect {
    type Err = GradeError;

    fn from_str(text: &str) -> Result<Expect, GradeError> {
        let bad = |why: String| GradeError::Expect(why);
        let (kind, count) = match text.split_once(':') {
            Some((kind, n)) => (kind, Some(n)),
            None => (text, None),
        };
        let simple = match kind {
            "sequential" => Some(Expect::Sequential),
            "per-connection" => Some(Expect::PerConnection),
            "event-loop" => Some(Expect::EventLoop),
            "async" => Some(Expect::Async),
            "pool" | "workers" => None,
            _ => {
                return Err(bad(format!(
                    "--expect {text:?} is not a design; write one of {KINDS}"
                )))
            }
        };
        match (simple, count) {
            (Some(expect), None) => Ok(expect),
            (Some(_), Some(_)) => Err(bad(format!(
                "--expect {kind} takes no number (only pool:N and workers:N do); got {text:?}"
            ))),
            (None, None) => Err(bad(format!(
                "--expect {kind} needs its number of workers, e.g. {kind}:4"
            ))),
            (None, Some(n)) => match n.parse::<u32>() {
                Ok(n @ 1..=4096) if kind == "pool" => Ok(Expect::Pool(n)),
                Ok(n @ 1..=4096) => Ok(Expect::Workers(n)),
                _ => Err(bad(format!(
                    "--expect {kind}:N needs N from 1 to 4096 workers; got {n:?}"
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_parse_and_print_back() {
        for text in [
            "sequential",
            "per-connection",
            "pool:4",
            "workers:8",
            "event-loop",
            "async",
        ] {
            let expect: Expect = text.parse().expect("a claim");
            assert_eq!(expect.to_string(), text);
        }
        assert_eq!(
            "pool:4".parse::<Expect>().ok().and_then(Expect::slots),
            Some(4)
        );
    }

    #[test]
    fn nonsense_is_one_sentence_naming_what_would_do() {
        for (text, says) in [
            ("pool", "needs its number"),
            ("pool:0", "from 1 to 4096"),
            ("pool:x", "from 1 to 4096"),
            ("sequential:2", "takes no number"),
            ("threads", "is not a design"),
        ] {
            let error = text.parse::<Expect>().expect_err("nonsense").to_string();
            assert!(error.contains(says), "{text}: {error}");
            assert_eq!(error.lines().count(), 1);
        }
    }
}
