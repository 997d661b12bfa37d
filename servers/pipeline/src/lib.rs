//! The pipeline: the lecture's *combined pipeline* of receivers, handlers and senders.
//!
//! Serving a request has three steps: receive it, compute the answer, send the answer. The
//! other servers do all three on one thread. The pipeline gives each step its own group of
//! threads and joins the groups with three bounded queues, like an assembly line:
//!
//! ```text
//!              ┌──────────────────────── a connection goes back for its next request ◀──────┐
//!              ▼                                                                            │
//!  main ─▶ [connections] ─▶ receiver-1..R ─▶ [requests] ─▶ handler-1..H ─▶ [responses] ─▶ sender-1..S
//!  accept   queue            read one         queue         compute the     queue          write the
//!                            request                        response                       response
//! ```
//!
//! * A **receiver** takes a connection from the connections queue and blocks until one whole
//!   request has arrived on it. It puts the connection and the request into the requests
//!   queue. (Bad input skips the handlers: the error response goes straight to the senders.)
//! * A **handler** takes a request and computes its response: this is where `/sleep` blocks
//!   and `/factor` burns CPU. It puts the connection and the response into the responses
//!   queue.
//! * A **sender** writes the response. If the connection stays open, the sender puts it back
//!   into the connections queue, where a receiver will wait for its next request.
//!
//! The connection itself travels with its request and response, so only one thread at a
//! time ever touches it, and a client's requests are answered in order even when it
//! pipelines them.
//!
//! Each group can be sized to its kind of work: `--handlers` to the CPU count for
//! CPU-bound routes, or much larger for routes that block. With `--handler-pool rayon` the
//! handler stage is a rayon thread pool sized to the CPU count, as the lecture suggests for
//! CPU-heavy handling (and its weakness shows on `/sleep`, which blocks pool threads).
//!
//! Queue capacities and what happens when they are full:
//!
//! * **requests** and **responses** hold `--queue` items each. When one is full, the stage
//!   feeding it blocks until the next stage takes an item: back-pressure travels upstream.
//! * **connections** has room for every connection the pipeline may hold
//!   (`--max-connections`, plus one stop signal per receiver), so putting a connection back
//!   never blocks. That matters: the three queues form a cycle, and if senders could block
//!   on a full connections queue while receivers block on a full requests queue, every stage
//!   could end up waiting for another forever. Instead the main thread takes a permit per
//!   connection before it accepts; with `--max-connections` connections inside, it stops
//!   accepting and new clients wait in the kernel's backlog.
//!
//! The weakness of this design is the receivers: a receiver waits on one connection at a
//! time, so `--receivers` idle keep-alive connections occupy every receiver until the
//! keep-alive timeout, exactly as idle clients occupy a pool's workers. `/stats` shows where
//! requests wait: each queue's depth and mean wait, and each group's busy threads.
//!
//! The machinery itself (the stages, the queues, the jobs and answers that travel through
//! them, the main thread's accept loop and the shutdown that empties the pipeline from front
//! to back) is shared with the process pipeline and combined delegation, so it lives in
//! `server_core::stages`. This crate chooses the handler stage: dedicated threads, or a
//! rayon pool.

use std::sync::Arc;

use server_core::permits::Permits;
pub use server_core::queue::{QueueReceiver, QueueSender};
use server_core::stages::{self, Answer, HandlerStage, Job, StageInfo, Stages};
use server_core::{Acceptor, Architecture, Context, ServerError, ThreadGroup};

/// How the handler stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HandlerPool {
    /// `--handlers` dedicated threads.
    #[default]
    Threads,
    /// A rayon thread pool sized to the CPU count, fed by one dispatcher thread.
    Rayon,
}

/// The pipeline's own flags: its handler stage, and the stages around it (shared with the
/// process pipeline, and flattened here: `--receivers`, `--senders`, `--queue`, ...).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, serde::Serialize)]
pub struct Pipeline {
    /// Handler threads: each computes one response at a time (ignored with --handler-pool rayon).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=65_536), value_name = "N")]
    pub handlers: u32,

