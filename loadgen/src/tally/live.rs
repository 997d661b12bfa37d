//! The live counters: what the engines have done so far, readable at any moment by another
//! thread (the progress line, a live view) without taking any lock.
//!
//! Each engine thread adds to a slot of its own, alone on its cache lines, with relaxed
//! atomic additions: a reader sums the slots. Relaxed is enough because no counter guards
//! other data; a reader needs only some recent value of each, and may see a request counted
//! as sent a moment before it sees it served.
//!
//! Two more things live here for a live view, both lock-free too:
//!
//! * each client's state ([`ClientState`]), one byte per client, stored by the engine
//!   thread that runs the client whenever the state changes, and only when a monitor asked
//!   for them ([`Live::with_clients`]): a run nobody watches keeps an empty array and pays
//!   one bounds check per step;
//! * a request to stop ([`Live::request_stop`]), raised by the viewer's `q`: the engines
//!   end the run as if it had reached its end, so the report is the usual one.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use crate::outcome::Outcome;

/// Latency buckets of the live histogram: four per power of two of microseconds, up to
/// 2^40 µs (twelve days), so a bucket's upper bound is at most 19% above its lower one.
const BUCKETS: usize = 4 * 41;

/// Progress counters the engines bump as they go, read by the live progress line. One
/// cache line per engine thread, so threads never write the same line.
#[derive(Debug)]
pub struct Live {
    pub(super) slots: Box<[LiveSlot]>,
    /// Each client's [`ClientState`] as a byte, client `id` (from 1) at `id - 1`; empty when
    /// nobody watches the clients. Written by the engine thread that runs the client (a
    /// relaxed store, only when the state changes), read by the viewer: a state is a
    /// picture, not a guard of other data, so relaxed is enough.
    states: Box<[AtomicU8]>,
    /// Raised once by the viewer (its `q`); read by the engines after each wake-up and by the
    /// coordinator, which wakes the engine threads when it sees it.
    stop: AtomicBool,
}

/// One engine thread's counters. Aligned to 128 bytes (two cache lines, since some CPUs
/// fetch lines in pairs), so that two threads' additions never contend for one line: each
/// thread's add stays in its own core's cache.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct LiveSlot {
    /// Requests written to a connection.
    pub(crate) sent: AtomicU64,
    /// Requests answered 2xx in time.
    pub(crate) served: AtomicU64,
    /// Requests that failed, late ones included.
    pub(crate) errors: AtomicU64,
    /// Answers by corrected latency, in coarse buckets ([`bucket`]): enough for a live
    /// p99 to within a fifth, without a lock.
    pub(crate) latency: [AtomicU64; BUCKETS],
}

impl Default for LiveSlot {
    fn default() -> LiveSlot {
        LiveSlot {
            sent: AtomicU64::new(0),
            served: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Sums of the live counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveTotals {
    pub sent: u64,
    pub served: u64,
    pub errors: u64,
}

/// What a client is doing, as a live view shows it: the phases of the report's timeline,
/// then its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Not started yet.
    NotStarted,
    /// Connecting: waiting for the server's accept queue to take the connection.
    Connecting,
    /// Connected (or request sent), waiting for the first byte of an answer.
    Waiting,
    /// Being answered: its first answer has begun and more are to come.
    Answering,
    /// Served, holding the connection open and idle (`--hold`).
    Holding,
    /// Open loop: a connection waiting for the dispatcher to hand it a request.
    Idle,
    /// Finished, with this outcome.
    Ended(Outcome),
}

impl ClientState {
    fn to_byte(self) -> u8 {
        match self {
            ClientState::NotStarted => 0,
            ClientState::Connecting => 1,
            ClientState::Waiting => 2,
            ClientState::Answering => 3,
            ClientState::Holding => 4,
            ClientState::Idle => 5,
            ClientState::Ended(outcome) => {
                let index = Outcome::ALL.iter().position(|o| *o == outcome);
                8 + index.unwrap_or(0) as u8
            }
        }
    }

    fn from_byte(byte: u8) -> ClientState {
        match byte {
            1 => ClientState::Connecting,
            2 => ClientState::Waiting,
            3 => ClientState::Answering,
            4 => ClientState::Holding,
            5 => ClientState::Idle,
            b if b >= 8 => Outcome::ALL
                .get(usize::from(b - 8))
                .map_or(ClientState::NotStarted, |o| ClientState::Ended(*o)),
            _ => ClientState::NotStarted,
        }
    }
}

/// The live histogram's bucket of a latency of `us` microseconds: four buckets per power
/// of two.
pub fn bucket(us: u64) -> usize {
    let us = us.max(1);
    let octave = 63 - us.leading_zeros() as usize;
    let quarter = if octave >= 2 {
        ((us >> (octave - 2)) & 3) as usize
    } else {
        0
    };
    (octave * 4 + quarter).min(BUCKETS - 1)
}

/// The largest latency, in microseconds, that falls in bucket `index`.
pub fn bucket_top(index: usize) -> u64 {
    let (octave, quarter) = (index / 4, (index % 4) as u64);
    if octave < 2 {
        return (1u64 << (octave + 1)) - 1;
    }
    let step = 1u64 << (octave - 2);
    (1u64 << octave) + (quarter + 1) * step - 1
}

/// Counts of answers by latency bucket, summed over the engine threads: subtract an
/// earlier one ([`LiveLatency::since`]) to get a moment's, then read its
/// [`LiveLatency::quantile`].
#[derive(Debug, Clone)]
pub struct LiveLatency(Vec<u64>);

impl Default for LiveLatency {
    fn default() -> LiveLatency {
        LiveLatency(vec![0; BUCKETS])
    }
}

impl LiveLatency {
    /// What was counted after `earlier`.
    pub fn since(&self, earlier: &LiveLatency) -> LiveLatency {
        LiveLatency(
            self.0
                .iter()
                .zip(&earlier.0)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        )
    }

    /// The latency, in microseconds, below which a fraction `q` of the answers fell (the
    /// top of its bucket), or `None` with no answers.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.0.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.0.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bucket_top(index));
            }
        }
        None
    }
}

