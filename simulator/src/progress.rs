//! The live progress line of long runs.
//!
//! A run that is planned to last more than two seconds shows one line on stderr while it
//! runs, redrawn a few times a second: the time so far, the request rate of the last
//! moment, the requests served so far, and the errors. It appears only when stderr is a
//! terminal; in a pipe, a file, CI or a container it stays silent, so the report on stdout
//! and any log are never interleaved with it. `indicatif` draws it.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use loadgen::engine::Monitor;
use loadgen::tally::live::{Live, LiveTotals};

/// Runs planned to be at least this long show the progress line.
pub const SHOW_AFTER: Duration = Duration::from_secs(2);

/// Whether a run planned to last `planned` shows a progress line, given whether stderr is
/// a terminal.
pub fn wanted(planned: Duration, terminal: bool) -> bool {
    terminal && planned > SHOW_AFTER
}

/// The progress line of one run (hidden when not [`wanted`]), a [`Monitor`] of the engine.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    began: Instant,
    last: (Instant, LiveTotals),
}

impl Default for Progress {
    /// A hidden line, until [`Monitor::start`] says how long the run is planned to last.
    fn default() -> Progress {
        let now = Instant::now();
        Progress {
            bar: ProgressBar::hidden(),
            began: now,
            last: (now, LiveTotals::default()),
        }
    }
}

impl Monitor for Progress {
    fn start(&mut self, planned: Duration) {
        if !wanted(planned, std::io::stderr().is_terminal()) {
            return;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        self.bar = bar;
        self.began = Instant::now();
        self.last = (self.began, LiveTotals::default());
    }

    /// Redraws the line from the engines' live counters.
    fn update(&mut self, live: &Live) {
        if self.bar.is_hidden() {
            return;
        }
        let now = Instant::now();
        let totals = live.totals();
        let (then, before) = self.last;
        let seconds = now.duration_since(then).as_secs_f64().max(1e-3);
        let rate = totals.sent.saturating_sub(before.sent) as f64 / seconds;
        self.bar.set_message(format!(
            "{:>5.1}s  {:>8.0} req/s  {} served  {} errors",
            now.duration_since(self.began).as_secs_f64(),
            rate,
            totals.served,
            totals.errors
        ));
        self.bar.tick();
        self.last = (now, totals);
    }

    /// Removes the line.
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_long_runs_on_a_terminal_show_progress() {
        assert!(wanted(Duration::from_secs(3), true));
        assert!(!wanted(Duration::from_secs(2), true));
        assert!(!wanted(Duration::from_secs(60), false));
    }
}
