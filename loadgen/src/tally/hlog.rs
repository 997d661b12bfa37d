//! HdrHistogram's file formats: the interval log (one histogram per second and tag, which
//! several generators' logs can be merged from exactly) and the percentile spectrum that
//! HdrHistogram's plotter reads (`.hgrm`).

use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// The interval log's tags, in the order each second's histograms are written:
/// latencies from when each request was due, from its actual send, and (open loop) the
/// engine's own lateness in sending.
pub const TAGS: [&str; 3] = ["corrected", "uncorrected", "lag"];

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
