//! Can this process use io_uring? The one question every other servelab server never asks.
//!
//! Every other architecture needs nothing but sockets and threads, which every Linux has.
//! This one needs the kernel's io_uring interface, and three things can take it away:
//!
//! * a **seccomp filter**, which decides per system call before the kernel runs it. Docker's
//!   default profile has refused `io_uring_setup`, `io_uring_enter` and `io_uring_register`
//!   since Docker 25 (they return `EPERM`); other sandboxes answer `ENOSYS`, as if the calls
//!   did not exist;
//! * the **sysctl** `kernel.io_uring_disabled` (Linux 6.6): `2` switches io_uring off for
//!   everyone, `1` leaves it only to root and to the group in `kernel.io_uring_group`;
//! * a **kernel too old** (or built without it): io_uring arrived in Linux 5.1, and what this
//!   server uses (provided-buffer rings, multishot accept, cancelling everything at once)
//!   in 5.19.
//!
//! [`check`] sets up a small ring and uses each facility once: it registers a provided-buffer
//! ring, asks which operations the kernel knows, and submits one no-op. The first failure
//! is turned into one sentence naming its cause ([`Cause`]); the system call's error code
//! alone cannot tell a seccomp filter from the sysctl, so the sentence also reads
//! `/proc/self/status` (is a filter installed?) and `/proc/sys/kernel/io_uring_disabled`.
//! The answer is worked out once per process.

use std::io;
use std::sync::OnceLock;

use io_uring::{opcode, IoUring};
use server_core::Unavailable;

use crate::buffers::BufferRing;

/// Why io_uring cannot be used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A seccomp filter refused an io_uring system call.
    Seccomp,
    /// `kernel.io_uring_disabled = 2`.
    Disabled,
    /// `kernel.io_uring_disabled = 1`, and this process is not in `kernel.io_uring_group`.
    Restricted,
    /// The kernel has no io_uring system calls. `release` is the kernel's (`uname -r`).
    Missing { release: String },
    /// The kernel has io_uring, but not what this server uses; `lacks` names what, for
    /// people.
    TooOld {
        release: String,
        lacks: &'static str,
    },
    /// Anything else, with the error.
    Other(String),
}

impl std::fmt::Display for Cause {
    /// One sentence, without its final full stop (the binary prefixes its name).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("io_uring is unavailable: ")?;
        match self {
            Cause::Seccomp => f.write_str(
                "a seccomp filter forbids it (Docker's default profile does; run the container \
                 with --security-opt seccomp=unconfined)",
            ),
            Cause::Disabled => {
                f.write_str("the kernel has it switched off (sysctl kernel.io_uring_disabled = 2)")
            }
            Cause::Restricted => f.write_str(
                "the kernel allows it only to the group in kernel.io_uring_group \
                 (sysctl kernel.io_uring_disabled = 1), and this process is not in it",
            ),
            Cause::Missing { release } => write!(
                f,
                "this kernel (Linux {release}) has no io_uring system calls (they arrived in \
                 5.1 and can be compiled out)"
            ),
            Cause::TooOld { release, lacks } => write!(
                f,
                "this kernel (Linux {release}) is too old for {lacks}, which needs Linux 5.19"
            ),
            Cause::Other(error) => write!(f, "setting up a ring failed ({error})"),
        }
    }
}

/// Whether this process can run the io-uring server: `Err` with one sentence if not.
/// Probes once per process and remembers the answer.
///
/// The probe runs on a thread of its own, never on the caller's. A thread that has used a
/// ring is known to that ring, and when the ring is closed the kernel cleans up after it by
/// queueing work to that thread with a signal-like notification (`TWA_SIGNAL`), which
/// interrupts whatever the thread is blocked in: a socket read with a timeout then fails
/// with `EINTR`, once, some time after the probe. A probe thread ends instead.
pub fn check() -> Result<(), Unavailable> {
    // Worked out by the first caller; every later one, on any thread, gets the same answer
    // (and waits for it if the first is still probing).
    static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
    ANSWER
        .get_or_init(|| {
            let prober = std::thread::Builder::new()
                .name("io-uring-probe".into())
                .spawn(|| probe().map_err(|cause| cause.to_string()));
            match prober {
                // Blocks for the probe: a ring set up, used and closed, in microseconds.
                Ok(thread) => thread
                    .join()
                    .unwrap_or_else(|_| Err("io_uring is unavailable: its probe panicked".into())),
                Err(e) => Err(format!(
                    "io_uring is unavailable: no thread could be started to probe it ({e})"
                )),
            }
        })
        .clone()
        .map_err(Unavailable)
}

