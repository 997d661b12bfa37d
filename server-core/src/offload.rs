//! Helper threads for CPU work: what keeps a long computation from stalling a loop.
//!
//! The event loop's reactors and the io_uring server's rings each serve many connections
//! on one thread, so neither may block, and computing `/factor` of a large prime blocks for
//! seconds. Both hand such work to a small pool of helper threads and go on serving other
//! connections, as in the Flash web server's AMPED design (asymmetric multi-process
//! event-driven). This module is that pool, shared by the two:
//!
//! ```text
//!   loop thread ──try_push──▶ [ offload queue, --offload-queue ] ──pop──▶ helper thread
//!        ▲                                                                    │
//!        └──── wake-up ◀──── [ the loop's inbox, unbounded ] ◀──── answer ────┘
//! ```
//!
//! The jobs wait in one bounded queue (`--offload-queue`). A loop only ever `try_push`es
//! into it: when it is full the request is answered 503 at once, because a loop that
//! waited for room would stall every connection it serves.
//!
//! What differs between the two servers is only how a helper wakes the loop once its
//! answer is in the loop's inbox, because they sleep in different places: a reactor in
//! `epoll_wait` (woken by a `mio::Waker`), a ring in `io_uring_enter` waiting for
//! completions (woken by a write to an eventfd whose read it keeps in the ring). So each
//! gives its tasks a [`WakeUp`] closure, and an address `A` of its own for the connection
//! the answer belongs to.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use protocol::{Job, Response, Ticket};

use crate::listener::ServerError;
use crate::queue::{QueueReceiver, QueueSender, TryPushError};
use crate::threads::ThreadGroup;

/// How a helper wakes the loop that waits for its answer. Shared (an `Arc`) because every
/// helper answering for that loop calls it.
pub type WakeUp = Arc<dyn Fn() + Send + Sync>;

/// A computation on its way to a helper, with the address of its answer.
#[derive(Debug)]
pub struct Task<A> {
    /// The computation (`/factor/{n}`); a panic in it becomes a 500.
    pub job: Job,
    /// Where its answer goes.
    pub back: Reply<A>,
    /// Set by the loop when the client closes its connection. Shared between the loop
    /// (which sees the socket) and the helper (which computes without it), so that the
    /// helper stops a computation nobody waits for.
    pub gone: Arc<AtomicBool>,
}

/// Where an answer goes: the loop's inbox, how to wake the loop, and which connection and
/// request of that loop it answers.
pub struct Reply<A> {
    /// The owning loop's inbox: unbounded, but it holds at most one answer per task the
    /// loop has queued, so the offload queue's bound is its bound too.
    pub inbox: Sender<Done<A>>,
    /// Called once the answer is in the inbox.
    pub wake: WakeUp,
    /// The connection, in the loop's own terms (its slot and generation, so that an answer
    /// for a connection closed meanwhile is recognised and dropped).
    pub to: A,
    /// Which of the connection's requests it answers.
    pub ticket: Ticket,
}

impl<A: std::fmt::Debug> std::fmt::Debug for Reply<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The inbox and the wake-up closure have nothing to show.
        f.debug_struct("Reply")
            .field("to", &self.to)
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

/// A computed answer on its way back to its loop.
#[derive(Debug)]
pub struct Done<A> {
    /// The connection and request, as its task's `Reply` named them.
    pub to: A,
    pub ticket: Ticket,
    /// The answer.
    pub response: Response,
}

/// Starts `count` helper threads (named `helper-1`, `helper-2`, ...) in a new group named
/// `helper`, each taking tasks from `tasks` until the queue closes, which happens when the
/// last loop has dropped its sender.
pub fn start_helpers<A: Send + 'static>(
    count: u32,
    tasks: &QueueReceiver<Task<A>>,
) -> Result<ThreadGroup, ServerError> {
    let group = ThreadGroup::new("helper");
    for i in 1..=count {
        let (tasks, me) = (tasks.clone(), group.clone());
        group
            .spawn(format!("helper-{i}"), None, move || helper(&tasks, &me))
            .map_err(|source| ServerError::Start {
                what: format!("helper {i}"),
                source,
            })?;
    }
    Ok(group)
}

/// Runs one helper: takes tasks until the queue closes (every loop has stopped), computes
/// each, and sends the answer back. A panic in the computation becomes a 500.
pub fn helper<A>(tasks: &QueueReceiver<Task<A>>, group: &ThreadGroup) {
    // Blocks until a task is queued; `None` once every loop is gone and the queue is
    // drained.
    while let Some(Task { job, back, gone }) = tasks.pop() {
        let _busy = group.busy();
        // Runs as long as the computation takes, on this helper thread, or until the loop
        // says its client has gone (looked at between chunks of work).
        let response = job.run_caught(&|| !gone.load(Ordering::Relaxed));
        let Reply {
            inbox,
            wake,
            to,
            ticket,
        } = back;
        // Never blocks (the inbox is unbounded). Fails only when the loop is gone (shut
        // down), and then nobody waits for the answer.
        if inbox
            .send(Done {
                to,
                ticket,
                response,
            })
            .is_ok()
        {
            wake();
        }
    }
}

/// Hands a task to the helpers without waiting. Gives the reply back when the queue is full
/// (or closed), for the loop to answer 503.
pub fn submit<A>(tasks: &QueueSender<Task<A>>, task: Task<A>) -> Result<(), Reply<A>> {
    tasks.try_push(task).map_err(|e| match e {
        TryPushError::Full(task) | TryPushError::Closed(task) => task.back,
    })
}
