//! `simulator sweep`: find the knee, the highest offered rate a server still serves in time.
//!
//! A closed-loop run asks "how fast can it go?" and gets an answer bent by its own clients
//! waiting (coordinated omission). An open-loop sweep asks what an engineer sizing a
//! service needs to know: *at which arrival rate do requests start missing their
//! deadline?* It offers a series of rates, each for a short open-loop run, and measures per
//! step the goodput (responses within the deadline per second), the fraction of requests
//! in time, and the corrected p50 and p99. The knee is the highest rate at which at least
//! the goal fraction (99% by default) met the deadline.
//!
//! The rates come from `--rates`, or are spread around the predicted capacity when the
//! target is a servelab server whose route has a known service time (a pool of `P`
//! workers with `/sleep/D` saturates at `P / D`), or from 100 to 100 000 per second
//! otherwise. After that coarse pass the sweep bisects between the highest rate that met
//! the goal and the lowest that did not (`--refine` times), so the knee is found more
//! finely than the coarse steps alone.
//!
//! With `--ramp DURATION` the sweep is one run instead: the rate rises linearly from the
//! lowest rate to the highest over the duration (a ramp of `--stages`), and each second of
//! the run is judged as a step would be, at the ramp's rate in the middle of that second.
//! It costs one run rather than a dozen and shows the knee being passed as it happens, but
//! a second's verdict also carries the queue left by the seconds before it, so it reads the
//! knee a little lower than separate steps do.
//!
//! Between steps the sweep waits until the server has nothing in flight (servelab servers
//! say so in `/stats`), so that one step's backlog is not the next step's load.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use loadgen::scenario::{Load, OpenLoop, Stage, Stages};
use loadgen::Scenario;
use server_core::RunningServer;

use crate::predict;
use crate::report::Report;
use crate::servers::Servers;
use crate::target::{self, ServerInfo};
use crate::SimError;

/// What to sweep.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepSpec {
    /// The open-loop scenario of every step; its rate and duration are set per step.
    pub scenario: Scenario,
    /// The rates to offer; empty: chosen as the module documentation says.
    pub rates: Vec<f64>,
    /// How long each step offers its rate.
    #[serde(serialize_with = "contract::units::as_millis")]
    pub step: Duration,
    /// The fraction of requests that must meet the deadline for a rate to pass.
    pub goal: f64,
    /// Bisection steps after the coarse pass.
    pub refine: u32,
    /// One ramp from the lowest rate to the highest over this long, instead of steps.
    #[serde(
        rename = "ramp_ms",
        skip_serializing_if = "Option::is_none",
        serialize_with = "as_millis_some"
    )]
    pub ramp: Option<Duration>,
}

/// Serializes `Some(duration)` as its milliseconds (`None` is skipped).
fn as_millis_some<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    contract::units::as_millis(&d.unwrap_or_default(), s)
}

/// One rate's measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepStep {
    pub offered_per_second: f64,
    pub sent_per_second: f64,
    /// Responses within the deadline per second.
    pub goodput_per_second: f64,
    /// Served ÷ (requests due − those unfinished at the end).
    pub in_time: f64,
    /// Corrected latency, microseconds.
    pub p50_us: u64,
    pub p99_us: u64,
    pub dropped: u64,
    pub timed_out: u64,
    pub errors: u64,
    /// Whether `in_time` reached the goal.
    pub meets_goal: bool,
}

/// A whole sweep against one server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepReport {
    pub target: String,
    pub architecture: Option<String>,
    pub spec: SweepSpec,
    /// Every step, by rate.
    pub steps: Vec<SweepStep>,
    /// The highest rate that met the goal (`None`: not even the lowest did).
    pub knee_per_second: Option<f64>,
    /// The knee queueing arithmetic predicts (the server's capacity), when it gives one.
    /// `None` with a `rule` means it predicts that no rate meets the goal.
    pub predicted_per_second: Option<f64>,
    pub rule: Option<String>,
}

/// Sweeps a server that is already running at `target`.
pub fn sweep_target(target: &str, spec: &SweepSpec) -> Result<SweepReport, SimError> {
    let addr = target::resolve(target)?;
    let info = target::probe(addr, target)?;
    sweep_with(target, info.as_ref(), spec, &mut |scenario| {
        let report = super::run(addr, target, scenario, info.as_ref(), false)?;
        settle(addr, target, scenario.timeout);
        Ok(report)
    })
}

