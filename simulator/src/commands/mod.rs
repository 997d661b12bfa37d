//! The command line: one module per command, and the flags several commands share.
//!
//! `main.rs` calls [`main`], which parses the words, runs the command and returns the
//! exit status. Each command's module holds its own flags (a clap `Args` struct) and the
//! function that runs it; what they have in common lives here:
//!
//! * `ScenarioArgs`: the clients and what they do, with defaults that differ between
//!   `run` (the lecture's first experiment) and `compare` (a contest between designs);
//! * `ServerChoice`: which architectures `compare` and `sweep` start in this process,
//!   with the architectures' own flags added from the registry at run time;
//! * `OutputArgs` and `SaveArgs`: the format of the report on stdout, the log, the HTML
//!   report and the directory of files.
//!
//! A command returns `Ok(status)` when it did its job (a lab whose prediction failed or a
//! merge with a missing shard did its job and still exits 1), or a [`SimError`], which
//! `main` prints as one sentence and turns into status 1 (clap's own usage errors exit 2).

mod architectures;
mod compare;
mod grade;
mod lab;
mod merge;
mod probe;
mod run;
mod sweep;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use contract::units::parse_duration;
use loadgen::attack::Population;
use loadgen::link::{parse_bandwidth, Link, Rtt};
use loadgen::scenario::{Arrivals, DeadlineClock, Engine, Load, OpenLoop, Stage, Stages, WhenBusy};
use loadgen::{RequestSpec, Scenario};

use crate::output::{self, Format};
use crate::report::Report;
use crate::servers::{self, Servers};
use crate::SimError;

/// servelab's client simulator: many clients at once, each with a deadline; who was served
/// in time, who gave up, and why.
#[derive(Debug, Parser)]
#[command(name = "simulator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario against a server that is already running (any HTTP/1.1 server).
    Run(run::RunArgs),
    /// Run the same scenario against each architecture, started in-process, and print one
    /// table.
    Compare(compare::CompareArgs),
    /// Find the knee: offer rising request rates (open loop) and report the highest one
    /// at which the goal fraction of requests meets the deadline, beside the prediction.
    Sweep(sweep::SweepArgs),
    /// Run one of the lecture's experiments and check the result (sheets in labs/).
    Lab(lab::LabArgs),
    /// Add up the shards of one run (`run --shard I/N --save DIR`) into the report of the
    /// whole run: ledgers summed, histograms merged (never percentiles averaged), the
    /// prediction made again. Exits 1 if a shard is missing, after naming it.
    Merge(merge::MergeArgs),
    /// Check that a server answers: exit 0 if it does, 1 (with one sentence) if not. Made
    /// for container health checks, where there is no curl.
    Probe(probe::ProbeArgs),
    /// List the architectures in the registry, each with what it is.
    Architectures(architectures::ArchitecturesArgs),
    /// Grade a server for coursework: the protocol, robustness, concurrency, capacity and
    /// hygiene, as text or for Gradescope, Autolab or JUnit (docs/grading.md). Exits 0 when
    /// every required check passed, 1 for a failed grade, 2 for bad input.
    Grade(grade::GradeArgs),
}

/// Parses the command line, runs the command, and returns the exit status. Usage errors
/// found by clap exit here with clap's own message and status 2.
pub fn main() -> ExitCode {
    // The architectures' own flags join `compare` and `sweep` from the registry.
    let command = Cli::command()
        .mut_subcommand("compare", |c| c.args(servers::architecture_args()))
        .mut_subcommand("sweep", |c| c.args(servers::architecture_args()));
    let matches = command.get_matches();
    let flags = matches
        .subcommand_matches("compare")
        .or_else(|| matches.subcommand_matches("sweep"))
        .map(servers::given_flags)
        .unwrap_or_default();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match execute(cli.command, flags) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("simulator: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command. `flags` are the architectures' own flags given to `compare` or
/// `sweep`, as (name, value) pairs.
fn execute(command: Command, flags: Vec<(String, String)>) -> Result<ExitCode, SimError> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Compare(args) => compare::run(args, flags),
        Command::Sweep(args) => sweep::run(args, flags),
        Command::Lab(args) => lab::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Architectures(args) => architectures::run(args),
        Command::Grade(args) => grade::run(args),
    }
}

