//! `simulator merge`: the shards of one run added up into the report of the whole run
//! (see [`crate::shards`] for what adds up and how).

use std::process::ExitCode;

use clap::Args;

use super::{FramesArgs, OutputArgs, SaveArgs};
use crate::{shards, SimError};

#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// The shards' directories (each with report.json and latency.hlog), or directories
    /// that hold them (the DIR all shards saved into).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<std::path::PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: SaveArgs,
    #[command(flatten)]
    frames: FramesArgs,
}

/// Runs `simulator merge`: exits 1 after the report when a shard is missing.
pub(crate) fn run(args: MergeArgs) -> Result<ExitCode, SimError> {
    args.output.log.init();
    let report = shards::merge(&args.dirs)?;
    super::deliver(&report, &args.output, args.files.save.as_deref())?;
    args.frames.write(&report, None)?;
    let complete = report.shards.as_ref().is_none_or(|c| c.complete());
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
