//! `simulator compare`: the same scenario against several servers, one after another.
//!
//! Either every registered architecture (or those chosen with `--archs`) started in this
//! process on an ephemeral loopback port, each stopped before the next starts so that they
//! never compete for the CPU, or servers that are already running (`--target`). One table
//! shows them side by side.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{Defaults, FramesArgs, OutputArgs, SaveArgs, ScenarioArgs, ServerChoice};
use crate::output::{self, files, html, Format};
use crate::{measure, SimError};

#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
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
    live: crate::live::LiveArgs,
    #[command(flatten)]
    frames: FramesArgs,
    #[command(flatten)]
    files: SaveArgs,
}

/// Runs `simulator compare`.
pub(crate) fn run(args: CompareArgs, flags: Vec<(String, String)>) -> Result<ExitCode, SimError> {
    args.output.log.init();
    args.live.apply();
    let scenario = args.scenario.resolve(Defaults {
        clients: 16,
        timeout: Duration::from_secs(1),
        request: "GET /sleep/400",
    })?;
    // The servers' own figures are read during the run only for the HTML report's charts.
    let watch = args.output.report.is_some();
    let servers = args.servers.servers(flags);
    let reports = if args.targets.is_empty() {
        measure::compare(&scenario, &servers, watch)?
    } else {
        measure::compare_targets(&scenario, &args.targets, watch)?
    };
    match args.output.format {
        Format::Text => output::print(&output::text::compare_text(&scenario, &reports)),
        Format::Json => output::print_json(&serde_json::json!({
            "scenario": scenario,
            "servers": { "archs": servers.archs, "flags": servers.flags, "backlog": servers.backlog },
            "results": reports,
        })),
        Format::Csv => output::print(&output::csv::compare_csv(&reports)),
    }
    if let Some(dir) = &args.files.save {
        for report in &reports {
            let name = report.architecture.as_deref().unwrap_or(&report.target);
            output::saved(&files::save(
                report,
                &dir.join(name.replace([':', '/'], "_")),
            )?);
        }
    }
    for report in &reports {
        let name = report.architecture.as_deref().unwrap_or(&report.target);
        args.frames
            .write(report, Some(&name.replace([':', '/'], "_")))?;
    }
    if let Some(path) = &args.output.report {
        html::write(
            path,
            &html::compare_page(&scenario, &reports, &html::Provenance::here()),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
