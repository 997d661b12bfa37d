//! Pinning a core's thread to one CPU (`--pin on`).
//!
//! Without pinning, the kernel may run a core's thread on any CPU the process may use, and
//! moves it when it sees fit; the thread keeps its own runtime and connections either way,
//! so nothing is shared, but its cache may be left behind on the CPU it ran on before.
//! Thread-per-core runtimes (glommio, seastar) pin each thread to a CPU of its own so that
//! its data stays in that CPU's cache. Pinning helps only when the threads have the CPUs
//! to themselves: on a machine whose load generator shares the CPUs it can make things
//! worse, which is why it is off by default.

use std::io;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs the calling thread may run on, in order (its affinity mask, which `taskset`
/// or a container's CPU set narrows).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // Pid 0 is the calling thread.
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    // A set of one CPU; `set` fails for a number beyond what a set can hold.
    let mut set = CpuSet::new();
    set.set(cpu)?;
    // From here on the kernel runs this thread on `cpu` alone, moving it there first if it
    // ran elsewhere. It fails if `cpu` is not one this process may use.
    sched_setaffinity(Pid::from_raw(0), &set)?;
    Ok(())
}
