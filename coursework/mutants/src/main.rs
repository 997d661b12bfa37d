//! `mutant KIND --addr ADDR`: servelab's deliberately broken servers, which test the grader.
//!
//! A grader that passes every correct server proves nothing until it also fails the broken
//! ones, each for the right reason. Every kind here is the coursework starter's code (or the
//! starter with its connections handed to threads, for the defects that need concurrency to
//! show) with exactly **one** defect, of the kind students really write. Each module's
//! first comment names the defect and the grader's check that catches it, and
//! `tests/caught.rs` grades every kind through the `grader` library and asserts that check
//! fails, while the correct variant of the same design passes it:
//!
//! | kind | defect | caught by | correct variant |
//! |---|---|---|---|
//! | `keep-alive-ignored` | closes after every answer | `A.keep-alive` | `none` |
//! | `pipelined-out-of-order` | answers two pipelined requests swapped | `A.pipelining` | `none` |
//! | `unbounded-queue` | a pool of 4 whose queue never fills | `D.burst` (`--expect pool:4`) | `pool` |
//! | `fd-leak-per-connection` | a descriptor kept per connection | `E.descriptors` | `none` |
//! | `blocking-accept-loop` | waits for each connection's thread | `C.overtake` (`--expect per-connection`) | `per-connection` |
//! | `sigterm-ignored` | SIGTERM does nothing | `E.sigterm` | `none` |
//! | `panic-on-bad-header` | a thread panics instead of answering 400 | `A.hostile` | `per-connection` |
//! | `content-length-unchecked` | never reads a request body | `A.body` | `none` |
//! | `unsynchronised-counter` | `requests.served` counted by load, yield, store | `C.counter` | `per-connection` |
//! | `answers-held-until-close` | answers only once the client closes | `A.keep-alive` | `none` |
//! | `slowloris-vulnerable` | no pace and no read timeout on requests | `B.slowloris` | `none` |
//!
//! The process itself behaves as every servelab binary does (`server_core::cli::main`):
//! the shared flags, logging, and on SIGTERM or SIGINT a graceful shutdown that exits 0 when
//! no request was abandoned, 1 otherwise. Only `sigterm-ignored` differs.

mod answers_held_until_close;
mod blocking_accept_loop;
mod content_length_unchecked;
mod correct;
mod fd_leak_per_connection;
mod keep_alive_ignored;
mod panic_on_bad_header;
mod pipelined_out_of_order;
mod sigterm_ignored;
mod slowloris_vulnerable;
mod unbounded_queue;
mod unsynchronised_counter;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use server_core::{Acceptor, Architecture, Context, RunningServer, ServerArgs, ServerError};

/// Which server to run: a correct one, or one with a defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    /// The starter as it is: sequential and correct (the control for the sequential kinds).
    #[value(name = "none")]
    Correct,
    /// A correct thread per connection (the control for the concurrent kinds).
    PerConnection,
    /// A correct pool of 4 workers with a bounded queue of 8 that answers 503 when full.
    Pool,
    /// Closes every connection after its first answer, unannounced (A.keep-alive).
    KeepAliveIgnored,
    /// Answers two pipelined requests with each other's answers (A.pipelining).
    PipelinedOutOfOrder,
    /// A pool of 4 whose queue has no bound, so it never answers 503 (D.burst, pool:4).
    UnboundedQueue,
    /// Keeps a duplicate of every connection's socket open for ever (E.descriptors).
    FdLeakPerConnection,
    /// A thread per connection, joined before the next accept (C.overtake, per-connection).
    BlockingAcceptLoop,
    /// Catches SIGTERM and does nothing about it (E.sigterm).
    SigtermIgnored,
    /// A connection's thread panics on a request it cannot parse (A.hostile).
    PanicOnBadHeader,
    /// Never reads the body a Content-Length announces (A.body).
    ContentLengthUnchecked,
    /// Counts requests served by load, yield, store: updates are lost (C.counter).
    UnsynchronisedCounter,
    /// Sends the answers only once the client has closed its side (A.keep-alive).
    AnswersHeldUntilClose,
    /// No pace and no read timeout on requests (B.slowloris).
    SlowlorisVulnerable,
}

/// The command line: the kind, then every flag a servelab server takes (`--addr`, ...).
#[derive(Debug, Parser)]
#[command(
    name = "mutant",
    about = "servelab's deliberately broken servers, one defect each, for testing the grader."
)]
struct Cli {
    /// The server to run.
    #[arg(value_enum)]
    kind: Kind,
    /// The shared flags, exactly as every servelab binary has them (`--help` lists them):
    /// the grader gives `--addr`; the rest keep their defaults.
    #[command(flatten)]
    server: ServerArgs,
}

