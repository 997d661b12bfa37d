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

#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct LiveSlot {
    pub(crate) sent: AtomicU64,
    pub(crate) served: AtomicU64,
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
    pub fn new(threads: usize) -> Live {
        Live {
            slots: (0..threads.max(1)).map(|_| LiveSlot::default()).collect(),
        }
    }

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
