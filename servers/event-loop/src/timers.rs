//! A reactor's timers: what must happen at a given moment, nearest first.
//!
//! An event loop cannot give each connection a thread that sleeps until its timeout, so it
//! keeps every pending moment in one binary heap and lets `poll` wait at most until the
//! nearest. Two kinds of timer:
//!
//! * a connection's **deadline** (read timeout, keep-alive timeout, the end of a lingering
//!   close): when it passes, the connection machine is asked what to do;
//! * a **sleep**: a `/sleep/{ms}` or `/echo/{ms}` request whose answer is due.
//!
//! A connection's deadline moves with every request (each answer restarts its keep-alive
//! clock). Pushing a new entry each time would fill the heap with stale ones, so a
//! connection keeps at most one live entry: the time it was scheduled for
//! (`Scheduled::at`). A later deadline does not push anything; the entry fires at the old
//! time, finds the real deadline later, and is pushed once more. An entry whose time no
//! longer matches its connection's is stale and skipped. So the heap holds about one entry
//! per connection plus one per sleeping request.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use protocol::{Response, Ticket};

/// What a timer does when it fires.
#[derive(Debug)]
pub enum Timer {
    /// Look at connection `key` (of generation `generation`): its deadline may have passed.
    Deadline { key: usize, generation: u64 },
    /// Answer a sleeping request.
    Wake {
        key: usize,
        generation: u64,
        ticket: Ticket,
        response: Response,
    },
    /// Try accepting again after running out of file descriptors.
    Accept,
}

/// A heap entry: the moment, a sequence number to keep equal moments in order, and the
/// timer.
struct Entry(Reverse<(Instant, u64)>, Timer);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// The heap. See the module documentation.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Entry>,
    sequence: u64,
}

impl Timers {
    /// Adds a timer at `at`.
    pub fn push(&mut self, at: Instant, timer: Timer) {
        self.sequence += 1;
        self.heap.push(Entry(Reverse((at, self.sequence)), timer));
    }

    /// The nearest moment, if any.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Entry(Reverse((at, _)), _)| *at)
    }

    /// Takes the nearest timer if its moment has come, with that moment.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        if self.next()? > now {
            return None;
        }
        self.heap
            .pop()
            .map(|Entry(Reverse((at, _)), timer)| (at, timer))
    }

    /// Timers waiting (stale deadline entries included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nearest_first_and_only_when_due() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.push(now + Duration::from_millis(30), Timer::Accept);
        timers.push(
            now + Duration::from_millis(10),
            Timer::Deadline {
                key: 1,
                generation: 1,
            },
        );
        assert_eq!(timers.next(), Some(now + Duration::from_millis(10)));
        assert!(timers.pop_due(now).is_none());
        let (at, timer) = timers
            .pop_due(now + Duration::from_millis(20))
            .expect("one due");
        assert_eq!(at, now + Duration::from_millis(10));
        assert!(matches!(timer, Timer::Deadline { key: 1, .. }));
        assert!(timers.pop_due(now + Duration::from_millis(20)).is_none());
        assert_eq!(timers.len(), 1);
    }
}