/// The server of one kind, as a servelab architecture: `serve` picks the kind's module.
#[derive(Debug)]
struct Mutant(Kind);

impl Architecture for Mutant {
    const NAME: &'static str = "mutant";
    const ABOUT: &'static str = "a deliberately broken servelab server";

    /// Runs on the server's main thread until shutdown. Each module's `serve` is the
    /// starter's `serve` (or a correct design's) with its one change; they share the
    /// acceptor, the context and its counters, so `/stats` reads the same for all.
    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        match self.0 {
            // The defects of these two are outside `serve` (in `main` and in the flags):
            // inside, they are the starter.
            Kind::Correct | Kind::SigtermIgnored | Kind::SlowlorisVulnerable => {
                starter::Starter::default().serve(acceptor, ctx)
            }
            Kind::PerConnection => correct::per_connection(acceptor, &ctx),
            Kind::Pool => correct::pool(acceptor, &ctx),
            Kind::KeepAliveIgnored => keep_alive_ignored::serve(acceptor, &ctx),
            Kind::PipelinedOutOfOrder => pipelined_out_of_order::serve(acceptor, &ctx),
            Kind::UnboundedQueue => unbounded_queue::serve(acceptor, &ctx),
            Kind::FdLeakPerConnection => fd_leak_per_connection::serve(acceptor, &ctx),
            Kind::BlockingAcceptLoop => blocking_accept_loop::serve(acceptor, &ctx),
            Kind::PanicOnBadHeader => panic_on_bad_header::serve(acceptor, &ctx),
            Kind::ContentLengthUnchecked => content_length_unchecked::serve(acceptor, &ctx),
            Kind::UnsynchronisedCounter => unsynchronised_counter::serve(acceptor, &ctx),
            Kind::AnswersHeldUntilClose => answers_held_until_close::serve(acceptor, &ctx),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    server_core::logging::init(cli.server.log);
    let mut args = cli.server;
    if cli.kind == Kind::SlowlorisVulnerable {
        slowloris_vulnerable::weaken(&mut args);
    }
    // The signals are arranged before the server listens, so that a SIGTERM that comes as
    // soon as the port accepts is never met by the default action (death by signal).
    let signalled = if cli.kind == Kind::SigtermIgnored {
        sigterm_ignored::ignore_sigterm();
        None
    } else {
        match signal_channel() {
            Ok(rx) => Some(rx),
            Err(e) => {
                eprintln!("mutant: could not install the signal handler: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    // Binds and starts serving on a thread of its own; this thread waits for a signal.
    let server = match RunningServer::start(Mutant(cli.kind), args) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("mutant: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("mutant {:?} listening on {}", cli.kind, server.addr());
    match signalled {
        // Blocks until the signal thread sends (it sends once).
        Some(rx) => {
            let _ = rx.recv();
        }
        None => sigterm_ignored::wait_forever(),
    }
    // The same promise as every servelab binary: exit 0 only when nothing was abandoned.
    let ctx = Arc::clone(server.context());
    arm_watchdog(&ctx);
    match server.stop() {
        Ok(()) if ctx.stats.in_flight() == 0 => ExitCode::SUCCESS,
        Ok(()) => {
            eprintln!(
                "mutant: {} requests abandoned at shutdown",
                ctx.stats.in_flight()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mutant: {e}");
            ExitCode::FAILURE
        }
    }
}

/// As in every servelab binary: if the shutdown has not finished within the shutdown
/// timeout (and a second for the joins), the process exits anyway, with status 1. The
/// sequential designs need it most: their only thread may be inside a long `/sleep`.
fn arm_watchdog(ctx: &Context) {
    let limit = ctx.args.shutdown_timeout + std::time::Duration::from_secs(1);
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            // Sleeps through the grace period; the process normally exits before it ends.
            std::thread::sleep(limit);
            eprintln!("mutant: still stopping after the shutdown timeout; exiting anyway");
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        tracing::warn!("could not start the shutdown watchdog: {e}");
    }
}

/// A channel that receives one message on the first SIGTERM or SIGINT (a second one exits
/// at once, status 130, as in every servelab binary). Capacity 1: the signal thread sends
/// once and never waits.
fn signal_channel() -> std::io::Result<crossbeam_channel::Receiver<()>> {
    let (tx, rx) = crossbeam_channel::bounded::<()>(1);
    server_core::shutdown::on_signals(move || {
        let _ = tx.send(());
    })?;
    Ok(rx)
}
