//! The event loop: one thread watching many sockets.
//!
//! Every other servelab server blocks a thread per connection it is serving: a thread
//! waits in `read` for its client's next request, in `sleep` for a slow route, in `write`
//! for a slow reader. The lecture stops there. This is the model that replaced it for
//! servers with many clients (the "C10K problem"; nginx, Node.js, Redis): a thread never
//! waits for one socket. It asks the kernel which of *all* its sockets are ready
//! (`epoll_wait`, through the `mio` crate) and does, for each, only what can be done
//! without waiting.
//!
//! ```text
//!                         ┌───────────────────── reactor-1 ─────────────────────┐
//!   clients ─▶ listener ──┤ poll: which sockets are ready? (the only wait)       │
//!             (shared)    │   listener ready → accept all, register each        │
//!                         │   connection ready → read, parse every request,     │
//!                         │        answer / set a timer / hand to a helper,     │
//!                         │        write all answers at once                    │
//!                         │   timer due → 408, idle close, a sleep's answer     │
//!                         └───────────── ▲ answers ─────────────────────────────┘
//!                                        │ (channel + waker)
//!                           helper-1..H: compute /factor, the loop never does
//! ```
//!
//! `--reactors N` loops run side by side (default: one per CPU), each a thread with its own
//! `poll` and its own connections; nothing is shared between them but the listening socket
//! and the helpers' queue. A connection belongs to the reactor that accepted it for its
//! whole life, so its state needs no lock.
//!
//! **How connections are spread over the reactors** (`--accept`). The default, `shared`,
//! registers the one listening socket with every reactor's `poll`. When a client connects,
//! every reactor is woken and tries to accept; one gets the connection, the others find
//! nothing (`WouldBlock`) and go back to waiting. With two reactors that wasted wake-up is
//! cheap, it needs no extra thread and no hand-off, and a reactor that is busy with work
//! simply accepts less, which balances the load by itself. The alternative, `reuseport`,
//! gives each reactor a listening socket of its own on the same port (`SO_REUSEPORT`), and
//! the kernel hashes each new connection to one of them: no wasted wake-ups, but a busy
//! reactor still gets its share of newcomers, and another program could bind the same port
//! unnoticed. `docs/architectures.md` has both measured. (The third way, one acceptor
//! thread handing sockets to the loops, costs a thread hand-off per connection: the cost
//! this design exists to avoid.)
//!
//! Each reactor counts the connections it accepted (`reactors[].accepted` in `/stats`), so
//! where newcomers landed can be read off: lab 26 stalls one reactor and shows that under
//! `shared` the free reactor accepts every newcomer, while under `reuseport` the kernel
//! keeps hashing about half of them to the stalled reactor's socket, where they wait past
//! their deadline. `--pin on` pins reactor N's thread to the Nth CPU the process may use
//! (see `pin.rs`); it places the threads, and changes nothing about where connections land.
//! (Linux can also steer a `reuseport` group by the CPU that received the connection's
//! packets, `SO_INCOMING_CPU`; servelab does not, since on loopback that CPU is simply the
//! client's, and a stalled reactor would still get its share.)
//!
//! **Routes that would block.** `/sleep/{ms}` becomes a timer: the connection waits, the
//! loop goes on. `/factor/{n}` is CPU work: it goes to a small pool of helper threads
//! (`--helpers`, the AMPED design of the Flash web server), which send the answer back. With
//! `--offload off` the loop computes it itself, and every other connection of that reactor
//! waits meanwhile: lab 12 shows the difference.
//!
//! **Timeouts without a thread per connection**: each reactor keeps its connections'
//! deadlines and its sleeping requests in one timer heap, and `poll` waits at most until the
//! nearest (see `timers.rs`). `--read-timeout` and `--keep-alive-timeout` mean exactly what
//! they mean for every other server: the connection state machine is the same.
//!
//! The price of the model: every route must be written not to block, and one slow
//! computation that stays on a loop stalls every connection on it.

mod pin;
mod reactor;
mod timers;

pub use pin::Pin;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use std::net::TcpListener;

use server_core::offload;
use server_core::queue::{self, QueueKind, QueueReceiver, QueueSender};
use server_core::stats::{Capacity, Figures};
use server_core::{Acceptor, Architecture, Context, ServerError, ThreadGroup};

use crate::reactor::Task;
use crate::reactor::{Compute, Reactor};

/// Where `/factor`'s computation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Offload {
    /// On the helper threads: the loop never computes.
    #[default]
    On,
    /// On the loop itself, blocking every connection of that reactor meanwhile.
    Off,
}

