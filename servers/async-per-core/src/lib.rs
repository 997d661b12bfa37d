//! The shared-nothing async server: one single-threaded runtime per core, nothing stolen.
//!
//! The work-stealing server (`servers/async-work-stealing`) lets any worker run any task:
//! an idle worker steals from a busy one, so no CPU idles while work waits. That costs
//! something on every request: tasks woken on one CPU run on another, queues are shared
//! between threads (atomics, cache lines moving between cores), and an idle worker is woken
//! to go looking for work. The *thread-per-core* design (seastar, glommio, monoio, and
//! nginx's worker processes before them) refuses that cost. Each core is a thread with a
//! runtime of its own (tokio's `current_thread` scheduler), a listening socket of its own
//! on the same port (`SO_REUSEPORT`) and the connections that socket accepted, for their
//! whole life. No task ever moves; nothing is shared between cores but the port.
//!
//! ```text
//!                      kernel: hash(client address, port) → one of the sockets
//!   clients ─▶ :7777 ──┬──────────────────────────────┬─────────────────────── ...
//!                      ▼                              ▼
//!          ┌──── core-1 (one thread) ────┐  ┌──── core-2 (one thread) ────┐
//!          │ listening socket of its own │  │ listening socket of its own │
//!          │ runtime: reactor, timers,   │  │ runtime: reactor, timers,   │
//!          │ one queue of tasks          │  │ one queue of tasks          │
//!          │ tasks: accept loop, a task  │  │ tasks: accept loop, a task  │
//!          │ per connection it accepted  │  │ per connection it accepted  │
//!          └──────── ▲ ──────────────────┘  └──────── ▲ ──────────────────┘
//!    core-1-blocking-1: /factor via spawn_blocking   core-2-blocking-1: the same
//! ```
//!
//! **Which core serves a client** is the kernel's choice: it hashes each new connection's
//! addresses and ports onto the listening sockets of the group. A busy core gets its share
//! of newcomers all the same, and a few heavy connections that hash to one core stay there:
//! its other connections wait behind them while the other cores may idle. `/stats` shows
//! each core's connections, accepts and requests (`runtimes[]`), so the imbalance is
//! visible; lab 24 measures what it costs against work stealing.
//!
//! **What blocks where.** A core's thread blocks only in `epoll_wait`, when none of its
//! tasks can run. A task never blocks its thread: the same connection task as the
//! work-stealing server's (`async_work_stealing::connection`: the same protocol machine, a
//! timer for `/sleep`), and `/factor` goes to the core's own blocking threads with
//! `spawn_blocking` (`--blocking-threads` per core). With `--offload off` the core's thread
//! computes, and every connection of that core waits meanwhile, with nobody to take them:
//! lab 23. The `main` thread waits for shutdown.
//!
//! **Queues and their capacity.** Each core's runtime has one queue of ready tasks
//! (unbounded, a task per connection at most) and a shared queue for tasks woken from
//! other threads (an answer from a blocking thread). Computations: at most
//! `--offload-queue` (1024) running or waiting in the whole server (the one counter the
//! cores share, touched once per computation); beyond that a request gets 503 at once.
//! Each listening socket has its own backlog (`--backlog`). Per connection, at most 16
//! requests read and not answered.
//!
//! **Shutdown**: every core's listening socket is shut down at once (no newcomers), a
//! `Notify` per core wakes its tasks, each core waits for its own connections (at
//! most until the grace period ends), and the main thread joins the core threads.

pub mod core;
pub mod pin;

use std::net::TcpListener;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use async_work_stealing::connection::{Compute, Shared};
use async_work_stealing::runtime::RuntimeStats;
use async_work_stealing::{capacity, cpus, Offload, Sleep};
use server_core::permits::Permits;
use server_core::stats::Figures;
use server_core::{Acceptor, Architecture, Context, ServerError, ThreadGroup};
use tokio::sync::Notify;

use crate::core::Core;

/// Whether each core's thread is pinned to a CPU of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pin {
    /// The kernel places the threads (and may move them).
    #[default]
    Off,
    /// Core N's thread runs only on the Nth CPU this process may use.
    On,
}

