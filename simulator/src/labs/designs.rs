//! Labs 16 to 18: the lecture's remaining designs. Handler processes against handler threads
//! (no GIL here), a handler that crashes, and managers that start workers on demand.

use std::net::SocketAddr;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::*;
use loadgen::units::micros;

/// A closed loop of `clients` sending `path` for `length`, with a deadline no request nears.
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
pub(super) const LAB16: Lab = Lab {
    id: 16,
    title: "No GIL here: handler threads against handler processes",
    sheet: "labs/16-no-gil-here.md",
    targets: &[],
    run: lab16,
};

pub(super) fn lab16(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let length = env.lecture(15.0);
    let factor = format!("/factor/{SEMIPRIME}");
    let threads = |n: u32| Servers::only("pipeline").with("handlers", n);
    let processes = |n: u32| Servers::only("process-pipeline").with("handler-processes", n);
    let args = ServerArgs::default();
    let run = |arch: &str, flags: &Servers, path: &str| -> Result<f64, SimError> {
        let (report, _) = measure(env, arch, flags, args.clone(), &closed(8, path, length))?;
        Ok(rate(&report))
    };
    let one_thread = run("pipeline", &threads(1), &factor)?;
    let two_threads = run("pipeline", &threads(2), &factor)?;
    let two_processes = run("process-pipeline", &processes(2), &factor)?;
    let hello_threads = run("pipeline", &threads(2), "/")?;
    let hello_processes = run("process-pipeline", &processes(2), "/")?;
    let hop_us = (1e6 / hello_processes.max(1e-9) - 1e6 / hello_threads.max(1e-9)).max(0.0);
    Ok(vec![
        check(
            "/factor (about a third of a millisecond of CPU) with 1, then 2 handler threads",
            format!("{one_thread:.0} then {two_threads:.0} requests/s"),
            "about twice as many with two threads on two CPUs: Rust's threads compute in parallel (Python's, behind its GIL, would take turns)",
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
            hello_processes <= 1.05 * hello_threads,
        ),
    ])
}

/// The process pipeline's handler processes, from its `/stats`.
fn handler_processes(server: &RunningServer) -> Vec<server_core::stats::ProcessSnapshot> {
    server.context().snapshot().processes
}

/// Sends `GET /crash` once, after `delay`, on a thread of its own; returns its status.
fn crash_after(addr: SocketAddr, delay: Duration) -> std::thread::JoinHandle<Option<u16>> {
    std::thread::spawn(move || {
        // The experiment's schedule: the crash comes while the others are being served.
        std::thread::sleep(delay);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut conn = loadgen::http::Connection::open(addr, deadline).ok()?;
        conn.exchange(
            b"GET /crash HTTP/1.1\r\nHost: lab\r\n\r\n",
            deadline,
            true,
            false,
            false,
        )
        .ok()
        .map(|reply| reply.status)
    })
}

/// Lab 17's entry in the list of labs ([`super::all`]).
pub(super) const LAB17: Lab = Lab {
    id: 17,
    title: "A handler crashes: in a process, and in a thread",
    sheet: "labs/17-a-handler-crashes.md",
    targets: &[],
    run: lab17,
};

