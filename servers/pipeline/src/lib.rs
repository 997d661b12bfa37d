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

use std::sync::Arc;

use protocol::{Request, Response};
use server_core::permits::{Permit, Permits};
use server_core::queue::{self, QueueKind};
pub use server_core::queue::{QueueReceiver, QueueSender};
use server_core::stats::{Capacity, Figures};
use server_core::{
    work, Acceptor, Architecture, BlockingConn, Context, Exchange, Next, ServerError, ThreadGroup,
};

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

/// The pipeline's own flags.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct Pipeline {
    /// Receiver threads: each waits for one request on one connection at a time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=65_536), value_name = "N")]
    pub receivers: u32,

    /// Handler threads: each computes one response at a time (ignored with --handler-pool rayon).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=65_536), value_name = "N")]
    pub handlers: u32,

    /// Sender threads: each writes one response at a time.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=65_536), value_name = "N")]
    pub senders: u32,

    /// Capacity of the requests queue and of the responses queue.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub queue: u32,

    /// Most connections inside the pipeline at once; past it, accepting pauses.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub max_connections: u32,

    /// threads: --handlers dedicated threads; rayon: a rayon pool sized to the CPU count.
    #[arg(long, value_enum, default_value_t = HandlerPool::Threads)]
    pub handler_pool: HandlerPool,

    /// The queues' implementation: crossbeam-channel, or the lecture's mutex and condition
    /// variable.
    #[arg(long, value_enum, default_value_t = QueueKind::Crossbeam)]
    pub queue_impl: QueueKind,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            receivers: 4,
            handlers: 4,
            senders: 2,
            queue: 64,
            max_connections: 1024,
            handler_pool: HandlerPool::Threads,
            queue_impl: QueueKind::Crossbeam,
        }
    }
}

impl Pipeline {
    /// The stages around the handlers, as this pipeline's flags set them.
    pub fn stages(&self) -> Stages {
        Stages {
            receivers: self.receivers,
            senders: self.senders,
            queue: self.queue,
            max_connections: self.max_connections,
            queue_impl: self.queue_impl,
        }
    }
}

/// The stages around the handlers: the receivers, the senders and the three queues. The
/// process pipeline (`servers/process-pipeline`) has the same ones, with handler
/// processes in the middle.
#[derive(Debug, Clone)]
pub struct Stages {
    pub receivers: u32,
    pub senders: u32,
    /// The capacity of the requests and responses queues.
    pub queue: u32,
    pub max_connections: u32,
    pub queue_impl: QueueKind,
}

/// A connection inside the pipeline, with the permit that counts it against
/// `--max-connections`. Dropping it closes the connection and returns the permit.
struct Client {
    conn: BlockingConn,
    _permit: Permit,
}

/// A request on its way to the handlers: the connection it came on, the request, and the
/// claim to answer it. A handler stage sees only the request, and answers with
/// [`Job::answer`].
pub struct Job {
    client: Client,
    request: Request,
    exchange: Exchange,
}

impl Job {
    /// The request to handle.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Whether the client is still connected (a look at the socket that never waits).
    fn client_is_there(&self) -> bool {
        !self.client.conn.peer_has_left()
    }

    /// The client's socket, for a stage that waits on it beside something else (the process
    /// pipeline watches it while a handler process computes).
    pub fn client_socket(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd as _;
        self.client.conn.as_raw_fd()
    }

    /// This job's response, ready for a sender.
    pub fn answer(self, response: Response) -> Answer {
        Answer {
            client: self.client,
            response,
            exchange: self.exchange,
        }
    }
}

/// A response on its way to a sender, with the connection and the claim it answers.
pub struct Answer {
    client: Client,
    response: Response,
    exchange: Exchange,
}

