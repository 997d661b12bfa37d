//! Labs 16 to 18: the lecture's remaining designs. Handler processes against handler threads
//! (no GIL here), a handler that crashes, and managers that start workers on demand.
//!
//! The lecture moves Python's CPU-bound handlers into processes because Python's threads
//! take turns behind its global interpreter lock. Rust has no such lock, so these labs ask
//! what processes and on-demand threads buy in a language whose threads already compute in
//! parallel.
//!
//! * Lab 16: two handler threads compute twice what one does on two CPUs, and two handler
//!   processes about as much as two threads. What processes add is a hop: each request and
//!   its answer copied through a Unix socket, two more hand-overs. Behind a third of a
//!   millisecond of work the hop disappears; on `GET /`, which is nothing but hand-overs,
//!   it is most of the cost. So in Rust processes buy isolation, not parallelism.
//! * Lab 17: that isolation. A handler process killed mid-request costs exactly one
//!   request (answered 500 at once, not left hanging) and is replaced; a handler that
//!   panics costs one request whether it is a process or a thread, since Rust unwinds a
//!   panicking thread. A fault Rust cannot catch (an abort, a segmentation fault in unsafe
//!   code or a C library) would end a threaded server with every client in it; that is
//!   what processes are for.
//! * Lab 18: a burst of 32 requests of 200 ms each. The pipeline's 4 fixed handlers take
//!   them four at a time, `32 / 4` = 8 rounds, about 1.6 s, and start no thread. Combined
//!   delegation's managers start a thread per step of every request (receiver, handler,
//!   sender), so every request is handled at once: about one round, at the price of some
//!   96 threads started.
//!
//! Every step runs a fresh server in this process and reads its `/stats` (processes and
//! their restarts, thread groups and how many were started), so the checks see the
//! server's side as well as the clients'.

use std::net::SocketAddr;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::*;
use loadgen::units::micros;

/// A closed loop of `clients` sending `path` for `length`, with a deadline no request nears:
/// the labs here compare rates, and a request that gave up would not be counted.
fn closed(clients: usize, path: &str, length: Duration) -> Scenario {
    Scenario {
        load: Load::Duration(length),
        ..Scenario::get(clients, path, Duration::from_secs(30), Duration::ZERO)
    }
}

/// Served requests per second of a load run.
fn rate(report: &Report) -> f64 {
    report.throughput.as_ref().map_or(0.0, |t| t.per_second)
}

/// Lab 16's entry in the list of labs ([`super::all`]).
/// The question before running: in a language without a GIL, do two handler threads
/// compute twice what one does, do two processes beat two threads, and on `GET /`?
pub(super) const LAB16: Lab = Lab {
    id: 16,
    title: "No GIL here: handler threads against handler processes",
    sheet: "labs/16-no-gil-here.md",
    targets: &[],
    run: lab16,
};

