//! The pipeline machinery: stages of threads joined by bounded queues.
//!
//! Three servers cut serving a request into the same three steps and join the steps with
//! the same three queues: the pipeline (`servers/pipeline`, a fixed group of threads per
//! step), the process pipeline (`servers/process-pipeline`, handler processes in the
//! middle) and combined delegation (`servers/combined-delegation`, a thread started per
//! item of each step). What they share lives here, once:
//!
//! ```text
//!           ┌──────────────────── a connection goes back for its next request ◀────────────┐
//!           ▼                                                                              │
//!  main ─▶ [connections] ─▶ receive ─▶ [requests] ─▶ handle ─▶ [responses] ─▶ send ──────────┘
//!  accept   queue           one        queue         compute   queue          write
//!                           request    (Job)         (Answer)  (Answer)       the response
//! ```
//!
//! * [`Client`]: a connection inside the pipeline, with the permit that counts it. It moves
//!   from stage to stage, never shared, so one thread at a time touches it, and a client's
//!   requests are answered in order even when it pipelines them.
//! * [`Client::receive`], [`Job::work`] and [`Answer::send`]: the three steps, each on
//!   whichever thread calls it.
//! * [`Job`] and [`Answer`]: what the requests and the responses queues carry.
//! * [`receive`], [`handle`] and [`send`]: the bodies of a fixed stage's threads, each a loop
//!   over its queue; [`Threads`] is the handler stage made of such threads.
//! * [`HandlerStage`]: whatever turns jobs into answers (threads, a rayon pool, processes),
//!   and [`run`], which builds the whole pipeline around one.
//! * [`accept_and_drain`]: the main thread's loop (take a permit, accept, queue the
//!   connection) and, at shutdown, the wait for the connections inside to leave.
//! * [`Queues`] and [`Stages`]: the flags the three servers share, defined once and
//!   flattened into each server's own flags.
//!
//! The capacities, and what happens when a queue is full:
//!
//! * **requests** and **responses** hold `--queue` items each. When one is full, the stage
//!   feeding it blocks until the next stage takes an item: back-pressure travels upstream,
//!   to the receivers, and from them to the clients' sockets.
//! * **connections** has room for every connection that may be inside (`--max-connections`)
//!   plus one stop signal per receiver, so putting a connection back never blocks. That
//!   matters: the three queues form a cycle, and if a sender could block on a full
//!   connections queue while a receiver blocks on a full requests queue, every stage could
//!   end up waiting for another forever. Instead the main thread takes a permit per
//!   connection before it accepts; with `--max-connections` connections inside it stops
//!   accepting, and new clients wait in the kernel's backlog.
//!
//! Shutdown empties the pipeline from front to back: the main thread stops accepting and
//! waits (at most `--shutdown-timeout`) for the connections inside to be answered and to
//! leave, then puts one stop signal per receiver into the connections queue. Each stage
//! holds sending halves only of the queues *after* it, so when the receivers are gone the
//! requests queue closes, the handlers drain it and stop, the responses queue closes, and
//! the senders drain it and stop. Work for a client that has already left is not done at
//! shutdown (see [`Job::is_abandoned`]): nobody would read its answer, and the server
//! would only wait longer to stop.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Instant;

use protocol::{Request, Response, Status};

use crate::blocking::{BlockingConn, Exchange, Next};
use crate::context::Context;
use crate::listener::{Acceptor, ServerError};
use crate::permits::{Permit, Permits};
use crate::queue::{self, QueueKind, QueueReceiver, QueueSender, QueueStats};
use crate::stats::{Capacity, Figures};
use crate::threads::ThreadGroup;
use crate::work;

/// The flags of the queues, shared by every server built on these stages. Each server
/// flattens them into its own flags (`#[command(flatten)]`), and `/stats` shows them among
/// the server's own settings (`#[serde(flatten)]`), as if they were declared there.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, serde::Serialize)]
pub struct Queues {
    /// Capacity of the requests queue and of the responses queue.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub queue: u32,

    /// Most connections inside at once; past it, accepting pauses.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub max_connections: u32,

    /// The queues' implementation: crossbeam-channel, or the lecture's mutex and condition
    /// variable.
    #[arg(long, value_enum, default_value_t = QueueKind::Crossbeam)]
    pub queue_impl: QueueKind,
}

