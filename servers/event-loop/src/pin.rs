//! Pinning a reactor's thread to one CPU (`--pin on`).
//!
//! Without pinning, the kernel runs a reactor's thread on any CPU the process may use and
//! moves it when it sees fit. With `--pin on`, reactor N runs only on the Nth CPU this
//! process may use (going round again when there are more reactors than CPUs), the way
//! nginx's `worker_cpu_affinity auto` places its workers: each reactor's connections, timer
//! heap and read buffer then stay in one CPU's cache.
//!
//! Pinning places the *threads*; it does not decide where connections go. With `--accept
//! reuseport` the kernel still hashes each new connection to a listening socket by its
//! addresses and ports, whatever CPU that socket's reactor runs on and however busy it is
//! (lab 26 shows a stalled reactor keeping its share of newcomers, pinned or not). It helps
//! only when the reactors have the CPUs to themselves: on a machine whose load generator
//! shares the CPUs it can make things worse, which is why it is off by default.
//!
//! The same two calls as the per-core async server's `--pin` (`async_per_core::pin`),
//! through `nix`, so that neither server needs `unsafe`.

use std::io;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Whether each reactor's thread is pinned to a CPU of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pin {
    /// The kernel places the threads (and may move them).
    #[default]
    Off,
    /// Reactor N's thread runs only on the Nth CPU this process may use.
    On,
}

/// The CPUs the calling thread may run on, in order (its affinity mask, which `taskset`
/// or a container's CPU set narrows).
pub(crate) fn allowed_cpus() -> io::Result<Vec<usize>> {
    // Pid 0 is the calling thread.
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// The CPU of each of `reactors` reactors, in order: the CPUs this process may use, in
/// turn, so reactor N+1 goes back to the first CPU when there are more reactors than CPUs.
/// All `None` with `--pin off`.
pub(crate) fn plan(pin: Pin, reactors: u32) -> io::Result<Vec<Option<usize>>> {
    Ok(match pin {
        Pin::Off => vec![None; reactors as usize],
        Pin::On => {
            let allowed = allowed_cpus()?;
            (0..reactors as usize)
                .map(|i| allowed.get(i % allowed.len().max(1)).copied())
                .collect()
        }
    })
}

/// Pins the calling thread to `cpu`.
pub(crate) fn pin_to(cpu: usize) -> io::Result<()> {
    // A set of one CPU; `set` fails for a number beyond what a set can hold.
    let mut set = CpuSet::new();
    set.set(cpu)?;
    // From here on the kernel runs this thread on `cpu` alone, moving it there first if it
    // ran elsewhere. It fails if `cpu` is not one this process may use.
    sched_setaffinity(Pid::from_raw(0), &set)?;
    Ok(())
}