/// The handler stage: whatever turns jobs into answers. Threads (the pipeline's own, or a
/// rayon pool), or processes (the process pipeline).
pub trait HandlerStage {
    /// Starts the stage's threads, counted in `handlers`. They take jobs from `from` until
    /// it closes (every receiver is gone and it is drained), put answers into `to`, and
    /// then end.
    fn start(
        self,
        from: QueueReceiver<Job>,
        to: QueueSender<Answer>,
        handlers: &ThreadGroup,
        ctx: &Arc<Context>,
    ) -> Result<StageInfo, ServerError>;
}

/// What a handler stage says about itself once it has started.
pub struct StageInfo {
    /// How many requests it works on at once.
    pub workers: u64,
    /// What works on one, as a noun (`handler`, `handler process`).
    pub worker: &'static str,
    /// Thread groups of the stage's own besides the handlers (the rayon pool's
    /// dispatcher): shown in `/stats` and joined at shutdown with the others.
    pub groups: Vec<ThreadGroup>,
    /// Figures the stage adds to `/stats`, beside the pipeline's own.
    pub figures: Option<StageFigures>,
}

/// What fills in a handler stage's own figures for `/stats`.
pub type StageFigures = Box<dyn Fn(&mut Figures) + Send + Sync>;

/// What travels through the connections queue: a connection waiting for its next request,
/// or `None`, which tells the receiver that takes it to stop (at shutdown).
type ConnectionItem = Option<Client>;

/// Where a receiver puts its results: requests for the handlers, and error responses for
/// the senders. Each stage holds sending halves only of the queues *after* it, so that when
/// a stage stops, the queue behind it closes and the next stage stops in turn.
#[derive(Clone)]
struct ReceiverOutputs {
    requests: QueueSender<Job>,
    responses: QueueSender<Answer>,
}

/// The pipeline's own handler stages.
enum Handlers {
    /// `--handlers` dedicated threads.
    Threads(u32),
    /// A rayon pool, fed by a dispatcher thread.
    Rayon,
}

impl HandlerStage for Handlers {
    fn start(
        self,
        from: QueueReceiver<Job>,
        to: QueueSender<Answer>,
        handlers: &ThreadGroup,
        ctx: &Arc<Context>,
    ) -> Result<StageInfo, ServerError> {
        let start_error = |what: String| move |source| ServerError::Start { what, source };
        match self {
            Handlers::Threads(n) => {
                for i in 1..=n {
                    let (from, to, group, ctx) =
                        (from.clone(), to.clone(), handlers.clone(), Arc::clone(ctx));
                    handlers
                        .spawn(format!("handler-{i}"), None, move || {
                            handle(&from, &to, &group, &ctx)
                        })
                        .map_err(start_error(format!("handler {i}")))?;
                }
                Ok(StageInfo {
                    workers: u64::from(n),
                    worker: "handler",
                    groups: Vec::new(),
                    figures: None,
                })
            }
            Handlers::Rayon => {
                let pool =
                    rayon_pool(handlers).map_err(start_error("rayon handler pool".into()))?;
                let dispatcher = ThreadGroup::new("dispatcher");
                let (group, ctx) = (handlers.clone(), Arc::clone(ctx));
                dispatcher
                    .spawn("dispatcher".into(), None, move || {
                        dispatch(pool, &from, &to, &group, &ctx)
                    })
                    .map_err(start_error("dispatcher".into()))?;
                Ok(StageInfo {
                    workers: handlers.alive() as u64,
                    worker: "handler",
                    groups: vec![dispatcher],
                    figures: None,
                })
            }
        }
    }
}

impl Architecture for Pipeline {
    const NAME: &'static str = "pipeline";
    const ABOUT: &'static str = "servelab's pipeline: receiver, handler and sender threads joined by three bounded queues (connections, requests, responses).";

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        ctx.set_arch_config(serde_json::to_value(&self).unwrap_or_default());
        let handlers = match self.handler_pool {
            HandlerPool::Threads => Handlers::Threads(self.handlers),
            HandlerPool::Rayon => Handlers::Rayon,
        };
        run(&self.stages(), handlers, acceptor, ctx)
    }
}