impl Default for Queues {
    /// The command line's defaults (see [`crate::cli::defaults`]).
    fn default() -> Self {
        crate::cli::defaults()
    }
}

/// The fixed stages around the handlers: the receivers, the senders, and the queues. The
/// pipeline and the process pipeline share them; each brings its own handler stage.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, serde::Serialize)]
pub struct Stages {
    /// Receiver threads: each waits for one request on one connection at a time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=65_536), value_name = "N")]
    pub receivers: u32,

    /// Sender threads: each writes one response at a time.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=65_536), value_name = "N")]
    pub senders: u32,

    #[command(flatten)]
    #[serde(flatten)]
    pub queues: Queues,
}

impl Default for Stages {
    /// The command line's defaults (see [`crate::cli::defaults`]).
    fn default() -> Self {
        crate::cli::defaults()
    }
}

/// A connection inside the pipeline, with the permit that counts it against
/// `--max-connections`. Dropping it closes the connection and returns the permit, which
/// lets the main thread accept one more client.
#[derive(Debug)]
pub struct Client {
    /// The connection: moved from stage to stage, never shared, so no lock guards it.
    conn: BlockingConn,
    /// Held, never read: it is returned when the client is dropped, wherever that is.
    _permit: Permit,
}

/// What a receiver found on a connection: see [`Client::receive`].
#[derive(Debug)]
pub enum Received {
    /// A request, for the handlers.
    Request(Job),
    /// Bad input: its error response needs no handler and goes straight to the senders.
    Reject(Answer),
    /// The connection ended (the client left, idled out, or the server stops): dropped.
    Closed,
}

impl Client {
    /// A connection the main thread has just accepted, with the permit it took for it.
    pub fn new(conn: BlockingConn, permit: Permit) -> Client {
        Client {
            conn,
            _permit: permit,
        }
    }

    /// The first step: reads the client's next request. Blocks until the request is
    /// complete, the client leaves, or one of the connection's timeouts passes.
    pub fn receive(mut self) -> Received {
        // The connection moves into what is returned: a job or an answer carries it on to
        // the next stage, and a closed one is dropped here.
        match self.conn.next_request() {
            Next::Request(request, exchange) => Received::Request(Job {
                client: self,
                request,
                exchange,
            }),
            Next::Reject(response, exchange) => Received::Reject(Answer {
                client: self,
                response,
                exchange,
            }),
            Next::Closed(why) => {
                tracing::debug!("conn #{} {} closed: {why:?}", self.conn.id, self.conn.peer);
                Received::Closed
            }
        }
    }

    /// Whether the client is still connected: a look at the socket that never waits. A
    /// client that half-closed (it sent its last request and shut its sending side) counts
    /// as gone, as everywhere in servelab: nothing tells it apart from one that left.
    pub fn is_there(&self) -> bool {
        !self.conn.peer_has_left()
    }
}

/// A request on its way to the handlers: the connection it came on, the request, and the
/// claim to answer it. A handler stage sees the request, and answers with [`Job::answer`]
/// (or computes the answer on its own thread with [`Job::work`]).
#[derive(Debug)]
pub struct Job {
    /// Travels with the request so that the handler can look at the socket (has the
    /// client gone?) and the sender can write the answer, without any shared table.
    client: Client,
    request: Request,
    /// Counts the request in flight until it is answered (or dropped at shutdown).
    exchange: Exchange,
}

impl Job {
    /// The request to handle.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Whether the client is still connected (a look at the socket that never waits).
    pub fn client_is_there(&self) -> bool {
        self.client.is_there()
    }

    /// Whether nobody waits for this job any more: the server is shutting down and the
    /// client has left. Such work is not started (or is stopped), so that shutdown does not
    /// wait for answers nobody will read. Before shutdown, the work of a client that left
    /// is still done, as it always was: the labs count such clients.
    pub fn is_abandoned(&self, ctx: &Context) -> bool {
        ctx.shutdown.is_triggered() && !self.client_is_there()
    }

    /// Whether shutdown shut the client's reading side: then a close seen on
    /// [`Job::client_socket`] may be the server's own doing, and does not mean the client
    /// left (see `Registration::read_shut_by_server`).
    pub fn client_read_shut_by_server(&self) -> bool {
        self.client.conn.read_shut_by_server()
    }