/// Lab 16: handler threads against handler processes, on a computation and on no work.
///
/// In its HTML report (`--report`): inside the server, handler threads and handler
/// processes busy side by side, and each run's throughput over time.
pub(super) fn lab16(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    // 15 lecture seconds per run: thousands of requests, enough for rates to settle.
    let length = env.lecture(15.0);
    // A semiprime: trial division runs to its smaller factor, about 150 000 divisions, a
    // third of a millisecond of CPU in a release build.
    let factor = format!("/factor/{SEMIPRIME}");
    let threads = |n: u32| Servers::only("pipeline").with("handlers", n);
    let processes = |n: u32| Servers::only("process-pipeline").with("handler-processes", n);
    let args = ServerArgs::default();
    // One closed-loop run of 8 clients against a fresh server; blocks for its length and
    // returns the served rate. Eight clients keep every handler busy, so the rate is the
    // handlers' capacity, not the clients'.
    let run = |arch: &str, flags: &Servers, path: &str| -> Result<f64, SimError> {
        let (report, _) = measure(env, arch, flags, args.clone(), &closed(8, path, length))?;
        Ok(rate(&report))
    };
    // The computation on one handler thread: one CPU's worth.
    let one_thread = run("pipeline", &threads(1), &factor)?;
    // On two handler threads: two CPUs' worth, as far as the clients leave them free.
    let two_threads = run("pipeline", &threads(2), &factor)?;
    // On two handler processes: the same two CPUs, plus the hop to each process.
    let two_processes = run("process-pipeline", &processes(2), &factor)?;
    // No work at all, on both designs: what is left is hand-overs, and the hop.
    let hello_threads = run("pipeline", &threads(2), "/")?;
    let hello_processes = run("process-pipeline", &processes(2), "/")?;
    // What a process adds per request: the difference between the two designs' time per
    // request on `GET /`, where the handlers' own work is next to nothing.
    let hop_us = (1e6 / hello_processes.max(1e-9) - 1e6 / hello_threads.max(1e-9)).max(0.0);
    Ok(vec![
        check(
            "/factor (about a third of a millisecond of CPU) with 1, then 2 handler threads",
            format!("{one_thread:.0} then {two_threads:.0} requests/s"),
            "about twice as many with two threads on two CPUs: Rust's threads compute in parallel (Python's, behind its GIL, would take turns)",
            // Twice is the ideal; 1.3× leaves room for the clients sharing the two CPUs.
            two_threads >= 1.3 * one_thread,
        ),
        check(
            "/factor with 2 handler processes against 2 handler threads",
            format!(
                "{two_processes:.0} against {two_threads:.0} requests/s ({:.2}×)",
                two_processes / two_threads.max(1e-9)
            ),
            "about the same (0.9× in a release build on 2 CPUs; at least two thirds counts): processes have no GIL to escape here, and a third of a millisecond of work hides the copy and the hop",
            // The bound leaves room for a debug build with a thread per client on the same
            // 2 CPUs, where the hop's share is larger: 0.75× was measured there.
            two_processes >= 0.66 * two_threads,
        ),
        check(
            "GET / (almost no work) with 2 handler processes against 2 handler threads",
            format!(
                "{hello_processes:.0} against {hello_threads:.0} requests/s: the hop to a process costs about {} per request",
                human_us(hop_us as u64)
            ),
            "fewer with processes: every request and its answer are copied through a socket and cost two more hand-overs, which is all a cheap request's time is made of",
            // Not more than the threads (5% for noise): a process can only add work.
            hello_processes <= 1.05 * hello_threads,
        ),
    ])
}

/// The process pipeline's handler processes, from its `/stats`: each one's pid, whether it
/// holds a request now, and how many times its slot's process was replaced.
fn handler_processes(server: &RunningServer) -> Vec<server_core::stats::ProcessSnapshot> {
    server.context().snapshot().processes
}

