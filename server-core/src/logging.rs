//! Log output on stderr with `tracing`, and a rate limit for lines that repeat.
//!
//! Each line carries a timestamp and the name of the thread that wrote it, like the
//! lecture's `%(asctime)s (%(threadName)s)` format, because in a concurrent server "which
//! thread did this?" is the first question when reading a log.
//!
//! Some lines can repeat many times a second when something runs out: at the limit on open
//! files, every `accept` fails. [`RepeatLog`] lets one such line through per second and
//! says how many it left out, so that the log stays readable and still tells what happened.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::LogLevel;

/// Installs the global log subscriber. Calling it twice (as tests do) is harmless.
///
/// Logs go to stderr, so that a server's stdout stays free (the scripts and the
/// simulator read only its stderr). Colours only on a terminal: a log file or a pipe
/// gets plain text.
pub fn init(level: LogLevel) {
    let max = match level {
        LogLevel::Quiet => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(max)
        .with_thread_names(true)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// How often a line that repeats may be written: once a second, like the kernel's
/// `printk_ratelimit` and nginx's one error line per second per kind at the descriptor
/// limit.
pub const REPEAT_EVERY: Duration = Duration::from_secs(1);

/// The most kinds of line one [`RepeatLog`] tells apart. Beyond it, the kind written least
/// recently is forgotten (and its count of suppressed lines with it): a server has only a
/// handful of kinds of repeated line, so this bounds the memory without costing a line.
const KINDS: usize = 16;

/// A rate limit for log lines that can repeat many times a second.
///
/// At the descriptor limit every `accept` fails with "too many open files", and a server
/// that retries every 50 ms writes twenty warnings a second per thread that accepts, which
/// buries everything else in the log. A `RepeatLog` lets one line of each kind through per
/// [`REPEAT_EVERY`] and counts the others; the next line written says how many were left
/// out:
///
/// ```text
/// accept failed: Too many open files (os error 24); retrying in 50 ms (and 19 more like it in the last 1.0s)
/// ```
///
/// A kind is whatever the caller hashes into the key: the call site and the error, say
/// (`("accept", error.raw_os_error())`). Lines left out when the repeats stop are never
/// reported: the last line written says that the trouble was going on, and no line after it
/// says that it went on.
///
/// Every thread of a server shares one (it lives in the server's
/// [`Context`](crate::Context)), so two event loops failing together still write one line a
/// second between them. The state is behind a mutex, held only to look at and update one
/// small entry: these lines are rare outside trouble, and in trouble the lock is what keeps
/// the count exact. The clock is monotonic (`Instant`) and given by the caller, so that a
/// test can drive the limiter with made-up instants instead of sleeping.
#[derive(Debug)]
pub struct RepeatLog {
    every: Duration,
    /// One entry per kind of line seen, at most [`KINDS`].
    kinds: Mutex<Vec<Kind>>,
}

/// What a [`RepeatLog`] remembers of one kind of line.
#[derive(Debug)]
struct Kind {
    key: u64,
    /// When a line of this kind was last written.
    written: Instant,
    /// Lines of this kind left out since then.
    suppressed: u64,
}

/// The lines of a kind left out before the one about to be written. Its `Display` is the
/// note to append to that line: nothing when none was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeats {
    /// How many lines were left out.
    pub suppressed: u64,
    /// Since when: the time since the last line of the kind was written.
    pub over: Duration,
}

impl std::fmt::Display for Repeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.suppressed == 0 {
            return Ok(());
        }
        write!(
            f,
            " (and {} more like it in the last {:.1}s)",
            self.suppressed,
            self.over.as_secs_f64()
        )
    }
}

impl Default for RepeatLog {
    fn default() -> Self {
        RepeatLog::new(REPEAT_EVERY)
    }
}

impl RepeatLog {
    /// A limiter letting one line of each kind through per `every`.
    pub const fn new(every: Duration) -> RepeatLog {
        RepeatLog {
            every,
            kinds: Mutex::new(Vec::new()),
        }
    }

