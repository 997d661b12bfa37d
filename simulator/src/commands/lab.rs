//! `simulator lab`: one of the lecture's experiments, run and checked against its
//! prediction (the sheets are in `labs/`, the code in [`crate::labs`]). Exits 1 when a
//! check disagrees, after the report.

use std::process::ExitCode;

use clap::Args;
use loadgen::scenario::Engine;

use super::{FramesArgs, OutputArgs};
use crate::labs::{self, LabEnv};
use crate::output::{self, html, Format};
use crate::SimError;

#[derive(Debug, Args)]
pub(crate) struct LabArgs {
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
    #[command(flatten)]
    live: crate::live::LiveArgs,
    #[command(flatten)]
    frames: FramesArgs,
}

/// Runs `simulator lab`.
pub(crate) fn run(args: LabArgs) -> Result<ExitCode, SimError> {
    args.output.log.init();
    args.live.apply();
    if args.list {
        let mut text = String::new();
        for lab in labs::all() {
            text.push_str(&format!("{:>2}  {}  ({})\n", lab.id, lab.title, lab.sheet));
        }
        output::print(&text);
        return Ok(ExitCode::SUCCESS);
    }
    if !(args.scale > 0.0 && args.scale <= 10.0) {
        return Err(SimError::Usage(
            "--scale must be above 0 and at most 10".into(),
        ));
    }
    let lab = labs::find(args.id.unwrap_or_default())?;
    let mut env = LabEnv::new(args.scale, args.target, args.engine);
    env.record = args.output.report.is_some() || args.frames.frames.is_some();
    let checks = lab.run(&env)?;
    match args.output.format {
        Format::Json => output::print_json(&serde_json::json!({
            "lab": lab.id, "title": lab.title, "scale": env.scale, "checks": checks,
        })),
        _ => output::print(&output::text::lab_text(&lab, &env, &checks)),
    }
    let runs = env.recorded();
    for (i, report) in runs.iter().enumerate() {
        args.frames.write(report, Some(&format!("run-{}", i + 1)))?;
    }
    if let Some(path) = &args.output.report {
        html::write(
            path,
            &html::lab_page(&lab, &env, &checks, &runs, &html::Provenance::here()),
        )?;
    }
    Ok(if checks.iter().all(|c| c.agrees) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
