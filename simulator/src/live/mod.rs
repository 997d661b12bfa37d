//! `--live`: watching a run happen in the terminal, full screen.
//!
//! A lecturer shows the room the queue forming as it happens: every client a row that fills
//! in with the report's colours (waiting to connect, waiting for service, being answered,
//! holding, then its outcome), the deadline as a column, the server's queues and busy
//! threads from its `/stats` beside them, and the outcome counts below. Above a screenful
//! of clients the rows give way to a stacked chart of how many are in each state.
//!
//! The view is a [`loadgen::engine::Monitor`]: the engine's coordinating thread calls it
//! five times a second, and it reads only the engines' lock-free live counters and one
//! byte per client that the engine threads store at each change of state (see
//! `loadgen::tally::live`). So the view never takes a lock of the engine's and never delays
//! a client's clock.
//!
//! The pieces: [`model`] is what the view has seen, as plain data; [`draw`] draws it with
//! ratatui (pure, tested on its `TestBackend`); [`screen`] owns the terminal (raw mode and
//! the alternate screen, always restored: at the end, on `q` or Ctrl+C, and after a panic)
//! and the keys. This module decides whether the view can run at all: with stderr not a
//! terminal, or a terminal too small, `--live` falls back to the progress line and says so
//! once.

pub(crate) mod draw;
pub(crate) mod model;
pub(crate) mod screen;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{mpsc, Mutex};

use clap::{Args, ValueEnum};
use loadgen::engine::Monitor;
use loadgen::Scenario;

use crate::progress::Progress;
use crate::watch::StatsSample;

/// The live view's layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Layout {
    /// Everything: a row per client, the server's sparklines, the legend.
    Normal,
    /// For a projector: fewer, larger elements (rows two lines high where they fit, the
    /// server's figures as plain numbers, no legend).
    Big,
}

/// `--live [big]`, shared by the commands that run clients.
#[derive(Debug, Args)]
pub(crate) struct LiveArgs {
    /// Watch the run in a full-screen terminal view: each client's state as it happens,
    /// the deadline, the server's queues and busy threads, the outcomes. `--live big` for
    /// a projector. Keys: q stops the run (the report follows), space pauses the display.
    /// Falls back to the progress line when stderr is not a terminal.
    #[arg(long, value_enum, value_name = "LAYOUT", num_args = 0..=1, default_missing_value = "normal")]
    live: Option<Layout>,
}

impl LiveArgs {
    /// Turns the view on (or leaves it off) for this process's runs.
    pub(crate) fn apply(&self) {
        let mode = match self.live {
            None => 0,
            Some(Layout::Normal) => 1,
            Some(Layout::Big) => 2,
        };
        MODE.store(mode, Ordering::Relaxed);
    }
}

/// The layout asked for on the command line (0: none), set once by the command before any
/// run. A process-wide setting because every run of a command (a lab's steps, a
/// comparison's architectures) shows it the same way.
static MODE: AtomicU8 = AtomicU8::new(0);

/// `q` was pressed in this process: the run in progress stops, and any later run of the
/// same command (a lab's next step) stops as soon as it starts.
static QUIT: AtomicBool = AtomicBool::new(false);

/// The fallback has been announced: it is said once per process, not once per run.
static SAID: AtomicBool = AtomicBool::new(false);

/// How each run this process has shown ended, a line each, oldest first: the next view
/// lists them under its title (a comparison's architectures one after another). Shared
/// because each run's view is a new value; a mutex because a view is made and ended on
/// the coordinating thread of whichever run it watches. At most [`EARLIER_KEPT`] lines.
static EARLIER: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Earlier runs remembered: more than a screen's title area would show.
const EARLIER_KEPT: usize = 16;

/// Remembers how a shown run ended, for the views of the runs after it.
fn remember(line: String) {
    // A poisoned lock only means a view panicked while holding it: the list is still whole.
    let mut earlier = EARLIER.lock().unwrap_or_else(|p| p.into_inner());
    if earlier.len() == EARLIER_KEPT {
        earlier.remove(0);
    }
    earlier.push(line);
}

/// The layout asked for, if any.
pub(crate) fn layout() -> Option<Layout> {
    match MODE.load(Ordering::Relaxed) {
        1 => Some(Layout::Normal),
        2 => Some(Layout::Big),
        _ => None,
    }
}

/// Whether the view was asked for: then the server's `/stats` is read during every run.
pub(crate) fn asked() -> bool {
    layout().is_some()
}

/// Whether the view can be drawn: `Ok`, or the reason it cannot, in words. `terminal`:
/// stderr is a terminal; `size`: its columns and rows, if known.
pub(crate) fn decide(terminal: bool, size: Option<(u16, u16)>) -> Result<(), String> {
    if !terminal {
        return Err("standard error is not a terminal".into());
    }
    let (min_w, min_h) = draw::MIN_SIZE;
    match size {
        None => Err("the terminal's size is unknown".into()),
        Some((w, h)) if w < min_w || h < min_h => Err(format!(
            "the terminal is {w}×{h}, smaller than the {min_w}×{min_h} the view needs"
        )),
        Some(_) => Ok(()),
    }
}

/// The fallback's one line, said once per process.
fn fall_back(reason: &str) {
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!(
            "simulator: --live cannot draw here ({reason}); showing the progress line instead"
        );
    }
}

/// The monitor of a run of `scenario` against `server`: the live view when it was asked
/// for and can be drawn (with the server's readings arriving on `stats`, and `predicted`,
/// the prediction in words, beside the measurement), else the progress line.
pub(crate) fn monitor(
    server: &str,
    scenario: &Scenario,
    predicted: Option<String>,
    stats: Option<mpsc::Receiver<StatsSample>>,
) -> Box<dyn Monitor> {
    let Some(layout) = layout() else {
        return Box::new(Progress::default());
    };
    let size = ratatui::crossterm::terminal::size().ok();
    match decide(std::io::stderr().is_terminal(), size) {
        Ok(()) => {
            let mut shape = model::Shape::of(server, scenario);
            shape.predicted = predicted;
            shape.earlier = EARLIER.lock().unwrap_or_else(|p| p.into_inner()).clone();
            Box::new(screen::LiveView::new(shape, layout, stats))
        }
        Err(reason) => {
            fall_back(&reason);
            Box::new(Progress::default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_needs_a_terminal_big_enough() {
        assert!(decide(true, Some((120, 40))).is_ok());
        assert!(decide(true, Some(draw::MIN_SIZE)).is_ok());
        let pipe = decide(false, Some((120, 40))).unwrap_err();
        assert!(pipe.contains("not a terminal"), "{pipe}");
        let small = decide(true, Some((80, 10))).unwrap_err();
        assert!(small.contains("80×10"), "{small}");
        assert!(decide(true, Some((59, 40))).is_err());
        assert!(decide(true, None).is_err());
    }
}
