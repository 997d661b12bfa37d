//! `simulator compare`: the same scenario against all four architectures, one after another.
//!
//! Each server runs inside this process on an ephemeral loopback port, with the server
//! flags given on the command line, and is stopped before the next one starts, so they
//! never compete for the CPU.

use std::fmt::Write as _;
use std::time::Duration;

use pipeline::{HandlerPool, Pipeline};
use prefork_pool::{PreforkPool, WhenFull};
use protocol::queue::QueueKind;
use protocol::{Architecture, RunningServer, ServerArgs};
use single::Single;
use thread_per_conn::ThreadPerConn;

use crate::predict::ServerInfo;
use crate::report::{self, human_us, Report};
use crate::scenario::Scenario;
use crate::SimError;

/// The four architectures, by their crate names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Arch {
    #[value(name = "single")]
    Single,
    #[value(name = "thread-per-conn")]
    ThreadPerConn,
    #[value(name = "prefork-pool")]
    PreforkPool,
    #[value(name = "pipeline")]
    Pipeline,
}

impl Arch {
    pub const ALL: [Arch; 4] = [
        Arch::Single,
        Arch::ThreadPerConn,
        Arch::PreforkPool,
        Arch::Pipeline,
    ];
}

/// Server settings passed through to the in-process servers. Each flag goes to the
/// architectures that have it.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct ServerFlags {
    /// Which architectures to run, in order (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Arch::ALL.to_vec())]
    pub archs: Vec<Arch>,

    /// Servers' keep-alive timeout. Default: long enough for clients to hold their
    /// connection as long as --hold says (at least 5s).
    #[arg(long, value_parser = protocol::config::parse_duration, value_name = "DURATION")]
    #[serde(serialize_with = "opt_millis")]
    pub keep_alive_timeout: Option<Duration>,

    /// Servers' listen backlog.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub backlog: u32,

    /// prefork-pool: worker threads.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub workers: u32,

    /// prefork-pool and pipeline: queue capacity.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub queue: u32,

    /// prefork-pool and pipeline: queue implementation.
    #[arg(long, value_enum, default_value_t = QueueKind::Crossbeam)]
    pub queue_impl: QueueKind,

    /// prefork-pool: block or reject (503) when the queue is full.
    #[arg(long, value_enum, default_value_t = WhenFull::Block)]
    pub when_full: WhenFull,

    /// thread-per-conn: most connection threads at once.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub max_threads: u32,

    /// pipeline: receiver threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub receivers: u32,

    /// pipeline: handler threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub handlers: u32,

    /// pipeline: sender threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub senders: u32,

    /// pipeline: threads or a rayon pool for the handler stage.
    #[arg(long, value_enum, default_value_t = HandlerPool::Threads)]
    pub handler_pool: HandlerPool,
}

fn opt_millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => protocol::config::as_millis(d, s),
        None => s.serialize_none(),
    }
}

impl Default for ServerFlags {
    /// The same values as the command line's defaults.
    fn default() -> Self {
        ServerFlags {
            archs: Arch::ALL.to_vec(),
            keep_alive_timeout: None,
            backlog: 1024,
            workers: 8,
            queue: 64,
            queue_impl: QueueKind::Crossbeam,
            when_full: WhenFull::Block,
            max_threads: 4096,
            receivers: 4,
            handlers: 4,
            senders: 2,
            handler_pool: HandlerPool::Threads,
        }
    }
}

impl ServerFlags {
    /// The common server settings for this scenario.
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

    /// Starts `arch` in this process on an ephemeral port.
    pub fn start(&self, arch: Arch, args: ServerArgs) -> Result<RunningServer, SimError> {
        let started = match arch {
            Arch::Single => RunningServer::start(Single::default(), args),
            Arch::ThreadPerConn => RunningServer::start(
                ThreadPerConn {
                    max_threads: self.max_threads,
                    ..ThreadPerConn::default()
                },
                args,
            ),
            Arch::PreforkPool => RunningServer::start(
                PreforkPool {
                    workers: self.workers,
                    queue: self.queue,
                    queue_impl: self.queue_impl,
                    when_full: self.when_full,
                },
                args,
            ),
            Arch::Pipeline => RunningServer::start(
                Pipeline {
                    receivers: self.receivers,
                    handlers: self.handlers,
                    senders: self.senders,
                    queue: self.queue,
                    handler_pool: self.handler_pool,
                    queue_impl: self.queue_impl,
                    ..Pipeline::default()
                },
                args,
            ),
        };
        started.map_err(SimError::Server)
    }
}

/// Runs `scenario` against each architecture in `flags.archs`, one after another.
pub fn compare(scenario: &Scenario, flags: &ServerFlags) -> Result<Vec<Report>, SimError> {
    let mut reports = Vec::new();
    for arch in &flags.archs {
        reports.push(run_one(
            *arch,
            scenario,
            flags,
            flags.server_args(scenario),
        )?);
    }
    Ok(reports)
}

/// Runs `scenario` against servers that are already running, one after another: servers
/// in containers, on other machines, or started by hand (see [`crate::report::run_target`]).
pub fn compare_targets(scenario: &Scenario, targets: &[String]) -> Result<Vec<Report>, SimError> {
    targets
        .iter()
        .map(|target| crate::report::run_target(target, scenario))
        .collect()
}

