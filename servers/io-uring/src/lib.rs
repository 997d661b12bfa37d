//! The io_uring server: completion, not readiness. A thread and a ring per core.
//!
//! Every other servelab server asks the kernel a question and then does the work itself.
//! A blocking server calls `read` and waits in it; the event loop asks `epoll_wait` which
//! sockets are ready and then calls `read` and `write` on each: at least two system calls
//! per request, one to learn, one to act. Linux's io_uring turns this around. The server
//! writes the operations it wants (accept on this socket, receive on that one, send these
//! bytes, wake me in 5 seconds) into a *submission queue* shared with the kernel, and the
//! kernel writes what became of each into a *completion queue*. One system call,
//! `io_uring_enter`, hands over a whole batch and waits for results; under load it carries
//! many operations each way, so the system calls per request fall well below one.
//!
//! ```text
//!                ┌─────────────────────────── ring-1 (a thread) ────────────────────────────┐
//!   clients ─▶ listener-1 ─┐     submission queue            completion queue              │
//!   (SO_REUSEPORT,         │  accept (multishot) ─▶ ┐     ┌─▶ accepted fd 17                │
//!    one per ring)         │  recv fd 17, pool 0 ─▶ │     │   17: 120 bytes in buffer 3     │
//!                          │  send fd 12, 180 B  ─▶ │ kernel  12: sent 180                  │
//!                          │  timeout 5 s (#17)  ─▶ │     │   sleep #4 is due               │
//!                          │  read eventfd       ─▶ ┘     └─▶ eventfd: the helpers answered │
//!                          │  io_uring_enter: one system call both ways, per round          │
//!                          └────────────────────────────────────────────────────────────────┘
//!                                   ▲ answers (channel + eventfd write)
//!                      helper-1..H: compute /factor, the rings never do
//! ```
//!
//! `--rings N` rings run side by side (default: one per CPU), each a thread with its own
//! io_uring instance, its own listening socket on the same port (`SO_REUSEPORT`: the
//! kernel hashes each new connection to one of them) and its own connections. Nothing is
//! shared between the rings but the helpers' queue; a connection belongs to the ring that
//! accepted it for its whole life, so its state needs no lock. The pieces:
//!
//! * **Accepting**: one *multishot* accept per ring: submitted once, it completes once per
//!   client for as long as it lasts.
//! * **Receiving**: each connection has a receive in the kernel while it wants input, which
//!   names no buffer: the kernel picks one from the ring's *provided-buffer ring* when
//!   bytes arrive (`buffers.rs`). The bytes are fed to the same sans-IO connection machine
//!   every servelab server drives (`protocol::Connection`), and the buffer goes straight
//!   back. An idle connection holds no buffer.
//! * **Sending**: each round, every connection with answers ready gets one send of all of
//!   them, and all those sends go to the kernel in the round's one system call.
//! * **Timers are ring timeouts**: a connection's read, keep-alive and linger deadlines,
//!   and each `/sleep`, are timeout operations the kernel completes when they are due.
//! * **CPU work** (`/factor`) goes to helper threads, as in the event loop; a helper's
//!   answer comes back through a channel, and an eventfd write completes the read each
//!   ring keeps pending on it (`wake.rs`).
//! * **Shutdown** cancels the accepts and idle connections' receives, lets owed answers be
//!   written, and at the end of the grace period cancels everything still in the kernel;
//!   requests never answered are counted abandoned, apart from those answered.
//!
//! The price of the model: memory the kernel holds (send bytes, provided buffers, timespecs)
//! must stay valid and untouched until the kernel says it is done, which Rust cannot check
//! for us; every such hand-over in `ring.rs` and `buffers.rs` says who owns what, and when.
//! And io_uring can be missing or forbidden (Docker's default seccomp profile forbids it):
//! [`IoUring::available`] says why in one sentence (`probe.rs`), the binary exits 1 with
//! it, and the tools that start every architecture skip this one.

// The three modules that hand memory to the kernel (the provided buffers, the ring's
// submissions, the probe's test ring) may use `unsafe`; the crate's lint table denies it
// everywhere else. Each block in them has its SAFETY note.
#[allow(unsafe_code)]
mod buffers;
mod ops;
#[allow(unsafe_code)]
pub mod probe;
#[allow(unsafe_code)]
mod ring;
mod wake;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use server_core::queue::{self, QueueKind, QueueReceiver, QueueSender};
use server_core::stats::{Capacity, Figures};
use server_core::{Acceptor, Architecture, Context, ServerError, ThreadGroup, Unavailable};

