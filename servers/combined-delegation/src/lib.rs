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
//!
//! The steps themselves, the jobs and answers that travel between them, the queues and the
//! main thread's accept loop are the pipeline's (`server_core::stages`); what is this
//! crate's own is the managers, which start a worker per item instead of keeping a fixed
//! group of threads per step.

use std::sync::Arc;

use server_core::permits::Permits;
use server_core::queue::{QueueReceiver, QueueSender};
use server_core::stages::{self, Answer, Belt, ConnectionItem, Job, Outputs, Queues};
use server_core::stats::{Capacity, Figures};
use server_core::{Acceptor, Architecture, Context, ServerError, ThreadGroup};

/// Combined delegation's own flags: the bound on each step's workers, and the queues
/// (shared with the pipelines, and flattened here: `--queue`, `--max-connections`,
/// `--queue-impl`).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, serde::Serialize)]
pub struct CombinedDelegation {
    /// Most worker threads alive at once for each step (receiving, handling, sending); at
    /// the limit, that step's manager waits for one to end.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=100_000), value_name = "N")]
    pub max_workers: u32,

    #[command(flatten)]
    #[serde(flatten)]
    pub queues: Queues,
}

impl Default for CombinedDelegation {
    /// The command line's defaults: see `server_core::cli::defaults`.
    fn default() -> Self {
        server_core::cli::defaults()
    }
}

/// One step's manager and its workers: the group they count in, and the permits that bound
/// how many workers are alive.
#[derive(Debug, Clone)]
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

/// The server's threads: the three managers in one group, and each step's workers.
#[derive(Debug, Clone)]
struct Steps {
    managers: ThreadGroup,
    receiving: Step,
    handling: Step,
    sending: Step,
}

impl Steps {
    fn new(max_workers: u32) -> Steps {
        Steps {
            managers: ThreadGroup::new("manager"),
            receiving: Step::new("receiver", max_workers),
            handling: Step::new("handler", max_workers),
            sending: Step::new("sender", max_workers),
        }
    }

    /// Starts the three managers, each with the receiving half of its queue and the sending
    /// halves of the queues after it. Consumes the belt: the main thread keeps only the
    /// connections sender, which it returns.
    fn start_managers(
        &self,
        belt: Belt,
        ctx: &Arc<Context>,
    ) -> Result<QueueSender<ConnectionItem>, ServerError> {
        let start_error = |what: &str| {
            let what = what.to_owned();
            move |source| ServerError::Start { what, source }
        };
        let Belt {
            connections: (connections_in, connections_out),
            requests: (requests_in, requests_out),
            responses: (responses_in, responses_out),
        } = belt;
        let (to, step) = (
            Outputs {
                requests: requests_in,
                responses: responses_in.clone(),
            },
            self.receiving.clone(),
        );
        self.managers
            .spawn("receiver-manager".into(), None, move || {
                manage_receiving(&connections_out, &to, &step)
            })
            .map_err(start_error("receiver manager"))?;
        let (step, ctx) = (self.handling.clone(), Arc::clone(ctx));
        self.managers
            .spawn("request-manager".into(), None, move || {
                manage_handling(&requests_out, &responses_in, &step, &ctx)
            })
            .map_err(start_error("request manager"))?;
        let (to, step) = (connections_in.clone(), self.sending.clone());
        self.managers
            .spawn("sender-manager".into(), None, move || {
                manage_sending(&responses_out, &to, &step)
            })
            .map_err(start_error("sender manager"))?;
        Ok(connections_in)
    }

    /// Waits for every thread to end, at most until `deadline`: first the managers, then
    /// each step's workers. Closing the steps' permits first means a manager waiting for a
    /// free worker wakes up (and stops) instead of starting one more.
    fn join(self, deadline: std::time::Instant) {
        for step in [&self.receiving, &self.handling, &self.sending] {
            step.permits.close();
        }
        // Each join blocks until the group's threads have ended, or the deadline passes.
        let still_running: usize = [
            self.managers,
            self.receiving.workers,
            self.handling.workers,
            self.sending.workers,
        ]
        .iter()
        .map(|group| group.join(deadline))
        .sum();
        if still_running > 0 {
            tracing::warn!("{still_running} threads still busy after the shutdown timeout");
        }
    }
}

