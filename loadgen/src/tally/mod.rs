//! Counting requests as they happen: one [`Tally`] per engine thread, merged at the end.
//!
//! A client's record ([`crate::record::ClientRecord`]) keeps only what the ledger needs
//! about that client. Everything counted per request lives here instead, once per engine
//! thread: the latency histograms, the request counts by what happened, and the current
//! second of the time series. Nothing here is shared between threads while they run, so
//! recording a request is a few additions with no lock (the thread-per-client engine is the
//! exception: its clients share one tally behind a mutex).
//!
//! Two latencies are kept for every request, as wrk2 does:
//!
//! * **corrected**: from the moment the request was *due* to its complete response. In an
//!   open-loop run a request is due at its place in the schedule, and any wait before it
//!   could be sent (no free connection, the engine running late) counts. This is what the
//!   user who issued the request experienced;
//! * **uncorrected**: from the moment the request was actually sent. This is what a
//!   closed-loop tool measures, and it hides the time requests spent waiting to be sent
//!   (coordinated omission).
//!
//! In closed-loop and scenario runs nothing is scheduled, a request is due when it is sent,
//! and the two are the same.
//!
//!
//! The pieces beside the counts: [`live`], the counters a progress line or a live view reads
//! while the run goes on; [`series`], the per-second time series the tallies hand their
//! seconds to; [`hlog`], HdrHistogram's interval log and percentile spectrum formats.

pub mod hlog;
pub mod live;
pub mod series;

pub use live::{ClientState, Live, LiveTotals};
pub use series::{Row, Series};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::outcome::Outcome;
use crate::units::{micros, new_histogram};
use live::LiveSlot;
use series::Second;

/// Requests by what happened to them. In a load run these are the run's numbers; a
/// client's outcome says only how its requests went overall.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Requests {
    /// Open loop: requests that came due on the schedule (sent, queued or dropped).
    pub due: u64,
    /// Requests written to a connection.
    pub sent: u64,
    /// Complete responses received, whatever their status and however late.
    pub completed: u64,
    /// 2xx responses that arrived before their deadline.
    pub served: u64,
    /// Responses that arrived, but after their deadline.
    pub late: u64,
    /// Requests with no response by their deadline (their latency is known only to be at
    /// least the deadline). In open-loop runs this includes requests still waiting for a
    /// free connection when their deadline passed, which were never sent.
    pub timed_out: u64,
    /// Requests whose connection could not be made by their deadline.
    pub connect_timeout: u64,
    /// Responses with a status other than 2xx.
    pub rejected: u64,
    /// Requests whose connection was refused.
    pub refused: u64,
    /// Requests whose connection was closed or reset before a complete response.
    pub reset: u64,
    /// Responses that were not HTTP.
    pub bad_response: u64,
    /// Requests in flight, or waiting for a connection, when the run ended: neither served
    /// nor failed.
    pub unfinished: u64,
    /// Open loop with `--when-busy drop`: requests given up at once because every
    /// connection was busy when they were due. Never sent.
    pub dropped: u64,
    /// Open loop: requests that waited for a free connection before they could be sent.
    pub queued: u64,
}

impl Requests {
    /// Requests that failed, late ones included (not unfinished or dropped ones).
    pub fn errors(&self) -> u64 {
        self.late
            + self.timed_out
            + self.connect_timeout
            + self.rejected
            + self.refused
            + self.reset
            + self.bad_response
    }

    /// Requests over their deadline: late, unanswered, or not connected in time.
    pub fn over_deadline(&self) -> u64 {
        self.late + self.timed_out + self.connect_timeout
    }

    /// Open loop: the fraction of the requests that came due (less those still unfinished
    /// at the end, whose fate is unknown) that were served in time.
    pub fn in_time_fraction(&self) -> f64 {
        let judged = self.due.saturating_sub(self.unfinished);
        if judged == 0 {
            return 0.0;
        }
        self.served as f64 / judged as f64
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Requests) {
        self.due += other.due;
        self.sent += other.sent;
        self.completed += other.completed;
        self.served += other.served;
        self.late += other.late;
        self.timed_out += other.timed_out;
        self.connect_timeout += other.connect_timeout;
        self.rejected += other.rejected;
        self.refused += other.refused;
        self.reset += other.reset;
        self.bad_response += other.bad_response;
        self.unfinished += other.unfinished;
        self.dropped += other.dropped;
        self.queued += other.queued;
    }

