//! `simulator probe`: does a server answer? Exit 0 if it does, 1 with one sentence if not;
//! made for container health checks, where there is no curl.

use std::process::ExitCode;

use clap::Args;

use crate::{output, target, SimError};

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// The server, as host:port.
    target: String,
    /// Print the server's /stats document instead of one line.
    #[arg(long)]
    stats: bool,
}

/// Runs `simulator probe`.
pub(crate) fn run(args: ProbeArgs) -> Result<ExitCode, SimError> {
    let addr = target::resolve(&args.target)?;
    // Fails with one sentence if nothing listens there or it does not answer.
    let info = target::health(addr, &args.target)?;
    match (info, args.stats) {
        (Some(info), true) => output::print_json(&info.snapshot),
        (Some(info), false) => output::print(&format!(
            "{}: servelab {} is up, {} requests served\n",
            args.target, info.architecture, info.snapshot.requests.served
        )),
        (None, _) => output::print(&format!(
            "{}: an HTTP server answers, but not servelab (no /stats)\n",
            args.target
        )),
    }
    Ok(ExitCode::SUCCESS)
}
