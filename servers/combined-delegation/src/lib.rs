//! Combined delegation: the lecture's four fixed threads, each manager starting workers on
//! demand.
//!
//! The pipeline splits serving a request into three steps (receive, handle, send) and gives
//! each step a *fixed* group of threads. Combined delegation keeps the three steps and their
//! queues, but fixes only four threads: the main thread, which accepts, and one *manager*
//! per step. A manager does no work itself: for every item that arrives in its queue it
//! starts a new worker thread (delegation), which does that one step for that one item and
//! ends.
//!
//! ```text
//!           ┌──────────────── the connection comes back for its next request ◀───────────────┐
//!           ▼                                                                                │
//!  main ─▶ [connections] ─▶ receiver-manager ─▶ [requests] ─▶ request-manager ─▶ [responses] ─▶ sender-manager
//!  accept                    │ spawns                           │ spawns                        │ spawns
//!                            ▼                                  ▼                               ▼
//!                       receiver-N: waits for            handler-N: computes            sender-N: writes the
//!                       one request on one               one response                   response, returns the
//!                       connection, then ends            (sleeps, factorises)           connection, then ends
//! ```
//!
//! So a burst of heavy requests gets a handler thread each at once, where the pipeline's
//! fixed handlers would take them a few at a time; the price is a thread started (tens of
//! microseconds) for every step of every request, three per request, and a thread count that
//! follows the load. `/stats` shows each group's threads started, alive and the peak.
//!
//! Bounds, so that a flood cannot start threads without limit:
//!
//! * `--max-workers` per step: a manager starts a worker only while fewer than that many of
//!   its workers are alive. At the limit it waits (blocks on a permit) until one ends, and
//!   the items wait in its queue meanwhile.
//! * **requests** and **responses** hold `--queue` items each; a worker that finds the next
//!   queue full waits until the next manager takes an item (back-pressure upstream).
//! * **connections** has room for every connection inside (`--max-connections`, plus the
//!   stop signal), so a sender putting a connection back never blocks: the three queues
//!   form a cycle, and a cycle of full queues could wait on itself forever. The main thread
//!   takes a permit per connection before it accepts; at the limit, clients wait in the
//!   kernel's backlog.
//!
//! Like the pipeline's receivers, a receiver waits on one connection at a time: an idle
//! keep-alive connection keeps its receiver thread (and that thread's stack) until the
//! client sends again or the keep-alive timeout passes.

use std::sync::Arc;

use protocol::{Request, Response};
use server_core::permits::{Permit, Permits};
use server_core::queue::{self, QueueKind, QueueReceiver, QueueSender};
use server_core::stats::{Capacity, Figures};
use server_core::{
    work, Acceptor, Architecture, BlockingConn, Context, Exchange, Next, ServerError, ThreadGroup,
};

/// Combined delegation's own flags.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct CombinedDelegation {
    /// Most worker threads alive at once for each step (receiving, handling, sending); at
    /// the limit, that step's manager waits for one to end.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=100_000), value_name = "N")]
    pub max_workers: u32,

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

impl Default for CombinedDelegation {
    fn default() -> Self {
        CombinedDelegation {
            max_workers: 1024,
            queue: 64,
            max_connections: 1024,
            queue_impl: QueueKind::Crossbeam,
        }
    }
}

/// A connection inside the server, with the permit that counts it against
/// `--max-connections`. Dropping it closes the connection and returns the permit.
struct Client {
    conn: BlockingConn,
    _permit: Permit,
}

/// A request on its way to a handler: its connection, the request, the claim to answer it.
type Job = (Client, Request, Exchange);

/// A response on its way to a sender, with its connection and the claim it answers.
type Answer = (Client, Response, Exchange);

/// What the connections queue carries: a connection waiting for its next request, or
/// `None`, which tells the receiver manager to stop (at shutdown).
type ConnectionItem = Option<Client>;

/// One step's manager and its workers: the group they count in, and the permits that bound
/// how many workers are alive.
#[derive(Clone)]
struct Step {
    workers: ThreadGroup,
    /// One permit per live worker of this step. Shared by the manager, which takes one
    /// before it starts a worker, and the workers, each of which returns its own when it ends.
    permits: Arc<Permits>,
}