/// The per-core server's own flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, serde::Serialize)]
pub struct AsyncPerCore {
    /// Cores: each a thread with a runtime of its own, a listening socket of its own
    /// (SO_REUSEPORT) and the connections it accepted [default: the number of CPUs].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub cores: Option<u32>,

    /// Where /factor is computed: on the core's blocking threads with spawn_blocking (on),
    /// or on the core's own thread (off).
    #[arg(long, value_enum, default_value_t = Offload::On)]
    pub offload: Offload,

    /// Blocking threads of each core, for CPU work.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub blocking_threads: u32,

    /// Computations that may run or wait for a blocking thread at once, in the whole
    /// server; beyond that a request gets 503 at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub offload_queue: u32,

    /// Pin each core's thread to a CPU of its own (the CPUs this process may use, in turn).
    #[arg(long, value_enum, default_value_t = Pin::Off)]
    pub pin: Pin,

    /// How /sleep and /echo/{ms} wait: as a timer (the task waits, the core goes on), or
    /// by blocking the core's thread, as a synchronous driver would (block).
    #[arg(long, value_enum, default_value_t = Sleep::Timer)]
    pub sleep: Sleep,
}

impl Default for AsyncPerCore {
    /// The command line's defaults: see `server_core::cli::defaults`.
    fn default() -> Self {
        server_core::cli::defaults()
    }
}

/// How long the main thread waits for the core threads beyond the grace period: each core
/// gives up its connections at the grace period's end and then stops its runtime.
const JOIN_MARGIN: Duration = Duration::from_secs(1);

impl Architecture for AsyncPerCore {
    const NAME: &'static str = "async-per-core";
    const ABOUT: &'static str = "servelab's shared-nothing async server: one single-threaded runtime per core, each with its own SO_REUSEPORT listening socket and its own connections; nothing is stolen.";

    /// Every core binds a listening socket of its own on the same port.
    fn reuse_port(&self) -> bool {
        true
    }

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        // What `/stats` reports as this server's settings: the defaults made explicit.
        let settings = AsyncPerCore {
            cores: Some(self.cores.unwrap_or_else(cpus)),
            ..self
        };
        ctx.set_arch_config(serde_json::to_value(&settings).unwrap_or_default());
        // Every client at once, each on a task of its own (the simulator's model needs no
        // more: that a client's task waits says nothing about the others).
        ctx.set_capacity(capacity());
        let cores = settings.cores.unwrap_or(1);
        let pins = settings.pins(cores)?;
        let listeners = listeners(acceptor, cores, &ctx)?;
        let (stopping, wait_for_stop) = stop_signals(cores, &ctx);
        let common = Common {
            permits: Permits::new(settings.offload_queue as usize),
            cores: ThreadGroup::new("core"),
            blocking: ThreadGroup::new("blocking"),
        };
        let (started, figures) = settings.start_cores(listeners, pins, stopping, &common, &ctx)?;
        // Blocks until every core has built its runtime and watches its socket, or one of
        // them could not.
        wait_for_cores(started, cores, &common, &ctx)?;
        settings.publish_figures(&ctx, &common, figures);
        // Every core is up: in-process starters may go on.
        ctx.set_ready();

        // Blocks until shutdown begins.
        let _ = wait_for_stop.recv();
        tracing::info!("shutting down: every core stops accepting and finishes what it owes");
        // Each core gives up at the grace period's end; then its runtime stops.
        let deadline = ctx.shutdown.deadline(ctx.args.shutdown_timeout) + JOIN_MARGIN;
        let still_running = common.cores.join(deadline) + common.blocking.join(deadline);
        if still_running > 0 {
            tracing::warn!(
                "{still_running} core and blocking threads still busy after the shutdown"
            );
        }
        Ok(())
    }
}

/// The error for a part of the server that could not be started.
fn start_error(what: String) -> impl FnOnce(std::io::Error) -> ServerError {
    move |source| ServerError::Start { what, source }
}