/// Which in-process servers `compare` runs. The architectures' own flags (`--workers`,
/// `--handlers`, ...) are added from the registry at run time (see `servers.rs`).
#[derive(Debug, Args)]
pub(crate) struct ServerChoice {
    /// Which architectures to run, in order (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',', value_name = "NAMES", value_parser = clap::builder::PossibleValuesParser::new(::architectures::names()))]
    pub(crate) archs: Vec<String>,

    /// The servers' keep-alive timeout [default: long enough for --hold, at least 5s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) keep_alive_timeout: Option<Duration>,

    /// The servers' listen backlog.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub(crate) backlog: u32,
}

impl ServerChoice {
    pub(crate) fn servers(self, flags: Vec<(String, String)>) -> Servers {
        let mut servers = Servers {
            flags,
            keep_alive_timeout: self.keep_alive_timeout,
            backlog: self.backlog,
            ..Servers::default()
        };
        if !self.archs.is_empty() {
            servers.archs = self
                .archs
                .iter()
                .filter_map(|name| ::architectures::find(name).map(|e| e.name))
                .collect();
        }
        servers
    }
}

/// The scenario. Defaults differ between `run` (the lecture's 5 clients, 15 s deadline,
/// `GET /`) and `compare` (16 clients, `GET /sleep/400`, 1 s deadline).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("open").args(["rate", "stages"])))]
pub(crate) struct ScenarioArgs {
    /// Number of clients, each on its own thread and connection [run: 5, compare: 16].
    #[arg(long, value_name = "N")]
    pub(crate) clients: Option<usize>,
    /// Each client's deadline, from the common start: connect, send and receive must all
    /// fit in it. In load runs, each request's deadline [run: 15s, compare: 1s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) timeout: Option<Duration>,
    /// How long a served client keeps its connection open and idle before leaving [0].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) hold: Option<Duration>,
    /// The request: "METHOD PATH" [run: "GET /", compare: "GET /sleep/400"].
    #[arg(long, value_name = "METHOD PATH")]
    pub(crate) request: Option<String>,
    /// A request body.
    #[arg(long, value_name = "TEXT")]
    pub(crate) body: Option<String>,
    /// A fresh 36-byte UUID as the body of every request.
    #[arg(long)]
    pub(crate) body_uuid: bool,
    /// Requests per client, one after another on one connection [1].
    #[arg(long, value_name = "K", conflicts_with = "duration")]
    pub(crate) requests: Option<u32>,
    /// A load run of this length: closed loop (each client sends its next request as soon
    /// as the last is answered), or open loop with --rate.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) duration: Option<Duration>,
    /// Open loop: requests per second, sent on schedule whether or not earlier ones have
    /// been answered (needs --duration).
    #[arg(long, value_name = "R", requires = "duration")]
    pub(crate) rate: Option<f64>,
    /// Open loop on a ramp, instead of --rate and --duration: stages DURATION:RATE,
    /// e.g. "10s:100,30s:1000,10s:0"; the rate moves linearly from each stage's rate to
    /// the next, from 0 at the start (a 0s stage is a step). At most 16 stages.
    #[arg(long, value_name = "STAGES", value_parser = Stage::parse_list,
          conflicts_with_all = ["rate", "duration", "requests"])]
    pub(crate) stages: Option<Stages>,
    /// --stages counts clients, not requests per second: a closed loop whose clients are
    /// added as the ramp rises and removed as it falls (client k runs while the ramp is at
    /// k or above), e.g. --closed --stages "1s:10,2s:10,1s:0".
    #[arg(long, requires = "stages")]
    pub(crate) closed: bool,
    /// Open loop: evenly spaced arrivals, or a Poisson process.
    #[arg(long, value_enum, value_name = "KIND", requires = "open")]
    pub(crate) arrivals: Option<Arrivals>,
    /// Open loop: the connections that carry the requests [64].
    #[arg(long, value_name = "N", requires = "open", conflicts_with = "clients")]
    pub(crate) connections: Option<usize>,
    /// Open loop: what to do with a request that is due while every connection is busy:
    /// wait for one (the wait counts in its latency), or drop it.
    #[arg(long, value_enum, value_name = "POLICY", requires = "open")]
    pub(crate) when_busy: Option<WhenBusy>,
    /// Open loop: the seed of the Poisson arrivals, to repeat a run exactly.
    #[arg(long, value_name = "N", requires = "open")]
    pub(crate) seed: Option<u64>,
    /// What runs the clients: a few threads with an event loop each (events), or the
    /// lecture's thread per client (threads).
    #[arg(long, value_enum, default_value_t = Engine::Events, value_name = "ENGINE")]
    pub(crate) engine: Engine,
    /// The event-driven engine's threads [one per CPU].
    #[arg(long, value_name = "N")]
    pub(crate) engine_threads: Option<usize>,
    /// Which clock --timeout runs on: from-start (one deadline, from the moment all
    /// clients start) or per-call (the lecture's: connecting and each response each get a
    /// fresh --timeout).
    #[arg(long, value_enum, default_value_t = DeadlineClock::FromStart, value_name = "CLOCK")]
    pub(crate) deadline: DeadlineClock,
    /// Hostile clients in the background, N:BEHAVIOUR[:EVERY] (repeatable): N connections
    /// that connect before the clients above start, misbehave every EVERY [1s], come back
    /// when the server cuts them off, and stop when the clients are done. BEHAVIOUR:
    /// slow-headers (a head that never ends), slow-body (a body that never ends),
    /// slow-read (a 256 KiB echo read 16 bytes a tick), idle (nothing sent). Each
    /// population gets its own ledger beside the clients' own.
    #[arg(long, value_name = "N:BEHAVIOUR[:EVERY]", value_parser = parse_population)]
    pub(crate) background: Vec<Population>,
    /// Distant clients: each client's round trip to the server, emulated by the simulator
    /// (no root, no netem): "50ms", or a range "20ms..200ms" (each client its own, fixed
    /// by its number). Requests, answers and the handshake are each delayed half of it.
    #[arg(long, value_name = "DURATION[..DURATION]", value_parser = Rtt::parse)]
    pub(crate) rtt: Option<Rtt>,
    /// Distant clients: each client's bandwidth each way, as tc writes it ("1mbit",
    /// "512kbit", "100kbps" for bytes); a request or answer takes its size over it.
    #[arg(long, value_name = "RATE", value_parser = parse_bandwidth)]
    pub(crate) bandwidth: Option<u64>,
}