impl Step {
    fn new(role: &'static str, max: u32) -> Step {
        Step {
            workers: ThreadGroup::new(role),
            permits: Permits::new(max as usize),
        }
    }

    /// Starts a worker called `{role}-{n}` that runs `work` once, holding a permit. Blocks
    /// while `--max-workers` of this step's workers are alive. Returns `false` when the
    /// server is shutting down (the permits are closed) and `work` was not started.
    fn delegate(&self, role: &str, work: impl FnOnce() + Send + 'static) -> bool {
        // Blocks until fewer than --max-workers workers of this step are alive.
        let Some(permit) = self.permits.acquire() else {
            return false;
        };
        let name = format!("{role}-{}", self.workers.snapshot().started + 1);
        let group = self.workers.clone();
        let started = self.workers.spawn(name, None, move || {
            let _permit = permit;
            let _busy = group.busy();
            work();
        });
        if let Err(e) = started {
            // The work (and the connection inside it) was dropped: the client sees a close.
            tracing::warn!("could not start a {role} thread: {e}");
        }
        true
    }
}

impl Architecture for CombinedDelegation {
    const NAME: &'static str = "combined-delegation";
    const ABOUT: &'static str = "servelab's combined delegation: main accepts; a receiver, a request and a sender manager each start a worker thread on demand for every item of their step.";

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        let kind = self.queue_impl;
        let capacity = self.queue as usize;
        let (connections_in, connections_out) =
            queue::bounded("connections", self.max_connections as usize + 1, kind);
        let (requests_in, requests_out) = queue::bounded("requests", capacity, kind);
        let (responses_in, responses_out) = queue::bounded("responses", capacity, kind);

        let managers = ThreadGroup::new("manager");
        let receiving = Step::new("receiver", self.max_workers);
        let handling = Step::new("handler", self.max_workers);
        let sending = Step::new("sender", self.max_workers);
        let permits = Permits::new(self.max_connections as usize);

        ctx.set_arch_config(serde_json::to_value(&self).unwrap_or_default());
        ctx.set_capacity(Capacity {
            per_client: true,
            idle_holds_worker: false,
            idle_holds_readers: Some(u64::from(self.max_workers)),
            admitted: Some(u64::from(self.max_connections)),
            ..Capacity::workers(u64::from(self.max_workers), "handler thread")
        });
        ctx.set_arch_figures({
            let steps = [receiving.clone(), handling.clone(), sending.clone()];
            let (managers, permits) = (managers.clone(), Arc::clone(&permits));
            let queues = [
                connections_in.stats(),
                requests_in.stats(),
                responses_in.stats(),
            ];
            move || {
                let mut threads = vec![managers.snapshot()];
                threads.extend(steps.iter().map(|s| s.workers.snapshot()));
                let mut limits = vec![permits.snapshot("connections")];
                limits.extend(steps.iter().map(|s| {
                    s.permits
                        .snapshot(&format!("{}s", s.workers.snapshot().role))
                }));
                Figures {
                    threads,
                    queues: queues.iter().map(|q| q.snapshot()).collect(),
                    limits,
                    ..Figures::default()
                }
            }
        });
        // At shutdown, a main thread or manager waiting for a permit must wake up too.
        ctx.shutdown.on_trigger({
            let permits = Arc::clone(&permits);
            move || permits.close()
        });