/// How new connections are spread over the reactors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accept {
    /// One listening socket, watched by every reactor; whichever accepts first wins.
    #[default]
    Shared,
    /// A listening socket per reactor on the same port (SO_REUSEPORT); the kernel picks.
    Reuseport,
}

/// The event loop's own flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, serde::Serialize)]
pub struct EventLoop {
    /// Event loops, each a thread with its own poll [default: the number of CPUs].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub reactors: Option<u32>,

    /// Where /factor is computed: on helper threads (on) or on the loop itself (off).
    #[arg(long, value_enum, default_value_t = Offload::On)]
    pub offload: Offload,

    /// Helper threads for CPU work [default: the number of CPUs].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub helpers: Option<u32>,

    /// Computations that may wait for a helper; beyond that a request gets 503 at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub offload_queue: u32,

    /// How new connections are spread over the reactors: one shared listening socket, or
    /// one per reactor with SO_REUSEPORT.
    #[arg(long, value_enum, default_value_t = Accept::Shared)]
    pub accept: Accept,

    /// Pin each reactor's thread to a CPU of its own (the CPUs this process may use, in
    /// turn: reactor N on the Nth). Where connections land does not change: see lab 26.
    #[arg(long, value_enum, default_value_t = Pin::Off)]
    pub pin: Pin,
}

impl Default for EventLoop {
    /// The command line's defaults: see `server_core::cli::defaults`.
    fn default() -> Self {
        server_core::cli::defaults()
    }
}

fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

impl Architecture for EventLoop {
    const NAME: &'static str = "event-loop";
    const ABOUT: &'static str = "servelab's event loop: a few threads, each watching many sockets with one poll; waits become timers and computations go to helper threads.";

    fn reuse_port(&self) -> bool {
        self.accept == Accept::Reuseport
    }

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        let settings = EventLoop {
            reactors: Some(self.reactors.unwrap_or_else(cpus)),
            helpers: Some(self.helpers.unwrap_or_else(cpus)),
            ..self
        };
        settings.publish_settings(&ctx);
        // The helpers and the queue that feeds them. The reactors only ever `try_push` into
        // it (see `server_core::offload`), so its capacity (--offload-queue) is how many
        // computations may wait; beyond it a request gets 503 at once.
        let (tasks_in, tasks_out) = queue::bounded(
            "offload",
            settings.offload_queue as usize,
            QueueKind::Crossbeam,
        );
        let offload_queue = tasks_in.stats();
        let helpers = settings.start_helpers(tasks_out)?;
        let started = settings.start_reactors(acceptor, tasks_in, &ctx)?;
        ctx.set_arch_figures({
            let (reactor_group, helper_group) = (started.group.clone(), helpers.clone());
            let figures = started.figures;
            move || Figures {
                threads: vec![reactor_group.snapshot(), helper_group.snapshot()],
                queues: vec![offload_queue.snapshot()],
                reactors: figures.iter().map(|(name, s)| s.snapshot(name)).collect(),
                ..Figures::default()
            }
        });
        // Every thread is up: in-process starters may go on.
        ctx.set_ready();
        wait_for_shutdown(started.stopping, started.wakers, &ctx);
        tracing::info!("shutting down: the reactors stop accepting and finish what they owe");
        let deadline = ctx.shutdown.deadline(ctx.args.shutdown_timeout);
        // Each join blocks until the group's threads have ended, or the deadline passes. The
        // helpers end when the last reactor has dropped its sender of their queue.
        let still_running = started.group.join(deadline) + helpers.join(deadline);
        if still_running > 0 {
            tracing::warn!(
                "{still_running} event-loop threads still busy after the shutdown timeout"
            );
        }
        Ok(())
    }
}

/// The error for a part of the server that could not be started.
fn start_error(what: String) -> impl FnOnce(std::io::Error) -> ServerError {
    move |source| ServerError::Start { what, source }
}

/// What starting the reactors leaves the main thread: their group, what shutdown needs to
/// stop them, and their figures for `/stats`.
struct Started {
    group: ThreadGroup,
    /// The flag every reactor looks at once woken (see [`wait_for_shutdown`]).
    stopping: Arc<AtomicBool>,
    /// One waker per reactor, to interrupt its `poll`.
    wakers: Vec<Arc<mio::Waker>>,
    figures: Vec<(String, Arc<reactor::ReactorStats>)>,
}

