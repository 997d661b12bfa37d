//! The `simulator` command line: `run` against any HTTP/1.1 server, `compare` the
//! registered architectures in-process (or running servers), `lab`, and `probe`.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use server_core::config::parse_duration;
use simulator::html::{self, Provenance};
use simulator::report::Report;
use simulator::scenario::{Arrivals, DeadlineClock, Engine, OpenLoop, Shard, WhenBusy};
use simulator::servers::{self, Servers};
use simulator::sweep::{self, SweepSpec};
use simulator::{compare, render, run, save, target};
use simulator::{Load, RequestSpec, Scenario, SimError};

/// `print!` that never panics: see [`emit`].
macro_rules! out {
    ($($arg:tt)*) => { emit(format_args!($($arg)*)) };
}

/// `println!` that never panics: see [`emit`].
macro_rules! outln {
    ($($arg:tt)*) => { emit(format_args!("{}\n", format_args!($($arg)*))) };
}

/// servelab's client simulator: many clients at once, each with a deadline; who was served
/// in time, who gave up, and why.
#[derive(Parser)]
#[command(name = "simulator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario against a server that is already running (any HTTP/1.1 server).
    Run(RunArgs),
    /// Run the same scenario against each architecture, started in-process, and print one
    /// table.
    Compare(CompareArgs),
    /// Find the knee: offer rising request rates (open loop) and report the highest one
    /// at which the goal fraction of requests meets the deadline, beside the prediction.
    Sweep(SweepArgs),
    /// Run one of the lecture's experiments and check the result (sheets in labs/).
    Lab(LabArgs),
    /// Add up the shards of one run (`run --shard I/N --save DIR`) into the report of the
    /// whole run: ledgers summed, histograms merged (never percentiles averaged), the
    /// prediction made again. Exits 1 if a shard is missing, after naming it.
    Merge(MergeArgs),
    /// Check that a server answers: exit 0 if it does, 1 (with one sentence) if not. Made
    /// for container health checks, where there is no curl.
    Probe(ProbeArgs),
    /// List the architectures in the registry, each with what it is.
    Architectures(ArchitecturesArgs),
}

#[derive(Args)]
struct ArchitecturesArgs {
    /// Only the names, one per line (for scripts).
    #[arg(long)]
    names: bool,
}

#[derive(Args)]
struct ProbeArgs {
    /// The server, as host:port.
    target: String,
    /// Print the server's /stats document instead of one line.
    #[arg(long)]
    stats: bool,
}

