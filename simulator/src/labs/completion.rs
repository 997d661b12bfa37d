//! Lab 25: readiness against completion. The event loop and the io_uring server under the
//! same keep-alive load, with the kernel's own count of what each server thread did per
//! request: system calls, and context switches.
//!
//! Both servers run in this process (one loop thread each: `--reactors 1`, `--rings 1`),
//! so the process's counters would mix the server with the simulator's clients. The lab
//! counts the server's thread alone, found by its name in `/proc/self/task/*/comm`:
//!
//! * **context switches** from `/proc/self/task/<tid>/status` (`voluntary_ctxt_switches`,
//!   `nonvoluntary_ctxt_switches`): readable without privileges, always there;
//! * **system calls** with `perf stat -e raw_syscalls:sys_enter -t <tid>`, which counts every
//!   system call the thread enters. It needs `perf` (Debian's `linux-perf`) and permission to
//!   use the tracepoint (root, or `kernel.perf_event_paranoid` of -1). Where either is
//!   missing, the lab says so and falls back on what the io_uring server counts itself: its
//!   `io_uring_enter` calls (`/stats`' `enters`), the only system calls its thread makes on a
//!   keep-alive connection; the event loop's are then not counted. (`/proc/<tid>/io`'s
//!   `syscr` and `syscw` would not do: they count `read` and `write`, not the `recv` the
//!   event loop reads with, and no io_uring operation.)
//!
//! The counting window is the middle of the load (after a warm-up), and the requests counted
//! are those the server read in the same window.

use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::*;

/// The load: this many keep-alive clients in a closed loop, sending `GET /`, for this long
/// (kernel counts, not lecture time: not scaled).
const CLIENTS: usize = 32;
const LENGTH: Duration = Duration::from_millis(1500);
/// How long `perf stat` is given to attach to the thread before the load starts.
const PERF_ATTACH: Duration = Duration::from_millis(300);

/// What one server's loop thread did during the load.
struct Counted {
    requests: u64,
    /// System calls and how they were counted, or why they were not.
    syscalls: Result<(u64, &'static str), String>,
    switches: u64,
    /// The server's own batching figure: events (or completions) per wake-up.
    per_wakeup: f64,
}

impl Counted {
    fn per_request(&self, n: u64) -> f64 {
        n as f64 / self.requests.max(1) as f64
    }
}

/// The ids of this process's threads called `name`.
fn threads_named(name: &str) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .collect()
}

/// Context switches (voluntary and not) of thread `tid` of this process so far.
fn switches(tid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap_or_default();
    status
        .lines()
        .filter(|l| {
            l.starts_with("voluntary_ctxt_switches:")
                || l.starts_with("nonvoluntary_ctxt_switches:")
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// `perf stat` counting the system calls of some threads until it is stopped.
struct Perf {
    child: std::process::Child,
}

impl Perf {
    /// Starts counting the system calls of threads `tids`; the reason in one phrase when it
    /// cannot be started.
    fn start(tids: &[u32]) -> Result<Perf, String> {
        let list: Vec<String> = tids.iter().map(u32::to_string).collect();
        let child = Command::new("perf")
            .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-t"])
            .arg(list.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("perf could not be started ({e}); install linux-perf"))?;
        Ok(Perf { child })
    }

    /// Stops it (SIGINT, on which perf prints its counts) and reads the count.
    fn stop(self) -> Result<u64, String> {
        let pid = self.child.id();
        // The perf process this lab started and has not reaped.
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGINT);
        let (done, finished) = std::sync::mpsc::channel();
        let child = self.child;
        std::thread::spawn(move || {
            let _ = done.send(child.wait_with_output());
        });
        // Waits for perf to print and exit, at most 5 s.
        let out = match finished.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(format!("perf failed ({e})")),
            Err(_) => {
                // Its waiting thread reaps it once killed.
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                return Err("perf did not finish".into());
            }
        };
        let text = String::from_utf8_lossy(&out.stderr);
        text.lines()
            .find(|l| l.contains(",raw_syscalls:sys_enter,"))
            .and_then(|l| l.split(',').next()?.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                format!(
                    "perf stat could not count system calls ({})",
                    text.lines().last().unwrap_or("no output").trim()
                )
            })
    }
}

