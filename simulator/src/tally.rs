//! Counting requests as they happen: one [`Tally`] per engine thread, merged at the end.
//!
//! A client's record ([`crate::client::ClientRecord`]) keeps only what the ledger needs
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
//! The time series is built one second at a time: each tally fills the current second and,
//! when its clock passes into the next, hands the finished second to the shared
//! [`Series`], which adds up the threads' contributions and, once every thread has handed
//! in a second, turns it into a row and two compressed histograms. So a long run holds a
//! few seconds of histograms at a time, not all of them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer, V2Serializer};
use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::outcome::Outcome;
use crate::units::{micros, new_histogram};

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

/// Progress counters the engines bump as they go, read by the live progress line. One
/// cache line per engine thread, so threads never write the same line.
pub struct Live {
    slots: Box<[LiveSlot]>,
}

#[derive(Default)]
#[repr(align(128))]
struct LiveSlot {
    sent: AtomicU64,
    served: AtomicU64,
    errors: AtomicU64,
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

/// One second of the time series, as one thread saw it or as all threads together did.
struct Second {
    counts: Requests,
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    /// Open loop: the engine's lateness for requests sent in this second.
    lag: Histogram<u64>,
}

impl Second {
    fn new() -> Second {
        Second {
            counts: Requests::default(),
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            lag: new_histogram(),
        }
    }

    fn is_empty(&self) -> bool {
        self.counts == Requests::default() && self.lag.is_empty()
    }

    fn clear(&mut self) {
        self.counts = Requests::default();
        self.corrected.reset();
        self.uncorrected.reset();
        self.lag.reset();
    }

    fn add(&mut self, other: &Second) {
        self.counts.add(&other.counts);
        // The histograms have the same bounds, so adding cannot fail.
        let _ = self.corrected.add(&other.corrected);
        let _ = self.uncorrected.add(&other.uncorrected);
        let _ = self.lag.add(&other.lag);
    }
}

/// One engine thread's counts. See the module documentation.
pub struct Tally {
    start: Instant,
    limit_us: u64,
    /// Every answered request's corrected latency, and every unanswered one at its
    /// deadline.
    pub corrected: Histogram<u64>,
    /// The same requests from their actual send.
    pub uncorrected: Histogram<u64>,
    /// Open loop: how late the engine sent requests that had a free connection when they
    /// were due (its own scheduling delay, which the corrected latency includes).
    pub lag: Histogram<u64>,
    pub requests: Requests,
    /// The second of the run being filled, and what it holds so far.
    second: u64,
    current: Second,
    series: Arc<Series>,
    /// This tally's place among the series' contributors and the live counters.
    index: usize,
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
    /// seconds to the shared series.
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

    /// Adds `other` (another thread's tally) into this one.
    pub fn merge(&mut self, other: &Tally) {
        let _ = self.corrected.add(&other.corrected);
        let _ = self.uncorrected.add(&other.uncorrected);
        let _ = self.lag.add(&other.lag);
        self.requests.add(&other.requests);
    }
}

/// One row of the per-second time series.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// Seconds since the start: this row covers `[second, second + 1)`.
    pub second: u64,
    pub sent: u64,
    /// Complete responses received (any status).
    pub completed: u64,
    pub served: u64,
    /// Failed requests: late, timed out, refused, reset, rejected, not HTTP.
    pub errors: u64,
    pub dropped: u64,
    /// Corrected latency percentiles of the requests that ended in this second, in
    /// microseconds (0 when none did).
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Row {
    /// The row of a second in which nothing happened.
    pub fn empty(second: u64) -> Row {
        Row {
            second,
            sent: 0,
            completed: 0,
            served: 0,
            errors: 0,
            dropped: 0,
            p50_us: 0,
            p99_us: 0,
            max_us: 0,
        }
    }
}

/// A finished second's histograms, serialized, for the interval log: one per tag of
/// [`TAGS`], `None` where the second recorded nothing under it.
struct Encoded {
    second: u64,
    histograms: [Option<Vec<u8>>; 3],
}

/// The interval log's tags, in the order each second's histograms are written:
/// latencies from when each request was due, from its actual send, and (open loop) the
/// engine's own lateness in sending.
pub const TAGS: [&str; 3] = ["corrected", "uncorrected", "lag"];

/// The time series, shared by the engine threads. See the module documentation.
pub struct Series {
    /// Under a mutex because every engine thread hands in its seconds here; each does so
    /// once a second, so the lock is never contended for long.
    inner: Mutex<SeriesInner>,
}

#[derive(Default)]
struct SeriesInner {
    /// For each tally, the next second it will hand in (each hands in every second in
    /// order), or `None` once it has left: a second is complete when every tally still
    /// present is past it.
    next: Vec<Option<u64>>,
    /// Seconds not yet complete, and the sum of what was handed in for each.
    open: BTreeMap<u64, Second>,
    rows: Vec<Row>,
    encoded: Vec<Encoded>,
}

impl Series {
    pub fn new(contributors: usize) -> Series {
        Series {
            inner: Mutex::new(SeriesInner {
                next: vec![Some(0); contributors.max(1)],
                ..SeriesInner::default()
            }),
        }
    }