#[derive(Args)]
struct LabArgs {
    /// The lab's number (see --list).
    #[arg(required_unless_present = "list")]
    id: Option<u32>,
    /// List the labs.
    #[arg(long)]
    list: bool,
    /// Lecture seconds to real seconds: 0.1 makes one lecture second last 100 ms; 1
    /// replays the lecture's timing.
    #[arg(long, default_value_t = 0.1, value_name = "FACTOR")]
    scale: f64,
    /// Use a server you started yourself (host:port) instead of in-process servers.
    #[arg(long, value_name = "HOST:PORT")]
    target: Option<String>,
    /// What runs the clients (open-loop steps always run on events).
    #[arg(long, value_enum, default_value_t = Engine::Events, value_name = "ENGINE")]
    engine: Engine,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct MergeArgs {
    /// The shards' directories (each with report.json and latency.hlog), or directories
    /// that hold them (the DIR all shards saved into).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<std::path::PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: SaveArgs,
}

#[derive(Args)]
struct RunArgs {
    /// The server, as host:port.
    #[arg(long, default_value = "127.0.0.1:7777")]
    target: String,
    #[command(flatten)]
    scenario: ScenarioArgs,
    #[command(flatten)]
    orchestration: Orchestration,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: SaveArgs,
}

#[derive(Args)]
struct CompareArgs {
    /// Measure servers that are already running (host:port; repeat the flag or separate
    /// with commas) instead of starting the four architectures in-process. The server
    /// flags below apply only to in-process servers.
    #[arg(long = "target", value_name = "HOST:PORT", value_delimiter = ',')]
    targets: Vec<String>,
    #[command(flatten)]
    scenario: ScenarioArgs,
    #[command(flatten)]
    servers: ServerChoice,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: SaveArgs,
}

#[derive(Args)]
struct SweepArgs {
    /// Sweep servers that are already running (host:port; repeat the flag or separate with
    /// commas) instead of the architectures in-process. The server flags below apply only
    /// to in-process servers.
    #[arg(long = "target", value_name = "HOST:PORT", value_delimiter = ',')]
    targets: Vec<String>,
    /// The request: "METHOD PATH".
    #[arg(long, default_value = "GET /sleep/20", value_name = "METHOD PATH")]
    request: String,
    /// Each request's deadline, from the moment it is due.
    #[arg(long, default_value = "100ms", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// The connections that carry the requests.
    #[arg(long, default_value_t = 64, value_name = "N")]
    connections: usize,
    /// The rates to offer, in requests per second (comma-separated) [default: around the
    /// predicted capacity, or 100 to 100 000].
    #[arg(long, value_delimiter = ',', value_name = "R,...")]
    rates: Vec<f64>,
    /// How long each rate is offered.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    step: Duration,
    /// The fraction of requests that must meet the deadline for a rate to pass.
    #[arg(long, default_value_t = 0.99, value_name = "FRACTION")]
    goal: f64,
    /// Extra steps that bisect between the highest passing and lowest failing rate.
    #[arg(long, default_value_t = 3, value_name = "N")]
    refine: u32,
    /// Evenly spaced arrivals, or a Poisson process.
    #[arg(long, value_enum, default_value_t = Arrivals::Constant, value_name = "KIND")]
    arrivals: Arrivals,
    /// What to do with a request due while every connection is busy.
    #[arg(long, value_enum, default_value_t = WhenBusy::Queue, value_name = "POLICY")]
    when_busy: WhenBusy,
    /// The seed of the Poisson arrivals.
    #[arg(long, default_value_t = 1, value_name = "N")]
    seed: u64,
    /// The engine's threads [one per CPU].
    #[arg(long, value_name = "N")]
    engine_threads: Option<usize>,
    #[command(flatten)]
    servers: ServerChoice,
    #[command(flatten)]
    output: OutputArgs,
}

impl SweepArgs {
    fn spec(&self) -> Result<SweepSpec, SimError> {
        if self.connections == 0 {
            return Err(SimError::Usage("--connections must be at least 1".into()));
        }
        if !(self.goal > 0.0 && self.goal <= 1.0) {
            return Err(SimError::Usage(
                "--goal is a fraction above 0 and at most 1, e.g. 0.99".into(),
            ));
        }
        if let Some(bad) = self
            .rates
            .iter()
            .find(|r| !(r.is_finite() && **r > 0.0 && **r <= MAX_RATE))
        {
            return Err(SimError::Usage(format!(
                "--rates takes request rates above 0 and at most {MAX_RATE}; got {bad}"
            )));
        }
        if self.timeout.is_zero() || self.step.is_zero() {
            return Err(SimError::Usage(
                "--timeout and --step must be longer than 0".into(),
            ));
        }
        let open = OpenLoop {
            rate: 1.0,
            duration: self.step,
            arrivals: self.arrivals,
            when_busy: self.when_busy,
            seed: self.seed,
        };
        let scenario = Scenario {
            clients: self.connections,
            timeout: self.timeout,
            hold: Duration::ZERO,
            request: RequestSpec::parse(&self.request, None, false)?,
            load: Load::Rate(open),
            deadline: DeadlineClock::FromStart,
            engine: Engine::Events,
            engine_threads: self.engine_threads,
            shard: None,
            start_at: None,
            watch_server: false,
            background: Vec::new(),
        };
        Ok(SweepSpec {
            scenario,
            rates: self.rates.clone(),
            step: self.step,
            goal: self.goal,
            refine: self.refine,
        })
    }
}

/// Which in-process servers `compare` runs. The architectures' own flags (`--workers`,
/// `--handlers`, ...) are added from the registry at run time (see `servers.rs`).
#[derive(Args)]
struct ServerChoice {
    /// Which architectures to run, in order (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',', value_name = "NAMES", value_parser = clap::builder::PossibleValuesParser::new(architectures::names()))]
    archs: Vec<String>,

