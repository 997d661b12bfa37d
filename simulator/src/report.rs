//! Running a scenario against one target, and reporting it as text, JSON or CSV.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::{self, micros, ClientRecord, Outcome, Plan};
use crate::predict::{predict, Prediction, ServerInfo};
use crate::scenario::{Load, Scenario};
use crate::SimError;

/// Everything measured in one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub target: String,
    /// The target's architecture, when it is a servelab server.
    pub architecture: Option<String>,
    /// The server's settings as its `/stats` reported them before the run (its `config`
    /// object), when it is a servelab server.
    pub server_config: Option<serde_json::Value>,
    pub scenario: Scenario,
    pub summary: Summary,
    pub latency_us: Latency,
    /// Load runs only.
    pub throughput: Option<Throughput>,
    pub prediction: Option<Prediction>,
    /// Whether the measurement agrees with the prediction (absent without a prediction).
    pub agrees: Option<bool>,
    pub clients: Vec<ClientRecord>,
}

/// Clients by outcome.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub clients: usize,
    pub served: usize,
    pub connect_timeout: usize,
    pub service_timeout: usize,
    pub refused: usize,
    pub reset: usize,
    pub rejected: usize,
    pub bad_response: usize,
    /// Wall time from the start to the last client's end, in milliseconds.
    pub elapsed_ms: u64,
}

impl Summary {
    pub fn count(&self, outcome: Outcome) -> usize {
        match outcome {
            Outcome::Served => self.served,
            Outcome::ConnectTimeout => self.connect_timeout,
            Outcome::ServiceTimeout => self.service_timeout,
            Outcome::Refused => self.refused,
            Outcome::Reset => self.reset,
            Outcome::Rejected => self.rejected,
            Outcome::BadResponse => self.bad_response,
        }
    }

    fn add(&mut self, outcome: Outcome) {
        let slot = match outcome {
            Outcome::Served => &mut self.served,
            Outcome::ConnectTimeout => &mut self.connect_timeout,
            Outcome::ServiceTimeout => &mut self.service_timeout,
            Outcome::Refused => &mut self.refused,
            Outcome::Reset => &mut self.reset,
            Outcome::Rejected => &mut self.rejected,
            Outcome::BadResponse => &mut self.bad_response,
        };
        *slot += 1;
    }
}

/// The latency distribution. In scenario runs a sample is a client's time from the start
/// to its last response (connecting and queueing included); in load runs, each request's
/// time from sending to its complete response. Requests that ran out of time are not left
/// out: they count in `over_deadline`, and as the deadline itself in the percentiles.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
    pub over_deadline: u64,
}

/// Load runs: served requests per second over the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Throughput {
    pub requests: u64,
    pub failed: u64,
    pub seconds: f64,
    pub per_second: f64,
}

/// Resolves `target` (`host:port`) the way the servers resolve `--addr`: the first IPv4
/// address, else the first address.
pub fn resolve(target: &str) -> Result<SocketAddr, SimError> {
    protocol::config::resolve(target).map_err(|e| SimError::Unresolvable {
        target: target.to_owned(),
        reason: e.to_string(),
    })
}

/// Asks the target for servelab's `/stats`. `Ok(None)` means something listens there but
/// it is not a servelab server (or did not answer in time); an error means nothing
/// listens there at all.
pub fn probe(addr: SocketAddr, target: &str) -> Result<Option<ServerInfo>, SimError> {
    Ok(ServerInfo::from_stats_response(&fetch_stats(addr, target)?))
}

/// A health check: like [`probe`], but a server that accepts the connection and then says
/// nothing within the probe's time is unhealthy too (an error), because it would not
/// serve a client either.
pub fn health(addr: SocketAddr, target: &str) -> Result<Option<ServerInfo>, SimError> {
    let response = fetch_stats(addr, target)?;
    if response.is_empty() {
        return Err(SimError::Silent {
            target: target.to_owned(),
        });
    }
    Ok(ServerInfo::from_stats_response(&response))
}

/// Sends `GET /stats` and returns whatever came back before the server closed or 3 s
/// passed.
fn fetch_stats(addr: SocketAddr, target: &str) -> Result<Vec<u8>, SimError> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(3);
    let nothing = || SimError::NothingListening {
        target: target.to_owned(),
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|_| nothing())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|_| nothing())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|_| nothing())?;
    let request = format!("GET /stats HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|_| nothing())?;
    let mut response = Vec::new();
    // Reads until the server closes (we asked it to); a server that never answers is
    // still "listening", so a timeout here is not an error.
    let _ = stream.take(1 << 20).read_to_end(&mut response);
    Ok(response)
}