use crate::ring::Task;
use crate::ring::{Ring, RingStats, Settings};
use crate::wake::Wake;

/// The io_uring server's own flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, serde::Serialize)]
pub struct IoUring {
    /// Rings, each a thread with its own io_uring and listening socket [default: the number
    /// of CPUs].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub rings: Option<u32>,

    /// Helper threads for CPU work [default: the number of CPUs].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub helpers: Option<u32>,

    /// Computations that may wait for a helper; beyond that a request gets 503 at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub offload_queue: u32,

    /// Provided receive buffers per ring, shared by all its connections: a power of two.
    #[arg(long, default_value_t = 1024, value_parser = power_of_two, value_name = "N")]
    pub buffers: u16,

    /// The size of each provided buffer in bytes: the most one receive takes in.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(256..=1_048_576), value_name = "BYTES")]
    pub buffer_size: u32,
}

/// A number of buffers: a power of two from 1 to 32,768.
fn power_of_two(text: &str) -> Result<u16, String> {
    let n: u16 = text
        .parse()
        .map_err(|_| format!("{text} is not a number from 1 to 32768"))?;
    if n.is_power_of_two() && n <= 32_768 {
        Ok(n)
    } else {
        Err(format!("{n} is not a power of two from 1 to 32768"))
    }
}

impl Default for IoUring {
    /// The command line's defaults: see `server_core::cli::defaults`.
    fn default() -> Self {
        server_core::cli::defaults()
    }
}

/// The CPUs this process may run on: the default number of rings, and of helpers.
fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

impl Architecture for IoUring {
    const NAME: &'static str = "io-uring";
    const ABOUT: &'static str = "servelab's io_uring server: a thread and a ring per core; the kernel completes the accepts, receives, sends and timeouts it is handed, in batches.";

    /// Every ring has a listening socket of its own on the same port.
    fn reuse_port(&self) -> bool {
        true
    }

    /// Whether this process may use io_uring: a probe ring, once per process (`probe.rs`).
    fn available() -> Result<(), Unavailable> {
        probe::check()
    }

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        let settings = IoUring {
            rings: Some(self.rings.unwrap_or_else(cpus)),
            helpers: Some(self.helpers.unwrap_or_else(cpus)),
            ..self
        };
        settings.publish_settings(&ctx);
        // The helpers and the queue that feeds them. The rings only ever `try_push` into it
        // (see `server_core::offload`), so its capacity (--offload-queue) is how many
        // computations may wait; beyond it a request gets 503 at once.
        let (tasks_in, tasks_out) = queue::bounded(
            "offload",
            settings.offload_queue as usize,
            QueueKind::Crossbeam,
        );
        let offload_queue = tasks_in.stats();
        let helpers = settings.start_helpers(tasks_out)?;
        // Blocks until every ring has set its ring up, one after the other (or one failed).
        let started = settings.start_rings(acceptor, tasks_in, &helpers, &ctx)?;
        ctx.set_arch_figures({
            let (ring_group, helper_group) = (started.group.clone(), helpers.clone());
            let figures = started.figures;
            move || Figures {
                threads: vec![ring_group.snapshot(), helper_group.snapshot()],
                queues: vec![offload_queue.snapshot()],
                rings: figures.iter().map(|(name, s)| s.snapshot(name)).collect(),
                ..Figures::default()
            }
        });
        // Every thread is up: in-process starters may go on.
        ctx.set_ready();
        wait_for_shutdown(started.stopping, started.wakes, &ctx);
        tracing::info!("shutting down: the rings stop accepting and finish what they owe");
        let deadline = ctx.shutdown.deadline(ctx.args.shutdown_timeout);
        // Each ring ends at the grace period at the latest, then takes up to a second to
        // hand back what it still had in the kernel. Each join blocks until the group's
        // threads have ended, or its deadline passes; the helpers end when the last ring
        // has dropped its sender of their queue.
        let still_running = started
            .group
            .join(deadline + std::time::Duration::from_secs(1))
            + helpers.join(deadline);
        if still_running > 0 {
            tracing::warn!(
                "{still_running} io-uring threads still busy after the shutdown timeout"
            );
        }
        Ok(())
    }
}

