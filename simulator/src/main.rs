//! The `simulator` command line: `run` against any HTTP/1.1 server, `compare` the
//! registered architectures in-process (or running servers), `lab`, and `probe`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use server_core::config::parse_duration;
use simulator::report::Report;
use simulator::scenario::DeadlineClock;
use simulator::servers::{self, Servers};
use simulator::{compare, render, run, target};
use simulator::{Load, RequestSpec, Scenario, SimError};

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
    /// Run one of the lecture's experiments and check the result (sheets in labs/).
    Lab(LabArgs),
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
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct RunArgs {
    /// The server, as host:port.
    #[arg(long, default_value = "127.0.0.1:7777")]
    target: String,
    #[command(flatten)]
    scenario: ScenarioArgs,
    #[command(flatten)]
    output: OutputArgs,
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
    /// Closed-loop load run: each client sends requests back to back for this long.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    duration: Option<Duration>,
    /// Which clock --timeout runs on: from-start (one deadline, from the moment all
    /// clients start) or per-call (the lecture's: connecting and each response each get a
    /// fresh --timeout).
    #[arg(long, value_enum, default_value_t = DeadlineClock::FromStart, value_name = "CLOCK")]
    deadline: DeadlineClock,
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

struct Defaults {
    clients: usize,
    timeout: Duration,
    request: &'static str,
}

impl ScenarioArgs {
    fn resolve(self, defaults: Defaults) -> Result<Scenario, SimError> {
        let clients = self.clients.unwrap_or(defaults.clients);
        if clients == 0 {
            return Err(SimError::Usage("--clients must be at least 1".into()));
        }
        let timeout = self.timeout.unwrap_or(defaults.timeout);
        if timeout.is_zero() {
            return Err(SimError::Usage("--timeout must be longer than 0".into()));
        }
        let request = RequestSpec::parse(
            self.request.as_deref().unwrap_or(defaults.request),
            self.body,
            self.body_uuid,
        )?;
        let load = match (self.duration, self.requests) {
            (Some(d), _) => Load::Duration(d),
            (None, Some(0)) => return Err(SimError::Usage("--requests must be at least 1".into())),
            (None, k) => Load::Requests(k.unwrap_or(1)),
        };
        Ok(Scenario {
            clients,
            timeout,
            hold: self.hold.unwrap_or(Duration::ZERO),
            request,
            load,
            deadline: self.deadline,
        })
    }
}

fn main() -> ExitCode {
    // The architectures' own flags join `compare` from the registry.
    let command = Cli::command().mut_subcommand("compare", |compare| {
        compare.args(servers::architecture_args())
    });
    let matches = command.get_matches();
    let flags = matches
        .subcommand_matches("compare")
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
            let scenario = args.scenario.resolve(Defaults {
                clients: 5,
                timeout: Duration::from_secs(15),
                request: "GET /",
            })?;
            // Fails with one sentence if nothing listens there.
            let report = run::run_target(&args.target, &scenario)?;
            print_report(&report, args.output.format);
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare(args) => {
            args.output.log.init();
            let scenario = args.scenario.resolve(Defaults {
                clients: 16,
                timeout: Duration::from_secs(1),
                request: "GET /sleep/400",
            })?;
            let servers = args.servers.servers(flags);
            let reports = if args.targets.is_empty() {
                compare::compare(&scenario, &servers)?
            } else {
                compare::compare_targets(&scenario, &args.targets)?
            };
            match args.output.format {
                Format::Text => print!("{}", render::compare_text(&scenario, &reports)),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "scenario": scenario, "servers": { "archs": servers.archs, "flags": servers.flags, "backlog": servers.backlog }, "results": reports }))
                        .unwrap_or_default()
                ),
                Format::Csv => print!("{}", render::compare_csv(&reports)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Lab(args) => lab(args),
        Command::Architectures(args) => {
            for entry in &architectures::ALL {
                if args.names {
                    println!("{}", entry.name);
                } else {
                    println!("{:<16} {}", entry.name, entry.about);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe(args) => {
            let addr = target::resolve(&args.target)?;
            // Fails with one sentence if nothing listens there or it does not answer.
            let info = target::health(addr, &args.target)?;
            match (info, args.stats) {
                (Some(info), true) => println!(
                    "{}",
                    serde_json::to_string_pretty(&info.snapshot).unwrap_or_default()
                ),
                (Some(info), false) => println!(
                    "{}: servelab {} is up, {} requests served",
                    args.target, info.architecture, info.snapshot.requests.served
                ),
                (None, _) => println!(
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
            println!("{:>2}  {}  ({})", lab.id, lab.title, lab.sheet);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !(args.scale > 0.0 && args.scale <= 10.0) {
        return Err(SimError::Usage(
            "--scale must be above 0 and at most 10".into(),
        ));
    }
    let lab = simulator::labs::find(args.id.unwrap_or_default())?;
    let env = simulator::labs::LabEnv {
        scale: args.scale,
        target: args.target,
    };
    let checks = lab.run(&env)?;
    match args.output.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "lab": lab.id, "title": lab.title, "scale": env.scale, "checks": checks }))
                .unwrap_or_default()
        ),
        _ => print!("{}", simulator::labs::to_text(&lab, &env, &checks)),
    }
    Ok(if checks.iter().all(|c| c.agrees) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(report: &Report, format: Format) {
    match format {
        Format::Text => print!("{}", report.to_text()),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
        Format::Csv => print!("{}", report.to_csv()),
    }
}