    /// The servers' keep-alive timeout [default: long enough for --hold, at least 5s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    keep_alive_timeout: Option<Duration>,

    /// The servers' listen backlog.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    backlog: u32,
}

impl ServerChoice {
    fn servers(self, flags: Vec<(String, String)>) -> Servers {
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
                .filter_map(|name| architectures::find(name).map(|e| e.name))
                .collect();
        }
        servers
    }
}

/// The scenario. Defaults differ between `run` (the lecture's 5 clients, 15 s deadline,
/// `GET /`) and `compare` (16 clients, `GET /sleep/400`, 1 s deadline).
#[derive(Args)]
struct ScenarioArgs {
    /// Number of clients, each on its own thread and connection [run: 5, compare: 16].
    #[arg(long, value_name = "N")]
    clients: Option<usize>,
    /// Each client's deadline, from the common start: connect, send and receive must all
    /// fit in it. In load runs, each request's deadline [run: 15s, compare: 1s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    timeout: Option<Duration>,
    /// How long a served client keeps its connection open and idle before leaving [0].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    hold: Option<Duration>,
    /// The request: "METHOD PATH" [run: "GET /", compare: "GET /sleep/400"].
    #[arg(long, value_name = "METHOD PATH")]
    request: Option<String>,
    /// A request body.
    #[arg(long, value_name = "TEXT")]
    body: Option<String>,
    /// A fresh 36-byte UUID as the body of every request.
    #[arg(long)]
    body_uuid: bool,
    /// Requests per client, one after another on one connection [1].
    #[arg(long, value_name = "K", conflicts_with = "duration")]
    requests: Option<u32>,
    /// A load run of this length: closed loop (each client sends its next request as soon
    /// as the last is answered), or open loop with --rate.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    duration: Option<Duration>,
    /// Open loop: requests per second, sent on schedule whether or not earlier ones have
    /// been answered (needs --duration).
    #[arg(long, value_name = "R", requires = "duration")]
    rate: Option<f64>,
    /// Open loop: evenly spaced arrivals, or a Poisson process.
    #[arg(long, value_enum, value_name = "KIND", requires = "rate")]
    arrivals: Option<Arrivals>,
    /// Open loop: the connections that carry the requests [64].
    #[arg(long, value_name = "N", requires = "rate", conflicts_with = "clients")]
    connections: Option<usize>,
    /// Open loop: what to do with a request that is due while every connection is busy:
    /// wait for one (the wait counts in its latency), or drop it.
    #[arg(long, value_enum, value_name = "POLICY", requires = "rate")]
    when_busy: Option<WhenBusy>,
    /// Open loop: the seed of the Poisson arrivals, to repeat a run exactly.
    #[arg(long, value_name = "N", requires = "rate")]
    seed: Option<u64>,
    /// What runs the clients: a few threads with an event loop each (events), or the
    /// lecture's thread per client (threads).
    #[arg(long, value_enum, default_value_t = Engine::Events, value_name = "ENGINE")]
    engine: Engine,
    /// The event-driven engine's threads [one per CPU].
    #[arg(long, value_name = "N")]
    engine_threads: Option<usize>,
    /// Which clock --timeout runs on: from-start (one deadline, from the moment all
    /// clients start) or per-call (the lecture's: connecting and each response each get a
    /// fresh --timeout).
    #[arg(long, value_enum, default_value_t = DeadlineClock::FromStart, value_name = "CLOCK")]
    deadline: DeadlineClock,
    /// Hostile clients in the background, N:BEHAVIOUR[:EVERY] (repeatable): N connections
    /// that connect before the clients above start, misbehave every EVERY [1s], come back
    /// when the server cuts them off, and stop when the clients are done. BEHAVIOUR:
    /// slow-headers (a head that never ends), slow-body (a body that never ends),
    /// slow-read (a 256 KiB echo read 16 bytes a tick), idle (nothing sent). Each
    /// population gets its own ledger beside the clients' own.
    #[arg(long, value_name = "N:BEHAVIOUR[:EVERY]", value_parser = parse_population)]
    background: Vec<simulator::attack::Population>,
}