    /// Tally `index` hands in `second` (and will hand in the next one next).
    fn hand_in(&self, index: usize, second: u64, part: &Second) {
        let mut inner = self.inner.lock();
        if !part.is_empty() {
            inner
                .open
                .entry(second)
                .or_insert_with(Second::new)
                .add(part);
        }
        if let Some(next) = inner.next.get_mut(index) {
            *next = Some(second + 1);
        }
        inner.close_complete();
    }

    /// Tally `index` hands in no more seconds.
    fn leave(&self, index: usize) {
        let mut inner = self.inner.lock();
        if let Some(next) = inner.next.get_mut(index) {
            *next = None;
        }
        inner.close_complete();
    }

    /// Every thread has finished: closes the seconds still open, and returns the rows
    /// (one per second from the start to the last with any activity) and the interval log.
    pub fn finish(&self, started_at: SystemTime) -> (Vec<Row>, String) {
        let mut inner = self.inner.lock();
        let open = std::mem::take(&mut inner.open);
        for (second, sum) in open {
            inner.close(second, &sum);
        }
        inner.rows.sort_by_key(|r| r.second);
        inner.encoded.sort_by_key(|e| e.second);
        // Seconds nobody handed in (an idle second in the middle of a run) get empty rows.
        let last = inner.rows.last().map_or(0, |r| r.second);
        let mut rows = Vec::with_capacity(inner.rows.len());
        let mut given = inner.rows.iter().peekable();
        for second in 0..=last {
            match given.peek() {
                Some(row) if row.second == second => rows.extend(given.next().cloned()),
                _ if inner.rows.is_empty() => {}
                _ => rows.push(Row::empty(second)),
            }
        }
        (rows, interval_log(&inner.encoded, started_at))
    }
}

impl SeriesInner {
    /// Closes every open second that all tallies still present have passed.
    fn close_complete(&mut self) {
        let Some(done_below) = self.next.iter().flatten().min().copied() else {
            // Nobody is left to hand anything in; `finish` closes the rest.
            return;
        };
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() >= done_below {
                break;
            }
            let (second, sum) = entry.remove_entry();
            self.close(second, &sum);
        }
    }

    fn close(&mut self, second: u64, sum: &Second) {
        let h = &sum.corrected;
        let pick = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        self.rows.push(Row {
            second,
            sent: sum.counts.sent,
            completed: sum.counts.completed,
            served: sum.counts.served,
            errors: sum.counts.errors(),
            dropped: sum.counts.dropped,
            p50_us: pick(0.5),
            p99_us: pick(0.99),
            max_us: if h.is_empty() { 0 } else { h.max() },
        });
        // Stored in the plain V2 encoding (compact for latency histograms); compressing
        // waits for the interval log at the end, on the coordinator's thread, because
        // deflate's state is large and the thread-per-client engine's threads have small
        // stacks.
        let mut serializer = V2Serializer::new();
        let mut encode = |h: &Histogram<u64>| {
            let mut bytes = Vec::new();
            // Serializing into memory cannot fail for a histogram we built ourselves.
            let _ = serializer.serialize(h, &mut bytes);
            (!h.is_empty()).then_some(bytes)
        };
        self.encoded.push(Encoded {
            second,
            histograms: [
                encode(&sum.corrected),
                encode(&sum.uncorrected),
                encode(&sum.lag),
            ],
        });
    }
}

/// The interval log of the engine's seconds (see [`write_interval_log`]).
fn interval_log(encoded: &[Encoded], started_at: SystemTime) -> String {
    let mut deserializer = Deserializer::new();
    let intervals = encoded.iter().flat_map(|entry| {
        entry
            .histograms
            .iter()
            .enumerate()
            .filter_map(|(tag, bytes)| Some((entry.second, tag, bytes.as_ref()?)))
    });
    let decoded = intervals.filter_map(|(second, tag, bytes)| {
        let h = deserializer
            .deserialize::<u64, _>(&mut bytes.as_slice())
            .ok()?;
        Some((second, tag, h))
    });
    write_interval_log(decoded, started_at)
}