impl EventLoop {
    /// Tells `/stats` the settings in force (`--reactors` and `--helpers` resolved to
    /// numbers) and how many clients the event loop serves at once: no fixed number.
    fn publish_settings(&self, ctx: &Context) {
        ctx.set_arch_config(serde_json::to_value(self).unwrap_or_default());
        ctx.set_capacity(Capacity {
            concurrent: None,
            per_client: false,
            worker: "event loop".into(),
            idle_holds_worker: false,
            idle_holds_readers: None,
            admitted: None,
            rejects_beyond: false,
        });
    }

    /// Starts the helper threads (none with `--offload off`), each taking computations from
    /// the offload queue until it closes.
    fn start_helpers(&self, tasks: QueueReceiver<Task>) -> Result<ThreadGroup, ServerError> {
        let count = match self.offload {
            Offload::On => self.helpers.unwrap_or(1),
            Offload::Off => 0,
        };
        offload::start_helpers(count, &tasks)
    }

    /// Starts the reactors, each a thread with its own `poll` and the listening socket: the
    /// same one shared, or one of its own on the same port (`--accept reuseport`). Each
    /// holds a sender of the offload queue; when they have all stopped, it closes and the
    /// helpers stop too.
    fn start_reactors(
        &self,
        acceptor: Acceptor,
        tasks: QueueSender<Task>,
        ctx: &Arc<Context>,
    ) -> Result<Started, ServerError> {
        let listener = acceptor.into_listener();
        let reactors = self.reactors.unwrap_or(1);
        let cpus = pin::plan(self.pin, reactors).map_err(start_error("pinning".into()))?;
        let mut started = Started {
            group: ThreadGroup::new("reactor"),
            stopping: Arc::new(AtomicBool::new(false)),
            wakers: Vec::new(),
            figures: Vec::new(),
        };
        for (i, cpu) in (1..=reactors).zip(cpus) {
            let socket = self.listener_for(i, &listener, ctx)?;
            let compute = match self.offload {
                Offload::On => Compute::Offload(tasks.clone()),
                Offload::Off => Compute::Inline,
            };
            let name = format!("reactor-{i}");
            let reactor = Reactor::new(
                name.clone(),
                socket,
                Arc::clone(ctx),
                compute,
                Arc::clone(&started.stopping),
            )
            .map_err(start_error(format!("reactor {i}")))?;
            started.wakers.push(reactor.waker());
            started.figures.push((name.clone(), reactor.stats()));
            let group = started.group.clone();
            started
                .group
                .spawn(name, None, move || {
                    if let Some(cpu) = cpu {
                        reactor.pin_to(cpu);
                    }
                    reactor.run(&group);
                })
                .map_err(start_error(format!("reactor {i}")))?;
        }
        Ok(started)
    }

    /// The listening socket of reactor `i`: a clone of the shared one, or with `--accept
    /// reuseport` (from the second reactor on) a socket of its own bound to the same port.
    fn listener_for(
        &self,
        i: u32,
        listener: &TcpListener,
        ctx: &Context,
    ) -> Result<TcpListener, ServerError> {
        let failed = || start_error(format!("reactor {i}'s listener"));
        if self.accept == Accept::Shared || i == 1 {
            return listener.try_clone().map_err(failed());
        }
        let addr = listener
            .local_addr()
            .map_err(start_error("listener".into()))?;
        let own = server_core::listener::bind_with(addr, ctx.args.backlog, true)?;
        // Like the first listener, refuse newcomers the moment shutdown begins (shutting a
        // listening socket down also makes it refuse connections).
        let closer = own.try_clone().map_err(failed())?;
        ctx.shutdown.on_trigger(move || {
            let _ = socket2::SockRef::from(&closer).shutdown(std::net::Shutdown::Both);
        });
        Ok(own)
    }
}

/// Blocks the main thread until shutdown begins. The shutdown hook raises the reactors'
/// flag and wakes every reactor (each then stops accepting and finishes what its
/// connections owe), then wakes the main thread through a channel with room for the one
/// message.
fn wait_for_shutdown(stopping: Arc<AtomicBool>, wakers: Vec<Arc<mio::Waker>>, ctx: &Context) {
    let (stopped, wait_for_stop) = crossbeam_channel::bounded::<()>(1);
    ctx.shutdown.on_trigger(move || {
        stopping.store(true, Relaxed);
        for waker in &wakers {
            let _ = waker.wake();
        }
        let _ = stopped.try_send(());
    });
    // Blocks until the hook has run.
    let _ = wait_for_stop.recv();
}