/// The error for a part of the server that could not be started.
fn start_error(what: String) -> impl FnOnce(std::io::Error) -> ServerError {
    move |source| ServerError::Start { what, source }
}

/// What starting the rings leaves the main thread: their group, what shutdown needs to
/// stop them, and their figures for `/stats`.
struct Started {
    group: ThreadGroup,
    /// Raised once by the shutdown hook and read by every ring after each wake-up: shared
    /// because the hook runs on the signal thread. Relaxed is enough: it guards no data,
    /// and the eventfd write that follows it is what wakes each ring to look.
    stopping: Arc<AtomicBool>,
    /// One eventfd per ring, to complete the read each ring keeps in its kernel ring.
    wakes: Vec<Arc<Wake>>,
    /// Each ring's name and figures, shared with the thread that writes `/stats`.
    figures: Vec<(String, Arc<RingStats>)>,
}

impl IoUring {
    /// Tells `/stats` the settings in force (`--rings` and `--helpers` resolved to numbers)
    /// and how many clients the server serves at once.
    fn publish_settings(&self, ctx: &Context) {
        ctx.set_arch_config(serde_json::to_value(self).unwrap_or_default());
        // For the simulator's predictions, the same as the event loop's: no bound on the
        // clients served at once short of descriptors, and an idle client holds no worker
        // (a ring waits for all its connections at once).
        ctx.set_capacity(Capacity {
            concurrent: None,
            per_client: false,
            worker: "ring".into(),
            idle_holds_worker: false,
            idle_holds_readers: None,
            admitted: None,
            rejects_beyond: false,
        });
    }

    /// Starts the helper threads, each taking computations from the offload queue until it
    /// closes. The main thread keeps no receiver: only the helpers hold one.
    fn start_helpers(&self, tasks: QueueReceiver<Task>) -> Result<ThreadGroup, ServerError> {
        server_core::offload::start_helpers(self.helpers.unwrap_or(1), &tasks)
    }

    /// Starts the rings one after the other, each a thread with its own io_uring, its own
    /// eventfd and a listening socket of its own on the same port: the first is the one the
    /// server bound, the others are bound here with SO_REUSEPORT. Waits for each ring to be
    /// set up before the next; if one cannot be, the rings already running are stopped and
    /// the server fails to start.
    ///
    /// Every ring holds a sender of the offload queue; once this returns, only they do, so
    /// when they have all stopped the queue closes and the helpers stop too.
    fn start_rings(
        &self,
        acceptor: Acceptor,
        tasks: QueueSender<Task>,
        helpers: &ThreadGroup,
        ctx: &Arc<Context>,
    ) -> Result<Started, ServerError> {
        let listener = acceptor.into_listener();
        let addr = listener
            .local_addr()
            .map_err(start_error("listener".into()))?;
        let mut started = Started {
            group: ThreadGroup::new("ring"),
            stopping: Arc::new(AtomicBool::new(false)),
            wakes: Vec::new(),
            figures: Vec::new(),
        };
        // Ring by ring: each thread reports before the next is spawned, so that a failure
        // stops the start at once.
        for i in 1..=self.rings.unwrap_or(1) {
            let socket = listener_for(i, &listener, addr, ctx)?;
            let settings = self.ring_settings(i, socket, &tasks, &mut started, ctx)?;
            if let Err(source) = spawn_ring(i, settings, &started.group)? {
                // The rings already running stop, and the server fails to start.
                wake_all(&started.stopping, &started.wakes);
                drop(tasks);
                let deadline = std::time::Instant::now() + ctx.args.shutdown_timeout;
                started.group.join(deadline);
                helpers.join(deadline);
                return Err(ServerError::Start {
                    what: format!("ring {i}"),
                    source,
                });
            }
        }
        drop((tasks, listener));
        Ok(started)
    }