    /// The client's socket, for a stage that waits on it beside something else (the process
    /// pipeline watches it while a handler process computes). Borrowed: it stays open as
    /// long as the job lives.
    pub fn client_socket(&self) -> BorrowedFd<'_> {
        self.client.conn.socket()
    }

    /// The second step, on the calling thread: sleeps or computes as the route needs. A
    /// computation stops early if the client closes the connection, which travels with the
    /// job; at shutdown, so does a sleep (see [`work::answer_while`]).
    pub fn work(self, ctx: &Context) -> Answer {
        let response = work::answer_while(&self.request, ctx, &|| self.client_is_there());
        self.answer(response)
    }

    /// This job's response, ready for a sender.
    pub fn answer(self, response: Response) -> Answer {
        Answer {
            client: self.client,
            response,
            exchange: self.exchange,
        }
    }

    /// The answer for a job whose client has left (see [`Job::is_abandoned`]). It is
    /// written anyway, in case the client only half-closed its side, and is counted as a
    /// client that left, not as served.
    pub fn abandon(self) -> Answer {
        let response = Response::error(
            Status::ServiceUnavailable,
            "the client left while the server was stopping; its request was not handled",
        );
        self.answer(response)
    }
}

/// A response on its way to a sender, with the connection and the claim it answers.
#[derive(Debug)]
pub struct Answer {
    client: Client,
    response: Response,
    /// The claim this answers: the connection's machine puts the response in its place
    /// among the client's requests.
    exchange: Exchange,
}

impl Answer {
    /// The third step: writes the response. Blocks until the kernel has taken it (or the
    /// write timeout passes, for a client that does not read). Returns the connection if it
    /// stays open for another request; otherwise it is closed here.
    pub fn send(self) -> Option<Client> {
        let Answer {
            mut client,
            response,
            exchange,
        } = self;
        client.conn.send(exchange, &response).then_some(client)
    }
}

/// What travels through the connections queue: a connection waiting for its next request,
/// or `None`, which tells the receiver that takes it to stop (at shutdown). One `None` per
/// receiver (or per receiver manager) is pushed, so each one stops exactly once, after the
/// connections queued before it.
pub type ConnectionItem = Option<Client>;

/// Where a receiver puts what it found: requests for the handlers, and error responses for
/// the senders. Each stage holds sending halves only of the queues *after* it, so that when
/// a stage stops, the queue behind it closes and the next stage stops in turn.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// To the handlers; `--queue` items, and a full queue blocks the receiver.
    pub requests: QueueSender<Job>,
    /// Straight to the senders, for rejections; `--queue` items too.
    pub responses: QueueSender<Answer>,
}

impl Outputs {
    /// Puts what a receiver found into the queue it belongs to. Blocks while that queue is
    /// full, until the next stage takes an item. A closed connection goes nowhere.
    pub fn forward(&self, received: Received) {
        match received {
            Received::Request(job) => {
                let _ = self.requests.push(job);
            }
            Received::Reject(answer) => {
                let _ = self.responses.push(answer);
            }
            Received::Closed => {}
        }
    }
}

/// A receiver thread: reads one request at a time from connections waiting for one.
pub fn receive(from: &QueueReceiver<ConnectionItem>, to: &Outputs, group: &ThreadGroup) {
    // Blocks until a connection is queued; stops at a stop signal (`None` inside).
    while let Some(Some(client)) = from.pop() {
        let _busy = group.busy();
        // Blocks until the client's next request is complete, or it leaves, or times out;
        // then blocks while the queue it goes to is full.
        to.forward(client.receive());
    }
}

/// A handler thread: computes one response at a time.
pub fn handle(
    from: &QueueReceiver<Job>,
    to: &QueueSender<Answer>,
    group: &ThreadGroup,
    ctx: &Context,
) {
    // Blocks until a request is queued; `None` once every receiver is gone and it is drained.
    while let Some(job) = from.pop() {
        let _busy = group.busy();
        // Sleeps or computes on this thread, as the route needs.
        let answer = job.work(ctx);
        // Blocks while the responses queue is full, until a sender takes one.
        let _ = to.push(answer);
    }
}