/// Runs the load against `arch` with one loop thread and counts what that thread did.
fn count(env: &LabEnv, arch: &'static str) -> Result<Counted, SimError> {
    let (flag, thread) = match arch {
        "event-loop" => ("reactors", "reactor-1"),
        _ => ("rings", "ring-1"),
    };
    let args = ServerArgs {
        keep_alive_timeout: Duration::from_secs(10),
        ..ServerArgs::default()
    };
    let server = Servers::only(arch).with(flag, 1).start(arch, args)?;
    let tids = threads_named(thread);
    let scenario = Scenario {
        load: Load::Duration(LENGTH),
        ..Scenario::get(CLIENTS, "/", Duration::from_secs(30), Duration::ZERO)
    };
    let ctx = Arc::clone(server.context());
    let enters = || ctx.snapshot().rings.first().map_or(0, |r| r.enters);
    // perf counts from before the load to after it, so that its count and the requests
    // cover the same stretch; the idle thread makes no system call meanwhile (it waits in
    // one, with no timer armed).
    let perf = Perf::start(&tids);
    if perf.is_ok() {
        // The experiment's schedule: perf attaches before the first request.
        std::thread::sleep(PERF_ATTACH);
    }
    let (requests, switched, entered) = (
        ctx.stats.requests_total(),
        tids.iter().map(|t| switches(*t)).sum::<u64>(),
        enters(),
    );
    let result = run_against(env, &server, &scenario);
    let requests = ctx.stats.requests_total() - requests;
    let switches = tids.iter().map(|t| switches(*t)).sum::<u64>() - switched;
    let entered = enters() - entered;
    let syscalls = match perf.and_then(Perf::stop) {
        Ok(n) => Ok((n, "perf stat")),
        // The io_uring server's own count of io_uring_enter: on a keep-alive load, the
        // only system calls its thread makes.
        Err(why) if arch == "io-uring" => {
            tracing::info!("{why}; counting io_uring_enter instead");
            Ok((entered, "its own count of io_uring_enter"))
        }
        Err(why) => Err(why),
    };
    let snapshot = server.context().snapshot();
    stop(server)?;
    let (report, _) = result?;
    if report.summary.served == 0 {
        return Err(SimError::Lab(format!("{arch} served no client in lab 25")));
    }
    let per_wakeup = snapshot
        .rings
        .first()
        .map(|r| r.completions_per_wakeup)
        .or(snapshot.reactors.first().map(|r| r.events_per_wakeup))
        .unwrap_or(0.0);
    Ok(Counted {
        requests,
        syscalls,
        switches,
        per_wakeup,
    })
}

/// Lab 25's entry in the list of labs ([`super::all`]).
/// The question before running: an event loop makes a system call to learn a socket is
/// ready and another to read it; a ring is told what to do and reports when it is done.
/// How many system calls, and how many context switches, does each thread make per
/// request?
pub(super) const LAB25: Lab = Lab {
    id: 25,
    title: "Readiness against completion: system calls and context switches per request",
    sheet: "labs/25-readiness-against-completion.md",
    targets: &[],
    run: lab25,
};

/// Lab 25: the event loop and the io_uring server under the same keep-alive load, each
/// thread's system calls and context switches per request (or io_uring's own count of its
/// `io_uring_enter` calls where `perf` cannot count them).
pub(super) fn lab25(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let readiness = count(env, "event-loop")?;
    let per = |c: &Counted, n: u64| format!("{:.2}", c.per_request(n));
    let mut checks = Vec::new();
    let uring_entry = crate::servers::entry("io-uring")?;
    let completion = match uring_entry.available() {
        Ok(()) => Some(count(env, "io-uring")?),
        Err(why) => {
            checks.push(check(
                "io-uring: the same load",
                format!("not run: {why}"),
                "nothing to compare where the kernel forbids io_uring; the event loop's figures stand alone",
                true,
            ));
            None
        }
    };
    match &readiness.syscalls {
        Ok((n, how)) => checks.push(check(
            format!("event-loop ({how}): system calls per request, {CLIENTS} keep-alive clients"),
            format!(
                "{} ({n} for {} requests; {:.1} events per wake-up)",
                per(&readiness, *n),
                readiness.requests,
                readiness.per_wakeup
            ),
            "about two or more: it learns which sockets are ready (epoll_wait, once per batch), then reads and writes each itself",
            readiness.per_request(*n) >= 1.5,
        )),
        Err(why) => checks.push(check(
            format!("event-loop: system calls per request, {CLIENTS} keep-alive clients"),
            format!("not counted: {why}"),
            "perf stat counts them where it may; /proc does not count recv",
            true,
        )),
    }
    if let Some(completion) = &completion {
        if let Ok((n, how)) = &completion.syscalls {
            let theirs = readiness
                .syscalls
                .as_ref()
                .ok()
                .map(|(n, _)| readiness.per_request(*n));
            checks.push(check(
                format!("io-uring ({how}): system calls per request, the same load"),
                format!(
                    "{} ({n} for {} requests; {:.1} completions per wake-up)",
                    per(completion, *n),
                    completion.requests,
                    completion.per_wakeup
                ),
                "under one, and under half the event loop's: one io_uring_enter hands over a whole round's sends and receives and brings back a batch of completions",
                completion.per_request(*n) < 1.0
                    && theirs.is_none_or(|t| completion.per_request(*n) * 2.0 <= t),
            ));
        }
        let (theirs, ours) = (
            readiness.per_request(readiness.switches),
            completion.per_request(completion.switches),
        );
        checks.push(check(
            "context switches of the server's thread per request (from /proc)",
            format!(
                "event-loop {theirs:.2} ({} for {} requests), io-uring {ours:.2} ({} for {})",
                readiness.switches,
                readiness.requests,
                completion.switches,
                completion.requests
            ),
            "well under one for both, fewer for io-uring: each thread sleeps once per wake-up, not per request (in epoll_wait, or in io_uring_enter), and a ring's wake-up waits for a batch of completions",
            theirs < 1.5 && ours <= theirs + 0.05,
        ));
    }
    Ok(checks)
}