/// Runs `scenario` against one in-process server started with `args`.
pub fn run_one(
    arch: Arch,
    scenario: &Scenario,
    flags: &ServerFlags,
    args: ServerArgs,
) -> Result<Report, SimError> {
    let server = flags.start(arch, args)?;
    let addr = server.addr();
    let info = ServerInfo::from_stats(server.context().snapshot());
    let report = report::run(addr, &addr.to_string(), scenario, info.as_ref());
    // Stops accepting, lets requests in flight finish, joins the server's threads.
    server.stop().map_err(SimError::Server)?;
    report
}

/// Name of an architecture as the reports show it.
pub fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::Single => Single::NAME,
        Arch::ThreadPerConn => ThreadPerConn::NAME,
        Arch::PreforkPool => PreforkPool::NAME,
        Arch::Pipeline => Pipeline::NAME,
    }
}

/// The comparison table.
pub fn to_text(scenario: &Scenario, reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} clients, {}, deadline {}{}, all starting together\n",
        scenario.clients,
        scenario.request.line(),
        humantime::format_duration(scenario.timeout),
        if scenario.hold.is_zero() {
            String::new()
        } else {
            format!(", holding {}", humantime::format_duration(scenario.hold))
        }
    );
    let _ = writeln!(
        out,
        "{:<16} {:>7} {:>7} {:>7} {:>7} {:>6} {:>8} {:>5} {:>10} {:>10} {:>10} {:>10}   prediction",
        "architecture",
        "served",
        "conn_to",
        "svc_to",
        "refused",
        "reset",
        "rejected",
        "bad",
        "p50",
        "p90",
        "p99",
        "max",
    );
    for r in reports {
        let s = &r.summary;
        let pct = |v: u64| {
            if r.latency_us.over_deadline > 0 && v >= crate::client::micros(scenario.timeout) {
                "> deadline".to_owned()
            } else {
                human_us(v)
            }
        };
        let prediction = match (&r.prediction, r.agrees) {
            (Some(p), Some(agrees)) => format!(
                "{} {}{}",
                p.served_text()
                    .unwrap_or_else(|| format!("{:.0}/s", p.per_second.unwrap_or(0.0))),
                if agrees { "agrees" } else { "DISAGREES" },
                if p.boundary { " (boundary)" } else { "" }
            ),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:>7} {:>7} {:>7} {:>7} {:>6} {:>8} {:>5} {:>10} {:>10} {:>10} {:>10}   {}",
            r.architecture.as_deref().unwrap_or(&r.target),
            format!("{}/{}", s.served, s.clients),
            s.connect_timeout,
            s.service_timeout,
            s.refused,
            s.reset,
            s.rejected,
            s.bad_response,
            pct(r.latency_us.p50),
            pct(r.latency_us.p90),
            pct(r.latency_us.p99),
            pct(r.latency_us.max),
            prediction,
        );
        if let Some(t) = &r.throughput {
            let _ = writeln!(out, "{:<16} {:.0} requests/s", "", t.per_second);
        }
    }
    let _ = writeln!(
        out,
        "\nserved: clients with complete 2xx answers before their deadline; conn_to: not connected by the deadline;\n\
         svc_to: connected but not answered in time; refused: connection refused; reset: closed or reset before an\n\
         answer; rejected: answered with an error status (503, ...); bad: not HTTP. p50 … max: the wait the deadline\n\
         applies to (\"> deadline\": a client that missed it); prediction: the served count queueing arithmetic gives\n\
         (`--format json` has its rule in words)."
    );
    let _ = writeln!(out, "\nsettings in force:");
    for r in reports {
        let _ = writeln!(
            out,
            "  {:<16} {}",
            r.architecture.as_deref().unwrap_or(&r.target),
            r.server_config
                .as_ref()
                .map_or_else(|| "not a servelab server: unknown".to_owned(), settings)
        );
    }
    out
}

/// A server's settings in a few words, from the `config` object of its `/stats`.
pub fn settings(config: &serde_json::Value) -> String {
    let n = |key: &str| {
        config[key]
            .as_u64()
            .map_or("?".to_owned(), |n| n.to_string())
    };
    let word = |key: &str| config[key].as_str().unwrap_or("?").to_owned();
    let ms = |key: &str| {
        config[key].as_u64().map_or("?".to_owned(), |ms| {
            humantime::format_duration(Duration::from_millis(ms)).to_string()
        })
    };
    let own = if config.get("workers").is_some() {
        format!(
            "{} workers, queue {} ({}), when full: {}; ",
            n("workers"),
            n("queue"),
            word("queue_impl"),
            word("when_full")
        )
    } else if config.get("receivers").is_some() {
        format!(
            "{} receivers, {} handlers ({}), {} senders, queues of {} ({}), at most {} connections; ",
            n("receivers"),
            n("handlers"),
            word("handler_pool"),
            n("senders"),
            n("queue"),
            word("queue_impl"),
            n("max_connections")
        )
    } else if config.get("max_threads").is_some() {
        format!("at most {} connection threads; ", n("max_threads"))
    } else {
        String::new()
    };
    format!(
        "{own}keep-alive timeout {}, read timeout {}, backlog {}",
        if config["keep_alive_timeout"] == 0 {
            "0 (off)".to_owned()
        } else {
            ms("keep_alive_timeout")
        },
        ms("read_timeout"),
        n("backlog")
    )
}
