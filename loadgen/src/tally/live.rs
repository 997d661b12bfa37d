//! The live counters: what the engines have done so far, readable at any moment by another
//! thread (the progress line, a live view) without taking any lock.
//!
//! Each engine thread adds to a slot of its own, alone on its cache lines, with relaxed
//! atomic additions: a reader sums the slots. Relaxed is enough because no counter guards
//! other data; a reader needs only some recent value of each, and may see a request counted
//! as sent a moment before it sees it served.

use std::sync::atomic::{AtomicU64, Ordering};

/// Progress counters the engines bump as they go, read by the live progress line. One
/// cache line per engine thread, so threads never write the same line.
#[derive(Debug)]
pub struct Live {
    pub(super) slots: Box<[LiveSlot]>,
}

/// One engine thread's counters. Aligned to 128 bytes (two cache lines, since some CPUs
/// fetch lines in pairs), so that two threads' additions never contend for one line: each
/// thread's add stays in its own core's cache.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct LiveSlot {
    /// Requests written to a connection.
    pub(crate) sent: AtomicU64,
    /// Requests answered 2xx in time.
    pub(crate) served: AtomicU64,
    /// Requests that failed, late ones included.
    pub(crate) errors: AtomicU64,
}

/// Sums of the live counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveTotals {
    pub sent: u64,
    pub served: u64,
    pub errors: u64,
}

impl Live {
    /// Counters for `threads` engine threads (at least one slot).
    pub fn new(threads: usize) -> Live {
        Live {
            slots: (0..threads.max(1)).map(|_| LiveSlot::default()).collect(),
        }
    }

    /// The sums so far. Each load is relaxed: the three sums are each some recent value,
    /// not one instant's snapshot, which is all a progress line needs.
    pub fn totals(&self) -> LiveTotals {
        let mut t = LiveTotals::default();
        for slot in self.slots.iter() {
            t.sent += slot.sent.load(Ordering::Relaxed);
            t.served += slot.served.load(Ordering::Relaxed);
            t.errors += slot.errors.load(Ordering::Relaxed);
        }
        t
    }
}
