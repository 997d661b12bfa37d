//! Taking io_uring away from a child process, the way Docker's default seccomp profile does,
//! so that a test can see how a program behaves where io_uring is forbidden.
//!
//! A seccomp filter is a small BPF program the kernel runs on every system call of the
//! process that installs it (and of its children, across `exec`). The one here refuses the
//! three io_uring system calls (`io_uring_setup`, `io_uring_enter`, `io_uring_register`:
//! numbers 425 to 427 on every architecture) with the error the test chooses (`EPERM` as
//! Docker answers, or `ENOSYS` as if the kernel had none) and lets everything else through.
//! It is installed in the child between `fork` and `exec` ([`CommandExt::pre_exec`]), so
//! the test process itself keeps io_uring. No privilege is needed: `PR_SET_NO_NEW_PRIVS`
//! first promises the kernel that the child will never gain any.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// The first and last io_uring system call numbers (the same on x86_64 and aarch64).
const FIRST: u32 = 425;
const LAST: u32 = 427;

/// `AUDIT_ARCH_*` of this machine, which the filter checks first: system call numbers mean
/// something only for one architecture.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Offsets in `struct seccomp_data`: the system call number, then the architecture.
const NR: u32 = 0;
const ARCH: u32 = 4;

fn statement(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The filter: io_uring's system calls fail with `errno`, everything else is allowed.
fn program(errno: i32) -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    vec![
        // 0: load the architecture; another one than ours: allow (not our numbers).
        statement(BPF_LD | BPF_W | BPF_ABS, ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        statement(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
        // 3: load the system call number; below FIRST or above LAST: allow.
        statement(BPF_LD | BPF_W | BPF_ABS, NR),
        jump(BPF_JMP | BPF_JGE | BPF_K, FIRST, 0, 2),
        jump(BPF_JMP | BPF_JGT | BPF_K, LAST, 1, 0),
        // 6: an io_uring system call: fail it with `errno`.
        statement(
            BPF_RET | BPF_K,
            libc::SECCOMP_RET_ERRNO | (errno as u32 & 0xffff),
        ),
        // 7:
        statement(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Makes `command`'s process run with io_uring forbidden: its io_uring system calls fail
/// with `errno` (`libc::EPERM` as under Docker's default profile, or `libc::ENOSYS`).
#[allow(unsafe_code)]
pub fn forbid_io_uring(command: &mut Command, errno: i32) -> &mut Command {
    // Built before the fork: the child gets a copy of it and only makes two system calls.
    let filter = program(errno);
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: it makes two prctl(2) calls and allocates
    // nothing (the filter and its descriptor were built before the fork; the descriptor
    // points into the child's copy of `filter`, which lives as long as the closure).
    unsafe {
        command.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_runs_under_the_filter() {
        // The child is this machine's `sh`, which shows its own `Seccomp:` status: 2 when a
        // filter is installed. (What the filter does to io_uring is tested where io_uring
        // is used: the io-uring server's tests/refusal.rs.)
        let mut command = Command::new("sh");
        command.args(["-c", "grep '^Seccomp:' /proc/self/status"]);
        let filtered = forbid_io_uring(&mut command, libc::EPERM)
            .output()
            .expect("sh runs");
        assert!(filtered.status.success());
        assert_eq!(
            String::from_utf8_lossy(&filtered.stdout).trim(),
            "Seccomp:\t2",
            "the child runs under a filter"
        );
    }
}
