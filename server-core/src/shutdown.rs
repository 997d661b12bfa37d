//! Graceful shutdown: one flag, and the things to do when it flips.
//!
//! A server thread can be blocked in three places when the operator presses Ctrl+C: in
//! `accept()` waiting for a new client, in `read()` waiting for a keep-alive client's next
//! request, or inside a handler. Setting a flag wakes none of them, so [`Shutdown`] also
//! keeps a list of hooks that run once, when it is triggered. Each part of a server
//! registers the hook that wakes it: the acceptor shuts its listening socket down (which
//! makes a blocked `accept()` return at once on Linux), and the connection registry shuts
//! down the read side of every open connection (which makes a blocked `read()` return 0, as
//! if the client had closed). Handlers are left alone: the request in progress finishes,
//! unless its client has already left (see [`Shutdown::sleep`]): then nobody waits for its
//! answer, and the server would only take longer to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

type Hook = Box<dyn FnOnce() + Send>;

/// How often a sleep looks at its client once shutdown has begun (see [`Shutdown::sleep`]).
const CLIENT_CHECK: Duration = Duration::from_millis(10);

/// The shutdown flag and its hooks. Shared by every thread of a server, because any of them
/// may need to ask "are we stopping?" and the signal thread must be able to stop them all.
#[derive(Default)]
pub struct Shutdown {
    /// Set once, by `trigger`. Read with `Acquire`, which pairs with the `Release` store that
    /// sets it: a thread that sees the flag also sees what the triggering thread did before
    /// (recording `began`), so a deadline computed after seeing it is never computed from
    /// "now" by mistake.
    triggered: AtomicBool,
    /// When shutdown began: every grace period is counted from this moment, not from when
    /// a thread notices (a main thread may have been blocked for a while first).
    began: OnceLock<Instant>,
    /// Hooks to run when triggered. Guarded by a mutex so that registering a hook and
    /// triggering cannot interleave: a hook registered after the trigger runs at once.
    hooks: Mutex<Vec<Hook>>,
    /// Where sleeping handlers wait (see [`Shutdown::sleep`]): the trigger notifies
    /// `woken` while holding this lock, and a sleeper checks the flag while holding it,
    /// so a trigger can never fall between a sleeper's check and its wait.
    sleepers: Mutex<()>,
    woken: Condvar,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .field("began", &self.began.get())
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::Acquire)
    }

    /// Begins shutdown and runs every hook once. Calling it again does nothing.
    pub fn trigger(&self) {
        let hooks = {
            // Triggers (and hook registrations) take turns under this lock.
            let mut hooks = self.hooks.lock();
            if self.triggered.load(Ordering::Acquire) {
                return;
            }
            // The moment is recorded before the flag is raised, so whoever sees the flag
            // also sees the moment.
            let _ = self.began.set(Instant::now());
            self.triggered.store(true, Ordering::Release);
            std::mem::take(&mut *hooks)
        };
        // Wakes every sleeping handler, so that one whose client has left stops at once.
        // Taking the sleepers' lock first means no sleeper is between its look at the flag
        // and its wait (see `sleep`).
        {
            let _sleepers = self.sleepers.lock();
            self.woken.notify_all();
        }
        // Run outside the lock, so a hook may itself look at the flag or register hooks.
        for hook in hooks {
            hook();
        }
    }

    /// Sleeps for `delay`, as a handler of `/sleep` does, but stops early once shutdown has
    /// begun and `wanted` says that the client is gone (it closed the connection): then
    /// nobody waits for the answer, and the server would only take longer to stop. A
    /// client that is still there gets its whole delay, as shutdown promises. Returns
    /// whether it slept the whole delay.
    ///
    /// Before shutdown this is one wait, as cheap as `std::thread::sleep`: the work of a
    /// client that left is still done then, as it always was (the labs count such
    /// clients). Once shutdown has begun, it looks at the client every 10 ms.
    pub fn sleep(&self, delay: Duration, wanted: &dyn Fn() -> bool) -> bool {
        let end = Instant::now() + delay;
        {
            let mut sleepers = self.sleepers.lock();
            while !self.is_triggered() {
                // Blocks until the delay is over, or the trigger wakes every sleeper.
                if self.woken.wait_until(&mut sleepers, end).timed_out() {
                    return true;
                }
            }
        }
        loop {
            if !wanted() {
                return false;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            // Blocks for the rest of the delay, or until the next look at the client.
            std::thread::sleep(left.min(CLIENT_CHECK));
        }
    }

    /// The end of a grace period of `grace` counted from the moment shutdown began (or from
    /// now, if it has not begun).
    pub fn deadline(&self, grace: Duration) -> Instant {
        self.began.get().copied().unwrap_or_else(Instant::now) + grace
    }

    /// Registers something to do when shutdown begins (or does it now, if it already has).
    pub fn on_trigger(&self, hook: impl FnOnce() + Send + 'static) {
        let mut hooks = self.hooks.lock();
        if self.is_triggered() {
            drop(hooks);
            hook();
        } else {
            hooks.push(Box::new(hook));
        }
    }
}

/// Starts a thread named `signals` that calls `begin_shutdown` on the first SIGINT or
/// SIGTERM, and exits the process at once (status 130) on a second one, for an operator who
/// does not want to wait for slow requests.
///
/// The signals are delivered to this thread through signal-hook's self-pipe, never to a
/// handler that interrupts whatever a server thread was doing: the code that begins
/// shutdown runs as ordinary code, on a thread of its own, and may take locks and log.
pub fn on_signals(begin_shutdown: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            // Blocks until the process receives one of the signals above.
            let mut received = signals.forever();
            if let Some(signal) = received.next() {
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                tracing::info!("{name} received: shutting down (send it again to exit at once)");
                begin_shutdown();
            }
            if received.next().is_some() {
                tracing::warn!("second signal received: exiting without waiting");
                std::process::exit(130);
            }
        })?;
    Ok(())
}
