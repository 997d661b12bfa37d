//! Where io_uring is forbidden, the binary exits 1 with one sentence naming the cause, and
//! listens on nothing. The test forbids it the way Docker's default seccomp profile does:
//! a filter installed in the child process before it starts the binary (testkit::seccomp),
//! whose io_uring system calls then fail with EPERM (Docker's answer) or ENOSYS (a sandbox
//! pretending they do not exist).

use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_io-uring");

/// The binary's whole standard error when a seccomp filter takes io_uring away.
const SECCOMP: &str = "io-uring: io_uring is unavailable: a seccomp filter forbids it \
                       (Docker's default profile does; run the container with \
                       --security-opt seccomp=unconfined)\n";

/// Runs the binary with io_uring refused with `errno`; returns its exit code and stderr.
fn forbidden(errno: i32, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = testkit::seccomp::forbid_io_uring(&mut command, errno)
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn under_a_seccomp_filter_it_exits_1_with_one_sentence() {
    for errno in [libc::EPERM, libc::ENOSYS] {
        // `--log info` would print "listening on" if it got that far.
        let (code, stdout, stderr) = forbidden(errno, &["--addr", "127.0.0.1:0", "--log", "info"]);
        assert_eq!(code, Some(1), "errno {errno}: {stderr}");
        assert_eq!(stderr, SECCOMP, "errno {errno}");
        assert!(stdout.is_empty(), "{stdout}");
    }
}

#[test]
fn its_help_and_version_need_no_io_uring() {
    let (code, stdout, _) = forbidden(libc::EPERM, &["--version"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("io-uring "), "{stdout}");
    let (code, stdout, _) = forbidden(libc::EPERM, &["--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--rings <N>"), "{stdout}");
}

#[test]
fn without_the_filter_the_same_binary_serves() {
    // The control: the same command line, io_uring allowed, listens and answers.
    let server = testkit::binary::Binary::start(BINARY, &[]);
    assert_eq!(testkit::get(server.addr, "/").status, 200);
    server.signal(libc::SIGTERM);
    let (status, log) = server.wait(std::time::Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{log:#?}");
}