/// Sweeps each architecture of `servers`, started in this process, one after another.
pub fn sweep_in_process(servers: &Servers, spec: &SweepSpec) -> Result<Vec<SweepReport>, SimError> {
    let mut reports = Vec::with_capacity(servers.archs.len());
    for arch in &servers.archs {
        let server = servers.start(arch, servers.server_args(&spec.scenario))?;
        let info = ServerInfo::from(server.context().snapshot());
        let target = server.addr().to_string();
        let report = sweep_with(&target, Some(&info), spec, &mut |scenario| {
            let report = super::run_in_process(&server, scenario, false)?;
            settle_in_process(&server, scenario.timeout);
            Ok(report)
        });
        server.stop().map_err(SimError::server)?;
        reports.push(report?);
    }
    Ok(reports)
}

/// The sweep, with each step run by `step`.
fn sweep_with(
    target: &str,
    info: Option<&ServerInfo>,
    spec: &SweepSpec,
    step: &mut dyn FnMut(&Scenario) -> Result<Report, SimError>,
) -> Result<SweepReport, SimError> {
    let prediction = info.and_then(|info| predict::capacity(info, &spec.scenario));
    let mut rates = spec.rates.clone();
    if rates.is_empty() {
        rates = match &prediction {
            Some(p) => [0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5]
                .iter()
                .map(|f| (p.per_second * f).round().max(1.0))
                .collect(),
            None => (0..8)
                .map(|i| 100.0 * 10f64.powf(i as f64 * 3.0 / 7.0))
                .map(f64::round)
                .collect(),
        };
    }
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    if let Some(length) = spec.ramp {
        let (low, high) = (rates[0], rates[rates.len() - 1]);
        let steps = ramp(spec, low, high, length, step)?;
        return Ok(sweep_report(target, info, spec, prediction, steps));
    }
    let mut steps: Vec<SweepStep> = Vec::new();
    for rate in rates {
        steps.push(measure(spec, rate, step)?);
    }
    for _ in 0..spec.refine {
        let Some((low, high)) = bracket(&steps) else {
            break;
        };
        let middle = ((low + high) / 2.0).round();
        if middle <= low || middle >= high {
            break;
        }
        steps.push(measure(spec, middle, step)?);
        steps.sort_by(|a, b| a.offered_per_second.total_cmp(&b.offered_per_second));
    }
    Ok(sweep_report(target, info, spec, prediction, steps))
}

/// The report of a sweep whose `steps` are measured: the knee, and the prediction beside.
fn sweep_report(
    target: &str,
    info: Option<&ServerInfo>,
    spec: &SweepSpec,
    prediction: Option<predict::Throughput>,
    steps: Vec<SweepStep>,
) -> SweepReport {
    SweepReport {
        target: target.to_owned(),
        architecture: info.map(|i| i.architecture.clone()),
        spec: spec.clone(),
        knee_per_second: knee(&steps),
        // No rate can meet the goal when too few of the connections are ever served.
        predicted_per_second: prediction
            .as_ref()
            .filter(|p| p.served_share >= spec.goal)
            .map(|p| p.per_second),
        rule: prediction.map(|p| p.rule),
        steps,
    }
}

/// `--ramp`: one run whose rate rises from `low` to `high` over `length`, each whole
/// second of it judged as a step at the ramp's rate in the middle of that second.
fn ramp(
    spec: &SweepSpec,
    low: f64,
    high: f64,
    length: Duration,
    step: &mut dyn FnMut(&Scenario) -> Result<Report, SimError>,
) -> Result<Vec<SweepStep>, SimError> {
    let stages = Stages::new(&[
        Stage {
            duration: Duration::ZERO,
            rate: low,
        },
        Stage {
            duration: length,
            rate: high,
        },
    ])
    .map_err(SimError::Usage)?;
    let mut scenario = spec.scenario.clone();
    let (arrivals, when_busy, seed) = match scenario.load {
        Load::Rate(open) => (open.arrivals, open.when_busy, open.seed),
        _ => Default::default(),
    };
    scenario.load = Load::Rate(OpenLoop::staged(stages, arrivals, when_busy, seed));
    tracing::info!("sweep: a ramp from {low} to {high} requests per second over {length:?}");
    let report = step(&scenario)?;
    let whole_seconds = length.as_secs();
    Ok(report
        .series
        .iter()
        .filter(|row| row.second < whole_seconds)
        .map(|row| {
            let middle = Duration::from_millis(row.second * 1000 + 500);
            let judged = row.served + row.errors;
            let in_time = if judged == 0 {
                1.0
            } else {
                row.served as f64 / judged as f64
            };
            SweepStep {
                offered_per_second: stages.level_at(middle).round(),
                sent_per_second: row.sent as f64,
                goodput_per_second: row.served as f64,
                in_time,
                p50_us: row.p50_us,
                p99_us: row.p99_us,
                dropped: row.dropped,
                timed_out: row.errors,
                errors: row.errors,
                meets_goal: in_time >= spec.goal,
            }
        })
        .collect())
}