/// What the process can see of its restrictions, for [`classify`].
#[derive(Debug, Clone, Default)]
pub struct Restrictions {
    /// The `Seccomp:` line of `/proc/self/status`: 2 when a filter is installed.
    pub seccomp_mode: u32,
    /// `/proc/sys/kernel/io_uring_disabled`, if the kernel has the sysctl.
    pub sysctl: Option<u32>,
    /// The kernel's release (`uname -r`).
    pub release: String,
}

impl Restrictions {
    /// Reads them from `/proc` and `uname`.
    pub fn here() -> Restrictions {
        // `Seccomp:` is 0 without seccomp, 1 in strict mode, 2 with a filter installed.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let seccomp_mode = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        // The sysctl's file does not exist before Linux 6.6: then `None`.
        let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .ok()
            .and_then(|v| v.trim().parse().ok());
        Restrictions {
            seccomp_mode,
            sysctl,
            release: release(),
        }
    }
}

/// The cause of a failed io_uring system call with error code `errno`, given what the
/// process can see. `lacks` names the feature the call was using, for an old kernel.
pub fn classify(errno: i32, lacks: &'static str, seen: &Restrictions) -> Cause {
    let release = seen.release.clone();
    match errno {
        // The sysctl answers EPERM; a seccomp filter usually does too (Docker's).
        libc::EPERM | libc::EACCES => match seen.sysctl {
            Some(2) => Cause::Disabled,
            _ if seen.seccomp_mode == 2 => Cause::Seccomp,
            Some(1) => Cause::Restricted,
            _ => Cause::Other(io::Error::from_raw_os_error(errno).to_string()),
        },
        // No such system call: a kernel without io_uring, or a filter pretending so.
        libc::ENOSYS if seen.seccomp_mode == 2 => Cause::Seccomp,
        libc::ENOSYS => Cause::Missing { release },
        // The call exists but does not understand what it was asked: an older kernel.
        libc::EINVAL | libc::EOPNOTSUPP => Cause::TooOld { release, lacks },
        _ => Cause::Other(io::Error::from_raw_os_error(errno).to_string()),
    }
}

/// The kernel's release, e.g. `6.8.0-45-generic`.
fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_owned())
        .unwrap_or_else(|_| "of unknown version".into())
}

