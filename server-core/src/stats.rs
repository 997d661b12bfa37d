//! Counters, and the typed `/stats` document.
//!
//! Every thread of a server updates the counters in [`Stats`], so they are atomics. Each
//! update is a relaxed `fetch_add`: a single instruction that never blocks, which matters
//! because it sits on every request's path; and each thread adds to a shard of its own (see
//! [`Stats`]). Relaxed is enough because no counter guards other data: each is a number
//! read on its own, and a reader only needs *some* recent value. A snapshot may therefore
//! be a few requests out of step between fields; for monitoring that is fine.
//!
//! [`Snapshot`] is the `/stats` document as a type. It lives in the `contract` crate, which
//! servers and clients share without either depending on the other; it is re-exported here
//! for the servers that fill it in. [`Figures`] is what an architecture adds to it about
//! itself as it runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use contract::stats::{
    Capacity, ConfigSnapshot, Connections, LimitSnapshot, ProcessSnapshot, QueueSnapshot,
    ReactorSnapshot, Requests, RingSnapshot, RuntimeSnapshot, Snapshot, ThreadGroupSnapshot,
    WorkerSnapshot,
};
use protocol::Status;

/// How many shards the counters are split into. Threads pick theirs by a number given out
/// in turn, so two threads share a shard only beyond this many.
const SHARDS: usize = 8;

/// Server-wide counters, shared by all threads through the [`Context`](crate::Context).
///
/// Each counter is split into `SHARDS` (8) copies on separate cache lines, and a thread only
/// ever adds to its own shard; a reader sums them. Without this, the threads of a busy
/// server (two event loops on two cores, say) would all increment the same few words, and
/// each increment would have to pull the cache line away from the other core first: the
/// line bouncing costs more than everything else the counters do.
#[derive(Debug)]
pub struct Stats {
    shards: Box<[Shard]>,
}

/// One thread's share of the counters, alone on its cache lines (128 bytes: the size of the
/// pair of lines that neighbouring-line prefetchers fetch together).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    accepted: AtomicU64,
    rejected: AtomicU64,
    requests: AtomicU64,
    /// Started minus finished on this shard; a request may start on one shard and finish
    /// on another (the pipeline), so a shard's value wraps below zero and only the sum over
    /// all shards is meaningful.
    in_flight: AtomicU64,
    client_left: AtomicU64,
    by_status: [AtomicU64; Status::ALL.len()],
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

thread_local! {
    /// This thread's shard, given out in turn the first time the thread counts something.
    static SHARD: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        (NEXT.fetch_add(1, Relaxed) % SHARDS as u64) as usize
    };
}

impl Stats {
    /// The calling thread's shard. A thread keeps its shard for life, so its additions
    /// always land on the same cache lines, which stay in its core's cache.
    fn mine(&self) -> &Shard {
        &self.shards[SHARD.with(|s| *s)]
    }

    /// The sum of one counter over every shard (wrapping, for `in_flight`). Summing costs
    /// a read of each shard's cache line, which is why only `/stats` and the final log line
    /// do it, never the request path.
    fn total(&self, counter: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards.iter().fold(0u64, |sum, shard| {
            sum.wrapping_add(counter(shard).load(Relaxed))
        })
    }

    // Each of these adds one to the calling thread's shard: one relaxed atomic add, which
    // never waits, on a cache line no other thread writes. They sit on every request's path,
    // so they must cost next to nothing.

    /// A connection was accepted.
    pub fn accepted(&self) {
        self.mine().accepted.fetch_add(1, Relaxed);
    }

    /// A connection was turned away without being served (for example with a 503 because
    /// the server was full).
    pub fn rejected(&self) {
        self.mine().rejected.fetch_add(1, Relaxed);
    }

    /// A complete request was read and is now being handled.
    pub fn request_started(&self) {
        let shard = self.mine();
        shard.requests.fetch_add(1, Relaxed);
        shard.in_flight.fetch_add(1, Relaxed);
        // Only at `--log debug` (the count is summed only then): a line per request.
        tracing::debug!("a request started; {} in flight", self.in_flight());
    }

    /// The response to a started request was written, or the request was given up.
    pub fn request_finished(&self) {
        self.mine().in_flight.fetch_sub(1, Relaxed);
    }

    /// The client of a started request had closed its side (or reset the connection) by the
    /// time its response was ready: the lecture's "left before the server could handle it".
    /// Such a response is not counted as served.
    pub fn client_left(&self) {
        self.mine().client_left.fetch_add(1, Relaxed);
    }

    /// A response with this status was written to a client that was still there.
    pub fn responded(&self, status: Status) {
        self.mine().by_status[status.index()].fetch_add(1, Relaxed);
    }

    // The totals below are sums over the shards, read one shard at a time: each is exact
    // once the server is quiet, and within a few requests of the truth while it is busy.

    /// Connections accepted since the server started.
    pub fn accepted_total(&self) -> u64 {
        self.total(|s| &s.accepted)
    }

    /// Connections turned away without being served.
    pub fn rejected_total(&self) -> u64 {
        self.total(|s| &s.rejected)
    }

    /// Complete requests read since the server started.
    pub fn requests_total(&self) -> u64 {
        self.total(|s| &s.requests)
    }

    /// Requests read but not yet answered.
    pub fn in_flight(&self) -> u64 {
        self.total(|s| &s.in_flight)
    }

    /// Requests whose client had gone by the time the answer was ready.
    pub fn client_left_total(&self) -> u64 {
        self.total(|s| &s.client_left)
    }

    /// Responses written, of any status.
    pub fn served_total(&self) -> u64 {
        (0..Status::ALL.len())
            .map(|i| self.total(|s| &s.by_status[i]))
            .sum()
    }

    /// Responses by status code, leaving out statuses never sent.
    pub fn responses(&self) -> BTreeMap<String, u64> {
        Status::ALL
            .iter()
            .enumerate()
            .filter_map(|(i, status)| {
                let n = self.total(|s| &s.by_status[i]);
                (n > 0).then(|| (status.code().to_string(), n))
            })
            .collect()
    }
}

/// What an architecture adds to `/stats` about itself, as it runs.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub threads: Vec<ThreadGroupSnapshot>,
    pub queues: Vec<QueueSnapshot>,
    pub limits: Vec<LimitSnapshot>,
    pub reactors: Vec<ReactorSnapshot>,
    pub processes: Vec<ProcessSnapshot>,
    pub runtimes: Vec<RuntimeSnapshot>,
    pub rings: Vec<RingSnapshot>,
}
