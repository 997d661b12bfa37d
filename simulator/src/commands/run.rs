//! `simulator run`: a scenario against one server that is already running, any HTTP/1.1
//! server; also one shard of a run spread over several processes (`--shard I/N`).

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use contract::units::parse_duration;
use loadgen::scenario::Shard;
use loadgen::slo::Gates;

use super::{Defaults, FramesArgs, OutputArgs, SaveArgs, ScenarioArgs};
use crate::output::{self, files};
use crate::{measure, target, SimError};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The server, as host:port.
    #[arg(long, default_value = "127.0.0.1:7777")]
    target: String,
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Service-level gates, judged after the run: exit status 3 if any is missed, e.g.
    /// "p99<50ms,served>=99%,errors<0.1%" (metrics p50, p90, p99, p99.9, max, served,
    /// errors, rps; see docs/simulator.md, "Gates").
    #[arg(long, value_name = "GATES", value_parser = parse_gates)]
    slo: Option<Gates>,
    #[command(flatten)]
    orchestration: Orchestration,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    live: crate::live::LiveArgs,
    #[command(flatten)]
    frames: FramesArgs,
    #[command(flatten)]
    files: SaveArgs,
}

/// Running one shard of a run spread over several simulator processes, and starting
/// together with them and with the server.
#[derive(Debug, Args)]
pub(crate) struct Orchestration {
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
            (None, Some(count)) => Ok(Some(Shard::from_orchestrator(count, |name| {
                std::env::var(name).ok()
            })?)),
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

/// `--slo`: the gates, or the one sentence that says what is wrong with them.
fn parse_gates(text: &str) -> Result<Gates, String> {
    Gates::parse(text).map_err(|e| e.to_string())
}

/// The exit status of a run whose `--slo` gates were not all met.
pub(crate) const GATE_MISSED: u8 = 3;

/// Runs `simulator run`.
pub(crate) fn run(args: RunArgs) -> Result<ExitCode, SimError> {
    args.output.log.init();
    args.live.apply();
    let mut scenario = args.scenario.resolve(Defaults {
        clients: 5,
        timeout: Duration::from_secs(15),
        request: "GET /",
    })?;
    scenario.shard = args.orchestration.shard()?;
    scenario.start_at = args.orchestration.start_at;
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
    // Fails with one sentence if nothing listens there. A shard that fails says so in its
    // directory, so that the merge can name it.
    let watch = args.output.report.is_some();
    let ran = args
        .orchestration
        .wait
        .map_or(Ok(()), |within| target::wait_for(&args.target, within))
        .and_then(|()| measure::run_target(&args.target, &scenario, watch));
    let mut report = match ran {
        Ok(report) => report,
        Err(e) => {
            if let (Some(dir), Some(shard)) = (&args.files.save, scenario.shard) {
                output::saved(&[files::save_failure(dir, shard, &e)?]);
            }
            return Err(e);
        }
    };
    let dir = args
        .files
        .save
        .as_deref()
        .map(|dir| files::run_dir(dir, scenario.shard));
    let met = args.slo.as_ref().is_none_or(|gates| report.judge(gates));
    super::deliver(&report, &args.output, dir.as_deref())?;
    args.frames.write(&report, None)?;
    Ok(if met {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(GATE_MISSED)
    })
}
