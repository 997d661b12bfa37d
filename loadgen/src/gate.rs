//! A start gate: many threads wait at it, and are released together, or called off.
//!
//! The simulator starts every client on a thread of its own and wants them to begin at the
//! same moment, so each waits at the gate until all exist. A `std::sync::Barrier` would do
//! that, but it cannot be called off: if the operating system refuses one thread, the
//! threads already waiting at a barrier for it would wait forever. This gate is opened
//! either way: [`StartGate::go`] releases everyone to run, [`StartGate::call_off`] releases
//! everyone to return at once.
//!
//! Opening the gate also fixes the run's common start: [`StartGate::go`] reads the clock
//! once and every waiter receives that same instant, so every deadline counts from one
//! moment however late a thread wakes.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct StartGate {
    /// `None` while closed; then the common start (`Some(Some(start))`) or called off
    /// (`Some(None)`). Under a mutex with `opened`, the condition variable the waiters sleep
    /// on.
    state: Mutex<Option<Option<Instant>>>,
    opened: Condvar,
}

impl StartGate {
    pub fn new() -> StartGate {
        StartGate::default()
    }

    /// Blocks until the gate opens; returns the common start, or `None` when called off.
    pub fn wait(&self) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(go) = *state {
                return go;
            }
            // Releases the lock and sleeps until the gate opens (re-checked: a wake-up may
            // be spurious).
            state = self.opened.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Releases every waiter (and every later one) to run, and returns the common start
    /// they all receive.
    pub fn go(&self) -> Instant {
        let start = Instant::now();
        self.open(Some(start));
        start
    }

    /// Releases every waiter (and every later one) to return without running.
    pub fn call_off(&self) {
        self.open(None);
    }

    fn open(&self, go: Option<Instant>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(go);
        self.opened.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn called_off_releases_every_waiter() {
        let gate = Arc::new(StartGate::new());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let gate = Arc::clone(&gate);
                std::thread::spawn(move || gate.wait())
            })
            .collect();
        gate.call_off();
        for waiter in waiters {
            assert!(waiter.join().expect("a waiter").is_none());
        }
        assert!(gate.wait().is_none(), "late waiters see it called off too");
    }
}