    /// What ring `i` is made of: its listening socket, a new eventfd to wake it, its
    /// figures, and its share of what all rings share. Its eventfd and figures are also
    /// kept in `started`, for the shutdown hook and for `/stats`.
    fn ring_settings(
        &self,
        i: u32,
        socket: TcpListener,
        tasks: &QueueSender<Task>,
        started: &mut Started,
        ctx: &Arc<Context>,
    ) -> Result<Settings, ServerError> {
        let wake = Arc::new(Wake::new().map_err(start_error(format!("ring {i}'s eventfd")))?);
        // The pool's shape is in the figures from the start; the counts start at zero.
        let stats = Arc::new(RingStats {
            buffers: u64::from(self.buffers),
            buffer_size: u64::from(self.buffer_size),
            ..RingStats::default()
        });
        let name = format!("ring-{i}");
        // Kept for the shutdown hook, which wakes every ring (and for stopping the rings
        // started so far, if a later one fails), and for `/stats`, by the ring's name.
        started.wakes.push(Arc::clone(&wake));
        started.figures.push((name.clone(), Arc::clone(&stats)));
        Ok(Settings {
            name,
            listener: socket,
            buffers: self.buffers,
            buffer_size: self.buffer_size,
            ctx: Arc::clone(ctx),
            tasks: tasks.clone(),
            stopping: Arc::clone(&started.stopping),
            wake,
            stats,
        })
    }
}

/// The listening socket of ring `i`, with Nagle's algorithm off: for the first ring a
/// clone of the server's own, for the others a socket of their own bound to the same port
/// with SO_REUSEPORT (the kernel then hashes each new connection to one of them).
fn listener_for(
    i: u32,
    listener: &TcpListener,
    addr: SocketAddr,
    ctx: &Context,
) -> Result<TcpListener, ServerError> {
    let socket = if i == 1 {
        listener
            .try_clone()
            .map_err(start_error("ring 1's listener".into()))?
    } else {
        let own = server_core::listener::bind_with(addr, ctx.args.backlog, true)?;
        // Like the first listener, refuse newcomers the moment shutdown begins.
        let closer = own
            .try_clone()
            .map_err(start_error(format!("ring {i}'s listener")))?;
        ctx.shutdown.on_trigger(move || {
            let _ = socket2::SockRef::from(&closer).shutdown(std::net::Shutdown::Both);
        });
        own
    };
    // Each answer goes out in one send; Nagle's algorithm would hold back the second
    // of two sends until the first is acknowledged. Set on the listening socket,
    // every accepted connection inherits it: no system call per connection.
    socket2::SockRef::from(&socket)
        .set_nodelay(true)
        .map_err(start_error(format!("ring {i}'s listener")))?;
    Ok(socket)
}

/// Spawns ring `i`'s thread, which sets the ring up and runs it, and blocks until the
/// thread says whether the setup worked. `Err` if the thread could not be spawned;
/// `Ok(Err(_))` if it was, but its ring could not be set up.
fn spawn_ring(
    i: u32,
    settings: Settings,
    group: &ThreadGroup,
) -> Result<std::io::Result<()>, ServerError> {
    // The ring must be set up on the thread that submits to it (it is made for a
    // single submitter), so the thread reports back whether that worked, once: a
    // channel with room for that one message.
    let (up, is_up) = crossbeam_channel::bounded::<std::io::Result<()>>(1);
    let me = group.clone();
    group
        .spawn(settings.name.clone(), None, move || {
            // Each send never blocks: the channel has room for its one message.
            match Ring::new(settings) {
                Ok(ring) => {
                    let _ = up.send(Ok(()));
                    ring.run(&me);
                }
                Err(e) => {
                    let _ = up.send(Err(e));
                }
            }
        })
        .map_err(start_error(format!("ring {i}")))?;
    // Blocks until the ring's thread has set its ring up (or failed to).
    Ok(is_up
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("its thread ended"))))
}

/// Raises the rings' flag and writes every ring's eventfd: each ring, woken by the read's
/// completion, sees the flag, stops accepting and finishes what its connections owe.
fn wake_all(stopping: &AtomicBool, wakes: &[Arc<Wake>]) {
    stopping.store(true, Relaxed);
    for wake in wakes {
        wake.wake();
    }
}

/// Blocks the main thread until shutdown begins. The shutdown hook stops the rings (see
/// [`wake_all`]), then wakes the main thread through a channel with room for the one
/// message.
fn wait_for_shutdown(stopping: Arc<AtomicBool>, wakes: Vec<Arc<Wake>>, ctx: &Context) {
    let (stopped, wait_for_stop) = crossbeam_channel::bounded::<()>(1);
    ctx.shutdown.on_trigger(move || {
        wake_all(&stopping, &wakes);
        let _ = stopped.try_send(());
    });
    // Blocks until shutdown begins.
    let _ = wait_for_stop.recv();
}
