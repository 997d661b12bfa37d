//! The eventfd that brings the helper threads' answers back to a ring.
//!
//! A ring thread must never block, and computing `/factor` of a large prime blocks for
//! seconds; so, as in the event loop, the computation goes to the pool of helper threads of
//! `server_core::offload` (`--helpers`), through one bounded queue (`--offload-queue`) that
//! the rings only `try_push` into: when it is full the request is answered 503 at once.
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