pub(crate) fn parse_population(text: &str) -> Result<Population, String> {
    Population::parse(text).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Output format. csv gives one row per client.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// How much to tell on stderr while the clients run.
    #[arg(long, value_enum, default_value_t = LogLevel::Quiet, value_name = "LEVEL")]
    pub(crate) log: LogLevel,
    /// Also write the results as one self-contained HTML page with charts (each client's
    /// timeline, the latency distribution, the run over time, a servelab server's queues
    /// and threads, read from its /stats during the run).
    #[arg(long, value_name = "FILE.html")]
    pub(crate) report: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct SaveArgs {
    /// Also write the run's files into this directory (one per architecture for compare):
    /// report.json, clients.csv, series.csv (per second), latency.hlog (HdrHistogram
    /// interval log), corrected.hgrm and uncorrected.hgrm (percentile spectra for
    /// HdrHistogram's plotter).
    #[arg(long, value_name = "DIR")]
    pub(crate) save: Option<std::path::PathBuf>,
}

/// `--frames DIR`: the timeline as numbered SVG stills, for slides.
#[derive(Debug, Args)]
pub(crate) struct FramesArgs {
    /// Also write the clients' timeline as numbered SVG frames into this directory
    /// (frame-001.svg, ...; one directory per architecture or lab run inside it when there
    /// are several): the run so far at evenly spaced moments, for slides.
    #[arg(long, value_name = "DIR")]
    pub(crate) frames: Option<std::path::PathBuf>,
    /// How many frames --frames writes, from the start to the end of the run.
    #[arg(long, value_name = "N", default_value_t = 25, value_parser = clap::value_parser!(u16).range(2..=1000))]
    pub(crate) frame_count: u16,
}

impl FramesArgs {
    /// Writes `report`'s frames into the `--frames` directory (into `sub` inside it, if
    /// given), and says so on stderr; nothing without `--frames`.
    pub(crate) fn write(&self, report: &Report, sub: Option<&str>) -> Result<(), SimError> {
        let Some(dir) = &self.frames else {
            return Ok(());
        };
        let dir = match sub {
            Some(sub) => dir.join(sub),
            None => dir.clone(),
        };
        let written = output::frames::write(report, &dir, usize::from(self.frame_count))?;
        if let (Some(first), Some(last)) = (written.first(), written.last()) {
            eprintln!(
                "wrote {} frames: {} to {}",
                written.len(),
                first.display(),
                last.display()
            );
        }
        Ok(())
    }
}

/// The simulator's log levels (the servers' `--log` describes the servers' own).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogLevel {
    /// The report only.
    Quiet,
    /// Also each client's story as it happens, in the lecture's words, with the time and
    /// the client's thread.
    Info,
    /// Everything, including the in-process servers' own debug lines.
    Debug,
}