    /// Decides about a line of kind `key` that is due at `now`: `Some` (with the lines left
    /// out before it) if it may be written, `None` if it is left out and counted. The first
    /// line of a kind is always written.
    pub fn admit(&self, key: impl Hash, now: Instant) -> Option<Repeats> {
        let key = {
            let mut hasher = DefaultHasher::new();
            key.hash(&mut hasher);
            hasher.finish()
        };
        let mut kinds = self.kinds.lock();
        let Some(kind) = kinds.iter_mut().find(|k| k.key == key) else {
            if kinds.len() >= KINDS {
                // Forget the kind written least recently.
                if let Some(oldest) = (0..kinds.len()).min_by_key(|&i| kinds[i].written) {
                    kinds.swap_remove(oldest);
                }
            }
            kinds.push(Kind {
                key,
                written: now,
                suppressed: 0,
            });
            return Some(Repeats {
                suppressed: 0,
                over: Duration::ZERO,
            });
        };
        let over = now.saturating_duration_since(kind.written);
        if over < self.every {
            kind.suppressed += 1;
            return None;
        }
        let repeats = Repeats {
            suppressed: kind.suppressed,
            over,
        };
        kind.written = now;
        kind.suppressed = 0;
        Some(repeats)
    }

    /// Writes the warning `line` (made only if it is written) unless a line of kind `key`
    /// was written less than a second ago; appends how many were left out before it.
    pub fn warn(&self, key: impl Hash, line: impl FnOnce() -> String) {
        if let Some(repeats) = self.admit(key, Instant::now()) {
            tracing::warn!("{}{repeats}", line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds after a fixed start: the limiter's clock, made up.
    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn one_line_a_second_with_the_count_of_the_others() {
        let log = RepeatLog::default();
        let t0 = Instant::now();
        // The first line of a kind goes through, with nothing to add.
        let first = log.admit("emfile", t0).expect("the first line is written");
        assert_eq!(first.to_string(), "");
        // Twenty a second, as an accept loop retrying every 50 ms: all left out ...
        for ms in (50..1000).step_by(50) {
            assert_eq!(log.admit("emfile", at(t0, ms)), None, "at {ms} ms");
        }
        // ... until a second has passed: then one line, counting the 19 left out.
        let next = log.admit("emfile", at(t0, 1000)).expect("a second later");
        assert_eq!(next.suppressed, 19);
        assert_eq!(next.to_string(), " (and 19 more like it in the last 1.0s)");
        // The count starts again from that line.
        assert_eq!(log.admit("emfile", at(t0, 1500)), None);
        let third = log
            .admit("emfile", at(t0, 2600))
            .expect("after the next second");
        assert_eq!(
            (third.suppressed, third.over),
            (1, Duration::from_millis(1600))
        );
    }

    #[test]
    fn kinds_are_limited_apart() {
        let log = RepeatLog::default();
        let t0 = Instant::now();
        assert!(log.admit(("accept", 24), t0).is_some());
        // Another kind within the same second is a first line of its own.
        assert!(log.admit(("accept", 23), at(t0, 10)).is_some());
        assert!(log.admit(("accept", 24), at(t0, 20)).is_none());
        assert!(log.admit(("accept", 23), at(t0, 30)).is_none());
    }

    #[test]
    fn kinds_beyond_the_bound_forget_the_oldest() {
        let log = RepeatLog::default();
        let t0 = Instant::now();
        for kind in 0..KINDS as u64 + 1 {
            assert!(log.admit(kind, at(t0, kind)).is_some());
        }
        assert_eq!(log.kinds.lock().len(), KINDS);
        // Kind 0 was forgotten, so it counts as new; the newest one was not.
        assert!(log.admit(0u64, at(t0, 100)).is_some());
        assert!(log.admit(KINDS as u64, at(t0, 100)).is_none());
    }

    #[test]
    fn threads_share_one_count() {
        let log = std::sync::Arc::new(RepeatLog::default());
        let t0 = Instant::now();
        assert!(log.admit("shared", t0).is_some());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let log = std::sync::Arc::clone(&log);
                std::thread::spawn(move || {
                    for ms in 1..=10 {
                        assert!(log.admit("shared", at(t0, ms)).is_none());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a thread of the test");
        }
        let next = log.admit("shared", at(t0, 1000)).expect("a second later");
        assert_eq!(next.suppressed, 40);
    }
}
