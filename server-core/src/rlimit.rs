//! The limit on open files, which bounds how many connections a process can hold.
//!
//! Every connection is a file descriptor, and Linux's default soft limit is often 1024,
//! far below what an event loop can hold. A process may raise its soft limit up to the hard
//! limit without privileges, as nginx does with `worker_rlimit_nofile`; every servelab
//! binary raises it at start, and tests and labs that open many connections ask for what
//! they need.

/// Raises this process's soft limit on open files towards `wanted` (never above the hard
/// limit) and returns the limit now in force.
pub fn raise_open_files(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the `rlimit` struct we own, and
    // nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}