impl LogLevel {
    pub(crate) fn init(self) {
        server_core::logging::init(match self {
            LogLevel::Quiet => server_core::config::LogLevel::Quiet,
            LogLevel::Info => server_core::config::LogLevel::Info,
            LogLevel::Debug => server_core::config::LogLevel::Debug,
        });
    }
}

/// The highest open-loop rate accepted: ten million requests per second, far beyond what
/// one machine's loopback carries, and low enough that a typo cannot schedule requests
/// faster than the engine can count them.
pub(crate) const MAX_RATE: f64 = 10_000_000.0;

pub(crate) struct Defaults {
    pub(crate) clients: usize,
    pub(crate) timeout: Duration,
    pub(crate) request: &'static str,
}

impl ScenarioArgs {
    pub(crate) fn resolve(self, defaults: Defaults) -> Result<Scenario, SimError> {
        let timeout = self.timeout.unwrap_or(defaults.timeout);
        if timeout.is_zero() {
            return Err(SimError::Usage("--timeout must be longer than 0".into()));
        }
        let request = RequestSpec::parse(
            self.request.as_deref().unwrap_or(defaults.request),
            self.body.clone(),
            self.body_uuid,
        )?;
        let mut clients_ramp = Stages::default();
        let (clients, load) = match (self.rate, self.duration, self.requests) {
            _ if self.closed => {
                let (clients, stages) = self.closed_ramp()?;
                clients_ramp = stages;
                (clients, Load::Duration(stages.total()))
            }
            _ if self.stages.is_some() => (self.connections.unwrap_or(64), self.open_ramp()?),
            (Some(rate), Some(duration), _) => {
                if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
                    return Err(SimError::Usage(format!(
                        "--rate is requests per second, above 0 and at most {MAX_RATE}; got {rate}"
                    )));
                }
                let open = OpenLoop {
                    rate,
                    duration,
                    arrivals: self.arrivals.unwrap_or_default(),
                    when_busy: self.when_busy.unwrap_or_default(),
                    seed: self.seed.unwrap_or(1),
                    stages: Default::default(),
                };
                (self.connections.unwrap_or(64), Load::Rate(open))
            }
            (_, Some(d), _) => (self.clients.unwrap_or(defaults.clients), Load::Duration(d)),
            (_, None, Some(0)) => {
                return Err(SimError::Usage("--requests must be at least 1".into()))
            }
            (_, None, k) => (
                self.clients.unwrap_or(defaults.clients),
                Load::Requests(k.unwrap_or(1)),
            ),
        };
        if clients == 0 {
            return Err(SimError::Usage(
                "--clients (or --connections) must be at least 1".into(),
            ));
        }
        self.check_engine()?;
        Ok(Scenario {
            clients,
            timeout,
            hold: self.hold.unwrap_or(Duration::ZERO),
            request,
            load,
            deadline: self.deadline,
            engine: self.engine,
            engine_threads: self.engine_threads,
            shard: None,
            start_at: None,
            background: self.background,
            link: Link {
                rtt: self.rtt.unwrap_or_default(),
                bandwidth_bits_per_s: self.bandwidth,
            },
            clients_ramp,
        })
    }
}