/// Runs one step at `rate`.
fn measure(
    spec: &SweepSpec,
    rate: f64,
    step: &mut dyn FnMut(&Scenario) -> Result<Report, SimError>,
) -> Result<SweepStep, SimError> {
    let mut scenario = spec.scenario.clone();
    let open = match scenario.load {
        Load::Rate(open) => open,
        _ => OpenLoop {
            rate,
            duration: spec.step,
            arrivals: Default::default(),
            when_busy: Default::default(),
            seed: 1,
            stages: Default::default(),
        },
    };
    scenario.load = Load::Rate(OpenLoop {
        rate,
        duration: spec.step,
        stages: Default::default(),
        ..open
    });
    tracing::info!("sweep: offering {rate} requests per second");
    let report = step(&scenario)?;
    let requests = report.requests.clone().unwrap_or_default();
    let seconds = report
        .throughput
        .as_ref()
        .map_or(spec.step.as_secs_f64(), |t| t.seconds)
        .max(1e-9);
    let in_time = requests.in_time_fraction();
    Ok(SweepStep {
        offered_per_second: rate,
        sent_per_second: requests.sent as f64 / seconds,
        goodput_per_second: requests.served as f64 / seconds,
        in_time,
        p50_us: report.latency_us.p50,
        p99_us: report.latency_us.p99,
        dropped: requests.dropped,
        timed_out: requests.timed_out,
        errors: requests.errors(),
        meets_goal: in_time >= spec.goal,
    })
}

/// The highest passing rate below the lowest failing one above it, if both exist.
fn bracket(steps: &[SweepStep]) -> Option<(f64, f64)> {
    let high = steps.iter().find(|s| !s.meets_goal)?.offered_per_second;
    let low = steps
        .iter()
        .filter(|s| s.meets_goal && s.offered_per_second < high)
        .map(|s| s.offered_per_second)
        .fold(None, |best: Option<f64>, r| {
            Some(best.map_or(r, |b| b.max(r)))
        })?;
    Some((low, high))
}

/// The knee: the highest rate that met the goal with every lower rate meeting it too.
fn knee(steps: &[SweepStep]) -> Option<f64> {
    steps
        .iter()
        .take_while(|s| s.meets_goal)
        .last()
        .map(|s| s.offered_per_second)
}

/// Waits (at most the deadline, and 5 s) until a servelab target has nothing in flight, so
/// the next step starts on an idle server. Other servers get a pause of the deadline.
fn settle(addr: SocketAddr, target: &str, timeout: Duration) {
    let limit = Instant::now() + timeout.min(Duration::from_secs(5));
    let mut pause = Duration::from_millis(5);
    while Instant::now() < limit {
        match target::probe(addr, target) {
            // The probe's own request is in flight while the server counts: one is idle.
            Ok(Some(info)) if info.snapshot.requests.in_flight <= 1 => return,
            Ok(Some(_)) => {}
            // Not servelab: nothing to ask, so wait out the deadline.
            _ => {}
        }
        // A bounded back-off between looks at the server's own count.
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// [`settle`] for a server in this process, whose counters are read directly (no request
/// of its own in flight).
fn settle_in_process(server: &RunningServer, timeout: Duration) {
    let limit = Instant::now() + timeout.min(Duration::from_secs(5));
    let mut pause = Duration::from_millis(1);
    while server.context().snapshot().requests.in_flight > 0 && Instant::now() < limit {
        // A bounded back-off between looks at the server's own count.
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
