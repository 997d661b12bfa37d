//! Mutant `sigterm-ignored`: the starter, but SIGTERM does nothing.
//!
//! **Defect.** `docker stop`, Kubernetes and systemd all stop a server with SIGTERM, wait a
//! grace period, then kill it (SIGKILL): a server that ignores SIGTERM loses every request
//! in flight at the kill, and every deployment waits the whole grace period. This one
//! installs a handler that only sets a flag nobody reads, the classic half-done job.
//!
//! **Caught by `E.sigterm`**: the server must exit 0 within the shutdown timeout with
//! nothing lost; this one is still running when the grader gives up. (The correct variant:
//! `mutant none`, which stops gracefully as every servelab binary does.)

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use signal_hook::consts::SIGTERM;

/// Replaces SIGTERM's default action (death) with a handler that sets a flag.
pub fn ignore_sigterm() {
    // DEFECT: the flag is set on SIGTERM, and nothing ever looks at it.
    let flag = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(SIGTERM, flag) {
        tracing::warn!("could not install the SIGTERM handler: {e}");
    }
}

/// Blocks the calling thread for the life of the process: the server runs until it is
/// killed.
pub fn wait_forever() -> ! {
    loop {
        // Sleeps until another thread unparks this one, which none does (a spurious
        // wake-up just goes round again).
        std::thread::park();
    }
}