impl ScenarioArgs {
    /// `--closed --stages`: the most clients at once (the highest stage) and the ramp, or
    /// the sentence that says which flag does not belong with it.
    fn closed_ramp(&self) -> Result<(usize, Stages), SimError> {
        let stages = self.stages.unwrap_or_default();
        if self.clients.is_some() {
            return Err(SimError::Usage(
                "--closed --stages sets the clients by its stages (the most at once is the highest stage); leave out --clients".into(),
            ));
        }
        if self.arrivals.is_some()
            || self.connections.is_some()
            || self.when_busy.is_some()
            || self.seed.is_some()
        {
            return Err(SimError::Usage(
                "--closed --stages ramps clients, each sending back to back; --arrivals, --connections, --when-busy and --seed are for an open loop".into(),
            ));
        }
        let peak = stages.peak().ceil();
        if peak > 1_000_000.0 {
            return Err(SimError::Usage(format!(
                "--closed --stages: a stage's value is a number of clients, at most 1000000; got {peak}"
            )));
        }
        Ok((peak as usize, stages))
    }

    /// `--stages` on an open loop: the ramped schedule, or the sentence that says a rate
    /// is too high.
    fn open_ramp(&self) -> Result<Load, SimError> {
        let stages = self.stages.unwrap_or_default();
        let peak = stages.peak();
        if peak > MAX_RATE {
            return Err(SimError::Usage(format!(
                "--stages: a rate is requests per second, at most {MAX_RATE}; got {peak}"
            )));
        }
        Ok(Load::Rate(OpenLoop::staged(
            stages,
            self.arrivals.unwrap_or_default(),
            self.when_busy.unwrap_or_default(),
            self.seed.unwrap_or(1),
        )))
    }

    /// The engine's flags agree with each other.
    fn check_engine(&self) -> Result<(), SimError> {
        if self.engine_threads == Some(0) {
            return Err(SimError::Usage(
                "--engine-threads must be at least 1".into(),
            ));
        }
        if self.engine == Engine::Threads && self.engine_threads.is_some() {
            return Err(SimError::Usage(
                "--engine-threads is for the event-driven engine; --engine threads runs a thread per client".into(),
            ));
        }
        Ok(())
    }
}

/// Prints one run's report in `args`' format, writes its files into `save` and its HTML
/// page if asked: what `run` and `merge` both end with.
pub(crate) fn deliver(
    report: &Report,
    args: &OutputArgs,
    save: Option<&Path>,
) -> Result<(), SimError> {
    match args.format {
        Format::Text => output::print(&report.to_text()),
        Format::Json => output::print_json(report),
        Format::Csv => output::print(&report.to_csv()),
    }
    if let Some(dir) = save {
        output::saved(&output::files::save(report, dir)?);
    }
    if let Some(path) = &args.report {
        output::html::write(
            path,
            &output::html::run_page(report, &output::html::Provenance::here()),
        )?;
    }
    Ok(())
}