/// A sender thread: writes one response at a time, and returns live connections to the
/// start of the pipeline.
pub fn send(from: &QueueReceiver<Answer>, to: &QueueSender<ConnectionItem>, group: &ThreadGroup) {
    // Blocks until a response is queued; `None` once every handler is gone and it is drained.
    while let Some(answer) = from.pop() {
        let _busy = group.busy();
        // Blocks until the kernel has taken the response.
        if let Some(client) = answer.send() {
            // Never blocks (see the module documentation). Fails only when the receivers
            // are gone at shutdown, and then dropping the client closes the connection.
            let _ = to.push(Some(client));
        }
    }
}

/// The handler stage: whatever turns jobs into answers. Threads ([`Threads`], or the
/// pipeline's rayon pool), or processes (the process pipeline).
pub trait HandlerStage {
    /// Starts the stage's threads, counted in `handlers`. They take jobs from `from` until
    /// it closes (every receiver is gone and it is drained), put answers into `to`, and
    /// then end. It returns once the stage can take jobs: a stage that cannot start (no
    /// thread, no process) returns the error, and the server does not start.
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

impl std::fmt::Debug for StageInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageInfo")
            .field("workers", &self.workers)
            .field("worker", &self.worker)
            .field("groups", &self.groups)
            .field("figures", &self.figures.as_ref().map(|_| "a function"))
            .finish()
    }
}

/// What fills in a handler stage's own figures for `/stats`.
pub type StageFigures = Box<dyn Fn(&mut Figures) + Send + Sync>;

/// The simplest handler stage: `n` threads, each running [`handle`].
#[derive(Debug, Clone, Copy)]
pub struct Threads(pub u32);

impl HandlerStage for Threads {
    fn start(
        self,
        from: QueueReceiver<Job>,
        to: QueueSender<Answer>,
        handlers: &ThreadGroup,
        ctx: &Arc<Context>,
    ) -> Result<StageInfo, ServerError> {
        // `handler-1..N`, each with its own clones of the two queues' halves.
        for i in 1..=self.0 {
            let (from, to, group, ctx) =
                (from.clone(), to.clone(), handlers.clone(), Arc::clone(ctx));
            handlers
                .spawn(format!("handler-{i}"), None, move || {
                    handle(&from, &to, &group, &ctx)
                })
                .map_err(start_error(format!("handler {i}")))?;
        }
        Ok(StageInfo {
            workers: u64::from(self.0),
            worker: "handler",
            groups: Vec::new(),
            figures: None,
        })
    }
}

/// The error for a thread (or anything else) that could not be started. It names what
/// failed (`receiver 3`), and becomes the one sentence the binary prints before it exits.
fn start_error(what: String) -> impl FnOnce(std::io::Error) -> ServerError {
    move |source| ServerError::Start { what, source }
}

/// The three queues, both halves of each. Whoever builds a pipeline hands clones of the
/// halves to its stages and drops the rest, so that each queue closes when the stage
/// before it stops.
#[derive(Debug)]
pub struct Belt {
    /// Connections waiting for their next request: room for every admitted connection
    /// plus the stop signals, so a push never blocks.
    pub connections: (QueueSender<ConnectionItem>, QueueReceiver<ConnectionItem>),
    /// Requests waiting for a handler: `--queue` items; a full queue blocks the receiver
    /// that pushes, which stops reading from clients (back-pressure).
    pub requests: (QueueSender<Job>, QueueReceiver<Job>),
    /// Answers waiting for a sender: `--queue` items; a full queue blocks the handler.
    pub responses: (QueueSender<Answer>, QueueReceiver<Answer>),
}

/// Opening the queues and the admission of a server built on these stages: the flags say
/// how large each is.
impl Queues {
    /// Creates the three queues. The connections queue has room for every connection
    /// admitted plus `stop_signals` (one per thread that takes from it), so that putting a
    /// connection back never blocks.
    pub fn open(&self, stop_signals: u32) -> Belt {
        let kind = self.queue_impl;
        let capacity = self.queue as usize;
        let admitted = self.max_connections as usize + stop_signals as usize;
        Belt {
            connections: queue::bounded("connections", admitted, kind),
            requests: queue::bounded("requests", capacity, kind),
            responses: queue::bounded("responses", capacity, kind),
        }
    }

