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
//!
//! # The arithmetic of the prediction
//!
//! On a keep-alive connection the event loop's thread spends, per request, one `recv` (the
//! request arrives in one read: a read that does not fill the buffer took everything there
//! was) and one `send` (every answer ready goes out in one write), and, per wake-up, one
//! `epoll_wait` shared by the N events it brings: 2 + 1/N system calls per request, never
//! fewer than two. The ring's thread makes one system call per round, `io_uring_enter`, which
//! hands the kernel the sends and receives of every connection the round touched and waits for
//! the next batch of B completions: about 1/B per request, whatever the number of clients,
//! because the kernel does the receiving and the sending itself. Reading the clock costs
//! neither server a system call: `Instant::now` goes through the vDSO.
//!
//! Context switches count how often the thread stopped running: *voluntary* when it blocked
//! (in `epoll_wait` or `io_uring_enter`, with nothing to do), *nonvoluntary* when the
//! scheduler took its CPU away (on a 2-core machine, for the clients' threads). A busy loop
//! thread blocks once per wake-up, not once per request, so both servers should stay well
//! under one per request; the ring, which waits for a batch rather than the first event,
//! should block less often still.

use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::*;

/// The load: this many keep-alive clients in a closed loop, sending `GET /`, for this long
/// (kernel counts, not lecture time: not scaled). Keep-alive, so that the connections' own
/// system calls (accepting and registering each, closing it) are paid once per client and
/// vanish in the average; 32 clients, so that many requests are outstanding at once and a
/// wake-up finds a batch (with one client there is nothing to batch: see the sheet's
/// variation).
const CLIENTS: usize = 32;
const LENGTH: Duration = Duration::from_millis(1500);
/// How long `perf stat` is given to attach to the thread before the load starts. perf is a
/// process of its own that must start, parse its arguments and open a counter on each
/// thread; there is no signal that it has, so the lab gives it this long (the idle thread
/// makes no system call meanwhile, so the wait adds nothing to the count).
const PERF_ATTACH: Duration = Duration::from_millis(300);

/// What one server's loop thread did during the load.
struct Counted {
    /// Requests the server read during the counting window (its own counter, read before
    /// and after), the denominator of every figure per request.
    requests: u64,
    /// System calls and how they were counted, or why they were not.
    syscalls: Result<(u64, &'static str), String>,
    /// Context switches of the loop thread, voluntary and not, during the window.
    switches: u64,
    /// The server's own batching figure: events (or completions) per wake-up.
    per_wakeup: f64,
}

impl Counted {
    /// `n` per request read. A server that read none divides by one rather than by zero
    /// (`count` refuses a run that served no client anyway).
    fn per_request(&self, n: u64) -> f64 {
        n as f64 / self.requests.max(1) as f64
    }
}

/// The ids of this process's threads called `name`.
///
/// `/proc/self/task` has a directory per thread of this process, named by its thread id;
/// its `comm` holds the thread's name (cut to 15 bytes by the kernel: `reactor-1` and
/// `ring-1` fit). A thread that ends between the listing and the read is skipped.
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
///
/// The kernel counts both for every thread since it started, and anyone may read them: the
/// lab reads them before and after the load and keeps the difference. A thread gone reads
/// as none.
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
///
/// The tracepoint `raw_syscalls:sys_enter` fires on every system call's entry, whichever
/// call it is, so its count for a thread is that thread's system calls. perf counts in the
/// kernel and reads the total once, when it stops: counting costs the server's thread
/// almost nothing, unlike `strace`, which stops it at every call.
struct Perf {
    /// The `perf stat` process, its standard error piped: perf prints its counts there.
    child: std::process::Child,
}

impl Perf {
    /// Starts counting the system calls of threads `tids`; the reason in one phrase when it
    /// cannot be started.
    fn start(tids: &[u32]) -> Result<Perf, String> {
        // `-x,`: one line per event, its fields separated by commas (the count first), so
        // that `stop` need not parse perf's table for people. `-t`: these threads alone,
        // not the whole process with its clients.
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
        // `wait_with_output` has no timeout, so it waits on a thread of its own, and this
        // thread waits for its answer on a channel, which has one.
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
        // The count is the first field of the line that names the event; a count perf
        // could not take reads `<not counted>` or `<not supported>` there, and fails to
        // parse.
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
///
/// One loop thread (`--reactors 1`, `--rings 1`), so that one thread does all of the
/// server's I/O and its counts are the server's: with two, the load would split between
/// them in proportions this lab does not control. The counters are read before the load
/// and after it, and the lab keeps the differences.
fn count(env: &LabEnv, arch: &'static str) -> Result<Counted, SimError> {
    let (flag, thread) = match arch {
        "event-loop" => ("reactors", "reactor-1"),
        _ => ("rings", "ring-1"),
    };
    // A keep-alive timeout far beyond the load's length: no connection is closed for
    // idling, and reopened, in the middle of the count.
    let args = ServerArgs {
        keep_alive_timeout: Duration::from_secs(10),
        ..ServerArgs::default()
    };
    // Returns once the server is ready, so its loop thread exists and has its name.
    let server = Servers::only(arch).with(flag, 1).start(arch, args)?;
    let tids = threads_named(thread);
    let scenario = Scenario {
        load: Load::Duration(LENGTH),
        ..Scenario::get(CLIENTS, "/", Duration::from_secs(30), Duration::ZERO)
    };
    // The server's own figures, read in this process: its request counter, and the ring's
    // count of `io_uring_enter` (0 for the event loop, which has no ring).
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
    // Blocks for the load's 1.5 s.
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
    // The server's batching figure, read before `stop` takes the server away.
    let snapshot = server.context().snapshot();
    stop(server)?;
    let (report, _) = result?;
    if report.summary.served == 0 {
        return Err(SimError::Lab(format!("{arch} served no client in lab 25")));
    }
    // Completions per wake-up for the ring, events per wake-up for the event loop: the
    // number each wake-up's one system call is shared by.
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
///
/// The checks' margins: the event loop's system calls must be at least 1.5 per request, a
/// margin below the two (a read and a write) the arithmetic gives. The ring's must be under
/// one per request, which only batches give (one `io_uring_enter` per round serving several
/// requests), and at most half the event loop's where both were counted. Context switches
/// come from /proc for both; the ring's may exceed the event loop's by 0.05 per request at
/// most, a margin for the scheduler's noise on a busy machine.
pub(super) fn lab25(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    // Readiness first: the event loop runs everywhere, so its figures exist even where the
    // kernel forbids io_uring.
    let readiness = count(env, "event-loop")?;
    let per = |c: &Counted, n: u64| format!("{:.2}", c.per_request(n));
    let mut checks = Vec::new();
    // Whether this process may use io_uring (a probe ring, set up once per process): a
    // container's seccomp profile or the kernel's sysctl can forbid it.
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
