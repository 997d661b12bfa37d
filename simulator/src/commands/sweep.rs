//! `simulator sweep`: offer rising request rates and find the knee (see
//! [`crate::measure::sweep`] for how the rates are chosen and judged).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use contract::units::parse_duration;
use loadgen::scenario::{Arrivals, DeadlineClock, Engine, Load, OpenLoop, WhenBusy};
use loadgen::{RequestSpec, Scenario};

use super::{OutputArgs, ServerChoice, MAX_RATE};
use crate::measure::sweep::{self, SweepSpec};
use crate::output::{self, html, Format};
use crate::SimError;

#[derive(Debug, Args)]
pub(crate) struct SweepArgs {
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
    /// Instead of a step per rate and bisection: one run whose rate ramps linearly from the
    /// lowest rate to the highest over DURATION, judged second by second; the knee is the
    /// ramp's rate in the last second that met the goal with every earlier one meeting it.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", conflicts_with = "refine")]
    ramp: Option<Duration>,
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
    #[command(flatten)]
    live: crate::live::LiveArgs,
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
        if self.ramp.is_some_and(|r| r < Duration::from_secs(2)) {
            return Err(SimError::Usage(
                "--ramp is judged second by second, so it lasts at least 2s".into(),
            ));
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
            stages: Default::default(),
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
            background: Vec::new(),
            link: Default::default(),
            clients_ramp: Default::default(),
        };
        Ok(SweepSpec {
            scenario,
            rates: self.rates.clone(),
            step: self.step,
            goal: self.goal,
            refine: self.refine,
            ramp: self.ramp,
        })
    }
}

/// Runs `simulator sweep`.
pub(crate) fn run(args: SweepArgs, flags: Vec<(String, String)>) -> Result<ExitCode, SimError> {
    args.output.log.init();
    args.live.apply();
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
            let texts: Vec<String> = reports.iter().map(output::text::sweep_text).collect();
            output::print(&texts.join("\n"));
        }
        Format::Json => output::print_json(&reports),
        Format::Csv => output::print(&output::csv::sweep_csv(&reports)),
    }
    if let Some(path) = &args.output.report {
        html::write(path, &html::sweep_page(&reports, &html::Provenance::here()))?;
    }
    Ok(ExitCode::SUCCESS)
}
