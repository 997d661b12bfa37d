//! The limit on open files, which bounds how many connections a process can hold.
//!
//! Every connection is a file descriptor, and Linux's default soft limit is often 1024,
//! far below what an event loop can hold. A process may raise its soft limit up to the hard
//! limit without privileges, as nginx does with `worker_rlimit_nofile`; every servelab
//! binary raises it at start, and tests and labs that open many connections ask for what
//! they need.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises this process's soft limit on open files towards `wanted` (never above the hard
/// limit) and returns the limit now in force.
pub fn raise_open_files(wanted: u64) -> u64 {
    // The soft limit is what the kernel enforces; the hard limit is how far an
    // unprivileged process may raise it.
    let limit = getrlimit(Resource::Nofile);
    // `None` means unlimited, for either limit.
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= wanted {
        return current;
    }
    let raised = Rlimit {
        current: Some(limit.maximum.map_or(wanted, |hard| wanted.min(hard))),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => raised.current.unwrap_or(u64::MAX),
        Err(_) => current,
    }
}

/// Sets this process's soft limit on open files to `limit` (never above the hard limit),
/// for a test that wants a server to run out of descriptors; returns the limit it replaced,
/// to put back afterwards with [`set_open_files`] again.
pub fn set_open_files(limit: u64) -> std::io::Result<u64> {
    let old = getrlimit(Resource::Nofile);
    let new = Rlimit {
        current: Some(old.maximum.map_or(limit, |hard| limit.min(hard))),
        maximum: old.maximum,
    };
    setrlimit(Resource::Nofile, new)?;
    Ok(old.current.unwrap_or(u64::MAX))
}
