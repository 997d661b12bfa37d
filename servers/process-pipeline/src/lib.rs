//! The process pipeline: the lecture's "combining threading and multiprocessing".
//!
//! The pipeline (`servers/pipeline`) runs receivers, handlers and senders as threads of one
//! process. Here the receivers and senders stay threads of the server, but the handlers are
//! **processes** of their own, started by the server itself, one per CPU by default
//! (`--handler-processes`), as the lecture advises ("the number of processes usually not
//! exceeding the number of CPU cores"):
//!
//! ```text
//!                                                    ┌── handler-1 ═══ socket ═══ process handler-1
//!  main ─▶ [connections] ─▶ receiver-1..R ─▶ [requests] ─┼── handler-2 ═══ socket ═══ process handler-2   ─▶ [responses] ─▶ sender-1..S
//!  accept                                             └── ...           (one request at a time each)
//!         └─────────────────────────────── the server process ───────────────────────────────┘
//! ```
//!
//! Each process has a relay thread in the server (`handler-N`, see [`supervisor`]), which
//! takes the next request from the requests queue, writes it to the process over a Unix
//! socket, waits for the answer and hands it to the senders. The requests queue is thus the
//! shared front of the inter-process queue: a request waits there until a process is free.
//! What crosses the socket, and how it is framed, is in [`ipc`]; how a process is started
//! and what it may do, in [`child`].
//!
//! Why processes? The lecture's reason is Python's GIL: its threads take turns on one core,
//! so CPU-bound handlers only run in parallel as processes. Rust's threads already run in
//! parallel (lab 16 measures both), so what processes buy here is **isolation**: a handler
//! that crashes takes down its own process, not the server. The server notices (the
//! socket ends), answers the request that process held with an honest `500`, starts a new
//! process, and every other client carries on (lab 17). The price: every request and its
//! answer are copied through a socket, and each costs a hop to another process and back.
//!
//! `/stats` shows each process (`processes`: its pid, requests handled, restarts, and
//! whether it is busy), and the requests queue's depth is what waits for them. Shutdown
//! stops the processes with the server: each relay closes its socket, which tells its
//! process to exit, and kills it if it has not within a second. If the server itself dies
//! (even of SIGKILL), the kernel kills its processes, which asked for it when they started
//! (`PR_SET_PDEATHSIG`).

pub mod child;
pub mod ipc;
pub mod supervisor;

use std::sync::Arc;

use server_core::queue::{QueueReceiver, QueueSender};
use server_core::stages::{self, Answer, HandlerStage, Job, StageInfo, Stages};
use server_core::stats::Figures;
use server_core::{Acceptor, Architecture, Context, ServerError, ThreadGroup};

use crate::supervisor::{ProcessFigures, Relay, ShutdownSignal};

/// The process pipeline's own flags: its handler processes, and the stages around them
/// (shared with the pipeline, and flattened here: `--receivers`, `--senders`, `--queue`, ...).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, serde::Serialize)]
pub struct ProcessPipeline {
    /// Handler processes [default: the number of CPUs].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub handler_processes: Option<u32>,

    #[command(flatten)]
    #[serde(flatten)]
    pub stages: Stages,
}

impl Default for ProcessPipeline {
    /// The command line's defaults: see `server_core::cli::defaults`.
    fn default() -> Self {
        server_core::cli::defaults()
    }
}

impl ProcessPipeline {
    /// The handler processes to start: `--handler-processes`, or one per CPU.
    pub fn processes(&self) -> u32 {
        self.handler_processes
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
    }
}

impl Architecture for ProcessPipeline {
    const NAME: &'static str = "process-pipeline";
    const ABOUT: &'static str = "servelab's process pipeline: receivers and senders are threads of the server; the handlers are processes it starts, supervises and replaces, joined to it by Unix sockets.";

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        let mut config = serde_json::to_value(&self).unwrap_or_default();
        config["handler_processes"] = self.processes().into();
        ctx.set_arch_config(config);
        let handlers = Processes {
            count: self.processes(),
        };
        stages::run(&self.stages, handlers, acceptor, ctx)
    }
}

/// The handler stage: a relay thread and a handler process for each of `count`.
#[derive(Debug, Clone, Copy)]
struct Processes {
    count: u32,
}

impl HandlerStage for Processes {
    fn start(
        self,
        from: QueueReceiver<Job>,
        to: QueueSender<Answer>,
        handlers: &ThreadGroup,
        ctx: &Arc<Context>,
    ) -> Result<StageInfo, ServerError> {
        let figures: Vec<Arc<ProcessFigures>> = (1..=self.count as usize)
            .map(|i| Arc::new(ProcessFigures::new(i)))
            .collect();
        // One signal for every relay, raised when shutdown begins.
        let shutdown = ShutdownSignal::new(ctx).map_err(|source| ServerError::Start {
            what: "shutdown signal for the relays".into(),
            source,
        })?;
        for process in &figures {
            let i = process.index;
            let (from, to, group, ctx) =
                (from.clone(), to.clone(), handlers.clone(), Arc::clone(ctx));
            let (process, shutdown) = (Arc::clone(process), Arc::clone(&shutdown));
            // The relay starts its process on its own thread (the process is tied to that
            // thread's life), and reports back whether it could.
            let (started, result) = std::sync::mpsc::sync_channel(1);
            handlers
                .spawn(format!("handler-{i}"), None, move || {
                    match Relay::start(process, ctx.routes.clone()) {
                        Ok(relay) => {
                            let _ = started.send(Ok(()));
                            relay.run(&from, &to, &group, &ctx, &shutdown);
                        }
                        Err(e) => {
                            let _ = started.send(Err(e));
                        }
                    }
                })
                .map_err(|source| ServerError::Start {
                    what: format!("handler {i}"),
                    source,
                })?;
            // Blocks until the relay has forked its process (or failed to).
            let outcome = result
                .recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("the relay thread ended at once")));
            outcome.map_err(|source| ServerError::Start {
                what: format!("handler process {i}"),
                source,
            })?;
        }
        Ok(StageInfo {
            workers: u64::from(self.count),
            worker: "handler process",
            groups: Vec::new(),
            figures: Some(Box::new(move |f: &mut Figures| {
                f.processes = figures.iter().map(|p| p.snapshot()).collect();
            })),
        })
    }
}