/// An HdrHistogram interval log, as the `hdrhistogram` crate writes it and HdrHistogram's
/// tools read it: one line per second and tag (an index into [`TAGS`]), latencies in
/// microseconds, seconds counted from `started_at`. `intervals` come in order of second;
/// each is written and dropped, so a long run never holds more than one decoded histogram.
pub fn write_interval_log(
    intervals: impl Iterator<Item = (u64, usize, Histogram<u64>)>,
    started_at: SystemTime,
) -> String {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment("servelab simulator: latency per second, in microseconds")
            .add_comment("Tag=corrected: from the moment each request was due; Tag=uncorrected: from its actual send; Tag=lag: how late the engine sent requests that had a free connection")
            .with_start_time(started_at)
            .with_base_time(started_at)
            .with_max_value_divisor(1.0);
        let Ok(mut writer) = builder.begin_log_with(&mut out, &mut serializer) else {
            return String::new();
        };
        for (second, tag, h) in intervals {
            let _ = writer.write_histogram(
                &h,
                Duration::from_secs(second),
                Duration::from_secs(1),
                TAGS.get(tag).and_then(|t| Tag::new(t)),
            );
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

/// One histogram of an interval log, still encoded (see [`read_interval_log`]).
#[derive(Debug, Clone)]
pub struct LoggedInterval {
    /// Seconds from the log's base time to the interval's start, rounded down.
    pub second: u64,
    /// An index into [`TAGS`].
    pub tag: usize,
    /// The histogram as the log holds it: base64 of its compressed V2 encoding.
    pub encoded: String,
}

/// What [`read_interval_log`] found: the log's base time and its histograms, in the
/// order written.
#[derive(Debug, Clone, Default)]
pub struct IntervalLog {
    /// The moment the log's interval times count from (its `BaseTime`, else its
    /// `StartTime`).
    pub base: Option<SystemTime>,
    pub intervals: Vec<LoggedInterval>,
}

/// Reads an interval log written by [`write_interval_log`]. Intervals with another tag
/// are skipped; a line that is not a valid entry is an error, in words.
pub fn read_interval_log(text: &str) -> Result<IntervalLog, String> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let mut log = IntervalLog::default();
    let mut start = None;
    for entry in IntervalLogIterator::new(text.as_bytes()) {
        match entry.map_err(|e| format!("not an HdrHistogram interval log ({e:?})"))? {
            LogEntry::StartTime(t) => start = Some(SystemTime::UNIX_EPOCH + t),
            LogEntry::BaseTime(t) => log.base = Some(SystemTime::UNIX_EPOCH + t),
            LogEntry::Interval(i) => {
                let Some(tag) = i
                    .tag()
                    .and_then(|t| TAGS.iter().position(|name| *name == t.as_str()))
                else {
                    continue;
                };
                log.intervals.push(LoggedInterval {
                    second: i.start_timestamp().as_secs(),
                    tag,
                    encoded: i.encoded_histogram().to_owned(),
                });
            }
        }
    }
    log.base = log.base.or(start);
    Ok(log)
}

/// Decodes one histogram of an interval log.
pub fn decode_histogram(encoded: &str) -> Result<Histogram<u64>, String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("a histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize::<u64, _>(&mut bytes.as_slice())
        .map_err(|e| format!("a histogram cannot be decoded: {e:?}"))
}

/// The percentile distribution of `h` in the text format of HdrHistogram's
/// `outputPercentileDistribution`, which HdrHistogram's plotter reads (`.hgrm` files).
/// Values are printed in milliseconds.
pub fn percentile_spectrum(h: &Histogram<u64>) -> String {
    use std::fmt::Write as _;
    let scale = 1000.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if h.is_empty() {
        return out;
    }
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / scale;
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:>12.3} {q:>14.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:>12.3} {q:>14.12} {total:>10}");
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / scale,
        h.stdev() / scale
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / scale,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        // HdrHistogram's sub-bucket count: the power of two that holds 2 × 10^sigfig.
        (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
    );
    out
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
    fn every_second_is_one_row_however_the_threads_hand_them_in() {
        let series = Arc::new(Series::new(2));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let (mut early, mut late) = (tally(&series, start, 0), tally(&series, start, 1));
        // The first thread works in second 0 and 1, then leaves; the second works on to
        // second 4, handing its seconds in after the first has gone.
        early.sent(at(100));
        early.answered(at(100), at(100), at(150), 200);
        early.sent(at(1_100));
        early.finish();
        late.sent(at(200));
        late.sent(at(1_500));
        late.sent(at(4_200));
        late.answered(at(4_200), at(4_200), at(4_300), 200);
        late.finish();
        let (rows, log) = series.finish(SystemTime::now());
        let seconds: Vec<u64> = rows.iter().map(|r| r.second).collect();
        assert_eq!(seconds, [0, 1, 2, 3, 4]);
        let sent: Vec<u64> = rows.iter().map(|r| r.sent).collect();
        assert_eq!(sent, [2, 2, 0, 0, 1]);
        assert_eq!(rows[0].served, 1);
        assert_eq!(rows[4].served, 1);
        assert!(
            rows[0].p50_us >= 49_000 && rows[0].p50_us <= 51_000,
            "{:?}",
            rows[0]
        );
        // One line per tag for each second with answers (0 and 4); seconds with none (1,
        // which only sent) have no histogram to write.
        assert_eq!(
            log.lines()
                .filter(|l| l.starts_with("Tag=corrected"))
                .count(),
            2
        );
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
