//! Helper threads for CPU work: what keeps a long computation from stalling a loop.
//!
//! A reactor must never block, and computing `/factor` of a large prime blocks for
//! seconds. So, as in the Flash web server's AMPED design (asymmetric multi-process
//! event-driven), the loop hands such work to a small pool of helper threads and goes on
//! serving other connections. A helper computes the answer and sends it back to the
//! reactor that owns the connection, through that reactor's channel, then wakes the
//! reactor's `poll` with its `Waker`, since a thread blocked in `epoll_wait` does not
//! notice a channel.
//!
//! The jobs wait in one bounded queue (`--offload-queue`). The reactors only ever
//! `try_push` into it: when it is full the request is answered 503 at once, because a
//! reactor that waited for room would stall every connection it serves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use protocol::{Job, Response, Ticket};
use server_core::queue::{QueueReceiver, QueueSender, TryPushError};
use server_core::ThreadGroup;

/// A computation on its way to a helper, with the address of its answer.
pub struct Task {
    pub job: Job,
    pub back: Reply,
    /// Set by the reactor when the client closes its connection. Shared between the reactor
    /// (which sees the socket) and the helper (which computes without it), so that the
    /// helper stops a computation nobody waits for.
    pub gone: Arc<AtomicBool>,
}

/// Where an answer goes: the reactor, the connection and its request.
pub struct Reply {
    /// The owning reactor's inbox, and its waker.
    pub inbox: Sender<Done>,
    pub waker: Arc<mio::Waker>,
    pub key: usize,
    pub generation: u64,
    pub ticket: Ticket,
}

/// A computed answer on its way back to its reactor.
pub struct Done {
    pub key: usize,
    pub generation: u64,
    pub ticket: Ticket,
    pub response: Response,
}

/// Runs one helper: takes tasks until the queue closes (every reactor has stopped), computes
/// each, and sends the answer back. A panic in the computation becomes a 500.
pub fn helper(tasks: &QueueReceiver<Task>, group: &ThreadGroup) {
    // Blocks until a task is queued; `None` once every reactor is gone and the queue is
    // drained.
    while let Some(Task { job, back, gone }) = tasks.pop() {
        let _busy = group.busy();
        // Runs as long as the computation takes, on this helper thread, or until the
        // reactor says its client has gone (looked at between chunks of work).
        let response = job.run_caught(&|| !gone.load(Ordering::Relaxed));
        let Reply {
            inbox,
            waker,
            key,
            generation,
            ticket,
        } = back;
        // The inbox is unbounded, but holds at most one answer per queued task. Fails only
        // when the reactor is gone (shut down), and then nobody waits for the answer.
        if inbox
            .send(Done {
                key,
                generation,
                ticket,
                response,
            })
            .is_ok()
        {
            // Wakes the reactor if it is blocked in `poll`.
            let _ = waker.wake();
        }
    }
}

/// Hands a task to the helpers without waiting. Gives the reply back when the queue is full
/// (or closed), for the reactor to answer 503.
pub fn submit(tasks: &QueueSender<Task>, task: Task) -> Result<(), Reply> {
    tasks.try_push(task).map_err(|e| match e {
        TryPushError::Full(task) | TryPushError::Closed(task) => task.back,
    })
}