    /// The semaphore that bounds the connections inside, closed at shutdown so that a main
    /// thread waiting for a permit wakes up. Shared by the main thread (which takes a permit
    /// per connection), every [`Client`] (which holds one) and the `/stats` function.
    pub fn admission(&self, ctx: &Context) -> Arc<Permits> {
        let permits = Permits::new(self.max_connections as usize);
        ctx.shutdown.on_trigger({
            let permits = Arc::clone(&permits);
            move || permits.close()
        });
        permits
    }
}

impl Belt {
    /// The three queues' figures, for `/stats`, in the order the connection travels. Each
    /// is shared with its queue; reading them takes no lock.
    pub fn stats(&self) -> [Arc<QueueStats>; 3] {
        [
            self.connections.0.stats(),
            self.requests.0.stats(),
            self.responses.0.stats(),
        ]
    }
}

/// The main thread's loop: takes a permit, accepts a client, queues its connection for the
/// receivers; until shutdown. Then waits, at most until the shutdown deadline, for the
/// connections inside to be answered and to leave. Returns that deadline, which bounds the
/// rest of the shutdown (joining the threads).
pub fn accept_and_drain(
    acceptor: &Acceptor,
    admission: &Arc<Permits>,
    connections: &QueueSender<ConnectionItem>,
    ctx: &Context,
) -> Instant {
    loop {
        // Blocks while --max-connections connections are inside, until one leaves; `None`
        // once shutdown begins (the permits are closed).
        let Some(permit) = admission.acquire() else {
            break;
        };
        // Blocks until the next client connects; `None` once shutdown begins.
        let Some(conn) = acceptor.accept() else { break };
        // Never blocks: the queue has room for every permitted connection.
        let _ = connections.push(Some(Client::new(conn, permit)));
    }
    // Shutdown. Idle connections were closed by the shutdown hook, and work whose client
    // has left is skipped; wait for the connections with a request in flight to be
    // answered (with `Connection: close`) and dropped.
    let deadline = ctx.shutdown.deadline(ctx.args.shutdown_timeout);
    tracing::info!(
        "shutting down: no longer accepting; {} connections inside",
        admission.in_use()
    );
    // Blocks until every permit is back (every connection closed), or the deadline.
    if !admission.wait_all_returned(deadline) {
        tracing::warn!(
            "{} connections still busy after the shutdown timeout",
            admission.in_use()
        );
    }
    deadline
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
    // One stop signal per receiver must fit into the connections queue beside every
    // admitted connection.
    let belt = stages.queues.open(stages.receivers);
    let admission = stages.queues.admission(&ctx);
    let groups = Groups::new();
    // The stages start front to back, each with the halves of the queues it needs. None of
    // them has anything to do before the main thread accepts, so the order matters only
    // when a thread cannot start: then the server stops before it accepts anyone.
    start_receivers(stages.receivers, &belt, &groups.receivers)?;
    let mut stage = handlers.start(
        belt.requests.1.clone(),
        belt.responses.0.clone(),
        &groups.handlers,
        &ctx,
    )?;
    publish(stages, &mut stage, &belt, &admission, &groups, &ctx);
    start_senders(stages.senders, &belt, &groups.senders)?;
    // The stages hold their own clones; the main thread keeps only the connections
    // sender, to feed the pipeline and, at the end, to send the stop signals.
    let connections = belt.connections.0;
    drop((belt.connections.1, belt.requests, belt.responses));

    // Blocks until shutdown, then (at most until the deadline) until the connections
    // inside have been answered and closed.
    let deadline = accept_and_drain(&acceptor, &admission, &connections, &ctx);

    // One stop signal per receiver. When the receivers are gone the requests queue
    // closes, the handlers drain it and stop, the responses queue closes, and the
    // senders drain it and stop: the pipeline empties from front to back.
    for _ in 0..stages.receivers {
        let _ = connections.push(None);
    }
    drop(connections);
    groups.join(&stage.groups, deadline);
    Ok(())
}

