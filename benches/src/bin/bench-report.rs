//! `bench-report`: writes criterion's results into `docs/benchmarks.md`.
//!
//! Run `cargo bench` first (or `cargo bench -- --quick`), then
//! `cargo run -p benches --bin bench-report`. The command replaces the generated section of
//! the document and leaves the hand-written text around it alone. With `--section NAME
//! --file FILE` it instead puts FILE into section NAME: the tables of
//! `scripts/compare-peers.sh` (`peers`) and `scripts/simulator-vs-wrk.sh`
//! (`load-generator`).

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use benches::report::{self, ReportError};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Write criterion's results (and the peer table) into docs/benchmarks.md")]
struct Args {
    /// Where criterion's results are. Default: $CRITERION_HOME, else
    /// $CARGO_TARGET_DIR/criterion, else target/criterion in the workspace.
    #[arg(long, value_name = "DIR")]
    criterion_dir: Option<PathBuf>,

    /// The Markdown document to write into.
    #[arg(long, value_name = "FILE", default_value_os_t = default_document())]
    out: PathBuf,

    /// Instead of criterion's results, write this Markdown file (with the machine's stamp)
    /// into the section named by --section.
    #[arg(long, value_name = "FILE", requires = "section")]
    file: Option<PathBuf>,

    /// The section of the document --file goes into: `peers` or `load-generator`.
    #[arg(long, value_name = "NAME", requires = "file", value_parser = ["peers", "load-generator"])]
    section: Option<String>,

    /// Print the section instead of writing it.
    #[arg(long)]
    print: bool,
}

fn default_document() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docs")
        .join("benchmarks.md")
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), ReportError> {
    let (section, content) = match (&args.file, &args.section) {
        (Some(path), Some(section)) => {
            let table = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
                path: path.clone(),
                source,
            })?;
            (section.as_str(), format!("{}\n{table}", stamp()))
        }
        _ => {
            let dir = args
                .criterion_dir
                .clone()
                .unwrap_or_else(report::default_criterion_dir);
            let estimates = report::load(&dir)?;
            let note = std::fs::read_to_string(dir.join(report::RUN_NOTE)).unwrap_or_default();
            let mut note = note.lines();
            let mode = note.next().unwrap_or("unknown").to_string();
            let measured = note.next().unwrap_or("unknown").to_string();
            let content = format!(
                "{}- Criterion run: {mode} (`cargo bench{}`), measuring commit {measured}.\n\n{}",
                stamp(),
                if mode == "quick" { " -- --quick" } else { "" },
                report::to_markdown(&estimates)
            );
            ("criterion", content)
        }
    };
    if args.print {
        println!("{content}");
        return Ok(());
    }
    report::write_section(&args.out, section, &content)?;
    println!("wrote the {section} section of {}", args.out.display());
    Ok(())
}

/// The machine, the compiler and the commit the numbers come from.
fn stamp() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let output = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".to_string())
    };
    let rustc = output("rustc", &["-V"]);
    let commit = report::commit();
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    format!(
        "- Machine: {cpus} CPUs (`nproc`), {model}.\n- Compiler: {rustc}.\n- Commit: {commit}; report generated {date}.\n"
    )
}