/// Runs a pipeline of `stages` around `handlers` until shutdown: starts the receivers, the
/// handler stage and the senders, accepts clients into the connections queue, and at
/// shutdown empties the pipeline from front to back. The caller has set the
/// architecture's configuration in `ctx`.
pub fn run(
    stages: &Stages,
    handlers: impl HandlerStage,
    acceptor: Acceptor,
    ctx: Arc<Context>,
) -> Result<(), ServerError> {
    let kind = stages.queue_impl;
    let capacity = stages.queue as usize;
    let (connections_in, connections_out) = queue::bounded(
        "connections",
        stages.max_connections as usize + stages.receivers as usize,
        kind,
    );
    let (requests_in, requests_out) = queue::bounded("requests", capacity, kind);
    let (responses_in, responses_out) = queue::bounded("responses", capacity, kind);

    let receivers = ThreadGroup::new("receiver");
    let handler_group = ThreadGroup::new("handler");
    let senders = ThreadGroup::new("sender");
    let permits = Permits::new(stages.max_connections as usize);

    ctx.shutdown.on_trigger({
        let permits = Arc::clone(&permits);
        move || permits.close()
    });

    let start_error = |what: String| move |source| ServerError::Start { what, source };

    for i in 1..=stages.receivers {
        let to = ReceiverOutputs {
            requests: requests_in.clone(),
            responses: responses_in.clone(),
        };
        let (from, group) = (connections_out.clone(), receivers.clone());
        receivers
            .spawn(format!("receiver-{i}"), None, move || {
                receive(&from, &to, &group)
            })
            .map_err(start_error(format!("receiver {i}")))?;
    }
    let stage = handlers.start(
        requests_out.clone(),
        responses_in.clone(),
        &handler_group,
        &ctx,
    )?;
    ctx.set_capacity(Capacity {
        idle_holds_worker: false,
        idle_holds_readers: Some(u64::from(stages.receivers)),
        admitted: Some(u64::from(stages.max_connections)),
        ..Capacity::workers(stage.workers, stage.worker)
    });
    let mut groups = vec![receivers.clone(), handler_group.clone(), senders.clone()];
    groups.extend(stage.groups.iter().cloned());
    ctx.set_arch_figures({
        let groups = groups.clone();
        let queues = [
            connections_in.stats(),
            requests_in.stats(),
            responses_in.stats(),
        ];
        let permits = Arc::clone(&permits);
        let extra = stage.figures;
        move || {
            let mut figures = Figures {
                threads: groups.iter().map(ThreadGroup::snapshot).collect(),
                queues: queues.iter().map(|q| q.snapshot()).collect(),
                limits: vec![permits.snapshot("connections")],
                ..Figures::default()
            };
            if let Some(extra) = &extra {
                extra(&mut figures);
            }
            figures
        }
    });
    for i in 1..=stages.senders {
        let (from, to, group) = (
            responses_out.clone(),
            connections_in.clone(),
            senders.clone(),
        );
        senders
            .spawn(format!("sender-{i}"), None, move || {
                send(&from, &to, &group)
            })
            .map_err(start_error(format!("sender {i}")))?;
    }
    // The stages hold their own clones; the main thread keeps only the connections
    // sender, to feed the pipeline and, at the end, to send the stop signals.
    drop((
        connections_out,
        requests_in,
        requests_out,
        responses_in,
        responses_out,
    ));

    loop {
        // Blocks while --max-connections connections are inside, until one leaves.
        let Some(permit) = permits.acquire() else {
            break;
        };
        // Blocks until the next client connects; `None` once shutdown begins.
        let Some(conn) = acceptor.accept() else { break };
        // Never blocks: the queue has room for every permitted connection.
        let _ = connections_in.push(Some(Client {
            conn,
            _permit: permit,
        }));
    }

    // Shutdown. Idle connections were closed by the shutdown hook; wait for the ones
    // with a request in flight to be answered (with `Connection: close`) and dropped.
    let deadline = ctx.shutdown.deadline(ctx.args.shutdown_timeout);
    tracing::info!(
        "shutting down: no longer accepting; {} connections in the pipeline",
        permits.in_use()
    );
    if !permits.wait_all_returned(deadline) {
        tracing::warn!(
            "{} connections still busy after the shutdown timeout",
            permits.in_use()
        );
    }
    // One stop signal per receiver. When the receivers are gone the requests queue
    // closes, the handlers drain it and stop, the responses queue closes, and the
    // senders drain it and stop: the pipeline empties from front to back.
    for _ in 0..stages.receivers {
        let _ = connections_in.push(None);
    }
    drop(connections_in);
    // The stage's own groups (a dispatcher) end when the requests queue closes, before
    // the handlers they feed.
    let still_running: usize = [receivers]
        .iter()
        .chain(&stage.groups)
        .chain([&handler_group, &senders])
        .map(|group| group.join(deadline))
        .sum();
    if still_running > 0 {
        tracing::warn!("{still_running} pipeline threads still busy after the shutdown timeout");
    }
    Ok(())
}