/// What the cores have in common, and share with the thread that writes `/stats`.
struct Common {
    /// The bound on computations, the one thing the cores share besides the port: each
    /// core touches it once per `/factor` (a short lock), never per request.
    permits: Arc<Permits>,
    /// The cores' own threads, counted in their group.
    cores: ThreadGroup,
    /// The blocking threads of every core, counted in one group.
    blocking: ThreadGroup,
}

/// What each core says once when it has started, or why it could not: the receiving end,
/// held by the main thread.
type Reports = std_mpsc::Receiver<Result<(), core::StartFailure>>;

impl AsyncPerCore {
    /// The CPUs to pin to, core by core: the CPUs this process may use, in turn (a
    /// `taskset` or a container's CPU set narrows them), so core N+1 goes back to the
    /// first CPU when there are more cores than CPUs. All `None` with `--pin off`.
    fn pins(&self, cores: u32) -> Result<Vec<Option<usize>>, ServerError> {
        Ok(match self.pin {
            Pin::Off => vec![None; cores as usize],
            Pin::On => {
                let allowed = pin::allowed_cpus().map_err(start_error("pinning".into()))?;
                (0..cores as usize)
                    .map(|i| allowed.get(i % allowed.len().max(1)).copied())
                    .collect()
            }
        })
    }

    /// Spawns every core's thread, each with its listening socket, its CPU and its shutdown
    /// wake-up. Returns where they report whether they started, and each core's figures;
    /// if a thread cannot be spawned, the cores already started are stopped and the server
    /// fails to start.
    fn start_cores(
        &self,
        listeners: Vec<TcpListener>,
        pins: Vec<Option<usize>>,
        stopping: Vec<Arc<Notify>>,
        common: &Common,
        ctx: &Arc<Context>,
    ) -> Result<(Reports, Vec<Arc<RuntimeStats>>), ServerError> {
        let cores = self.cores.unwrap_or(1);
        // Each core says once whether it started; room for all of them, so no core ever
        // waits to report.
        let (ready, started) = std_mpsc::sync_channel(cores as usize);
        let mut figures = Vec::new();
        for (((i, listener), pin), stopping) in (1..=cores).zip(listeners).zip(pins).zip(stopping) {
            let core = self.core(i, listener, pin, stopping, common, ctx);
            // Kept for `/stats`: the core's own figures, which its tasks count into.
            figures.push(Arc::clone(&core.shared.stats));
            let ready = ready.clone();
            // The core's thread, named after it: logs, `X-Servelab-Thread` and `/stats` say
            // which core did what.
            if let Err(e) = common
                .cores
                .spawn(format!("core-{i}"), None, move || core::run(core, ready))
            {
                // The cores already started stop at once (their sockets shut, their tasks
                // told); their threads are waited for, briefly.
                ctx.shutdown.trigger();
                common.cores.join(ctx.shutdown.deadline(JOIN_MARGIN));
                return Err(ServerError::Start {
                    what: format!("core {i}"),
                    source: e,
                });
            }
        }
        // Only the cores hold senders now: if one ended without a word, `recv` says so
        // instead of waiting forever.
        drop(ready);
        Ok((started, figures))
    }

    /// What core `i` is given: its listening socket and CPU, and what its connection tasks
    /// share (its own figures, where computations go, its shutdown wake-up).
    fn core(
        &self,
        i: u32,
        listener: TcpListener,
        pin: Option<usize>,
        stopping: Arc<Notify>,
        common: &Common,
        ctx: &Arc<Context>,
    ) -> Core {
        let name = format!("core-{i}");
        // The core's own figures: one runtime with one worker, its thread.
        let stats = RuntimeStats::new(&name, vec![name.clone()]);
        let shared = Arc::new(Shared {
            ctx: Arc::clone(ctx),
            compute: match self.offload {
                Offload::On => Compute::Offload {
                    permits: Arc::clone(&common.permits),
                    blocking: common.blocking.clone(),
                },
                Offload::Off => Compute::Inline,
            },
            sleep: self.sleep,
            stats,
            stopping,
        });
        Core {
            index: i,
            listener,
            shared,
            // No blocking threads with `--offload off`: the core's own thread computes.
            blocking_threads: match self.offload {
                Offload::On => self.blocking_threads as usize,
                Offload::Off => 0,
            },
            pin,
            cores: common.cores.clone(),
            blocking: common.blocking.clone(),
        }
    }

