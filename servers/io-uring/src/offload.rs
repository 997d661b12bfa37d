//! Helper threads for CPU work, and the eventfd that brings their answers back to a ring.
//!
//! A ring thread must never block, and computing `/factor` of a large prime blocks for
//! seconds; so, as in the event loop, the computation goes to a small pool of helper
//! threads (`--helpers`), through one bounded queue (`--offload-queue`) that the rings only
//! `try_push` into: when it is full the request is answered 503 at once.
//!
//! The way back is what differs. An event loop waits in `epoll_wait`, so a helper wakes it
//! with a waker that epoll watches. A ring thread waits for *completions*, so the wake-up
//! must be one: each ring keeps a read of an eventfd in its ring at all times. A helper
//! puts its answer in the ring's channel and writes 1 to the eventfd; the kernel completes
//! the pending read, and the ring thread, woken by that completion, takes every answer from
//! the channel. Several answers written before the ring looks cost one completion: the
//! eventfd adds the writes up and one read takes the sum. Shutdown wakes a ring the same
//! way.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use protocol::{Job, Response, Ticket};
use server_core::queue::{QueueReceiver, QueueSender, TryPushError};
use server_core::ThreadGroup;

/// A ring's eventfd: written by the helpers and by shutdown, read by the ring. Shared
/// (in an `Arc`) because every helper answering for the ring writes to it.
pub struct Wake {
    file: File,
}

impl Wake {
    /// A new eventfd (blocking, so that the ring's read waits in the kernel for a write).
    pub fn new() -> io::Result<Wake> {
        let owned = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)?;
        Ok(Wake {
            file: File::from(owned),
        })
    }

    /// Adds 1 to the counter, which completes the ring's pending read.
    pub fn wake(&self) {
        // Never blocks in practice: an eventfd write waits only when the counter is about
        // to overflow 2^64 - 2, and every read resets it to 0.
        let _ = (&self.file).write(&1u64.to_ne_bytes());
    }

    /// The descriptor the ring reads.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// A computation on its way to a helper, with the address of its answer.
pub struct Task {
    /// The computation (`/factor/{n}`); a panic in it becomes a 500.
    pub job: Job,
    /// Where its answer goes.
    pub back: Reply,
    /// Set by the ring when the client closes its connection; shared so that the helper
    /// stops a computation nobody waits for.
    pub gone: Arc<AtomicBool>,
}

/// Where an answer goes: the ring, the connection and its request.
pub struct Reply {
    /// The owning ring's inbox, and its eventfd.
    pub inbox: Sender<Done>,
    pub wake: Arc<Wake>,
    /// The connection it answers, by slot and generation: a connection closed meanwhile is
    /// recognised, and the answer dropped.
    pub key: u32,
    pub generation: u32,
    /// Which of the connection's requests it answers.
    pub ticket: Ticket,
}

/// A computed answer on its way back to its ring.
pub struct Done {
    /// The connection and request, as its task's `Reply` named them.
    pub key: u32,
    pub generation: u32,
    pub ticket: Ticket,
    /// The answer.
    pub response: Response,
}

/// Runs one helper: takes tasks until the queue closes (every ring has stopped), computes
/// each, and sends the answer back. A panic in the computation becomes a 500.
pub fn helper(tasks: &QueueReceiver<Task>, group: &ThreadGroup) {
    // Blocks until a task is queued; `None` once every ring is gone and the queue is
    // drained.
    while let Some(Task { job, back, gone }) = tasks.pop() {
        let _busy = group.busy();
        // Runs as long as the computation takes, on this helper thread, or until the ring
        // says its client has gone (looked at between chunks of work).
        let response = job.run_caught(&|| !gone.load(Ordering::Relaxed));
        let Reply {
            inbox,
            wake,
            key,
            generation,
            ticket,
        } = back;
        // The inbox is unbounded but holds at most one answer per queued task. Fails only
        // when the ring is gone (shut down), and then nobody waits for the answer.
        if inbox
            .send(Done {
                key,
                generation,
                ticket,
                response,
            })
            .is_ok()
        {
            wake.wake();
        }
    }
}

/// Hands a task to the helpers without waiting. Gives the reply back when the queue is full
/// (or closed), for the ring to answer 503.
pub fn submit(tasks: &QueueSender<Task>, task: Task) -> Result<(), Reply> {
    tasks.try_push(task).map_err(|e| match e {
        TryPushError::Full(task) | TryPushError::Closed(task) => task.back,
    })
}