/// The thread groups of a pipeline, one per fixed stage. Each group names, counts and
/// joins its threads; `/stats` shows each group's threads alive and busy, which is where
/// a pipeline shows its bottleneck beside the queues' waits.
struct Groups {
    receivers: ThreadGroup,
    handlers: ThreadGroup,
    senders: ThreadGroup,
}

impl Groups {
    fn new() -> Groups {
        Groups {
            receivers: ThreadGroup::new("receiver"),
            handlers: ThreadGroup::new("handler"),
            senders: ThreadGroup::new("sender"),
        }
    }

    /// Waits for every thread to end, front to back, at most until `deadline`. The handler
    /// stage's own groups (a dispatcher) end when the requests queue closes, before the
    /// handlers they feed, so they are joined between the receivers and the handlers.
    fn join(&self, stage_groups: &[ThreadGroup], deadline: Instant) {
        // Each join blocks until the group's threads have ended, or the deadline passes.
        let still_running: usize = std::iter::once(&self.receivers)
            .chain(stage_groups)
            .chain([&self.handlers, &self.senders])
            .map(|group| group.join(deadline))
            .sum();
        if still_running > 0 {
            tracing::warn!(
                "{still_running} pipeline threads still busy after the shutdown timeout"
            );
        }
    }
}

/// Starts the receiver threads, each with the connections queue's receiving half and the
/// sending halves of the two queues after it.
fn start_receivers(n: u32, belt: &Belt, group: &ThreadGroup) -> Result<(), ServerError> {
    // Every receiver gets its own clones: the queues close only when all of them (and the
    // main thread's originals, dropped in `run`) are gone.
    for i in 1..=n {
        let to = Outputs {
            requests: belt.requests.0.clone(),
            responses: belt.responses.0.clone(),
        };
        let (from, me) = (belt.connections.1.clone(), group.clone());
        group
            .spawn(format!("receiver-{i}"), None, move || {
                receive(&from, &to, &me)
            })
            .map_err(start_error(format!("receiver {i}")))?;
    }
    Ok(())
}

/// Starts the sender threads, each with the responses queue's receiving half and the
/// connections queue's sending half (to put live connections back).
fn start_senders(n: u32, belt: &Belt, group: &ThreadGroup) -> Result<(), ServerError> {
    // A sender puts live connections back, so it holds a sending half of the connections
    // queue. That queue therefore cannot close while the senders live (they outlive the
    // receivers), which is why the receivers stop at the main thread's stop signals.
    for i in 1..=n {
        let (from, to, me) = (
            belt.responses.1.clone(),
            belt.connections.0.clone(),
            group.clone(),
        );
        group
            .spawn(format!("sender-{i}"), None, move || send(&from, &to, &me))
            .map_err(start_error(format!("sender {i}")))?;
    }
    Ok(())
}

/// Tells `/stats` how many clients the pipeline serves at once, and installs the function
/// that reports its threads, queues and admission (plus the handler stage's own figures,
/// which move into that function).
fn publish(
    stages: &Stages,
    stage: &mut StageInfo,
    belt: &Belt,
    admission: &Arc<Permits>,
    groups: &Groups,
    ctx: &Context,
) {
    // How many clients it serves at once is the handler stage's size; an idle keep-alive
    // client holds a receiver (not a handler), and at most --max-connections get in.
    ctx.set_capacity(Capacity {
        idle_holds_worker: false,
        idle_holds_readers: Some(u64::from(stages.receivers)),
        admitted: Some(u64::from(stages.queues.max_connections)),
        ..Capacity::workers(stage.workers, stage.worker)
    });
    let mut threads = vec![
        groups.receivers.clone(),
        groups.handlers.clone(),
        groups.senders.clone(),
    ];
    threads.extend(stage.groups.iter().cloned());
    let queues = belt.stats();
    let admission = Arc::clone(admission);
    // Moved into the `/stats` function, which owns everything it reads from here on.
    let extra = stage.figures.take();
    ctx.set_arch_figures(move || {
        let mut figures = Figures {
            threads: threads.iter().map(ThreadGroup::snapshot).collect(),
            queues: queues.iter().map(|q| q.snapshot()).collect(),
            limits: vec![admission.snapshot("connections")],
            ..Figures::default()
        };
        if let Some(extra) = &extra {
            extra(&mut figures);
        }
        figures
    });
}
