//! Reading a server's threads, descriptors and memory from `/proc`.
//!
//! Hygiene is judged from outside the server's code: what Linux says its processes hold.
//! For a server the grader started, that is the child process and every process under it
//! (a server that forks handler processes is graded with them); for a server in this
//! process, `/proc/self` (the grader's own threads are few and idle while it samples).
//! Counts move for a moment after load (threads exiting, sockets closing), so a
//! measurement is taken once two samples a little apart agree ([`settled`]).

use std::time::Duration;

/// What a server holds at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) threads: u64,
    pub(crate) fds: u64,
    /// Resident memory, KiB.
    pub(crate) rss_kib: u64,
    /// Processes in the tree.
    pub(crate) processes: u64,
}

/// How many samples [`settled`] takes at most, and how far apart.
const SAMPLES: u32 = 20;
const APART: Duration = Duration::from_millis(100);

/// A sample once two in a row agree on threads and descriptors (memory may drift by a
/// few pages), at most [`SAMPLES`] × [`APART`]; the last one if they never agree. `None`
/// when `/proc` cannot be read. `pid` `None` means this process.
pub(crate) fn settled(pid: Option<u32>) -> Option<Usage> {
    let mut last = sample(pid)?;
    for _ in 0..SAMPLES {
        // Waits between samples, for exiting threads and closing sockets to finish.
        std::thread::sleep(APART);
        let now = sample(pid)?;
        if now.threads == last.threads && now.fds == last.fds {
            return Some(now);
        }
        last = now;
    }
    Some(last)
}

/// One sample of the process `pid` and its descendants, or of this process.
pub(crate) fn sample(pid: Option<u32>) -> Option<Usage> {
    let pids = match pid {
        Some(pid) => tree(pid),
        None => vec!["self".to_owned()],
    };
    let mut usage = Usage {
        threads: 0,
        fds: 0,
        rss_kib: 0,
        processes: 0,
    };
    for pid in &pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        usage.threads += field(&status, "Threads:").unwrap_or(0);
        usage.rss_kib += field(&status, "VmRSS:").unwrap_or(0);
        usage.fds += std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        usage.processes += 1;
    }
    Some(usage)
}

/// The number after `name` in `/proc/PID/status`.
fn field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `pid` and every process under it, from each process's parent in `/proc/*/stat`.
fn tree(pid: u32) -> Vec<String> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            // The fields after the command name (which may hold spaces) in parentheses:
            // state, then the parent's id.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(parent) = parent {
                parents.push((child, parent));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let under = found[i];
        found.extend(parents.iter().filter(|(_, p)| *p == under).map(|(c, _)| *c));
        i += 1;
    }
    found.iter().map(u32::to_string).collect()
}
