//! The `wirefuzz` command: random and mutated requests against a server on loopback, and a
//! verdict on whether it held any connection past its deadlines.
//!
//! Exit status: 0 when every connection made progress or was closed in time, 1 when one
//! was held past its deadline, an answer was not HTTP, or the server stopped accepting
//! connections; 2 when the run could not start (bad flags, nothing listening).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use wirefuzz::generate::Mix;
use wirefuzz::run::{self, Settings, Summary};

/// servelab's wire fuzzer: random and mutated requests over real sockets (pipelined,
/// half-closed, and stalls that keep their sending side open), and a count of every
/// connection the server held past its deadlines.
#[derive(Parser)]
#[command(name = "wirefuzz", version)]
struct Cli {
    /// The server, as IP:PORT on loopback (the fuzzer sends hostile traffic, so it refuses
    /// any other address).
    #[arg(long, default_value = "127.0.0.1:7777", value_name = "IP:PORT")]
    target: SocketAddr,

    /// Requests to write in all, counted exactly (a stall's partial request counts).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    requests: u64,

    /// Connections at once: one worker thread each, each holding one connection at a time.
    #[arg(long, default_value_t = 8, value_name = "C", value_parser = clap::value_parser!(u16).range(1..=256))]
    connections: u16,

    /// Read the server's /stats first and use no more connections than it holds at once
    /// (a connection beyond that waits in the backlog, where no server deadline runs yet,
    /// and would look like a hang).
    #[arg(long)]
    fit_to_server: bool,

    /// The seed of every random choice: the same seed makes the same connections.
    #[arg(long, default_value_t = 1, value_name = "S")]
    seed: u64,

    /// The longest the server may leave a connection without progress (an answer or a
    /// close): its --read-timeout plus its --keep-alive-timeout. The servers' defaults
    /// give 15s.
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    deadline: Duration,

    /// Allowed beyond --deadline before a connection counts as hung: the half second a
    /// server drains input before closing after an error, and a busy machine's delays.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    margin: Duration,

    /// Stop after this long even if requests are left (at most 6h; a run without it ends
    /// after --requests, or at 6h).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    duration: Option<Duration>,

    /// Requests per second over all connections (default: as fast as the server answers).
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    rate: Option<f64>,

    /// Connections that stall: send nothing, part of a head, part of a body, go idle after
    /// their answers, or send a mutated request, and then keep their sending side open
    /// until the server closes them. Spread evenly over the run [8 + 1 per 10,000
    /// requests, at most 1,000].
    #[arg(long, value_name = "N")]
    stalls: Option<u64>,