    fn count_failure(&mut self, outcome: Outcome) {
        let slot = match outcome {
            Outcome::ConnectTimeout => &mut self.connect_timeout,
            Outcome::ServiceTimeout => &mut self.timed_out,
            Outcome::Refused => &mut self.refused,
            Outcome::Reset => &mut self.reset,
            Outcome::Rejected => &mut self.rejected,
            Outcome::BadResponse => &mut self.bad_response,
            // Not request outcomes.
            Outcome::Served | Outcome::Starved => return,
        };
        *slot += 1;
    }
}

/// One engine thread's counts. See the module documentation.
#[derive(Debug)]
pub struct Tally {
    /// The run's common start: the time series' seconds count from it.
    start: Instant,
    /// The deadline, in µs: a response later than this (by its corrected latency) is late.
    limit_us: u64,
    /// Every answered request's corrected latency, and every unanswered one at its
    /// deadline.
    pub corrected: Histogram<u64>,
    /// The same requests from their actual send.
    pub uncorrected: Histogram<u64>,
    /// Open loop: how late the engine sent requests that had a free connection when they
    /// were due (its own scheduling delay, which the corrected latency includes).
    pub lag: Histogram<u64>,
    /// This thread's requests by what happened to them.
    pub requests: Requests,
    /// The second of the run being filled, and what it holds so far.
    second: u64,
    current: Second,
    /// The shared time series this tally hands each finished second to (under the
    /// series' mutex, once a second).
    series: Arc<Series>,
    /// This tally's place among the series' contributors and the live counters.
    index: usize,
    /// The shared live counters: this tally adds to its own slot with relaxed atomics, and
    /// a monitor on another thread reads them (see [`live`] for why relaxed suffices).
    live: Arc<Live>,
    live_slot: usize,
}

impl Tally {
    /// A tally for engine thread `index`, counting from `start`, judging by a deadline of
    /// `limit_us`.
    pub fn new(
        start: Instant,
        limit_us: u64,
        series: Arc<Series>,
        live: Arc<Live>,
        index: usize,
    ) -> Tally {
        Tally {
            start,
            limit_us,
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            lag: new_histogram(),
            requests: Requests::default(),
            second: 0,
            current: Second::new(),
            series,
            index,
            live_slot: index.min(live.slots.len() - 1),
            live,
        }
    }

    fn live(&self) -> &LiveSlot {
        &self.live.slots[self.live_slot]
    }

    /// Moves the time series on to the second `now` falls in, handing the finished
    /// seconds to the shared series. Every recording calls it first, so a request is always
    /// counted in the second it ended in; a second in which this thread recorded nothing
    /// is handed in empty, so that the series knows this thread is past it.
    pub fn tick(&mut self, now: Instant) {
        let second = now.saturating_duration_since(self.start).as_secs();
        while self.second < second {
            self.series.hand_in(self.index, self.second, &self.current);
            self.current.clear();
            self.second += 1;
        }
    }

    /// The moment the time series moves on to the next second.
    pub fn next_second(&self) -> Instant {
        self.start + Duration::from_secs(self.second + 1)
    }

    /// A request was written to a connection at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.tick(now);
        self.requests.sent += 1;
        self.current.counts.sent += 1;
        self.live().sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Open loop: a request due at `due` was sent at `now` on a connection that was free
    /// when it was due; the difference is the engine's own lateness.
    pub fn lag(&mut self, due: Instant, now: Instant) {
        self.tick(now);
        let lag = micros(now.saturating_duration_since(due)).max(1);
        self.lag.saturating_record(lag);
        self.current.lag.saturating_record(lag);
    }

    /// Open loop: a request came due.
    pub fn due(&mut self) {
        self.requests.due += 1;
    }

    /// Open loop: a request waited for a free connection.
    pub fn queued(&mut self) {
        self.requests.queued += 1;
    }

