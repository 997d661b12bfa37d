//! A counting semaphore: at most N of something at once.
//!
//! The thread-per-connection server uses it to bound its live connection threads
//! (`--max-threads`), the pre-fork pool to bound the connections it admits (`--workers` +
//! `--queue`), and the pipeline to bound the connections inside it (`--max-connections`). The accept loop takes a [`Permit`] *before* it accepts; when none
//! is left it waits, and meanwhile new clients wait in the kernel's backlog instead of each
//! costing the server a thread. The permit travels with the connection and is given back
//! when the connection is dropped.
//!
//! Why take the permit *before* accepting? A server that accepts first and then finds
//! itself full must do something with the connection it now holds: close it (the client
//! sees a reset or an empty answer) or answer 503 (the pre-fork pool's `--when-full
//! reject`). A server that waits for a permit first leaves the newcomers in the kernel's
//! backlog, where they wait their turn like in front of a busy sequential server, at no
//! cost to it. Which of the two is right depends on whether clients should wait or be told
//! at once; the pool offers both, the others wait.
//!
//! A permit is a value, not a count to remember to decrement: whoever drops it returns it,
//! on whatever thread, whether the connection ended normally, failed, or was dropped at
//! shutdown. There is no path on which a permit can leak.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::stats::LimitSnapshot;

/// The semaphore. Shared (in an `Arc`) by the thread that takes permits and every permit,
/// because a permit is returned by whichever thread drops it.
#[derive(Debug)]
pub struct Permits {
    state: Mutex<State>,
    /// Signalled whenever a permit is returned, or the semaphore is closed.
    changed: Condvar,
}

#[derive(Debug)]
struct State {
    /// Permits not taken now.
    available: usize,
    /// Permits in all: the limit (`--max-threads`, `--max-connections`, ...).
    total: usize,
    /// The most permits ever taken at once.
    peak: usize,
    /// Times `try_acquire` found none left.
    refused: u64,
    /// Set at shutdown by `close`: from then on `acquire` returns `None` at once, so that
    /// a thread waiting for a permit stops waiting and sees that the server is stopping.
    closed: bool,
}

/// One unit taken from [`Permits`]; returned when dropped.
#[derive(Debug)]
pub struct Permit(Arc<Permits>);

impl Permits {
    /// A semaphore with `total` permits, all free. Returned in an `Arc`, because every
    /// permit taken holds a reference to it.
    pub fn new(total: usize) -> Arc<Permits> {
        Arc::new(Permits {
            state: Mutex::new(State {
                available: total,
                total,
                peak: 0,
                refused: 0,
                closed: false,
            }),
            changed: Condvar::new(),
        })
    }

    /// Takes a permit. Blocks while none is available, until one is returned. Returns
    /// `None` once the semaphore is closed (at shutdown).
    pub fn acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut state = self.state.lock();
        loop {
            if state.closed {
                return None;
            }
            if state.available > 0 {
                state.available -= 1;
                state.peak = state.peak.max(state.total - state.available);
                return Some(Permit(Arc::clone(self)));
            }
            // Releases the lock and sleeps until a permit is returned or we are closed.
            self.changed.wait(&mut state);
        }
    }

    /// Takes a permit if one is free; never blocks. `None` when all are taken or the
    /// semaphore is closed. Each refusal is counted: `/stats` shows how often a server
    /// that refuses rather than waits (`--when-full reject`) turned clients away.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut state = self.state.lock();
        if state.closed || state.available == 0 {
            state.refused += 1;
            return None;
        }
        state.available -= 1;
        state.peak = state.peak.max(state.total - state.available);
        Some(Permit(Arc::clone(self)))
    }

    /// How many permits there are in all.
    pub fn total(&self) -> usize {
        self.state.lock().total
    }

    /// Wakes every waiting `acquire` with `None`, now and from now on. Permits already taken
    /// are unaffected: their holders finish, and return them as usual.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.changed.notify_all();
    }

    /// Permits currently taken.
    pub fn in_use(&self) -> usize {
        let state = self.state.lock();
        state.total - state.available
    }

    /// The most permits ever taken at once.
    pub fn peak(&self) -> usize {
        self.state.lock().peak
    }

    /// The semaphore's figures for `/stats`, under the name of what it limits.
    pub fn snapshot(&self, name: &str) -> LimitSnapshot {
        let state = self.state.lock();
        LimitSnapshot {
            name: name.to_owned(),
            max: state.total as u64,
            in_use: (state.total - state.available) as u64,
            peak: state.peak as u64,
            refused: state.refused,
        }
    }

    /// Waits until every permit has been returned, or until `deadline`. Returns whether all
    /// were returned. At shutdown this is how a main thread waits for the connections
    /// inside to be answered and closed: every closed connection returns its permit, and
    /// every return wakes this wait.
    pub fn wait_all_returned(&self, deadline: Instant) -> bool {
        let mut state = self.state.lock();
        while state.available < state.total {
            // Sleeps until a permit comes back or the deadline passes.
            if self.changed.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        state.available == state.total
    }
}

/// Returning the permit: one more may be taken.
impl Drop for Permit {
    fn drop(&mut self) {
        self.0.state.lock().available += 1;
        // Both a blocked `acquire` and `wait_all_returned` may be waiting for this.
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bounds_and_returns() {
        let permits = Permits::new(2);
        let a = permits.acquire().unwrap();
        let b = permits.acquire().unwrap();
        assert_eq!(permits.in_use(), 2);
        let waiter = {
            let permits = Arc::clone(&permits);
            std::thread::spawn(move || permits.acquire().is_some())
        };
        drop(a);
        assert!(waiter.join().unwrap(), "a returned permit wakes a waiter");
        let c = permits.try_acquire().expect("one is free again");
        assert!(permits.try_acquire().is_none(), "both are taken");
        drop(c);
        drop(b);
        assert!(permits.wait_all_returned(Instant::now() + Duration::from_secs(5)));
        permits.close();
        assert!(permits.acquire().is_none());
    }
}
