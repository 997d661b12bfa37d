//! Counters for `/stats`.
//!
//! Every thread of a server updates these, so they are atomics: a relaxed `fetch_add` is a
//! single instruction that never blocks, which matters because it sits on every request's
//! path. The counters are independent of each other, so a snapshot may be a few requests
//! out of step between fields; for monitoring that is fine.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::response::Status;

/// Server-wide counters, shared by all threads through the [`Context`](crate::Context).
#[derive(Default)]
pub struct Stats {
    accepted: AtomicU64,
    rejected: AtomicU64,
    requests: AtomicU64,
    in_flight: AtomicU64,
    client_left: AtomicU64,
    by_status: [AtomicU64; Status::ALL.len()],
}

impl Stats {
    /// A connection was accepted.
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    /// A connection was turned away without being served (for example with a 503 because
    /// the queue was full).
    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }

    /// A complete request was read and is now being handled.
    pub fn request_started(&self) {
        self.requests.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// The response to a started request was written (or failed to be).
    pub fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// The client of a started request had closed its side (or reset the connection) by the
    /// time its response was ready: the lecture's "left before the server could handle it".
    /// Such a response is not counted as served.
    pub fn client_left(&self) {
        self.client_left.fetch_add(1, Relaxed);
    }

    pub fn client_left_total(&self) -> u64 {
        self.client_left.load(Relaxed)
    }

    /// A response with this status was written.
    pub fn responded(&self, status: Status) {
        self.by_status[status.index()].fetch_add(1, Relaxed);
    }

    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Relaxed)
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    pub fn requests_total(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    /// Requests read but not yet answered.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed)
    }

    /// Responses written, of any status.
    pub fn served_total(&self) -> u64 {
        self.by_status.iter().map(|n| n.load(Relaxed)).sum()
    }

    pub fn responses(&self, status: Status) -> u64 {
        self.by_status[status.index()].load(Relaxed)
    }

    /// Responses by status code, leaving out statuses never sent.
    pub fn responses_json(&self) -> serde_json::Map<String, serde_json::Value> {
        Status::ALL
            .iter()
            .filter_map(|s| {
                let n = self.responses(*s);
                (n > 0).then(|| (s.code().to_string(), n.into()))
            })
            .collect()
    }
}