/// Runs `scenario` against a server that is already running at `target` (host:port):
/// resolves it, probes it (one sentence and an error if nothing listens there, before any
/// load is sent; its `/stats` enables the prediction), and runs.
pub fn run_target(target: &str, scenario: &Scenario) -> Result<Report, SimError> {
    let addr = resolve(target)?;
    let info = probe(addr, target)?;
    run(addr, target, scenario, info.as_ref())
}

/// Runs `scenario` against `addr`: starts every client on its own thread behind a common
/// barrier, waits for all of them, and summarises. `info` (from [`probe`]) enables the
/// prediction.
pub fn run(
    addr: SocketAddr,
    target: &str,
    scenario: &Scenario,
    info: Option<&ServerInfo>,
) -> Result<Report, SimError> {
    let host = target.to_owned();
    let scenario_arc = Arc::new(scenario.clone());
    let barrier = Arc::new(Barrier::new(scenario.clients + 1));
    let mut threads = Vec::with_capacity(scenario.clients);
    for id in 1..=scenario.clients {
        let (barrier, scenario, host) = (
            Arc::clone(&barrier),
            Arc::clone(&scenario_arc),
            host.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("client-{id}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                // Waits until every client thread exists, so that all start together.
                barrier.wait();
                let start = Instant::now();
                let plan = Plan {
                    addr,
                    host,
                    scenario: &scenario,
                };
                client::run(id, &plan, start)
            });
        match thread {
            Ok(t) => threads.push(t),
            Err(e) => {
                // Release the threads already waiting, then report.
                drop(threads);
                return Err(SimError::Threads(e.to_string()));
            }
        }
    }
    tracing::info!("{} clients will connect to {target} ...", scenario.clients);
    barrier.wait();
    let start = Instant::now();
    let mut clients = Vec::with_capacity(threads.len());
    for thread in threads {
        // Each client ends by itself: every blocking call it makes is bounded.
        match thread.join() {
            Ok(record) => clients.push(record),
            Err(_) => return Err(SimError::Threads("a client thread panicked".into())),
        }
    }
    let elapsed = start.elapsed();
    Ok(summarise(target, info, scenario, clients, elapsed))
}

fn summarise(
    target: &str,
    info: Option<&ServerInfo>,
    scenario: &Scenario,
    clients: Vec<ClientRecord>,
    elapsed: Duration,
) -> Report {
    let mut summary = Summary {
        clients: clients.len(),
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        ..Summary::default()
    };
    let timeout_us = micros(scenario.timeout);
    let mut histogram = new_histogram();
    let mut over_deadline = 0;
    let mut requests = 0;
    let mut failed = 0;
    for record in &clients {
        summary.add(record.outcome);
        match scenario.load {
            Load::Requests(_) => {
                // The sample is the wait the deadline was applied to; a client still waiting
                // when its deadline passed is recorded at the deadline (all we know is that
                // it waited at least that long).
                if record.outcome == Outcome::Served || record.outcome.timed_out() {
                    let sample = record.waited_us.unwrap_or(timeout_us);
                    if !client::in_time(sample, timeout_us) {
                        over_deadline += 1;
                    }
                    let _ = histogram.record(sample.max(1));
                }
            }
            Load::Duration(_) => {
                // Responses that arrived (late ones included) are in `latencies`; requests
                // that were never answered are recorded at the deadline.
                let _ = histogram.add(&record.latencies);
                let _ = histogram.record_n(timeout_us.max(1), record.censored);
                over_deadline += record.failures.iter().filter(|o| o.timed_out()).count() as u64;
                requests += record.served_requests;
                failed += record.failed_requests;
            }
        }
    }
    let latency = Latency {
        samples: histogram.len(),
        p50: histogram.value_at_quantile(0.5),
        p90: histogram.value_at_quantile(0.9),
        p99: histogram.value_at_quantile(0.99),
        p99_9: histogram.value_at_quantile(0.999),
        max: histogram.max(),
        over_deadline,
    };
    let throughput = matches!(scenario.load, Load::Duration(_)).then(|| Throughput {
        requests,
        failed,
        seconds: elapsed.as_secs_f64(),
        per_second: requests as f64 / elapsed.as_secs_f64().max(1e-9),
    });
    let prediction = info.and_then(|info| predict(info, scenario));
    let agrees = prediction
        .as_ref()
        .and_then(|p| p.agrees(summary.served, throughput.as_ref().map(|t| t.per_second)));
    Report {
        target: target.to_owned(),
        architecture: info.map(|i| i.architecture.clone()),
        server_config: info.map(|i| i.stats["config"].clone()),
        scenario: scenario.clone(),
        summary,
        latency_us: latency,
        throughput,
        prediction,
        agrees,
        clients,
    }
}

