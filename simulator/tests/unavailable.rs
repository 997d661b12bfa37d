//! `simulator compare` where io_uring is forbidden (as in a Docker container with the
//! default seccomp profile): it skips the io-uring server with one sentence naming the
//! cause, and compares the others as usual.

use std::process::{Command, Stdio};

#[test]
fn compare_skips_an_architecture_the_kernel_forbids() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_simulator"));
    command
        .args([
            "compare",
            "--archs",
            "single,io-uring",
            "--clients",
            "2",
            "--request",
            "GET /",
            "--timeout",
            "2s",
        ])
        .stdin(Stdio::null());
    let out = testkit::seccomp::forbid_io_uring(&mut command, nix::libc::EPERM)
        .output()
        .expect("the simulator runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "io-uring: skipped: io_uring is unavailable: a seccomp filter forbids it \
             (Docker's default profile does; run the container with --security-opt \
             seccomp=unconfined)\n"
        ),
        "{stderr}"
    );
    assert!(stdout.lines().any(|l| l.starts_with("single ")), "{stdout}");
    assert!(
        !stdout
            .lines()
            .any(|l| l.trim_start().starts_with("io-uring")),
        "{stdout}"
    );
}
