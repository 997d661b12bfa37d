//! servelab's grader: checks any HTTP/1.1 server that speaks servelab's protocol and says
//! how well its design does what it claims.
//!
//! A course asks students to build a server (a variant of one of servelab's architectures,
//! or one in another language) and needs a verdict it can trust: does it speak the
//! protocol, does it survive misbehaving clients, is it as concurrent as its design claims,
//! does it keep its deadlines under load, and does it clean up after itself. This crate is
//! that verdict, as a library; `simulator grade` is its command line.
//!
//! The grader talks to the server only over real sockets on loopback, as a client would,
//! so it grades a Rust crate of the workspace, a binary, or a Python script alike. Every
//! socket it opens has read and write timeouts, so a server that hangs fails a check
//! instead of hanging the grader. Concurrency is judged by the *order* in which answers
//! complete (a quick request sent after a slow one must overtake it on a concurrent
//! design), never by tight timeouts, so a slow or busy machine changes how long a grade
//! takes, not its verdict.
//!
//! The parts, one module each:
//!
//! * [`Subject`] (in `subject`): what is graded and how it is started and stopped: a
//!   command line with `{addr}`, an address, or a server started in this process through
//!   the [`Launch`] trait;
//! * [`Expect`]: what the student claims about the design (`pool:4`, `event-loop`, ...),
//!   from which the concurrency and capacity checks predict what must happen;
//! * [`Spec`]: which checks run, their weights and which are required (`grade.toml`);
//! * [`checks`]: the checks themselves, in five series (A conformance, B robustness,
//!   C concurrency, D capacity, E hygiene);
//! * [`output`]: the grade as text, JSON, Gradescope's `results.json`, Autolab's last
//!   line, JUnit XML, and an HTML page of the failing checks.

pub mod checks;
mod expect;
pub mod output;
mod procfs;
mod spec;
mod subject;
mod wire;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use expect::Expect;
pub use spec::{CheckSpec, Spec};

/// Why a grade could not be made at all: bad input to the grader, or a server that could
/// not be started. Each reads as one sentence. (A server that starts and then misbehaves
/// is not an error: it gets a failed grade.)
#[derive(Debug, thiserror::Error)]
pub enum GradeError {
    /// The command could not be started, or did not accept connections in time.
    #[error("{0}")]
    CannotStart(String),
    /// Nothing accepts connections at the address given.
    #[error("nothing is listening at {addr} ({source}); is the server running?")]
    NothingListening {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The spec names a check that does not exist.
    #[error("the spec names {name:?}, which is not a check; the checks are {known}")]
    UnknownCheck { name: String, known: String },
    /// The spec file is not what it should be.
    #[error("the spec is not valid: {0}")]
    Spec(String),
    /// `--expect` makes no sense.
    #[error("{0}")]
    Expect(String),
    /// Another option makes no sense (`--repeat 0`, `--stretch -1`).
    #[error("{0}")]
    Options(String),
    /// The server could not be stopped.
    #[error("{0}")]
    Stop(String),
}

/// What is graded.
pub enum Subject {
    /// A command line containing `{addr}`; the grader starts it on a free 127.0.0.1 port
    /// (retrying a port clash), waits until it accepts, and stops it with SIGTERM.
    Command(String),
    /// A server already running; hygiene checks that need its process are skipped.
    Address(SocketAddr),
    /// A server started in-process (simulator's `grade ARCH`, via the registry).
    InProcess(Box<dyn Launch>),
}

impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Command(line) => f.debug_tuple("Command").field(line).finish(),
            Subject::Address(addr) => f.debug_tuple("Address").field(addr).finish(),
            Subject::InProcess(launch) => f.debug_tuple("InProcess").field(&launch.name()).finish(),
        }
    }
}

impl Subject {
    /// The subject in a few words, for the report: the command, the address, or the name.
    pub fn describe(&self) -> String {
        match self {
            Subject::Command(line) => line.clone(),
            Subject::Address(addr) => addr.to_string(),
            Subject::InProcess(launch) => launch.name(),
        }
    }
}

/// Starts a server in this process (the simulator implements it for the registry's
/// architectures, so that this crate does not depend on them).
pub trait Launch: Send + Sync {
    /// Starts a fresh server on an ephemeral loopback port; returns once it accepts.
    fn launch(&self) -> Result<Box<dyn Running>, GradeError>;
    /// Its name in the report (`prefork-pool`).
    fn name(&self) -> String;
}

/// A server started by [`Launch::launch`].
pub trait Running: Send {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;
    /// Stops it gracefully; blocks until its threads are gone.
    fn stop(self: Box<Self>) -> Result<(), GradeError>;
}

/// Everything a grade needs.
#[derive(Debug)]
pub struct Options {
    pub subject: Subject,
    /// What the design claims; `None` grades it as [`Expect::default`] (a concurrent
    /// design that serves connections at once).
    pub expect: Option<Expect>,
    pub spec: Spec,
    /// How many times the whole suite runs (each check reports its pass rate); at least 1.
    pub repeat: u32,
    /// Every delay and deadline of the checks is multiplied by this (slow machines: 2.0).
    pub stretch: f64,
    /// The seed of everything random (the wire fuzz); each repetition adds its number.
    pub seed: u64,
}

