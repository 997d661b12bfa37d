//! Units: microseconds, latency histograms, and durations for people.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Microseconds, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A latency histogram in microseconds, from 1 µs to an hour, with 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .expect("constant bounds that hdrhistogram accepts")
}

/// A duration in microseconds, for people: `850µs`, `12.3ms`, `1.20s`.
pub fn human_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us}µs"),
        1_000..=999_999 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}
