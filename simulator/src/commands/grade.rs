//! `simulator grade`: grade a server with the `grader` library, and say so in the format a
//! course's system reads.
//!
//! This module is only the command line: it turns the flags into `grader::Options`, calls
//! `grader::grade`, renders the grade and turns it into the exit status GitHub Classroom
//! and the others read: 0 when every required check passed, 1 for a failed grade, 2 for
//! bad input to the grader itself (a command that does not start, an address where
//! nothing listens, a spec with an unknown check, an `--expect` that makes no sense), said
//! in one sentence on stderr. The checks are in `grader/src/checks/`, the formats in
//! `grader/src/output.rs`, and `docs/grading.md` explains both.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::servers::{self, Registered};
use crate::{output, target, SimError};

#[derive(Debug, Args)]
pub(crate) struct GradeArgs {
    /// A registered architecture, started in this process for each run.
    #[arg(value_name = "ARCH", value_parser = clap::builder::PossibleValuesParser::new(::architectures::names()), required_unless_present_any = ["server", "target"], conflicts_with_all = ["server", "target"])]
    arch: Option<String>,
    /// A command line that starts the server, with {addr} where it must listen; the
    /// grader starts it on a free port and stops it with SIGTERM.
    #[arg(long, value_name = "\"CMD {addr}\"", conflicts_with = "target")]
    server: Option<String>,
    /// A server that is already running, as host:port (hygiene checks are skipped).
    #[arg(long, value_name = "HOST:PORT")]
    target: Option<String>,
    /// What the design claims: sequential, per-connection, pool:N (bounded, 503 when
    /// full), workers:N (clients wait their turn), event-loop, async [default: an
    /// architecture's own claim from its /stats; per-connection otherwise].
    #[arg(long, value_name = "KIND[:N]")]
    expect: Option<String>,
    /// The checks, weights and required flags, as TOML [default: the shipped grade.toml].
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// Run the suite this many times; each check reports its pass rate.
    #[arg(long, default_value_t = 1, value_name = "N")]
    repeat: u32,
    /// Multiply every delay and deadline of the checks (2 for a slow machine).
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    stretch: f64,
    /// The seed of the wire fuzz (each repetition adds its number).
    #[arg(long, default_value_t = 1, value_name = "N")]
    seed: u64,
    /// The output's format.
    #[arg(long, value_enum, default_value_t = GradeFormat::Text)]
    format: GradeFormat,
    /// Write the output into this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also write one HTML page of the checks, failing ones first.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
}

/// The formats of `simulator grade`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GradeFormat {
    Text,
    Json,
    Gradescope,
    Autolab,
    Junit,
}

/// The exit status of bad input to the grader.
const BAD_INPUT: u8 = 2;

/// Runs `simulator grade`. Bad input is said here, in one sentence, with status 2.
pub(crate) fn run(args: GradeArgs) -> Result<ExitCode, SimError> {
    match grade(args) {
        Ok(code) => Ok(code),
        Err(why) => {
            eprintln!("simulator grade: {why}");
            Ok(ExitCode::from(BAD_INPUT))
        }
    }
}

fn grade(args: GradeArgs) -> Result<ExitCode, String> {
    let options = options(&args)?;
    let grade = grader::grade(&options).map_err(|e| e.to_string())?;
    let rendered = match args.format {
        GradeFormat::Text => grader::output::text(&grade),
        GradeFormat::Json => grader::output::json(&grade) + "\n",
        GradeFormat::Gradescope => grader::output::gradescope(&grade) + "\n",
        GradeFormat::Autolab => grader::output::autolab(&grade),
        GradeFormat::Junit => grader::output::junit(&grade),
    };
    match &args.output {
        Some(path) => std::fs::write(path, rendered)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => output::print(&rendered),
    }
    if let Some(path) = &args.report {
        std::fs::write(path, grader::output::html(&grade))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(if grade.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The flags as the grader's options; `Err` is the sentence for bad input.
fn options(args: &GradeArgs) -> Result<grader::Options, String> {
    let spec = match &args.spec {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the spec {}: {e}", path.display()))?;
            grader::Spec::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => grader::Spec::default(),
    };
    let given = match &args.expect {
        Some(text) => Some(text.parse::<grader::Expect>().map_err(|e| e.to_string())?),
        None => None,
    };
    let (subject, claim) = subject(args)?;
    Ok(grader::Options {
        subject,
        expect: given.or(claim),
        spec,
        repeat: args.repeat,
        stretch: args.stretch,
        seed: args.seed,
    })
}

/// What is graded, and the claim its `/stats` makes when it is a servelab server.
fn subject(args: &GradeArgs) -> Result<(grader::Subject, Option<grader::Expect>), String> {
    if let Some(name) = &args.arch {
        let entry = servers::entry(name).map_err(|e| e.to_string())?;
        entry.available().map_err(|e| format!("{name}: {e}"))?;
        let claim = servers::claim_of_registered(entry).map_err(|e| e.to_string())?;
        return Ok((
            grader::Subject::InProcess(Box::new(Registered(entry))),
            Some(claim),
        ));
    }
    if let Some(line) = &args.server {
        return Ok((grader::Subject::Command(line.clone()), None));
    }
    let text = args.target.as_deref().unwrap_or_default();
    let addr = target::resolve(text).map_err(|e| e.to_string())?;
    // A servelab server states its capacity; anything else is graded as concurrent.
    let claim = target::probe(addr, text)
        .map_err(|e| e.to_string())?
        .map(|info| servers::claim_of(&info.snapshot.capacity));
    Ok((grader::Subject::Address(addr), claim))
}