    /// Tells `/stats` how to read this server's figures: its two groups of threads, the
    /// bound on computations (with `--offload on`) and each core's runtime.
    fn publish_figures(&self, ctx: &Context, common: &Common, figures: Vec<Arc<RuntimeStats>>) {
        // The closure runs on whichever thread writes `/stats`, and outlives this call: it
        // holds clones of its own (each a handle on the same shared counts).
        let (core_group, blocking_group) = (common.cores.clone(), common.blocking.clone());
        let permits = Arc::clone(&common.permits);
        let offload = self.offload;
        ctx.set_arch_figures(move || Figures {
            threads: vec![core_group.snapshot(), blocking_group.snapshot()],
            limits: match offload {
                Offload::On => vec![permits.snapshot("offload")],
                Offload::Off => Vec::new(),
            },
            runtimes: figures.iter().map(|core| core.snapshot()).collect(),
            ..Figures::default()
        });
    }
}

/// Every core's listening socket: the first is the one the server was started with
/// (bound with SO_REUSEPORT), the others join it on the same port.
fn listeners(
    acceptor: Acceptor,
    cores: u32,
    ctx: &Context,
) -> Result<Vec<TcpListener>, ServerError> {
    let first = acceptor.into_listener();
    // The port the server bound (an ephemeral one in tests): the other cores bind the same.
    let addr = first.local_addr().map_err(start_error("listener".into()))?;
    let mut listeners = vec![first];
    for i in 2..=cores {
        let own = server_core::listener::bind_with(addr, ctx.args.backlog, true)?;
        // Like the first listener, refuse newcomers the moment shutdown begins.
        let closer = own
            .try_clone()
            .map_err(start_error(format!("core {i}'s listener")))?;
        ctx.shutdown.on_trigger(move || {
            let _ = socket2::SockRef::from(&closer).shutdown(std::net::Shutdown::Both);
        });
        listeners.push(own);
    }
    Ok(listeners)
}

/// Wakes every task of a core once, when shutdown begins: one `Notify` per core, so that
/// not even this is shared between cores. The main thread is told too, on the channel
/// returned (capacity 1: one message, never waited for).
fn stop_signals(cores: u32, ctx: &Context) -> (Vec<Arc<Notify>>, std_mpsc::Receiver<()>) {
    let stopping: Vec<Arc<Notify>> = (0..cores).map(|_| Arc::new(Notify::new())).collect();
    let (stopped, wait_for_stop) = std_mpsc::sync_channel::<()>(1);
    ctx.shutdown.on_trigger({
        let stopping = stopping.clone();
        move || {
            // The flag is already set when hooks run: a task that looks later sees it,
            // one that waits is woken here.
            for core in &stopping {
                core.notify_waiters();
            }
            // Never blocks: the channel has room for this one message.
            let _ = stopped.try_send(());
        }
    });
    (stopping, wait_for_stop)
}

/// Blocks until every core has reported (its runtime built, its socket watched). If one
/// could not start, or ended without a word, the server stops and fails to start.
fn wait_for_cores(
    started: Reports,
    cores: u32,
    common: &Common,
    ctx: &Context,
) -> Result<(), ServerError> {
    for _ in 0..cores {
        match started.recv() {
            Ok(Ok(())) => {}
            // A core could not start: every core is told to stop (shutdown), and waited for
            // briefly.
            Ok(Err((what, source))) => {
                ctx.shutdown.trigger();
                common.cores.join(ctx.shutdown.deadline(JOIN_MARGIN));
                return Err(ServerError::Start { what, source });
            }
            // Every sender is gone and a core has not reported: its thread ended (it
            // panicked) before it could.
            Err(_) => {
                ctx.shutdown.trigger();
                return Err(ServerError::Start {
                    what: "cores (one stopped before it was ready)".into(),
                    source: std::io::Error::other("stopped"),
                });
            }
        }
    }
    Ok(())
}
