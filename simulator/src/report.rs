//! One run's results: what was measured, what was predicted, and whether they agree.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use loadgen::attack::PopulationLedger;
use loadgen::ledger::{self, Latency, Summary, Throughput};
use loadgen::record::{ClientRecord, Finished};
use loadgen::scenario::{Load, Shard};
use loadgen::slo::{Gates, Judged, Measured};
use loadgen::tally::{Requests, Row};
use loadgen::Scenario;

use crate::predict::{predict, Prediction};
use crate::target::ServerInfo;
use crate::watch::StatsSample;

/// The version of the report's JSON schema (`docs/schema/report-v1.schema.json`). It changes
/// whenever a field is removed or changes meaning; new fields may appear within a version.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything measured in one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// See [`SCHEMA_VERSION`].
    pub schema_version: u32,
    pub target: String,
    /// The target's architecture, when it is a servelab server.
    pub architecture: Option<String>,
    /// The server's settings as its `/stats` reported them before the run, when it is a
    /// servelab server.
    pub server_config: Option<contract::stats::ConfigSnapshot>,
    pub scenario: Scenario,
    /// The engine threads that ran the clients (in a merged report, all shards' together).
    pub engine_threads: usize,
    /// The wall-clock moment the clients were let go, in microseconds since the Unix epoch.
    /// Every time in `clients` counts from it.
    pub started_at_unix_us: u64,
    /// A merged report: which shards it covers and which it does not (see `merge`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<Coverage>,
    pub summary: Summary,
    /// Scenario runs: each client's wait. Load runs: each request's latency, corrected
    /// (from the moment it was due).
    pub latency_us: Latency,
    /// Open-loop runs: each request's latency from its actual send (uncorrected), beside
    /// the corrected one.
    pub latency_uncorrected_us: Option<Latency>,
    /// Open-loop runs: how late the engine sent requests that had a free connection when
    /// they were due (its own scheduling delay).
    pub schedule_lag_us: Option<Latency>,
    /// Load runs only.
    pub throughput: Option<Throughput>,
    /// Load runs: requests by what happened to them.
    pub requests: Option<Requests>,
    /// The per-second time series (load runs; empty for scenario runs).
    pub series: Vec<Row>,
    pub prediction: Option<Prediction>,
    /// Whether the measurement agrees with the prediction (absent without a prediction).
    pub agrees: Option<bool>,
    /// The service-level gates of `--slo`, each judged (absent without `--slo`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<Judged>,
    pub clients: Vec<ClientRecord>,
    /// What happened to each background population of hostile clients (`--background`);
    /// the ledger above is the foreground's alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub background: Vec<PopulationLedger>,
    /// The HdrHistogram interval log of the run (see `--save`).
    #[serde(skip)]
    pub interval_log: String,
    /// The whole run's corrected and uncorrected latency histograms (see `--save`).
    #[serde(skip)]
    pub histograms: Option<(Histogram<u64>, Histogram<u64>)>,
    /// The server's `/stats` before the run, when it is servelab's (`--save` writes it as
    /// `server.json`, from which `merge` predicts the whole run).
    #[serde(skip)]
    pub server: Option<contract::stats::Snapshot>,
    /// The server's `/stats`, read during the run when the scenario asked to watch it.
    #[serde(skip)]
    pub server_series: Vec<StatsSample>,
}