    /// A complete response arrived at `now` for the request due at `due` and sent at
    /// `sent`, with `status`. Returns whether it was served (2xx, in time by the corrected
    /// latency).
    pub fn answered(&mut self, due: Instant, sent: Instant, now: Instant, status: u16) -> bool {
        self.tick(now);
        let corrected = micros(now.saturating_duration_since(due));
        let uncorrected = micros(now.saturating_duration_since(sent));
        self.record(corrected, uncorrected);
        let mut counts = Requests {
            completed: 1,
            ..Requests::default()
        };
        // Late first: a 2xx after the deadline is late, not served; an error status in time
        // is rejected.
        let served = if !crate::outcome::in_time(corrected, self.limit_us) {
            counts.late = 1;
            false
        } else if (200..300).contains(&status) {
            counts.served = 1;
            true
        } else {
            counts.rejected = 1;
            false
        };
        self.requests.add(&counts);
        self.current.counts.add(&counts);
        self.live().latency[live::bucket(corrected)].fetch_add(1, Ordering::Relaxed);
        if served {
            self.live().served.fetch_add(1, Ordering::Relaxed);
        } else {
            self.live().errors.fetch_add(1, Ordering::Relaxed);
        }
        served
    }

    /// The request due at `due` (sent at `sent`, if it was) failed at `now` with
    /// `outcome`. One that ran out of time is recorded at the deadline, as all we know of
    /// its latency is that it reached it.
    pub fn failed(&mut self, outcome: Outcome, due: Instant, sent: Option<Instant>, now: Instant) {
        self.tick(now);
        if outcome.timed_out() {
            // At the deadline exactly, however late the engine noticed: the deadline is
            // what we know. From the send, that is the deadline less the wait before it.
            let waited_to_send = sent.map_or(0, |s| micros(s.saturating_duration_since(due)));
            self.record(self.limit_us, self.limit_us.saturating_sub(waited_to_send));
        }
        self.requests.count_failure(outcome);
        self.current.counts.count_failure(outcome);
        self.live().errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Client `id` is now in `state`, for a live view (stored only when it changes).
    pub fn show(&self, id: usize, state: ClientState) {
        self.live.show(id, state);
    }

    /// Whether a live view asked the run to stop now ([`Live::request_stop`]).
    pub fn stop_requested(&self) -> bool {
        self.live.stop_requested()
    }

    /// A request was still in flight (or waiting for a connection) when the run ended.
    pub fn unfinished(&mut self) {
        self.requests.unfinished += 1;
    }

    /// Open loop: a request due at `due` found no free connection and was dropped.
    pub fn dropped(&mut self, due: Instant) {
        self.tick(due);
        self.requests.dropped += 1;
        self.current.counts.dropped += 1;
    }

    /// Records one request's latencies. A latency beyond the histograms' hour is recorded
    /// as an hour (the deadline may be up to a day; nothing is left out).
    fn record(&mut self, corrected: u64, uncorrected: u64) {
        let (corrected, uncorrected) = (corrected.max(1), uncorrected.max(1));
        self.corrected.saturating_record(corrected);
        self.uncorrected.saturating_record(uncorrected);
        self.current.corrected.saturating_record(corrected);
        self.current.uncorrected.saturating_record(uncorrected);
    }

    /// The thread is finished: hands in its last second and leaves the series.
    pub fn finish(&mut self) {
        if !self.current.is_empty() {
            self.series.hand_in(self.index, self.second, &self.current);
            self.current.clear();
        }
        self.series.leave(self.index);
    }

    /// Adds `other` (another thread's tally) into this one, once the threads have ended.
    /// Histograms of the same bounds add exactly, so the merged percentiles are those of
    /// all the requests together, never an average of the threads' percentiles.
    pub fn merge(&mut self, other: &Tally) {
        let _ = self.corrected.add(&other.corrected);
        let _ = self.uncorrected.add(&other.uncorrected);
        let _ = self.lag.add(&other.lag);
        self.requests.add(&other.requests);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(series: &Arc<Series>, start: Instant, index: usize) -> Tally {
        Tally::new(
            start,
            1_000_000,
            Arc::clone(series),
            Arc::new(Live::new(2)),
            index,
        )
    }

    #[test]
    fn a_timeout_is_recorded_at_the_deadline() {
        let series = Arc::new(Series::new(1));
        let start = Instant::now();
        let mut t = tally(&series, start, 0);
        let due = start;
        let sent = start + Duration::from_millis(300);
        // Noticed well after the 1 s deadline: recorded at the deadline all the same, and
        // from the send, at the deadline less the wait before it.
        t.failed(
            Outcome::ServiceTimeout,
            due,
            Some(sent),
            start + Duration::from_secs(3),
        );
        assert!(t.corrected.equivalent(t.corrected.max(), 1_000_000));
        assert!(t.uncorrected.equivalent(t.uncorrected.max(), 700_000));
        assert_eq!(t.requests.timed_out, 1);
    }
}
