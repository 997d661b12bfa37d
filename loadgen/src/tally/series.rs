//! The per-second time series of a run, and the interval log built from it.
//!
//! The time series is built one second at a time: each tally fills the current second and,
//! when its clock passes into the next, hands the finished second to the shared
//! [`Series`], which adds up the threads' contributions and, once every thread has handed
//! in a second, turns it into a row and two compressed histograms. So a long run holds a
//! few seconds of histograms at a time, not all of them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::hlog::write_interval_log;
use super::Requests;
use crate::units::new_histogram;

/// One second of the time series, as one thread saw it or as all threads together did.
#[derive(Debug)]
pub(super) struct Second {
    pub(super) counts: Requests,
    pub(super) corrected: Histogram<u64>,
    pub(super) uncorrected: Histogram<u64>,
    /// Open loop: the engine's lateness for requests sent in this second.
    pub(super) lag: Histogram<u64>,
}

impl Second {
    pub(super) fn new() -> Second {
        Second {
            counts: Requests::default(),
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            lag: new_histogram(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.counts == Requests::default() && self.lag.is_empty()
    }

    pub(super) fn clear(&mut self) {
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
#[derive(Debug)]
struct Encoded {
    second: u64,
    histograms: [Option<Vec<u8>>; 3],
}

/// The time series, shared by the engine threads. See the module documentation.
#[derive(Debug)]
pub struct Series {
    /// Under a mutex because every engine thread hands in its seconds here; each does so
    /// once a second, so the lock is never contended for long.
    inner: Mutex<SeriesInner>,
}

#[derive(Debug, Default)]
struct SeriesInner {
    /// For each tally, the next second it will hand in (each hands in every second in
    /// order), or `None` once it has left: a second is complete when every tally still
    /// present is past it.
    next: Vec<Option<u64>>,
    /// Seconds not yet complete, and the sum of what was handed in for each. Every thread
    /// hands in each second as its clock passes it, so this holds only the seconds between
    /// the slowest thread and the fastest: a second or two, however long the run.
    open: BTreeMap<u64, Second>,
    /// The closed seconds' rows, in the order they closed.
    rows: Vec<Row>,
    /// The closed seconds' histograms, encoded: a few hundred bytes per second and tag.
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

    /// Tally `index` hands in `second` (and will hand in the next one next). Blocks only
    /// for the series' mutex, which other threads hold for as long as one second's sum
    /// and, now and then, one row's encoding.
    pub(super) fn hand_in(&self, index: usize, second: u64, part: &Second) {
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

    /// Tally `index` hands in no more seconds: the seconds it held open can close without
    /// it.
    pub(super) fn leave(&self, index: usize) {
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

    /// Turns a complete second into its row (counts and corrected percentiles) and its
    /// encoded histograms, after which only those are kept.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::tally::{Live, Tally};

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
}