/// Sets up a ring and uses each facility the server needs once.
///
/// Each of the three io_uring system calls is made at least once, because a seccomp filter
/// may refuse any one of them alone: `io_uring_setup` (making the ring), `io_uring_register`
/// (the probe of operations, the buffer ring) and `io_uring_enter` (the no-op). A kernel
/// that has the calls but not an operation the server queues says so in the probe, which
/// the kernel fills with what it supports (Linux 5.6). Registering a provided-buffer ring is
/// the newest thing used (5.19); multishot accept and "cancel any" came in the same
/// release, so a kernel that registers the ring has them too.
fn probe() -> Result<(), Cause> {
    let fail = |lacks: &'static str| {
        move |e: io::Error| classify(e.raw_os_error().unwrap_or(0), lacks, &Restrictions::here())
    };
    // io_uring_setup: the system call itself.
    let ring = IoUring::new(8).map_err(fail("io_uring"))?;
    // io_uring_register: which operations the kernel knows.
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(fail("asking which io_uring operations it knows"))?;
    // Every operation this server queues, each named for the sentence if it is missing.
    let needed = [
        (opcode::AcceptMulti::CODE, "multishot accept"),
        (opcode::Recv::CODE, "receiving into provided buffers"),
        (opcode::Send::CODE, "io_uring sends"),
        (opcode::Timeout::CODE, "io_uring timeouts"),
        (opcode::TimeoutRemove::CODE, "updating io_uring timeouts"),
        (opcode::AsyncCancel::CODE, "cancelling io_uring operations"),
        (opcode::Read::CODE, "io_uring reads"),
    ];
    for (code, what) in needed {
        if !probe.is_supported(code) {
            return Err(Cause::TooOld {
                release: release(),
                lacks: what,
            });
        }
    }
    // A provided-buffer ring (5.19), registered and unregistered again.
    let mut buffers = BufferRing::new(1, 64).map_err(|e| Cause::Other(e.to_string()))?;
    buffers
        .register(&ring)
        .map_err(fail("provided-buffer rings and multishot accept"))?;
    buffers
        .unregister(&ring)
        .map_err(fail("provided-buffer rings and multishot accept"))?;
    // io_uring_enter: one no-op submitted, its completion awaited.
    let mut ring = ring;
    let nop = opcode::Nop::new().build().user_data(0);
    // SAFETY: a no-op refers to no memory, so nothing must outlive its submission.
    unsafe { ring.submission().push(&nop) }
        .map_err(|_| Cause::Other("a fresh submission queue was full".into()))?;
    ring.submit_and_wait(1).map_err(fail("io_uring"))?;
    let done = ring.completion().next().map(|c| c.result());
    if done != Some(0) {
        return Err(Cause::Other(format!("a no-op completed with {done:?}")));
    }
    // The buffers were unregistered and no operation used them: they may go.
    drop(buffers);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(seccomp_mode: u32, sysctl: Option<u32>) -> Restrictions {
        Restrictions {
            seccomp_mode,
            sysctl,
            release: "5.4.0".into(),
        }
    }

    #[test]
    fn each_cause_is_named_in_one_sentence() {
        let docker = classify(libc::EPERM, "io_uring", &seen(2, Some(0)));
        assert_eq!(docker, Cause::Seccomp);
        assert_eq!(
            docker.to_string(),
            "io_uring is unavailable: a seccomp filter forbids it (Docker's default profile \
             does; run the container with --security-opt seccomp=unconfined)"
        );
        // A filter that pretends the calls do not exist.
        assert_eq!(
            classify(libc::ENOSYS, "io_uring", &seen(2, None)),
            Cause::Seccomp
        );
        assert_eq!(
            classify(libc::EPERM, "io_uring", &seen(0, Some(2))),
            Cause::Disabled
        );
        // The sysctl is decisive even inside a filtered container.
        assert_eq!(
            classify(libc::EPERM, "io_uring", &seen(2, Some(2))),
            Cause::Disabled
        );
        assert_eq!(
            classify(libc::EPERM, "io_uring", &seen(0, Some(1))),
            Cause::Restricted
        );
        let missing = classify(libc::ENOSYS, "io_uring", &seen(0, None));
        assert_eq!(
            missing.to_string(),
            "io_uring is unavailable: this kernel (Linux 5.4.0) has no io_uring system calls \
             (they arrived in 5.1 and can be compiled out)"
        );
        let old = classify(libc::EINVAL, "provided-buffer rings", &seen(0, None));
        assert_eq!(
            old.to_string(),
            "io_uring is unavailable: this kernel (Linux 5.4.0) is too old for provided-buffer \
             rings, which needs Linux 5.19"
        );
        for cause in [docker, missing, old, Cause::Disabled, Cause::Restricted] {
            let text = cause.to_string();
            assert_eq!(text.matches(". ").count(), 0, "one sentence: {text}");
            assert!(!text.ends_with('.'), "the caller ends it: {text}");
        }
    }

    #[test]
    fn this_kernel_runs_it() {
        // On the suite's own machines io_uring is there: every test of this crate runs.
        check().expect("io_uring works on this machine");
    }
}
