//! A start gate: many threads wait at it, and are released together, or called off.
//!
//! The simulator starts every client on a thread of its own and wants them to begin at the
//! same moment, so each waits at the gate until all exist. A `std::sync::Barrier` would do
//! that, but it cannot be called off: if the operating system refuses one thread, the
//! threads already waiting at a barrier for it would wait forever. This gate is opened
//! either way: [`StartGate::go`] releases everyone to run, [`StartGate::call_off`] releases
//! everyone to return at once.

use std::sync::{Condvar, Mutex};

/// See the module documentation.
#[derive(Default)]
pub struct StartGate {
    /// `None` while closed; then whether to go. Under a mutex with `opened`, the condition
    /// variable the waiters sleep on.
    state: Mutex<Option<bool>>,
    opened: Condvar,
}

impl StartGate {
    pub fn new() -> StartGate {
        StartGate::default()
    }

    /// Blocks until the gate opens; returns whether to go (`false`: called off).
    pub fn wait(&self) -> bool {
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

    /// Releases every waiter (and every later one) to run.
    pub fn go(&self) {
        self.open(true);
    }

    /// Releases every waiter (and every later one) to return without running.
    pub fn call_off(&self) {
        self.open(false);
    }

    fn open(&self, go: bool) {
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
            assert!(!waiter.join().expect("a waiter"));
        }
        assert!(!gate.wait(), "late waiters see it called off too");
    }
}