    /// The most well-formed requests on one connection; each draws from 0 to this.
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=10_000))]
    per_connection: u32,

    /// The probability that a connection ends with a mutated request (then a half-close).
    #[arg(long, default_value_t = 0.5, value_name = "P", value_parser = parse_probability)]
    mutate: f64,

    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,

    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.target.ip().is_loopback() {
        eprintln!(
            "wirefuzz: {} is not a loopback address; the fuzzer only sends its hostile traffic to 127.0.0.1 or ::1",
            cli.target
        );
        return ExitCode::from(2);
    }
    let Some(connections) = connections(&cli) else {
        return ExitCode::from(2);
    };
    let settings = Settings {
        target: cli.target,
        requests: cli.requests,
        connections,
        seed: cli.seed,
        deadline: cli.deadline,
        margin: cli.margin,
        duration: cli.duration,
        rate: cli.rate,
        stalls: cli
            .stalls
            .unwrap_or_else(|| (8 + cli.requests / 10_000).min(1_000)),
        mix: Mix {
            per_connection: cli.per_connection,
            mutate: cli.mutate,
        },
    };
    let total = settings.requests;
    let every = (!cli.quiet).then_some(Duration::from_secs(10));
    let summary = match run::run(settings, every, |claimed, elapsed| {
        eprintln!(
            "wirefuzz: {claimed} of {total} requests after {:.0} s",
            elapsed.as_secs_f64()
        );
    }) {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("wirefuzz: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.json {
        match serde_json::to_string(&summary) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("wirefuzz: cannot write the summary as JSON: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", text(&summary));
    }
    if summary.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// How many connections to open at once: `--connections`, or with `--fit-to-server` no
/// more than the server holds at once. Also checks that the server is there. `None`, after
/// one sentence on stderr, if it is not.
fn connections(cli: &Cli) -> Option<usize> {
    let connections = usize::from(cli.connections);
    let hang = cli.deadline + cli.margin;
    if cli.fit_to_server {
        return match wirefuzz::server_capacity(cli.target, hang) {
            Ok(Some(capacity)) if capacity < connections => {
                if !cli.quiet {
                    eprintln!(
                        "wirefuzz: the server holds {capacity} connection(s) at once; using {capacity} instead of {connections}"
                    );
                }
                Some(capacity.max(1))
            }
            Ok(_) => Some(connections),
            Err(e) => {
                eprintln!("wirefuzz: {e}");
                None
            }
        };
    }
    if let Err(e) = std::net::TcpStream::connect_timeout(&cli.target, hang) {
        // One sentence now rather than fifty failed connects later.
        eprintln!(
            "wirefuzz: cannot connect to {}: {e} (is the server running there?)",
            cli.target
        );
        return None;
    }
    Some(connections)
}

/// The summary for people.
fn text(s: &Summary) -> String {
    let t = &s.tally;
    let mut out = format!(
        "wirefuzz: {} requests to {} in {:.1} s ({:.0} req/s), {} connection(s) at a time, seed {}\n",
        t.requests, s.target, s.elapsed_s, s.requests_per_second, s.connections_at_once, s.seed
    );
    out += &format!(
        "  requests     {} well-formed, {} mutated, {} partial; {} of them pipelined\n",
        t.well_formed, t.mutated, t.partial, t.pipelined
    );
    out += &format!(
        "  outcomes     {} answered, {} closed unanswered, {} reset, {} hung, {} bad answers\n",
        t.answered, t.closed, t.reset, t.hung, t.bad
    );
    let statuses: Vec<String> = t
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    out += &format!("  statuses     {}\n", statuses.join(", "));
    out += &format!(
        "  connections  {} opened ({} failed to connect)\n",
        t.connections, t.connect_errors
    );
    let stalls: Vec<String> = t
        .stalls
        .iter()
        .map(|(kind, st)| {
            format!(
                "{kind} {}/{} closed (slowest {:.2} s)",
                st.closed,
                st.count,
                st.slowest_ms as f64 / 1000.0
            )
        })
        .collect();
    out += &format!(
        "  stalls       {}\n",
        if stalls.is_empty() {
            "none".into()
        } else {
            stalls.join(", ")
        }
    );
    if let Some(why) = &s.stopped_early {
        out += &format!("  stopped      {why}\n");
    }
    for v in &t.violations {
        out += &format!("  violation    {v}\n");
    }
    let limit = format!(
        "{} + {} margin",
        humantime::format_duration(Duration::from_millis(s.deadline_ms)),
        humantime::format_duration(Duration::from_millis(s.margin_ms))
    );
    out += &if s.ok {
        format!("  verdict      ok: no connection held past {limit}\n")
    } else {
        format!(
            "  verdict      FAILED: {} connection(s) held past {limit}, {} bad answer(s){}\n",
            t.hung_connections,
            t.bad,
            if s.stopped_early
                .as_deref()
                .is_some_and(|w| w.contains("stopped accepting"))
            {
                ", and the server stopped accepting connections"
            } else {
                ""
            }
        )
    };
    out
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{e} (write durations like 250ms or 5s)"))?;
    if d > run::RUN_LIMIT {
        return Err(format!("{text} is longer than the 6h a run may last"));
    }
    Ok(d)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{text:?} is not a positive number of requests per second"
        )),
    }
}

fn parse_probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{text:?} is not a probability from 0 to 1")),
    }
}
