//! A timer with microsecond resolution for the engine's poll (a Linux `timerfd`).
//!
//! `poll`'s own timeout is counted in milliseconds (mio rounds it up), which would send
//! open-loop requests up to a millisecond late. A `timerfd` is a file descriptor that
//! becomes readable when its timer expires, to the nanosecond the kernel's clock allows, so
//! registering it with the poll wakes the loop exactly when the next request is due.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use mio::Interest;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::ALARM;

/// A one-shot timer registered with the thread's poll under the token [`ALARM`].
pub(super) struct Alarm {
    timer: TimerFd,
}

impl Alarm {
    /// A disarmed alarm, watched by the poll behind `registry`.
    pub(super) fn new(registry: &mio::Registry) -> io::Result<Alarm> {
        // Non-blocking, so that acknowledging an alarm that has not rung never waits.
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        registry.register(
            &mut mio::unix::SourceFd(&timer.as_fd().as_raw_fd()),
            ALARM,
            Interest::READABLE,
        )?;
        Ok(Alarm { timer })
    }

    /// Rings once, `after` from now (at once if zero).
    pub(super) fn set(&mut self, after: Duration) -> io::Result<()> {
        // A zero expiration would disarm the timer; the smallest wait is a nanosecond.
        let after = after.max(Duration::from_nanos(1));
        self.timer.set(
            Expiration::OneShot(TimeSpec::from_duration(after)),
            TimerSetTimeFlags::empty(),
        )?;
        Ok(())
    }

    /// Reads the expiry count, so that the next expiry raises a new edge. Never blocks: the
    /// descriptor is non-blocking, and an alarm that has not rung just says so.
    pub(super) fn acknowledge(&mut self) {
        let mut count = [0u8; 8];
        let _ = nix::unistd::read(&self.timer, &mut count);
    }
}