fn parse_population(text: &str) -> Result<simulator::attack::Population, String> {
    simulator::attack::Population::parse(text).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Csv,
}

#[derive(Args)]
struct OutputArgs {
    /// Output format. csv gives one row per client.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// How much to tell on stderr while the clients run.
    #[arg(long, value_enum, default_value_t = LogLevel::Quiet, value_name = "LEVEL")]
    log: LogLevel,
    /// Also write the results as one self-contained HTML page with charts (each client's
    /// timeline, the latency distribution, the run over time, a servelab server's queues
    /// and threads, read from its /stats during the run).
    #[arg(long, value_name = "FILE.html")]
    report: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct SaveArgs {
    /// Also write the run's files into this directory (one per architecture for compare):
    /// report.json, clients.csv, series.csv (per second), latency.hlog (HdrHistogram
    /// interval log), corrected.hgrm and uncorrected.hgrm (percentile spectra for
    /// HdrHistogram's plotter).
    #[arg(long, value_name = "DIR")]
    save: Option<std::path::PathBuf>,
}

/// Running one shard of a run spread over several simulator processes, and starting
/// together with them and with the server.
#[derive(Args)]
struct Orchestration {
    /// Run only this process's share of the clients and of the rate: shard I of N,
    /// counted from 1 (--clients and --rate stay the whole run's). With --save, the
    /// results go to DIR/shard-I-of-N for `simulator merge`.
    #[arg(long, value_name = "I/N", env = "SIMULATOR_SHARD", value_parser = Shard::parse)]
    shard: Option<Shard>,
    /// One of N shards, its place taken from the orchestrator: Docker Swarm's task slot
    /// (TASK_SLOT, from 1) or a Kubernetes Indexed Job's JOB_COMPLETION_INDEX (from 0).
    #[arg(
        long,
        value_name = "N",
        env = "SIMULATOR_SHARDS",
        conflicts_with = "shard"
    )]
    shards: Option<usize>,
    /// Wait up to this long for the target to answer before starting, trying every
    /// 200 ms (for orchestrators that start the simulator and the server together)
    /// [default: no wait].
    #[arg(long, value_name = "DURATION", env = "SIMULATOR_WAIT", value_parser = parse_duration)]
    wait: Option<Duration>,
    /// Start the clients at this wall-clock moment (RFC 3339, e.g. 2026-11-23T09:00:00Z,
    /// or seconds since the Unix epoch), so that shards on several processes or machines
    /// start together.
    #[arg(long, value_name = "TIME", env = "SIMULATOR_START_AT", value_parser = parse_start_at)]
    start_at: Option<SystemTime>,
}

impl Orchestration {
    /// This process's shard, if it is one.
    fn shard(&self) -> Result<Option<Shard>, SimError> {
        match (self.shard, self.shards) {
            (Some(shard), _) => Ok(Some(shard)),
            (None, Some(count)) => {
                Shard::from_orchestrator(count, |name| std::env::var(name).ok()).map(Some)
            }
            (None, None) => Ok(None),
        }
    }
}

/// `--start-at`: RFC 3339, or seconds since the Unix epoch.
fn parse_start_at(text: &str) -> Result<SystemTime, String> {
    if let Ok(seconds) = text.trim().parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds));
        }
    }
    humantime::parse_rfc3339_weak(text.trim()).map_err(|_| {
        format!("expected a moment in RFC 3339 (2026-11-23T09:00:00Z) or seconds since the Unix epoch; got {text:?}")
    })
}

/// The simulator's log levels (the servers' `--log` describes the servers' own).
#[derive(Clone, Copy, ValueEnum)]
enum LogLevel {
    /// The report only.
    Quiet,
    /// Also each client's story as it happens, in the lecture's words, with the time and
    /// the client's thread.
    Info,
    /// Everything, including the in-process servers' own debug lines.
    Debug,
}