/// A receiver: reads one request at a time from connections that are waiting for one.
fn receive(from: &QueueReceiver<ConnectionItem>, to: &ReceiverOutputs, group: &ThreadGroup) {
    // Blocks until a connection is queued; stops at a stop signal (`None` inside).
    while let Some(Some(mut client)) = from.pop() {
        let _busy = group.busy();
        // Blocks until the client's next request is complete, or it leaves, or times out.
        match client.conn.next_request() {
            // Blocks while the requests queue is full, until a handler takes one.
            Next::Request(request, exchange) => {
                let _ = to.requests.push(Job {
                    client,
                    request,
                    exchange,
                });
            }
            // Bad input needs no handler: its error response goes straight to a sender.
            Next::Reject(response, exchange) => {
                let _ = to.responses.push(Answer {
                    client,
                    response,
                    exchange,
                });
            }
            Next::Closed(why) => {
                tracing::debug!(
                    "conn #{} {} closed: {why:?}",
                    client.conn.id,
                    client.conn.peer
                );
            }
        }
    }
}

/// A handler thread: computes one response at a time.
fn handle(from: &QueueReceiver<Job>, to: &QueueSender<Answer>, group: &ThreadGroup, ctx: &Context) {
    // Blocks until a request is queued; `None` once every receiver is gone and it is drained.
    while let Some(job) = from.pop() {
        let _busy = group.busy();
        // Sleeps or computes on this handler thread, as the route needs; a computation
        // stops early if the client closes the connection, which travels with the job.
        let response = work::answer_while(job.request(), ctx, &|| job.client_is_there());
        // Blocks while the responses queue is full, until a sender takes one.
        let _ = to.push(job.answer(response));
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
    let slots = Permits::new(2 * pool.current_num_threads());
    // Blocks until a request is queued; `None` once every receiver is gone and it is drained.
    while let Some(job) = from.pop() {
        // Blocks while the pool already holds two requests per thread.
        let Some(slot) = slots.acquire() else { break };
        let (to, group, ctx) = (to.clone(), group.clone(), Arc::clone(ctx));
        pool.spawn(move || {
            let _slot = slot;
            let _busy = group.busy();
            let response = work::answer_while(job.request(), &ctx, &|| job.client_is_there());
            // Blocks while the responses queue is full, until a sender takes one.
            let _ = to.push(job.answer(response));
        });
    }
    // Dropping the pool lets its threads finish the jobs they hold, then exit.
    drop(pool);
}

/// A sender: writes one response at a time, and returns live connections to the start.
fn send(from: &QueueReceiver<Answer>, to: &QueueSender<ConnectionItem>, group: &ThreadGroup) {
    // Blocks until a response is queued; `None` once every handler is gone and it is drained.
    while let Some(Answer {
        mut client,
        response,
        exchange,
    }) = from.pop()
    {
        let _busy = group.busy();
        // Blocks until the kernel has taken the response.
        if client.conn.send(exchange, &response) {
            // Never blocks (see the module documentation). Fails only when the receivers
            // are gone at shutdown, and then dropping the client closes the connection.
            let _ = to.push(Some(client));
        }
    }
}
