//! The terminal while the live view is up, and the view as the engine's monitor.
//!
//! Entering the view puts the terminal in raw mode (keys arrive one by one, unechoed, and
//! Ctrl+C arrives as a key rather than a signal) on the alternate screen with the cursor
//! hidden. Leaving restores all three. Every way out leaves: the run's end
//! ([`Monitor::finish`]), the view being dropped (an error that unwinds the run), and a
//! panic anywhere in the process (a panic hook, installed once, restores the terminal
//! before the panic's message is printed, so that the message is readable).

use std::io::{self, Stderr, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Once};
use std::time::{Duration, Instant};

use loadgen::engine::Monitor;
use loadgen::tally::live::Live;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;

use super::model::{Model, Shape};
use super::{draw, Layout, QUIT};
use crate::watch::StatsSample;

/// The terminal is in the view's state (raw, alternate screen): what the panic hook
/// restores. Shared by the view (which sets and clears it) and the panic hook (which may
/// run on any thread).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Set in the environment, this makes the view panic at its third tick: the only way for
/// the tests to check that a panic restores the terminal. Nobody sets it by accident.
const PANIC_FOR_TESTS: &str = "SIMULATOR_LIVE_TEST_PANIC";

/// The panic hook is installed once per process, by the first view.
static HOOK: Once = Once::new();

/// Puts the terminal back as it was: raw mode off, the alternate screen left, the cursor
/// shown. Does nothing if the view is not up, so every way out may call it.
pub(crate) fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    // Each step is tried even if one before failed: a half-restored terminal is worse.
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stderr(), terminal::LeaveAlternateScreen, cursor::Show);
    let _ = io::stderr().flush();
}

/// Restores the terminal before any panic's message is printed.
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Enters the view's terminal state, on standard error.
fn enter() -> io::Result<Terminal<CrosstermBackend<Stderr>>> {
    install_panic_hook();
    terminal::enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    let entered = execute!(io::stderr(), terminal::EnterAlternateScreen, cursor::Hide)
        .and_then(|()| Terminal::new(CrosstermBackend::new(io::stderr())));
    if entered.is_err() {
        restore();
    }
    entered
}

/// What a key asks of the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    /// `q`, Esc or Ctrl+C: stop the run.
    Stop,
    /// Space: pause or resume the display.
    Pause,
}

/// What `event` asks, if anything.
pub(crate) fn key(event: &Event) -> Option<Key> {
    let Event::Key(k) = event else {
        return None;
    };
    if k.kind != KeyEventKind::Press {
        return None;
    }
    match k.code {
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => Some(Key::Stop),
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Some(Key::Stop),
        KeyCode::Char(' ') => Some(Key::Pause),
        _ => None,
    }
}

/// The live view of one run: a [`Monitor`] of the engine.
pub(crate) struct LiveView {
    model: Model,
    layout: Layout,
    /// The server's `/stats` readings, sent by the watch thread ([`crate::watch::during`])
    /// as it takes them: an unbounded channel that holds at most the two or three readings
    /// taken between two ticks of the view.
    stats: Option<mpsc::Receiver<StatsSample>>,
    /// When the clients started.
    began: Instant,
    /// The terminal, while the view is up.
    terminal: Option<Terminal<CrosstermBackend<Stderr>>>,
}

impl std::fmt::Debug for LiveView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveView")
            .field("layout", &self.layout)
            .field("up", &self.terminal.is_some())
            .finish()
    }
}

impl LiveView {
    pub(crate) fn new(
        shape: Shape,
        layout: Layout,
        stats: Option<mpsc::Receiver<StatsSample>>,
    ) -> LiveView {
        LiveView {
            model: Model::new(shape),
            layout,
            stats,
            began: Instant::now(),
            terminal: None,
        }
    }

