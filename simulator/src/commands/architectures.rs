//! `simulator architectures`: the registry's architectures, each with what it is.

use std::process::ExitCode;

use clap::Args;

use crate::{output, SimError};

#[derive(Debug, Args)]
pub(crate) struct ArchitecturesArgs {
    /// Only the names, one per line (for scripts).
    #[arg(long)]
    names: bool,
}

/// Runs `simulator architectures`.
pub(crate) fn run(args: ArchitecturesArgs) -> Result<ExitCode, SimError> {
    let mut text = String::new();
    for entry in architectures::ALL {
        if args.names {
            text.push_str(entry.name);
        } else {
            text.push_str(&format!("{:<19} {}", entry.name, entry.about));
        }
        text.push('\n');
    }
    output::print(&text);
    Ok(ExitCode::SUCCESS)
}
