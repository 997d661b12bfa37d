//! The servers the simulator starts in its own process: which architectures, and with
//! which flags.
//!
//! Architectures come from the `architectures` registry, by name, so the simulator does
//! not need to know them. Each architecture's own flags (`--workers`, `--handlers`, ...) are
//! offered on `simulator compare` as the union of all of them ([`architecture_args`]); each
//! flag given goes to the architectures that have it, and each architecture parses it
//! exactly as its binary would.

use std::time::Duration;

use architectures::Entry;
use server_core::{RunningServer, ServerArgs};

use crate::SimError;
use loadgen::scenario::Scenario;

/// Which architectures to start, and how.
#[derive(Debug, Clone)]
pub struct Servers {
    /// The architectures to run, in order.
    pub archs: Vec<&'static str>,
    /// Architecture flags by long name (`("workers", "4")`); each architecture takes the
    /// ones it has.
    pub flags: Vec<(String, String)>,
    /// The servers' keep-alive timeout. `None`: long enough for the scenario's hold (at
    /// least 5 s).
    pub keep_alive_timeout: Option<Duration>,
    pub backlog: u32,
}

impl Default for Servers {
    /// Every registered architecture with its defaults.
    fn default() -> Self {
        Servers {
            archs: architectures::names(),
            flags: Vec::new(),
            keep_alive_timeout: None,
            backlog: 1024,
        }
    }
}

impl Servers {
    /// One architecture, with its defaults.
    pub fn only(name: &'static str) -> Servers {
        Servers {
            archs: vec![name],
            ..Servers::default()
        }
    }

    /// The same servers with one more architecture flag (`with("workers", 4)`).
    pub fn with(mut self, flag: &str, value: impl ToString) -> Servers {
        self.flags.push((flag.to_owned(), value.to_string()));
        self
    }

    /// The shared server settings for this scenario.
    pub fn server_args(&self, scenario: &Scenario) -> ServerArgs {
        let keep_alive = self.keep_alive_timeout.unwrap_or_else(|| {
            (scenario.hold + Duration::from_secs(1)).max(Duration::from_secs(5))
        });
        ServerArgs {
            keep_alive_timeout: keep_alive,
            backlog: self.backlog,
            shutdown_timeout: Duration::from_secs(2),
            ..ServerArgs::default()
        }
    }

    /// The flags, as command-line words, that the architecture `arch` has.
    pub fn words_for(&self, arch: &Entry) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(flag, _)| arch.has_flag(flag))
            .flat_map(|(flag, value)| [format!("--{flag}"), value.clone()])
            .collect()
    }

    /// Starts `name` in this process on an ephemeral port, with the flags it has.
    pub fn start(&self, name: &str, args: ServerArgs) -> Result<RunningServer, SimError> {
        let arch = entry(name)?;
        arch.start(&self.words_for(arch), args)
            .map_err(SimError::server)
    }
}

/// The registry's entry for `name`, or an error that lists the names there are.
pub fn entry(name: &str) -> Result<&'static Entry, SimError> {
    architectures::find(name).ok_or_else(|| {
        SimError::Usage(format!(
            "there is no architecture {name:?}; there are {}",
            architectures::names().join(", ")
        ))
    })
}

/// Every architecture's own flags, once each, for `simulator compare`. Their defaults are
/// removed, so that only the flags a user gives are passed on; each architecture applies
/// its own default for the others.
pub fn architecture_args() -> Vec<clap::Arg> {
    let mut args: Vec<clap::Arg> = Vec::new();
    for entry in architectures::ALL {
        for arg in entry.flags().get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") || args.iter().any(|a| a.get_id() == id) {
                continue;
            }
            let users: Vec<&str> = architectures::ALL
                .iter()
                .filter(|e| e.flags().get_arguments().any(|a| a.get_id() == id))
                .map(|e| e.name)
                .collect();
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            args.push(
                arg.clone()
                    .default_value(None::<&str>)
                    .help(format!(
                        "{} [{}]",
                        help.trim_end_matches('.'),
                        users.join(", ")
                    ))
                    .long_help(None::<&str>)
                    .help_heading(
                        "Architecture flags (each goes to the architectures that have it)",
                    ),
            );
        }
    }
    args
}

/// The architecture flags given on the command line, by long name, from `matches` of a
/// command that has [`architecture_args`].
pub fn given_flags(matches: &clap::ArgMatches) -> Vec<(String, String)> {
    let mut flags = Vec::new();
    for arg in architecture_args() {
        let id = arg.get_id().as_str();
        if matches.value_source(id) != Some(clap::parser::ValueSource::CommandLine) {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        if let Some(values) = matches.get_raw(id) {
            for value in values {
                flags.push((long.to_owned(), value.to_string_lossy().into_owned()));
            }
        }
    }
    flags
}

/// A registered architecture as something the grader can start and stop
/// (`simulator grade ARCH`): each launch is a fresh server on an ephemeral loopback port,
/// with the architecture's defaults.
#[derive(Debug, Clone, Copy)]
pub struct Registered(pub &'static Entry);

/// A server [`Registered`] started, as the grader sees it.
#[derive(Debug)]
struct Graded(RunningServer);

impl grader::Launch for Registered {
    fn launch(&self) -> Result<Box<dyn grader::Running>, grader::GradeError> {
        let args = ServerArgs {
            shutdown_timeout: Duration::from_secs(2),
            ..ServerArgs::default()
        };
        self.0
            .start(&[], args)
            .map(|server| Box::new(Graded(server)) as Box<dyn grader::Running>)
            .map_err(|e| grader::GradeError::CannotStart(e.to_string()))
    }

    fn name(&self) -> String {
        self.0.name.to_owned()
    }
}

impl grader::Running for Graded {
    fn addr(&self) -> std::net::SocketAddr {
        self.0.addr()
    }

    fn stop(self: Box<Self>) -> Result<(), grader::GradeError> {
        self.0
            .stop()
            .map_err(|e| grader::GradeError::Stop(e.to_string()))
    }
}

/// What a servelab server's stated capacity claims, in the grader's terms: one slot is
/// sequential; a fixed number of workers is a pool if it turns away what it cannot admit,
/// workers that make clients wait otherwise; a worker per client, or no bound, is
/// concurrent per connection.
pub fn claim_of(capacity: &server_core::Capacity) -> grader::Expect {
    let workers = |n: u64| u32::try_from(n).unwrap_or(u32::MAX).clamp(1, 4096);
    match (capacity.concurrent, capacity.per_client) {
        (None, _) | (Some(_), true) => grader::Expect::PerConnection,
        (Some(1), false) => grader::Expect::Sequential,
        (Some(n), false) if capacity.rejects_beyond => grader::Expect::Pool(workers(n)),
        (Some(n), false) => grader::Expect::Workers(workers(n)),
    }
}

/// The claim a registered architecture makes with its defaults, read from the `/stats`
/// of one started for the purpose (and stopped at once).
pub fn claim_of_registered(entry: &Entry) -> Result<grader::Expect, SimError> {
    let server = entry
        .start(&[], ServerArgs::default())
        .map_err(SimError::server)?;
    let claim = claim_of(&server.context().snapshot().capacity);
    server.stop().map_err(SimError::server)?;
    // The capacity cannot tell an event loop or a runtime from a thread per connection
    // (none bounds the clients served at once); the names can.
    Ok(match (claim, entry.name) {
        (grader::Expect::PerConnection, "event-loop" | "io-uring") => grader::Expect::EventLoop,
        (grader::Expect::PerConnection, "async-work-stealing" | "async-per-core") => {
            grader::Expect::Async
        }
        (claim, _) => claim,
    })
}
