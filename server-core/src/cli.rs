//! The `main` of every server binary.
//!
//! Parses the shared flags plus the architecture's own, sets up logging, binds, arranges
//! for Ctrl+C to shut down gracefully, serves, and turns any error into one sentence on
//! stderr and a non-zero exit status.
//!
//! Every server binary's `main.rs` is one line that calls [`main`] with its architecture,
//! so all of them behave alike from the outside: the same shared flags with the same
//! defaults, the same log format, the same exit statuses (0 after a clean shutdown, 1 when
//! a request was abandoned or the server could not start, 130 after a second Ctrl+C, 2 for
//! a bad flag, as clap reports it), and the same final line in the log.
//!
//! The defaults of every flag are written once, in clap's `#[arg]` attributes, and
//! [`defaults`] reads them back for code that builds flags without a command line.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};

use crate::config::ServerArgs;
use crate::context::Context;
use crate::listener::{bind_with, Acceptor, ServerError};
use crate::running::Architecture;
use crate::{logging, shutdown};

/// The whole command line of a server binary: the shared flags, then the architecture's
/// own. Both are flattened, so `--help` lists them together and a flag is written the same
/// way whichever struct defines it.
#[derive(clap::Parser)]
struct Cli<A: clap::Args> {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    arch: A,
}

/// The flags `T` as clap fills them in when the command line gives none of them: each
/// flag's `default_value`, and `None` for an optional one.
///
/// Every `impl Default` of a server's flags is this, so that a server started in-process
/// (by a test, the simulator or a lab) with `Default::default()` runs with exactly the
/// settings its binary has without flags: the defaults are written once, in the `#[arg]`
/// attributes. (The `architectures` tests check it for every server.) No servelab flag
/// reads the environment, so the result does not depend on it either.
///
/// # Panics
///
/// If `T` has a flag that is required (has no default): that is a mistake in `T`, found by
/// the first test that builds its default.
pub fn defaults<T: clap::Args>() -> T {
    let command = T::augment_args(clap::Command::new("defaults").no_binary_name(true));
    let parsed = command
        .try_get_matches_from(std::iter::empty::<std::ffi::OsString>())
        .and_then(|matches| T::from_arg_matches(&matches));
    match parsed {
        Ok(flags) => flags,
        Err(e) => panic!(
            "{} has no default for every flag: {e}",
            std::any::type_name::<T>()
        ),
    }
}

/// Runs the server binary for architecture `A`.
pub fn main<A: Architecture + clap::Args>() -> ExitCode {
    // The generic `Cli` gets the architecture's name, description and version here, so
    // that `--help` and errors say `pipeline`, not the name of the struct.
    let command = Cli::<A>::command()
        .name(A::NAME)
        .bin_name(A::NAME)
        .about(A::ABOUT)
        .version(env!("CARGO_PKG_VERSION"));
    // A bad flag: clap prints the error with a usage line and exits with status 2.
    let cli = match Cli::<A>::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    logging::init(cli.server.log);
    // An architecture this machine cannot run says why in one sentence, before it binds.
    if let Err(why) = A::available() {
        eprintln!("{}: {why}", A::NAME);
        return ExitCode::FAILURE;
    }
    // As many connections as the hard limit allows (see `rlimit`).
    crate::rlimit::raise_open_files(u64::MAX);
    match run(cli.arch, cli.server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", A::NAME);
            ExitCode::FAILURE
        }
    }
}

/// Bounds a graceful shutdown: if the server has not stopped within `--shutdown-timeout`
/// (plus a second for the architecture's own joins), exit anyway. The sequential server
/// needs this most: its only thread may be inside a 60-second `/sleep`.
///
/// It is armed only by a signal: an in-process server (a test, the simulator) is never
/// killed by it, because its caller decides how long to wait.
fn watchdog(ctx: Arc<Context>) {
    let limit = ctx.args.shutdown_timeout + std::time::Duration::from_secs(1);
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            // Sleeps through the grace period; the process normally exits before it ends.
            std::thread::sleep(limit);
            // The architecture's own log says which threads it was still waiting for.
            eprintln!("{}: {}; exiting anyway", ctx.arch, final_line(&ctx));
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        tracing::warn!("could not start the shutdown watchdog: {e}");
    }
}

/// Binds, installs the signal handling, and serves on this thread until shutdown. Returns
/// the error to report: the server could not start, or it gave up on requests at the end.
fn run<A: Architecture>(arch: A, args: ServerArgs) -> Result<(), ServerError> {
    // Bound before anything else starts, so that a port in use is the first and only
    // thing reported.
    let listener = bind_with(args.addr, args.backlog, arch.reuse_port())?;
    let backlog = args.backlog;
    let ctx = Context::new(A::NAME, args);
    let acceptor = Acceptor::new(listener, Arc::clone(&ctx))?;
    // The first SIGINT or SIGTERM begins a graceful shutdown and arms the watchdog; the
    // signal thread holds its own reference to the context for that.
    let signalled = Arc::clone(&ctx);
    shutdown::on_signals(move || {
        signalled.shutdown.trigger();
        watchdog(signalled);
    })
    .map_err(|source| ServerError::Start {
        what: "signal handler".into(),
        source,
    })?;
    let addr = acceptor
        .local_addr()
        .map_or_else(|_| ctx.args.addr.to_string(), |a| a.to_string());
    tracing::info!(
        "servelab {} listening on {addr} (backlog {backlog}); Ctrl+C stops it",
        A::NAME
    );
    // Blocks until shutdown has run its course: the architecture's `serve` returns when
    // its threads are done, or it has given up on them at the shutdown timeout.
    arch.serve(acceptor, Arc::clone(&ctx))?;
    // Requests still running now are lost when the process exits: the server kept its
    // promise only if there are none.
    if ctx.stats.in_flight() > 0 {
        return Err(ServerError::Abandoned(final_line(&ctx)));
    }
    tracing::info!("{}", final_line(&ctx));
    Ok(())
}

/// The server's last words: requests answered and abandoned, counted apart. The binary
/// tests read this line (`testkit::binary`) to check that a stopped server kept its
/// promise, and an operator reads it to know whether anything was lost.
fn final_line(ctx: &Context) -> String {
    let abandoned = ctx.stats.in_flight();
    let answered = ctx.stats.requests_total().saturating_sub(abandoned);
    let mut line = format!(
        "stopped after {answered} requests answered and {abandoned} abandoned, on {} connections",
        ctx.stats.accepted_total()
    );
    if abandoned > 0 {
        line.push_str(&format!(
            " ({abandoned} still running after the shutdown timeout of {})",
            humantime::format_duration(ctx.args.shutdown_timeout)
        ));
    }
    line
}