    /// threads: --handlers dedicated threads; rayon: a rayon pool sized to the CPU count.
    #[arg(long, value_enum, default_value_t = HandlerPool::Threads)]
    pub handler_pool: HandlerPool,

    #[command(flatten)]
    #[serde(flatten)]
    pub stages: Stages,
}

impl Default for Pipeline {
    /// The command line's defaults: see `server_core::cli::defaults`.
    fn default() -> Self {
        server_core::cli::defaults()
    }
}

impl Architecture for Pipeline {
    const NAME: &'static str = "pipeline";
    const ABOUT: &'static str = "servelab's pipeline: receiver, handler and sender threads joined by three bounded queues (connections, requests, responses).";

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        ctx.set_arch_config(serde_json::to_value(&self).unwrap_or_default());
        match self.handler_pool {
            HandlerPool::Threads => {
                stages::run(&self.stages, stages::Threads(self.handlers), acceptor, ctx)
            }
            HandlerPool::Rayon => stages::run(&self.stages, Rayon, acceptor, ctx),
        }
    }
}

/// The handler stage of `--handler-pool rayon`: a rayon pool, fed by a dispatcher thread.
#[derive(Debug, Clone, Copy)]
struct Rayon;

impl HandlerStage for Rayon {
    fn start(
        self,
        from: QueueReceiver<Job>,
        to: QueueSender<Answer>,
        handlers: &ThreadGroup,
        ctx: &Arc<Context>,
    ) -> Result<StageInfo, ServerError> {
        let start_error = |what: &str| {
            let what = what.to_owned();
            move |source| ServerError::Start { what, source }
        };
        let pool = rayon_pool(handlers).map_err(start_error("rayon handler pool"))?;
        let dispatcher = ThreadGroup::new("dispatcher");
        let (group, ctx) = (handlers.clone(), Arc::clone(ctx));
        dispatcher
            .spawn("dispatcher".into(), None, move || {
                dispatch(pool, &from, &to, &group, &ctx)
            })
            .map_err(start_error("dispatcher"))?;
        Ok(StageInfo {
            workers: handlers.alive() as u64,
            worker: "handler",
            groups: vec![dispatcher],
            figures: None,
        })
    }
}

/// The rayon pool for `--handler-pool rayon`: one thread per CPU, started through the
/// handlers' group so that they are named, counted and joined like every other thread.
fn rayon_pool(handlers: &ThreadGroup) -> std::io::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("handler-{}", i + 1))
        .spawn_handler(|thread| {
            let name = thread.name().unwrap_or("handler").to_owned();
            handlers.spawn(name, thread.stack_size(), move || thread.run())
        })
        .build()
        .map_err(std::io::Error::other)
}

/// The dispatcher for `--handler-pool rayon`: moves requests from the requests queue into
/// the rayon pool. It keeps at most two requests per pool thread in the pool, so that excess
/// requests wait in the requests queue (where /stats can see them and back-pressure works)
/// instead of in rayon's unbounded internal queue.
fn dispatch(
    pool: rayon::ThreadPool,
    from: &QueueReceiver<Job>,
    to: &QueueSender<Answer>,
    group: &ThreadGroup,
    ctx: &Arc<Context>,
) {
    // Two slots per pool thread. Shared with the pool's tasks, each of which gives its slot
    // back when it ends.
    let slots = Permits::new(2 * pool.current_num_threads());
    // Blocks until a request is queued; `None` once every receiver is gone and it is drained.
    while let Some(job) = from.pop() {
        // Blocks while the pool already holds two requests per thread.
        let Some(slot) = slots.acquire() else { break };
        let (to, group, ctx) = (to.clone(), group.clone(), Arc::clone(ctx));
        pool.spawn(move || {
            let _slot = slot;
            let _busy = group.busy();
            // Sleeps or computes on this pool thread, as the route needs.
            let answer = job.work(&ctx);
            // Blocks while the responses queue is full, until a sender takes one.
            let _ = to.push(answer);
        });
    }
    // Dropping the pool lets its threads finish the jobs they hold, then exit.
    drop(pool);
}