impl LogLevel {
    fn init(self) {
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
const MAX_RATE: f64 = 10_000_000.0;

struct Defaults {
    clients: usize,
    timeout: Duration,
    request: &'static str,
}

impl ScenarioArgs {
    fn resolve(self, defaults: Defaults) -> Result<Scenario, SimError> {
        let timeout = self.timeout.unwrap_or(defaults.timeout);
        if timeout.is_zero() {
            return Err(SimError::Usage("--timeout must be longer than 0".into()));
        }
        let request = RequestSpec::parse(
            self.request.as_deref().unwrap_or(defaults.request),
            self.body,
            self.body_uuid,
        )?;
        let (clients, load) = match (self.rate, self.duration, self.requests) {
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
            watch_server: false,
            background: self.background,
        })
    }
}

fn main() -> ExitCode {
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
    match execute(cli, flags) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("simulator: {e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli, flags: Vec<(String, String)>) -> Result<ExitCode, SimError> {
    match cli.command {
        Command::Run(args) => {
            args.output.log.init();
            let mut scenario = args.scenario.resolve(Defaults {
                clients: 5,
                timeout: Duration::from_secs(15),
                request: "GET /",
            })?;
            scenario.shard = args.orchestration.shard()?;
            scenario.start_at = args.orchestration.start_at;
            scenario.watch_server = args.output.report.is_some();
            if let Some(shard) = scenario.shard {
                if !scenario.background.is_empty() {
                    return Err(SimError::Usage(format!(
                        "--background cannot be split into shards: run the hostile clients from one process without --shard (this is shard {shard})"
                    )));
                }
                if scenario.clients < shard.index {
                    return Err(SimError::Usage(format!(
                        "shard {shard} has no clients: the run has only {} (--clients, or --connections in an open loop)",
                        scenario.clients
                    )));
                }
            }
            // Fails with one sentence if nothing listens there. A shard that fails says so
            // in its directory, so that the merge can name it.
            let wait = args.orchestration.wait;
            let ran = wait
                .map_or(Ok(()), |within| target::wait_for(&args.target, within))
                .and_then(|()| run::run_target(&args.target, &scenario));
            let report = match ran {
                Ok(report) => report,
                Err(e) => {
                    if let (Some(dir), Some(shard)) = (&args.files.save, scenario.shard) {
                        saved(&[save::save_failure(dir, shard, &e)?]);
                    }
                    return Err(e);
                }
            };
            print_report(&report, args.output.format);
            if let Some(dir) = &args.files.save {
                saved(&save::save(&report, &save::run_dir(dir, scenario.shard))?);
            }
            if let Some(path) = &args.output.report {
                html::write(path, &html::run_page(&report, &Provenance::here()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Merge(args) => {
            args.output.log.init();
            let report = simulator::merge::merge(&args.dirs)?;
            print_report(&report, args.output.format);
            if let Some(dir) = &args.files.save {
                saved(&save::save(&report, dir)?);
            }
            if let Some(path) = &args.output.report {
                html::write(path, &html::run_page(&report, &Provenance::here()))?;
            }
            let complete = report.shards.as_ref().is_none_or(|c| c.complete());
            Ok(if complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Compare(args) => {
            args.output.log.init();
            let mut scenario = args.scenario.resolve(Defaults {
                clients: 16,
                timeout: Duration::from_secs(1),
                request: "GET /sleep/400",
            })?;
            scenario.watch_server = args.output.report.is_some();
            let servers = args.servers.servers(flags);
            let reports = if args.targets.is_empty() {
                compare::compare(&scenario, &servers)?
            } else {
                compare::compare_targets(&scenario, &args.targets)?
            };
            match args.output.format {
                Format::Text => out!("{}", render::compare_text(&scenario, &reports)),
                Format::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "scenario": scenario, "servers": { "archs": servers.archs, "flags": servers.flags, "backlog": servers.backlog }, "results": reports }))
                        .unwrap_or_default()
                ),
                Format::Csv => out!("{}", render::compare_csv(&reports)),
            }
            if let Some(dir) = &args.files.save {
                for report in &reports {
                    let name = report.architecture.as_deref().unwrap_or(&report.target);
                    saved(&save::save(
                        report,
                        &dir.join(name.replace([':', '/'], "_")),
                    )?);
                }
            }
            if let Some(path) = &args.output.report {
                html::write(
                    path,
                    &html::compare_page(&scenario, &reports, &Provenance::here()),
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sweep(args) => {
            args.output.log.init();
            let spec = args.spec()?;
            let reports = if args.targets.is_empty() {
                sweep::sweep_in_process(&args.servers.servers(flags), &spec)?
            } else {
                args.targets
                    .iter()
                    .map(|target| sweep::sweep_target(target, &spec))
                    .collect::<Result<Vec<_>, _>>()?
            };
            match args.output.format {
                Format::Text => {
                    let texts: Vec<String> = reports.iter().map(|r| r.to_text()).collect();
                    out!("{}", texts.join("\n"));
                }
                Format::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(&reports).unwrap_or_default()
                ),
                Format::Csv => out!("{}", sweep::to_csv(&reports)),
            }
            if let Some(path) = &args.output.report {
                html::write(path, &html::sweep_page(&reports, &Provenance::here()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Lab(args) => lab(args),
        Command::Architectures(args) => {
            for entry in &architectures::ALL {
                if args.names {
                    outln!("{}", entry.name);
                } else {
                    outln!("{:<19} {}", entry.name, entry.about);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe(args) => {
            let addr = target::resolve(&args.target)?;
            // Fails with one sentence if nothing listens there or it does not answer.
            let info = target::health(addr, &args.target)?;
            match (info, args.stats) {
                (Some(info), true) => outln!(
                    "{}",
                    serde_json::to_string_pretty(&info.snapshot).unwrap_or_default()
                ),
                (Some(info), false) => outln!(
                    "{}: servelab {} is up, {} requests served",
                    args.target,
                    info.architecture,
                    info.snapshot.requests.served
                ),
                (None, _) => outln!(
                    "{}: an HTTP server answers, but not servelab (no /stats)",
                    args.target
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn lab(args: LabArgs) -> Result<ExitCode, SimError> {
    args.output.log.init();
    if args.list {
        for lab in simulator::labs::all() {
            outln!("{:>2}  {}  ({})", lab.id, lab.title, lab.sheet);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !(args.scale > 0.0 && args.scale <= 10.0) {
        return Err(SimError::Usage(
            "--scale must be above 0 and at most 10".into(),
        ));
    }
    let lab = simulator::labs::find(args.id.unwrap_or_default())?;
    let mut env = simulator::labs::LabEnv::new(args.scale, args.target, args.engine);
    env.record = args.output.report.is_some();
    let checks = lab.run(&env)?;
    match args.output.format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "lab": lab.id, "title": lab.title, "scale": env.scale, "checks": checks }))
                .unwrap_or_default()
        ),
        _ => out!("{}", simulator::labs::to_text(&lab, &env, &checks)),
    }
    if let Some(path) = &args.output.report {
        let runs = env.recorded();
        html::write(
            path,
            &html::lab_page(&lab, &env, &checks, &runs, &Provenance::here()),
        )?;
    }
    Ok(if checks.iter().all(|c| c.agrees) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(report: &Report, format: Format) {
    match format {
        Format::Text => out!("{}", report.to_text()),
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
        Format::Csv => out!("{}", report.to_csv()),
    }
}

/// Writes to stdout. A reader that went away (`simulator ... | head`) ends the program
/// quietly, as it ends any Unix filter; any other failure to write is one sentence and
/// status 1.
fn emit(args: std::fmt::Arguments) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("simulator: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// Says on stderr which files `--save` wrote (stdout keeps only the report).
fn saved(files: &[std::path::PathBuf]) {
    for file in files {
        eprintln!("wrote {}", file.display());
    }
}