impl Architecture for CombinedDelegation {
    const NAME: &'static str = "combined-delegation";
    const ABOUT: &'static str = "servelab's combined delegation: main accepts; a receiver, a request and a sender manager each start a worker thread on demand for every item of their step.";

    fn serve(self, acceptor: Acceptor, ctx: Arc<Context>) -> Result<(), ServerError> {
        // One stop signal, for the receiver manager, must fit beside every admitted
        // connection in the connections queue.
        let belt = self.queues.open(1);
        let admission = self.queues.admission(&ctx);
        let steps = Steps::new(self.max_workers);
        self.publish(&steps, &belt, &admission, &ctx);
        let connections = steps.start_managers(belt, &ctx)?;

        let deadline = stages::accept_and_drain(&acceptor, &admission, &connections, &ctx);

        // The stop signal. The receiver manager ends, then (once its receivers have ended)
        // the requests queue closes and the request manager ends, then the sender manager:
        // the steps stop from front to back.
        let _ = connections.push(None);
        drop(connections);
        steps.join(deadline);
        Ok(())
    }
}

impl CombinedDelegation {
    /// Tells `/stats` this server's settings and capacity, and installs the function that
    /// reports its threads, queues and limits.
    fn publish(&self, steps: &Steps, belt: &Belt, admission: &Arc<Permits>, ctx: &Context) {
        ctx.set_arch_config(serde_json::to_value(self).unwrap_or_default());
        ctx.set_capacity(Capacity {
            per_client: true,
            idle_holds_worker: false,
            idle_holds_readers: Some(u64::from(self.max_workers)),
            admitted: Some(u64::from(self.queues.max_connections)),
            ..Capacity::workers(u64::from(self.max_workers), "handler thread")
        });
        let steps = steps.clone();
        let admission = Arc::clone(admission);
        let queues = belt.stats();
        ctx.set_arch_figures(move || {
            let each = [&steps.receiving, &steps.handling, &steps.sending];
            let mut threads = vec![steps.managers.snapshot()];
            threads.extend(each.iter().map(|s| s.workers.snapshot()));
            let mut limits = vec![admission.snapshot("connections")];
            limits.extend(each.iter().map(|s| {
                s.permits
                    .snapshot(&format!("{}s", s.workers.snapshot().role))
            }));
            Figures {
                threads,
                queues: queues.iter().map(|q| q.snapshot()).collect(),
                limits,
                ..Figures::default()
            }
        });
    }
}

/// The receiver manager: a receiver thread for every connection that waits for a request.
fn manage_receiving(from: &QueueReceiver<ConnectionItem>, to: &Outputs, step: &Step) {
    // Blocks until a connection is queued; stops at the stop signal (`None` inside).
    while let Some(Some(client)) = from.pop() {
        let to = to.clone();
        let delegated = step.delegate("receiver", move || {
            // Blocks until the client's next request is complete, it leaves, or times out;
            // then blocks while the queue it goes to is full, until its manager takes one.
            to.forward(client.receive());
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
    while let Some(job) = from.pop() {
        let (to, ctx) = (to.clone(), Arc::clone(ctx));
        let delegated = step.delegate("handler", move || {
            // Sleeps or computes on this handler thread, as the route needs; a computation
            // stops early if the client closes the connection, which travels with the job.
            let answer = job.work(&ctx);
            // Blocks while the responses queue is full, until the sender manager takes one.
            let _ = to.push(answer);
        });
        if !delegated {
            break;
        }
    }
}

/// The sender manager: a sender thread for every response.
fn manage_sending(from: &QueueReceiver<Answer>, to: &QueueSender<ConnectionItem>, step: &Step) {
    // Blocks until a response is queued; `None` once every handler is gone and it is drained.
    while let Some(answer) = from.pop() {
        let to = to.clone();
        let delegated = step.delegate("sender", move || {
            // Blocks until the kernel has taken the response.
            if let Some(client) = answer.send() {
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