    /// Takes the keys pressed since the last tick, without waiting for any.
    fn keys(&mut self, live: &Live) {
        // `poll` with a zero timeout returns at once: the view never waits for a key.
        while let Ok(true) = event::poll(Duration::ZERO) {
            let Ok(event) = event::read() else {
                break;
            };
            match key(&event) {
                Some(Key::Stop) => {
                    QUIT.store(true, Ordering::Relaxed);
                    live.request_stop();
                    self.model.stopping = true;
                    // Drawn even when paused: the room sees that the run is ending.
                    self.redraw();
                }
                Some(Key::Pause) => {
                    self.model.paused = !self.model.paused;
                    // Once more, to show (or clear) the pause.
                    self.redraw();
                }
                None => {}
            }
        }
    }

    fn redraw(&mut self) {
        let (model, layout) = (&self.model, self.layout);
        if let Some(terminal) = self.terminal.as_mut() {
            // A failed draw (the terminal went away) loses a frame, not the run.
            let _ = terminal.draw(|frame| draw::draw(frame, model, layout));
        }
    }

    /// Leaves the view, and says how the run ended if `q` stopped it.
    fn leave(&mut self) {
        if self.terminal.take().is_some() {
            restore();
        }
    }
}

impl Monitor for LiveView {
    fn start(&mut self, _planned: Duration) {
        self.began = Instant::now();
        if QUIT.load(Ordering::Relaxed) {
            // An earlier run of this command was stopped with `q`: this one ends at once.
            return;
        }
        if ACTIVE.load(Ordering::SeqCst) {
            // Another run of this process (a lab step on another thread) has the screen:
            // this one goes unseen rather than draw over it.
            return;
        }
        match enter() {
            Ok(terminal) => self.terminal = Some(terminal),
            Err(e) => super::fall_back(&format!("the terminal refused raw mode: {e}")),
        }
    }

    fn update(&mut self, live: &Live) {
        if self.model.ticks.len() == 2 && std::env::var_os(PANIC_FOR_TESTS).is_some() {
            panic!("{PANIC_FOR_TESTS} is set: the live view panics, to test that the terminal is restored");
        }
        if QUIT.load(Ordering::Relaxed) {
            live.request_stop();
        }
        self.model.sample(live, self.began.elapsed());
        if let Some(stats) = &self.stats {
            self.model.server.extend(stats.try_iter());
        }
        self.keys(live);
        if !self.model.paused {
            self.redraw();
        }
    }

    /// Leaves the view, and leaves its last counts on the screen: the room keeps the
    /// outcome once the full-screen view is gone.
    fn finish(&mut self) {
        let shown = self.terminal.is_some();
        self.leave();
        if self.model.stopping {
            eprintln!(
                "simulator: stopped with q after {:.1} s; clients not answered by then count as starved",
                self.began.elapsed().as_secs_f64()
            );
        }
        if shown {
            eprintln!("simulator --live: {}", draw::summary(&self.model));
            super::remember(draw::ended_line(&self.model));
        }
    }

    fn wants_clients(&self) -> bool {
        true
    }
}

impl Drop for LiveView {
    /// A run that ends by an error (or a panic that unwinds) still restores the terminal.
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEvent;

    #[test]
    fn q_escape_and_ctrl_c_stop_and_space_pauses() {
        let press = |code, modifiers| Event::Key(KeyEvent::new(code, modifiers));
        assert_eq!(
            key(&press(KeyCode::Char('q'), KeyModifiers::NONE)),
            Some(Key::Stop)
        );
        assert_eq!(
            key(&press(KeyCode::Esc, KeyModifiers::NONE)),
            Some(Key::Stop)
        );
        assert_eq!(
            key(&press(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Key::Stop)
        );
        assert_eq!(key(&press(KeyCode::Char('c'), KeyModifiers::NONE)), None);
        assert_eq!(
            key(&press(KeyCode::Char(' '), KeyModifiers::NONE)),
            Some(Key::Pause)
        );
        assert_eq!(key(&Event::FocusGained), None);
    }
}