/// A latency histogram in microseconds, from 1 µs to an hour, with 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .expect("constant bounds that hdrhistogram accepts")
}

/// A duration in microseconds, for people: `850µs`, `12.3ms`, `1.20s`.
pub fn human_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us}µs"),
        1_000..=999_999 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

impl Report {
    /// The latency cell: "over" when the percentile is the deadline itself.
    fn pct(&self, value: u64) -> String {
        if self.latency_us.over_deadline > 0 && value >= micros(self.scenario.timeout) {
            "> deadline".into()
        } else {
            human_us(value)
        }
    }

    /// One line saying how the prediction fared.
    pub fn verdict(&self) -> String {
        match (&self.prediction, self.agrees) {
            (Some(p), Some(agrees)) => {
                let predicted = match (p.served_text(), p.per_second) {
                    (Some(n), _) => format!("{n} served"),
                    (None, Some(r)) => format!("{r:.0} req/s"),
                    _ => String::new(),
                };
                let mut line = format!(
                    "predicted {predicted}: {}{}",
                    if agrees { "agrees" } else { "DISAGREES" },
                    if p.boundary { " (a predicted answer is on the deadline boundary: either side is possible)" } else { "" }
                );
                for caveat in &p.caveats {
                    let _ = write!(line, "; note: {caveat}");
                }
                line
            }
            (Some(p), None) => format!("no prediction: {}", p.caveats.join("; ")),
            _ => "no prediction (not a servelab server, or a load run of a route without a known service time)".into(),
        }
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let s = &self.summary;
        let _ = writeln!(
            out,
            "{} clients → {}{}: {} with a {} deadline{}",
            s.clients,
            self.target,
            self.architecture
                .as_deref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default(),
            self.scenario.request.line(),
            humantime::format_duration(self.scenario.timeout),
            if self.scenario.hold.is_zero() {
                String::new()
            } else {
                format!(
                    ", holding {}",
                    humantime::format_duration(self.scenario.hold)
                )
            },
        );
        if self.clients.len() <= 32 && matches!(self.scenario.load, Load::Requests(_)) {
            let _ = writeln!(
                out,
                "\n  client   outcome           connect   first byte   complete   server thread"
            );
            for c in &self.clients {
                let _ = writeln!(
                    out,
                    "  {:<8} {:<17} {:>8} {:>12} {:>10}   {}",
                    format!("#{}", c.id),
                    c.outcome.name(),
                    c.connect_us.map(human_us).unwrap_or_else(|| "-".into()),
                    c.first_byte_us.map(human_us).unwrap_or_else(|| "-".into()),
                    c.complete_us.map(human_us).unwrap_or_else(|| "-".into()),
                    c.server_thread.as_deref().unwrap_or("-"),
                );
            }
        }
        let _ = writeln!(out, "\nserved within deadline: {}/{}", s.served, s.clients);
        let counts: Vec<String> = Outcome::ALL
            .iter()
            .filter(|o| s.count(**o) > 0)
            .map(|o| format!("{} {}", o.name(), s.count(*o)))
            .collect();
        let _ = writeln!(out, "outcomes: {}", counts.join(", "));
        let l = &self.latency_us;
        let _ = writeln!(
            out,
            "latency: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples, {} over the deadline)",
            self.pct(l.p50),
            self.pct(l.p90),
            self.pct(l.p99),
            self.pct(l.p99_9),
            self.pct(l.max),
            l.samples,
            l.over_deadline
        );
        if let Some(t) = &self.throughput {
            let _ = writeln!(
                out,
                "throughput: {:.0} requests/s ({} served, {} failed in {:.2}s)",
                t.per_second, t.requests, t.failed, t.seconds
            );
        }
        if let Some(p) = &self.prediction {
            let _ = writeln!(out, "rule: {}", p.rule);
        }
        let _ = writeln!(out, "{}", self.verdict());
        out
    }

    /// One CSV row per client, with a header line.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "id,outcome,connect_us,first_byte_us,complete_us,status,server_thread,served_requests,failed_requests,error\n",
        );
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        for c in &self.clients {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{}",
                c.id,
                c.outcome.name(),
                opt(c.connect_us),
                opt(c.first_byte_us),
                opt(c.complete_us),
                c.status.map(|s| s.to_string()).unwrap_or_default(),
                c.server_thread.as_deref().unwrap_or(""),
                c.served_requests,
                c.failed_requests,
                csv_field(c.error.as_deref().unwrap_or("")),
            );
        }
        out
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