impl Options {
    /// One run of the default spec, no stretch, seed 1.
    pub fn new(subject: Subject) -> Options {
        Options {
            subject,
            expect: None,
            spec: Spec::default(),
            repeat: 1,
            stretch: 1.0,
            seed: 1,
        }
    }
}

/// The result of one check over every run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckResult {
    /// Its fixed name, e.g. `C.overtake`.
    pub name: String,
    /// Its series, `'A'` to `'E'`.
    pub series: char,
    pub weight: f64,
    pub required: bool,
    /// How many times it ran, and passed.
    pub runs: u32,
    pub passes: u32,
    /// Why it could not apply (then it counts neither for nor against).
    pub skipped: Option<String>,
    /// Why it failed, in one or two sentences (the first failing run's); what passed
    /// otherwise.
    pub message: String,
}

impl CheckResult {
    /// Whether it passed in every run (a skipped check has not passed).
    pub fn passed(&self) -> bool {
        self.skipped.is_none() && self.runs > 0 && self.passes == self.runs
    }

    /// The points it earned: its weight times its pass rate; 0 when skipped.
    pub fn score(&self) -> f64 {
        if self.skipped.is_some() || self.runs == 0 {
            return 0.0;
        }
        self.weight * f64::from(self.passes) / f64::from(self.runs)
    }

    /// The points it could earn: its weight, or 0 when skipped.
    pub fn max_score(&self) -> f64 {
        if self.skipped.is_some() {
            0.0
        } else {
            self.weight
        }
    }

    /// `PASS`, `FAIL` or `SKIP`.
    pub fn status(&self) -> &'static str {
        match (&self.skipped, self.passed()) {
            (Some(_), _) => "SKIP",
            (None, true) => "PASS",
            (None, false) => "FAIL",
        }
    }
}

/// The open loop's figures, for a course's leaderboard: the same fixed rate for everyone.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Leaderboard {
    /// The offered rate, requests per second.
    pub rate: f64,
    /// The fraction of the open loop's requests served before their deadline.
    pub served_fraction: Option<f64>,
    /// The 99th percentile of their latency, from when each was due, in milliseconds.
    pub p99_ms: Option<f64>,
}

/// A whole grade.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Grade {
    /// What was graded (the command, the address or the architecture's name).
    pub subject: String,
    /// The design it was graded as (`pool:4`).
    pub expect: String,
    pub checks: Vec<CheckResult>,
    pub score: f64,
    pub max_score: f64,
    pub leaderboard: Leaderboard,
    #[serde(with = "seconds")]
    pub elapsed: Duration,
}

impl Grade {
    /// The check called `name`, if it was in the spec.
    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Every required check passed in every run (skipped ones do not count).
    pub fn passed(&self) -> bool {
        self.checks
            .iter()
            .filter(|c| c.required && c.skipped.is_none())
            .all(CheckResult::passed)
    }
}

/// Durations in JSON as seconds with a fraction.
mod seconds {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = <f64 as serde::Deserialize>::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// Grades the server: runs the spec's checks `repeat` times, each run against a freshly
/// started server (or the same address), and adds them up. `Err` only for bad input or a
/// server that cannot be started; a server that misbehaves gets a grade that says so.
pub fn grade(options: &Options) -> Result<Grade, GradeError> {
    validate(options)?;
    let started = Instant::now();
    let expect = options.expect.unwrap_or_default();
    let mut tallies = checks::Tallies::new(&options.spec);
    let mut leaderboard = Leaderboard::default();
    for run in 0..options.repeat {
        let settings = checks::Settings {
            expect,
            stretch: options.stretch,
            seed: options.seed.wrapping_add(u64::from(run)),
        };
        let server = subject::start(&options.subject, options.stretch)?;
        let board = checks::run_all(&options.spec, &settings, server, &mut tallies)?;
        if run == 0 {
            leaderboard = board;
        }
    }
    let checks = tallies.finish();
    Ok(Grade {
        subject: options.subject.describe(),
        expect: expect.to_string(),
        score: checks.iter().map(CheckResult::score).sum(),
        max_score: checks.iter().map(CheckResult::max_score).sum(),
        checks,
        leaderboard,
        elapsed: started.elapsed(),
    })
}

/// The options that make no sense, as one sentence.
fn validate(options: &Options) -> Result<(), GradeError> {
    if options.repeat == 0 {
        return Err(GradeError::Options(
            "--repeat must be at least 1".to_owned(),
        ));
    }
    if !(options.stretch.is_finite() && options.stretch > 0.0 && options.stretch <= 100.0) {
        return Err(GradeError::Options(format!(
            "--stretch is a factor above 0 and at most 100; got {}",
            options.stretch
        )));
    }
    if let Subject::Command(line) = &options.subject {
        if !line.contains("{addr}") {
            return Err(GradeError::Options(format!(
                "the command {line:?} has no {{addr}}: write where the server must listen as {{addr}}, e.g. \"python3 starter.py {{addr}}\""
            )));
        }
    }
    Ok(())
}
