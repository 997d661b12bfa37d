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

/// The CPUs the calling thread may run on, in order (its affinity mask, which `taskset`
/// or a container's CPU set narrows).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: `cpu_set_t` is a plain bit mask, for which all zeros is a valid value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size given; pid 0 means the
    // calling thread.
    let result =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
    // SAFETY: CPU_ISSET reads bit `cpu` of `set`, and `cpu` is below CPU_SETSIZE.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: as in `allowed_cpus`, all zeros is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes bit `cpu` of `set`; callers pass a CPU from `allowed_cpus`,
    // which is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of the size given; pid 0 means the calling thread.
    let result =
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