impl Report {
    /// Adds up what the engine measured and sets the prediction beside it.
    pub fn new(
        target: &str,
        info: Option<&ServerInfo>,
        scenario: &Scenario,
        run: Finished,
    ) -> Report {
        let (summary, latency, throughput) = ledger::tally(scenario, &run);
        let load = scenario.load.is_load();
        let open = matches!(scenario.load, Load::Rate(_));
        let requests = &run.tally.requests;
        // One shard's clients are not the run the server sees: `merge` predicts the whole.
        let mut prediction = info
            .filter(|_| scenario.shard.is_none())
            .and_then(|info| predict(info, scenario));
        let mut agrees = prediction
            .as_ref()
            .and_then(|p| p.agrees(summary.served, throughput.as_ref().map(|t| t.per_second)));
        if let (Some(p), false) = (&mut prediction, scenario.background.is_empty()) {
            // The arithmetic knows only the scenario's own clients; what hostile ones take
            // from the server is what the run is there to measure.
            agrees = None;
            p.caveats.push(
                "the prediction is for a server without the hostile clients in the background, so the run is not judged by it".into(),
            );
        }
        let ramp = matches!(scenario.load, Load::Rate(open) if !open.stages.is_empty());
        if let (Some(p), true) = (&mut prediction, ramp) {
            // The queueing arithmetic is for a steady rate; a ramp passes through many.
            agrees = None;
            p.caveats.push(
                "the prediction is for a steady rate at the ramp's mean, so a ramp is not judged by it; the per-second series shows where the rate passed the server's capacity".into(),
            );
        }
        Report {
            schema_version: SCHEMA_VERSION,
            target: target.to_owned(),
            architecture: info.map(|i| i.architecture.clone()),
            server_config: info.map(|i| i.snapshot.config.clone()),
            scenario: scenario.clone(),
            engine_threads: run.threads,
            started_at_unix_us: unix_us(run.started_at),
            shards: None,
            summary,
            latency_us: latency,
            latency_uncorrected_us: open
                .then(|| Latency::of(&run.tally.uncorrected, requests.over_deadline())),
            schedule_lag_us: open.then(|| Latency::of(&run.tally.lag, 0)),
            throughput,
            requests: load.then(|| requests.clone()),
            series: if load { run.rows } else { Vec::new() },
            prediction,
            agrees,
            gates: Vec::new(),
            clients: run.records,
            background: Vec::new(),
            interval_log: run.interval_log,
            histograms: Some((run.tally.corrected.clone(), run.tally.uncorrected.clone())),
            server: info.map(|i| i.snapshot.clone()),
            server_series: Vec::new(),
        }
    }

    /// Judges `gates` against this run and keeps the verdicts (see `gates`). Returns
    /// whether every gate was met.
    pub fn judge(&mut self, gates: &Gates) -> bool {
        self.gates = gates.judge(&self.measured());
        self.gates.iter().all(|g| g.met)
    }

    /// What the gates are judged on (see `loadgen::slo`). Load runs: requests; scenario
    /// runs: clients, each served or not.
    fn measured(&self) -> Measured {
        let l = &self.latency_us;
        let (served, errors) = match &self.requests {
            Some(r) => {
                let judged = if r.due > 0 {
                    r.due.saturating_sub(r.unfinished)
                } else {
                    r.served + r.errors()
                };
                // Everything judged that got no 2xx at all: neither served nor late.
                let failed = judged.saturating_sub(r.served + r.late);
                (ratio(r.served, judged), ratio(failed, judged))
            }
            None => {
                let clients = self.summary.clients as u64;
                let served = self.summary.served as u64;
                (
                    ratio(served, clients),
                    ratio(clients.saturating_sub(served), clients),
                )
            }
        };
        Measured {
            p50_us: l.p50,
            p90_us: l.p90,
            p99_us: l.p99,
            p99_9_us: l.p99_9,
            max_us: l.max,
            served,
            errors,
            rate: self.throughput.as_ref().map(|t| t.per_second),
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
            (None, _) if self.scenario.shard.is_some() => format!(
                "no prediction for one shard ({}): `simulator merge` predicts the whole run",
                self.scenario.shard.map(|s| s.to_string()).unwrap_or_default()
            ),
            _ => "no prediction (not a servelab server, or a load run of a route without a known service time)".into(),
        }
    }
}

/// Microseconds since the Unix epoch (0 before it).
pub fn unix_us(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, loadgen::units::micros)
}

/// Which shards a merged report covers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Coverage {
    /// The shards the run was split into.
    pub count: usize,
    /// The shards merged, by index (from 1).
    pub merged: Vec<usize>,
    /// The shards missing, each with why.
    pub missing: Vec<MissingShard>,
    /// The whole run's clients, and how many of them the merged shards ran.
    pub clients: usize,
    pub covered: usize,
}

impl Coverage {
    /// Whether every shard was merged.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// A shard that is not in the merged report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MissingShard {
    pub index: usize,
    /// Why, in words: the shard's own error, or that nothing of it was found.
    pub reason: String,
}

/// What a shard that could not run leaves behind (`failed.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShardFailure {
    pub shard: Shard,
    pub error: String,
}

/// The file a shard that could not run writes instead of its report.
pub const FAILED_FILE: &str = "failed.json";

/// `part` of `whole` (0 when there is no whole).
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