/// Sends `GET /crash` once, after `delay`, on a thread of its own; returns its status, or
/// `None` without an answer within 10 s. The caller joins it after its run.
fn crash_after(addr: SocketAddr, delay: Duration) -> std::thread::JoinHandle<Option<u16>> {
    std::thread::spawn(move || {
        // The experiment's schedule: the crash comes while the others are being served.
        std::thread::sleep(delay);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Blocks until connected, then until the answer (a 500 from the server that caught
        // the crash), each at most until the deadline.
        let mut conn = loadgen::http::Connection::open(addr, deadline).ok()?;
        conn.exchange(
            b"GET /crash HTTP/1.1\r\nHost: lab\r\n\r\n",
            deadline,
            // Exact timeouts (a single request, so the system call per read is free),
            // a GET, and no need to know which server thread answered.
            true,
            false,
            false,
        )
        .ok()
        .map(|reply| reply.status)
    })
}

/// Lab 17's entry in the list of labs ([`super::all`]).
/// The question before running: how many of 8 clients are served when a handler
/// process is killed mid-request, what does its client get, and does a server survive a
/// handler thread that panics (and one that aborts)?
pub(super) const LAB17: Lab = Lab {
    id: 17,
    title: "A handler crashes: in a process, and in a thread",
    sheet: "labs/17-a-handler-crashes.md",
    targets: &[],
    run: lab17,
};

/// Lab 17: a handler process killed mid-request, then a handler that panics, in a process
/// and in a thread. In every case the eight ordinary clients are served but for the one
/// whose request was in the handler that died.
///
/// In its HTML report (`--report`): the one row answered 500 among rows served on time, and
/// inside the server the handlers busy again at once.
pub(super) fn lab17(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let lab = Lab17::new(env);
    // Step 1: a crash no program can catch, in a process.
    let mut checks = vec![lab.kill_step(env)?];
    // Steps 2 and 3: a crash Rust can catch (a panic), in a process and in a thread. The
    // same panic ends a process but only unwinds a thread.
    for (arch, flags, what) in [
        (
            "process-pipeline",
            lab.processes.clone(),
            "the panic ends the handler's process; the server answers its request with a 500, starts a new process, and serves the other 8",
        ),
        (
            "pipeline",
            Servers::only("pipeline"),
            "Rust unwinds the panicking handler's stack and the server catches it: a 500 for that request, the thread lives on, and the other 8 are served. A fault Rust cannot catch (an abort, a segmentation fault) would instead end the whole server, with all 8 clients: that is what processes protect against",
        ),
    ] {
        checks.push(lab.panic_step(env, arch, &flags, what)?);
    }
    Ok(checks)
}

/// Lab 17's setting: eight clients each asking for 3 lecture seconds of a handler's time,
/// at once, with a patience no request nears; servers that accept `GET /crash`.
struct Lab17 {
    /// How long each ordinary request holds its handler.
    work: Duration,
    /// The eight ordinary clients: `/sleep` of `work` each, at once. With 2 handler
    /// processes or 4 handler threads, every handler is busy when the crash comes.
    scenario: Scenario,
    /// The servers' settings: `--allow-crash` adds the route whose handler panics.
    args: ServerArgs,
    /// The process pipeline with 2 handler processes.
    processes: Servers,
}

impl Lab17 {
    /// The setting at `env`'s scale.
    fn new(env: &LabEnv) -> Lab17 {
        let work = env.lecture(3.0);
        Lab17 {
            work,
            scenario: Scenario::get(
                8,
                &format!("/sleep/{}", work.as_millis()),
                env.lecture(30.0),
                Duration::ZERO,
            ),
            args: ServerArgs {
                allow_crash: true,
                ..ServerArgs::default()
            },
            processes: Servers::only("process-pipeline").with("handler-processes", 2),
        }
    }

    /// Step 1: a handler process killed (SIGKILL) while it holds a request, a crash no
    /// program can catch. The server sees the process's socket close with a request owed:
    /// it answers that request 500 at once, reaps the process and starts another, and the
    /// other seven clients never notice.
    fn kill_step(&self, env: &LabEnv) -> Result<Check, SimError> {
        let Lab17 { work, scenario, .. } = self;
        let server = self
            .processes
            .start("process-pipeline", self.args.clone())?;
        // The clients run on a scoped thread while this one waits for a handler process
        // to be busy, and kills it.
        let (report, killed) = std::thread::scope(|scope| {
            let run = scope.spawn(|| run_against(env, &server, scenario));
            let killed = kill_a_busy_handler(&server);
            // Blocks until the eight clients are done.
            (run.join(), killed)
        });
        let (report, _) = report.map_err(|_| SimError::Panicked("the lab's run"))??;
        let restarts: u64 = handler_processes(&server).iter().map(|p| p.restarts).sum();
        // One more client after the run: the replacement process serves it.
        let after = one_request(server.addr());
        stop(server)?;
        let s = &report.summary;
        Ok(check(
            format!(
                "process-pipeline, 2 handler processes, 8 clients each asking /sleep/{}: one process killed (SIGKILL, pid {}) while it holds a request",
                work.as_millis(),
                killed.map_or("none".into(), |p| p.to_string())
            ),
            format!(
                "{} served, {} answered 500 (rejected); {restarts} process replaced; a new client afterwards got {}",
                s.served,
                s.rejected,
                after.map_or("no answer".into(), |code| code.to_string())
            ),
            "only the client whose request was in that process is affected: it gets an honest 500; the server starts a new process and serves everyone else",
            // Seven served, the eighth answered 500 (the request the killed process held),
            // one process replaced, and the replacement serving a client afterwards.
            killed.is_some() && s.served == 7 && s.rejected == 1 && restarts == 1 && after == Some(200),
        ))
    }

    /// Step 2: a ninth client asks `GET /crash`, whose handler panics, while the eight are
    /// served by `arch`. In a handler process the panic ends the process (as an abort
    /// would); in a handler thread Rust unwinds it and the server catches it. Either way
    /// that request gets a 500 and the other eight are served.
    fn panic_step(
        &self,
        env: &LabEnv,
        arch: &str,
        flags: &Servers,
        what: &str,
    ) -> Result<Check, SimError> {
        let server = flags.start(arch, self.args.clone())?;
        // The crash comes a quarter into the eight requests, while every handler is busy.
        let crash = crash_after(server.addr(), self.work / 4);
        // Blocks until the eight are answered.
        let result = run_against(env, &server, &self.scenario);
        // Waits for the crashing client's answer, which came long before the others'.
        let crashed = crash
            .join()
            .map_err(|_| SimError::Panicked("the crashing client"))?;
        let snapshot = server.context().snapshot();
        stop(server)?;
        let (report, _) = result?;
        let restarts: u64 = snapshot.processes.iter().map(|p| p.restarts).sum();
        let handlers = snapshot.thread_group("handler").map_or(0, |g| g.alive);
        Ok(check(
            format!("{arch}: a ninth client asks GET /crash (a handler that panics) while the 8 are served"),
            format!(
                "the crashing request got {}; {} of 8 served; {restarts} processes replaced; {handlers} handler threads alive",
                crashed.map_or("no answer".into(), |code| code.to_string()),
                report.summary.served
            ),
            what,
            // A process pipeline replaces the process the panic ended; a thread pipeline
            // replaces nothing, and its handler thread is still there.
            crashed == Some(500)
                && report.summary.served == 8
                && if arch == "process-pipeline" { restarts == 1 } else { restarts == 0 && handlers >= 1 },
        ))
    }
}

/// Waits (at most 5 s) until one of `server`'s handler processes holds a request, and kills
/// it with SIGKILL. Returns its pid, or `None` if none was busy in time. Polls the server's
/// `/stats` in-process every millisecond: a process's busy flag has nothing to wait on.
fn kill_a_busy_handler(server: &RunningServer) -> Option<u32> {
    let give_up = Instant::now() + Duration::from_secs(5);
    let mut killed = None;
    while killed.is_none() && Instant::now() < give_up {
        if let Some(busy) = handler_processes(server).into_iter().find(|p| p.busy) {
            // A handler process this lab's server started; it may have exited already.
            let _ = kill(Pid::from_raw(busy.pid as i32), Signal::SIGKILL);
            killed = Some(busy.pid);
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    killed
}

/// One `GET /` to `addr` on a new connection: its status, or `None` without an answer in
/// 5 s (the connect and the exchange each bounded by that).
fn one_request(addr: SocketAddr) -> Option<u16> {
    loadgen::http::Connection::open(addr, Instant::now() + Duration::from_secs(5))
        .and_then(|mut c| {
            c.exchange(
                b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n",
                Instant::now() + Duration::from_secs(5),
                // Exact timeouts (a single request, so the system call per read is free),
                // a GET, and no need to know which server thread answered.
                true,
                false,
                false,
            )
        })
        .map(|r| r.status)
        .ok()
}

/// Lab 18's entry in the list of labs ([`super::all`]).
/// The question before running: how long until the 32nd client of a burst is
/// answered by four fixed handlers and by a handler per request, and how many threads
/// does each start for it?
pub(super) const LAB18: Lab = Lab {
    id: 18,
    title: "Managers on demand: combined delegation against the fixed pipeline",
    sheet: "labs/18-managers-on-demand.md",
    targets: &[],
    run: lab18,
};

/// Lab 18: a burst of 32 requests against the fixed pipeline and against combined
/// delegation's managers: how long until the last is answered, and how many threads each
/// started for it.
///
/// In its HTML report (`--report`): inside the server, the pipeline's ten fixed threads
/// against the workers combined delegation starts on demand, and the last clients' rows
/// answered seconds apart.
pub(super) fn lab18(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    // 32 clients at once, 200 ms of a handler's time each, a patience no request nears.
    let work = env.lecture(2.0);
    let clients = 32;
    let scenario = Scenario::get(
        clients,
        &format!("/sleep/{}", work.as_millis()),
        env.lecture(100.0),
        Duration::ZERO,
    );
    let args = ServerArgs::default();
    let mut checks = Vec::new();
    // Both with their defaults: the pipeline's 4 receivers, 4 handlers and 2 senders, and
    // combined delegation's managers with at most 1024 workers per step, far above the
    // burst.
    for (arch, flags) in [
        ("pipeline", Servers::only("pipeline")),
        ("combined-delegation", Servers::only("combined-delegation")),
    ] {
        // Blocks until all 32 are answered; `stats` is the server's `/stats` afterwards.
        let (report, stats) = measure(env, arch, &flags, args.clone(), &scenario)?;
        // The last answer, in rounds of one request's work: 8 for four handlers, about 1
        // for a handler per request (thread starts and hand-overs add a little).
        let last = report
            .clients
            .iter()
            .filter_map(|c| c.complete_us)
            .max()
            .unwrap_or(0);
        // Threads started by the server over its whole life, in every group. The pipeline's
        // were all started before the first client; the managers' count grows per request.
        let started: u64 = stats.threads.iter().map(|g| g.started).sum();
        let handlers = stats.thread_group("handler").cloned();
        let (handler_started, handler_peak) = handlers.map_or((0, 0), |g| (g.started, g.peak));
        let rounds = (last as f64 / micros(work).max(1) as f64).round();
        let measured = format!(
            "all {} served by {}; {started} threads started in all, {handler_started} of them handlers, at most {handler_peak} handlers at once",
            report.summary.served,
            human_us(last)
        );
        // Seven rounds rather than eight, and three rather than one, leave room for a busy
        // machine's hand-overs. The thread counts do not depend on timing and are exact,
        // except the peak of handlers alive at once, where half the burst is the margin.
        let (expected, agrees) = if arch == "pipeline" {
            (
                format!(
                    "four fixed handlers take the {clients} requests four at a time: {} rounds of {}, and no thread is started for them",
                    clients / 4,
                    humantime::format_duration(work)
                ),
                report.summary.served == clients && rounds >= 7.0 && handler_started == 4,
            )
        } else {
            (
                format!(
                    "the request manager starts a handler for each request at once: about one round of {}, at the price of three threads started per request (receiver, handler, sender)",
                    humantime::format_duration(work)
                ),
                report.summary.served == clients
                    && rounds <= 3.0
                    && handler_started >= clients as u64
                    && handler_peak >= clients as u64 / 2
                    && started >= 3 * clients as u64,
            )
        };
        checks.push(check(
            format!(
                "{arch}: a burst of {clients} clients each asking /sleep/{}",
                work.as_millis()
            ),
            measured,
            expected,
            agrees,
        ));
    }
    Ok(checks)
}