impl Live {
    /// Counters for `threads` engine threads (at least one slot), with no client states.
    pub fn new(threads: usize) -> Live {
        Live::with_clients(threads, 0)
    }

    /// Counters for `threads` engine threads and the states of `clients` clients (ids 1 to
    /// `clients`), for a live view.
    pub fn with_clients(threads: usize, clients: usize) -> Live {
        Live {
            slots: (0..threads.max(1)).map(|_| LiveSlot::default()).collect(),
            states: (0..clients).map(|_| AtomicU8::new(0)).collect(),
            stop: AtomicBool::new(false),
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

    /// The answers so far by latency bucket, summed over the threads (relaxed loads).
    pub fn latency(&self) -> LiveLatency {
        let mut sums = vec![0; BUCKETS];
        for slot in self.slots.iter() {
            for (sum, count) in sums.iter_mut().zip(&slot.latency) {
                *sum += count.load(Ordering::Relaxed);
            }
        }
        LiveLatency(sums)
    }

    /// How many clients' states are kept (0 when nobody asked for them).
    pub fn clients(&self) -> usize {
        self.states.len()
    }

    /// The state of client `id` (from 1), as last stored.
    pub fn state(&self, id: usize) -> ClientState {
        id.checked_sub(1)
            .and_then(|i| self.states.get(i))
            .map_or(ClientState::NotStarted, |s| {
                ClientState::from_byte(s.load(Ordering::Relaxed))
            })
    }

    /// Client `id` (from 1) is now in `state`. Stores only a change, so that a load run's
    /// clients, which stay in one state from request to request, leave the line shared.
    pub(crate) fn show(&self, id: usize, state: ClientState) {
        let Some(slot) = id.checked_sub(1).and_then(|i| self.states.get(i)) else {
            return;
        };
        let byte = state.to_byte();
        if slot.load(Ordering::Relaxed) != byte {
            slot.store(byte, Ordering::Relaxed);
        }
    }

    /// Asks the engines to end the run now, as if it had reached its end.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether [`Live::request_stop`] was called. Relaxed: the flag guards no data, and an
    /// engine that sees it a turn late stops a turn late.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_byte() {
        let live = Live::with_clients(1, 3);
        for state in [ClientState::Connecting, ClientState::Holding]
            .into_iter()
            .chain(Outcome::ALL.map(ClientState::Ended))
        {
            live.show(2, state);
            assert_eq!(live.state(2), state);
        }
        assert_eq!(live.state(1), ClientState::NotStarted);
        // Ids out of range are ignored, not a panic.
        live.show(0, ClientState::Waiting);
        live.show(4, ClientState::Waiting);
        assert_eq!(live.state(4), ClientState::NotStarted);
    }

    #[test]
    fn the_live_p99_is_within_a_bucket_of_the_truth() {
        let live = Live::new(1);
        for us in 1..=1000u64 {
            live.slots[0].latency[bucket(us * 10)].fetch_add(1, Ordering::Relaxed);
        }
        let p99 = live.latency().since(&LiveLatency::default()).quantile(0.99);
        let p99 = p99.expect("answers were counted");
        assert!((9_900..=9_900 * 6 / 5).contains(&p99), "{p99}");
        assert_eq!(LiveLatency::default().quantile(0.99), None);
        for us in [1, 2, 3, 4, 5, 7, 8, 100, 1 << 20] {
            assert!(bucket_top(bucket(us)) >= us, "{us}");
            assert!(bucket(us) == 0 || bucket_top(bucket(us) - 1) < us, "{us}");
        }
    }
}