pub(super) fn lab17(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let work = env.lecture(3.0);
    let scenario = Scenario::get(
        8,
        &format!("/sleep/{}", work.as_millis()),
        env.lecture(30.0),
        Duration::ZERO,
    );
    let args = ServerArgs {
        allow_crash: true,
        ..ServerArgs::default()
    };
    let processes = Servers::only("process-pipeline").with("handler-processes", 2);
    let mut checks = Vec::new();

    // 1. A handler process killed (SIGKILL) while it holds a request.
    let server = processes.start("process-pipeline", args.clone())?;
    let (report, killed) = std::thread::scope(|scope| {
        let run = scope.spawn(|| run_against(env, &server, &scenario));
        // Bounded wait until a handler process holds a request, then its end.
        let give_up = Instant::now() + Duration::from_secs(5);
        let mut killed = None;
        while killed.is_none() && Instant::now() < give_up {
            if let Some(busy) = handler_processes(&server).into_iter().find(|p| p.busy) {
                // A handler process this lab's server started; it may have exited already.
                let _ = kill(Pid::from_raw(busy.pid as i32), Signal::SIGKILL);
                killed = Some(busy.pid);
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        (run.join(), killed)
    });
    let (report, _) = report.map_err(|_| SimError::Panicked("the lab's run"))??;
    let restarts: u64 = handler_processes(&server).iter().map(|p| p.restarts).sum();
    let after =
        loadgen::http::Connection::open(server.addr(), Instant::now() + Duration::from_secs(5))
            .and_then(|mut c| {
                c.exchange(
                    b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n",
                    Instant::now() + Duration::from_secs(5),
                    true,
                    false,
                    false,
                )
            })
            .map(|r| r.status)
            .ok();
    stop(server)?;
    let s = &report.summary;
    checks.push(check(
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
        killed.is_some() && s.served == 7 && s.rejected == 1 && restarts == 1 && after == Some(200),
    ));

    // 2. A handler that panics, in a process and in a thread.
    for (arch, flags, what) in [
        (
            "process-pipeline",
            processes.clone(),
            "the panic ends the handler's process; the server answers its request with a 500, starts a new process, and serves the other 8",
        ),
        (
            "pipeline",
            Servers::only("pipeline"),
            "Rust unwinds the panicking handler's stack and the server catches it: a 500 for that request, the thread lives on, and the other 8 are served. A fault Rust cannot catch (an abort, a segmentation fault) would instead end the whole server, with all 8 clients: that is what processes protect against",
        ),
    ] {
        let server = flags.start(arch, args.clone())?;
        let crash = crash_after(server.addr(), work / 4);
        let result = run_against(env, &server, &scenario);
        let crashed = crash
            .join()
            .map_err(|_| SimError::Panicked("the crashing client"))?;
        let snapshot = server.context().snapshot();
        stop(server)?;
        let (report, _) = result?;
        let restarts: u64 = snapshot.processes.iter().map(|p| p.restarts).sum();
        let handlers = snapshot.thread_group("handler").map_or(0, |g| g.alive);
        checks.push(check(
            format!("{arch}: a ninth client asks GET /crash (a handler that panics) while the 8 are served"),
            format!(
                "the crashing request got {}; {} of 8 served; {restarts} processes replaced; {handlers} handler threads alive",
                crashed.map_or("no answer".into(), |code| code.to_string()),
                report.summary.served
            ),
            what,
            crashed == Some(500)
                && report.summary.served == 8
                && if arch == "process-pipeline" { restarts == 1 } else { restarts == 0 && handlers >= 1 },
        ));
    }
    Ok(checks)
}

/// Lab 18's entry in the list of labs ([`super::all`]).
pub(super) const LAB18: Lab = Lab {
    id: 18,
    title: "Managers on demand: combined delegation against the fixed pipeline",
    sheet: "labs/18-managers-on-demand.md",
    targets: &[],
    run: lab18,
};

pub(super) fn lab18(env: &LabEnv) -> Result<Vec<Check>, SimError> {
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
    for (arch, flags) in [
        ("pipeline", Servers::only("pipeline")),
        ("combined-delegation", Servers::only("combined-delegation")),
    ] {
        let (report, stats) = measure(env, arch, &flags, args.clone(), &scenario)?;
        let last = report
            .clients
            .iter()
            .filter_map(|c| c.complete_us)
            .max()
            .unwrap_or(0);
        let started: u64 = stats.threads.iter().map(|g| g.started).sum();
        let handlers = stats.thread_group("handler").cloned();
        let (handler_started, handler_peak) = handlers.map_or((0, 0), |g| (g.started, g.peak));
        let rounds = (last as f64 / micros(work).max(1) as f64).round();
        let measured = format!(
            "all {} served by {}; {started} threads started in all, {handler_started} of them handlers, at most {handler_peak} handlers at once",
            report.summary.served,
            human_us(last)
        );
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