        let start_error = |what: &str| {
            let what = what.to_owned();
            move |source| ServerError::Start { what, source }
        };
        {
            let (from, to_requests, to_responses, step) = (
                connections_out,
                requests_in.clone(),
                responses_in.clone(),
                receiving.clone(),
            );
            managers
                .spawn("receiver-manager".into(), None, move || {
                    manage_receiving(&from, &to_requests, &to_responses, &step)
                })
                .map_err(start_error("receiver manager"))?;
        }
        {
            let (from, to, step, ctx) = (
                requests_out,
                responses_in.clone(),
                handling.clone(),
                Arc::clone(&ctx),
            );
            managers
                .spawn("request-manager".into(), None, move || {
                    manage_handling(&from, &to, &step, &ctx)
                })
                .map_err(start_error("request manager"))?;
        }
        {
            let (from, to, step) = (responses_out, connections_in.clone(), sending.clone());
            managers
                .spawn("sender-manager".into(), None, move || {
                    manage_sending(&from, &to, &step)
                })
                .map_err(start_error("sender manager"))?;
        }
        // The managers hold the queues they need; the main thread keeps only the
        // connections sender, to feed the server and, at the end, to send the stop signal.
        drop((requests_in, responses_in));

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
            "shutting down: no longer accepting; {} connections inside",
            permits.in_use()
        );
        if !permits.wait_all_returned(deadline) {
            tracing::warn!(
                "{} connections still busy after the shutdown timeout",
                permits.in_use()
            );
        }
        // The stop signal. The receiver manager ends, then (once its receivers have ended)
        // the requests queue closes and the request manager ends, then the sender manager:
        // the steps stop from front to back.
        let _ = connections_in.push(None);
        drop(connections_in);
        for step in [&receiving, &handling, &sending] {
            step.permits.close();
        }
        let still_running: usize = [
            managers,
            receiving.workers,
            handling.workers,
            sending.workers,
        ]
        .iter()
        .map(|group| group.join(deadline))
        .sum();
        if still_running > 0 {
            tracing::warn!("{still_running} threads still busy after the shutdown timeout");
        }
        Ok(())
    }
}

/// The receiver manager: a receiver thread for every connection that waits for a request.
fn manage_receiving(
    from: &QueueReceiver<ConnectionItem>,
    requests: &QueueSender<Job>,
    responses: &QueueSender<Answer>,
    step: &Step,
) {
    // Blocks until a connection is queued; stops at the stop signal (`None` inside).
    while let Some(Some(mut client)) = from.pop() {
        let (requests, responses) = (requests.clone(), responses.clone());
        let delegated = step.delegate("receiver", move || {
            // Blocks until the client's next request is complete, it leaves, or times out.
            match client.conn.next_request() {
                // Blocks while the requests queue is full, until the manager takes one.
                Next::Request(request, exchange) => {
                    let _ = requests.push((client, request, exchange));
                }
                // Bad input needs no handler: its error response goes straight to sending.
                Next::Reject(response, exchange) => {
                    let _ = responses.push((client, response, exchange));
                }
                Next::Closed(why) => {
                    tracing::debug!(
                        "conn #{} {} closed: {why:?}",
                        client.conn.id,
                        client.conn.peer
                    );
                }
            }
        });
        if !delegated {
            break;
        }
    }
}

/// The request manager: a handler thread for every request.
fn manage_handling(
    from: &QueueReceiver<Job>,
    to: &QueueSender<Answer>,
    step: &Step,
    ctx: &Arc<Context>,
) {
    // Blocks until a request is queued; `None` once every receiver is gone and it is drained.
    while let Some((client, request, exchange)) = from.pop() {
        let (to, ctx) = (to.clone(), Arc::clone(ctx));
        let delegated = step.delegate("handler", move || {
            // Sleeps or computes on this handler thread, as the route needs; a computation
            // stops early if the client closes the connection, which travels with the job.
            let response = work::answer_while(&request, &ctx, &|| !client.conn.peer_has_left());
            // Blocks while the responses queue is full, until the sender manager takes one.
            let _ = to.push((client, response, exchange));
        });
        if !delegated {
            break;
        }
    }
}

/// The sender manager: a sender thread for every response.
fn manage_sending(from: &QueueReceiver<Answer>, to: &QueueSender<ConnectionItem>, step: &Step) {
    // Blocks until a response is queued; `None` once every handler is gone and it is drained.
    while let Some((mut client, response, exchange)) = from.pop() {
        let to = to.clone();
        let delegated = step.delegate("sender", move || {
            // Blocks until the kernel has taken the response.
            if client.conn.send(exchange, &response) {
                // Never blocks (see the module documentation). Fails only when the
                // receiver manager is gone at shutdown, and then dropping the client closes
                // the connection.
                let _ = to.push(Some(client));
            }
        });
        if !delegated {
            break;
        }
    }
}
