//! Labs 23 and 24: the two async designs, tokio's work-stealing runtime and one runtime per
//! core. A blocking call in async code (lab 23), and what stealing buys and costs against
//! staying on one core (lab 24).
//!
//! Both labs need to put load on a chosen core, which the simulator's clients cannot do
//! (the kernel hashes each new connection to a core's listening socket). So the heavy
//! clients here are the lab's own: each opens connections and asks `GET /` until the
//! answer's `X-Servelab-Thread` names the core it wants, then keeps that connection. The
//! foreground is the simulator's open loop, whose deadline ledger says how many requests
//! were answered in time.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::event_loop::calibrated_prime;
use super::*;
use loadgen::http::ResponseReader;
use loadgen::scenario::{Arrivals, OpenLoop, WhenBusy};
use loadgen::units::micros;

/// The two designs, each with two threads running tasks (the CPUs of the machine CI runs
/// on), by the flag that says so.
const DESIGNS: [(&str, &str); 2] = [
    ("async-work-stealing", "workers"),
    ("async-per-core", "cores"),
];

/// How long one read or write of the lab's own clients may block.
const IO: Duration = Duration::from_secs(10);

/// How many connections the lab opens, at most, to find one on a given core. With two
/// cores and the kernel's hash, 200 misses in a row have a probability of 2^-200.
const PLACEMENT_TRIES: usize = 200;

fn io_error(what: &str) -> impl Fn(std::io::Error) -> SimError + '_ {
    move |e| SimError::Usage(format!("{what}: {e}"))
}

/// Reads one whole response from `stream` (blocking, at most `IO` per read) and returns the
/// server thread that answered.
fn read_one(stream: &mut TcpStream, reader: &mut ResponseReader) -> Result<String, SimError> {
    reader.expect(false, true);
    let fail = |f: loadgen::outcome::Failure| SimError::Usage(format!("lab client: {}", f.message));
    let mut done = reader.poll().map_err(fail)?;
    let mut buf = [0u8; 4096];
    while done.is_none() {
        // Blocks until the server sends more (at most IO).
        let n = stream
            .read(&mut buf)
            .map_err(io_error("lab client reading"))?;
        done = if n == 0 {
            Some(reader.closed().map_err(fail)?)
        } else {
            reader.feed(&buf[..n]).map_err(fail)?
        };
    }
    let response = done.ok_or_else(|| SimError::Usage("lab client: no response".into()))?;
    if response.status != 200 {
        return Err(SimError::Usage(format!(
            "lab client: the server answered {}",
            response.status
        )));
    }
    Ok(response.server_thread.unwrap_or_default())
}

/// A keep-alive connection of the lab's own whose answers come from the thread `on` (the
/// core's thread, for the per-core server), or from any thread. Returns it with its reader.
fn placed(
    addr: SocketAddr,
    on: Option<&str>,
) -> Result<(TcpStream, ResponseReader, String), SimError> {
    for _ in 0..PLACEMENT_TRIES {
        let mut stream = TcpStream::connect_timeout(&addr, IO).map_err(io_error("connecting"))?;
        stream
            .set_read_timeout(Some(IO))
            .and_then(|()| stream.set_write_timeout(Some(IO)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(io_error("setting up a socket"))?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
            .map_err(io_error("sending"))?;
        let mut reader = ResponseReader::new();
        let thread = read_one(&mut stream, &mut reader)?;
        if on.is_none_or(|wanted| wanted == thread) {
            return Ok((stream, reader, thread));
        }
    }
    Err(SimError::Usage(format!(
        "no connection landed on {} in {PLACEMENT_TRIES} tries",
        on.unwrap_or("any thread")
    )))
}

/// The request line of `GET path` on a keep-alive connection.
fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n").into_bytes()
}

/// The foreground: `rate` requests a second of `GET /` on `connections` connections for
/// `length`, each due within `deadline` of its scheduled moment (an open loop: requests
/// keep their schedule, whatever the server does).
fn foreground(rate: f64, connections: usize, length: Duration, deadline: Duration) -> Scenario {
    Scenario {
        load: Load::Rate(OpenLoop {
            rate,
            duration: length,
            arrivals: Arrivals::Constant,
            when_busy: WhenBusy::Queue,
            seed: 1,
        }),
        ..Scenario::get(connections, "/", deadline, Duration::ZERO)
    }
}

/// The foreground's ledger in words, and the share of its requests over the deadline.
fn ledger(report: &Report) -> (String, f64) {
    let r = report.requests.clone().unwrap_or_default();
    let judged = r.due.saturating_sub(r.unfinished).max(1);
    let over = r.over_deadline() as f64 / judged as f64;
    let l = &report.latency_us;
    (
        format!(
            "{} of {} GET / in time, {} over the deadline ({:.0}%); p50 {}, p99 {}, max {}",
            r.served,
            judged,
            r.over_deadline(),
            over * 100.0,
            human_us(l.p50),
            human_us(l.p99),
            human_us(l.max)
        ),
        over,
    )
}

/// Each runtime's (each core's) connections, accepts and requests, for people.
fn per_runtime(snapshot: &Snapshot) -> String {
    snapshot
        .runtimes
        .iter()
        .map(|r| {
            format!(
                "{}: {} connections accepted, {} requests",
                r.name, r.accepted, r.requests
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// --- lab 23 ----------------------------------------------------------------------------

/// Asks `/factor/{prime}` once on `stream` after `delay`, on a thread of its own; the
/// thread returns the server thread that computed it and how long the answer took.
fn factorise_on(
    mut stream: TcpStream,
    mut reader: ResponseReader,
    prime: u64,
    delay: Duration,
) -> JoinHandle<Result<(String, Duration), SimError>> {
    std::thread::spawn(move || {
        // The experiment's schedule: the computations arrive a quarter into the run.
        std::thread::sleep(delay);
        let began = Instant::now();
        stream
            .write_all(&get(&format!("/factor/{prime}")))
            .map_err(io_error("sending"))?;
        // Blocks until the factorisation is answered.
        let thread = read_one(&mut stream, &mut reader)?;
        Ok((thread, began.elapsed()))
    })
}

/// One step of lab 23: four factorisations at once (two per worker, or two on each core),
/// and the foreground beside them. Returns the foreground's report, the threads that computed,
/// the longest factorisation, and the server's figures.
fn beside_two_factorisations(
    env: &LabEnv,
    arch: &'static str,
    flag: &str,
    offload: &str,
    prime: u64,
    scenario: &Scenario,
) -> Result<(Report, BTreeSet<String>, Duration, Snapshot), SimError> {
    let servers = Servers::only(arch).with(flag, 2).with("offload", offload);
    let server = servers.start(arch, ServerArgs::default())?;
    let measured = (|| {
        // Two computations per thread that runs tasks, so that every one of them computes
        // whatever the runtime's choices: on the per-core server two connections on each
        // core; on the work-stealing one, any four. (With only one computation per worker,
        // tokio sometimes runs them one after the other on one worker while the other serves
        // everyone, and sometimes leaves the other asleep: see the sheet.)
        let places: [Option<&str>; 4] = if arch == "async-per-core" {
            [
                Some("core-1"),
                Some("core-1"),
                Some("core-2"),
                Some("core-2"),
            ]
        } else {
            [None; 4]
        };
        let mut heavy = Vec::new();
        let delay = scenario.planned_length() / 4;
        for on in places {
            let (stream, reader, _) = placed(server.addr(), on)?;
            heavy.push(factorise_on(stream, reader, prime, delay));
        }
        let run = run_against(env, &server, scenario);
        let mut threads = BTreeSet::new();
        let mut longest = Duration::ZERO;
        for h in heavy {
            let (thread, took) = h
                .join()
                .map_err(|_| SimError::Panicked("a heavy client"))??;
            threads.insert(thread);
            longest = longest.max(took);
        }
        let (report, _) = run?;
        Ok((report, threads, longest, server.context().snapshot()))
    })();
    stop(server)?;
    measured
}

/// Lab 23's entry in the list of labs ([`super::all`]).
pub(super) const LAB23: Lab = Lab {
    id: 23,
    title: "A blocking call in async: a computation on a worker, and spawn_blocking",
    sheet: "labs/23-a-blocking-call-in-async.md",
    targets: &[],
    run: lab23,
};

pub(super) fn lab23(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    // A computation of a tenth of a second or more: long enough to be a blocking call
    // beside requests that take microseconds, short enough that the lab takes seconds.
    let (prime, alone) = calibrated_prime(Duration::from_millis(100));
    // The deadline: a fifth of a factorisation (at least 30 ms, well above what a GET / takes
    // on a busy machine). The foreground lasts twice as long as one
    // factorisation and the computations come a quarter into it: each thread then computes
    // two, one after the other, until past the end, so about (2 − 1/4 − 1/5) / 2, over half,
    // of the foreground is over the deadline if they stall it.
    let deadline = (alone / 5).max(Duration::from_millis(30));
    let scenario = foreground(300.0, 8, alone * 2, deadline);
    let mut checks = Vec::new();
    for (arch, flag) in DESIGNS {
        for offload in ["off", "on"] {
            let (report, threads, longest, snapshot) =
                beside_two_factorisations(env, arch, flag, offload, prime, &scenario)?;
            let (text, over) = ledger(&report);
            let computed_by = threads.into_iter().collect::<Vec<_>>().join(", ");
            let offloaded: u64 = snapshot.runtimes.iter().map(|r| r.offloaded).sum();
            let (expected, agrees) = match offload {
                "off" => (
                    format!(
                        "each computation blocks the thread it runs on, and with two for each there is none left: every GET / that comes due during them waits, so at least 25% (about half) are over the {} deadline",
                        human_us(micros(deadline))
                    ),
                    over >= 0.25,
                ),
                _ => (
                    "spawn_blocking: blocking threads compute, the threads that run tasks never do, and under 5% of GET / are over the deadline".to_owned(),
                    over < 0.05 && offloaded == 4,
                ),
            };
            checks.push(check(
                format!(
                    "{arch}, 2 {flag}, --offload {offload}: GET / at 300/s on 8 connections, deadline {}, while 4 clients ask /factor/{prime} ({} alone)",
                    human_us(micros(deadline)),
                    human_us(micros(alone))
                ),
                format!(
                    "{text}; the factorisations took up to {}, computed by {computed_by}",
                    human_us(micros(longest))
                ),
                expected,
                agrees,
            ));
        }
    }
    Ok(checks)
}

// --- lab 24 ----------------------------------------------------------------------------

/// The heavy clients' deadline ledger in lab 24: requests sent, answered, and answered
/// within the deadline of the moment they were due (latency counted from the schedule, as
/// the simulator's corrected latency is, so a request that waited at the client counts).
#[derive(Default)]
struct Heavy {
    sent: u64,
    answered: u64,
    in_time: u64,
    /// The longest from a request's moment to its answer.
    worst: Duration,
}

/// The heavy load of lab 24: `rate` requests a second of `path` in all, for `length`, on
/// `streams`, each connection with its own share of the schedule. A connection sends its
/// next request when it is due and the previous one is answered: one request outstanding
/// at most, as a client that waits for each answer; when the server falls behind, the
/// requests wait at the client (and the connection falls behind its schedule), as in the
/// simulator's open loop with `--when-busy queue`. A thread per connection.
fn heavy_clients(
    streams: Vec<(TcpStream, ResponseReader)>,
    path: &str,
    rate: f64,
    length: Duration,
    deadline: Duration,
) -> Vec<JoinHandle<Heavy>> {
    let k = streams.len();
    let request = get(path);
    streams
        .into_iter()
        .enumerate()
        .map(|(i, (mut stream, mut reader))| {
            let request = request.clone();
            std::thread::spawn(move || {
                let began = Instant::now();
                let mut heavy = Heavy::default();
                // Request j of this connection is the (j·k + i)-th of the whole schedule.
                for j in 0u64.. {
                    let due =
                        began + Duration::from_secs_f64((j * k as u64 + i as u64) as f64 / rate);
                    if due >= began + length {
                        break;
                    }
                    // Waits for the request's moment: the schedule, not a synchronisation.
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    if stream.write_all(&request).is_err() {
                        break;
                    }
                    heavy.sent += 1;
                    // Blocks until the answer (at most IO a read).
                    if read_one(&mut stream, &mut reader).is_err() {
                        break;
                    }
                    heavy.answered += 1;
                    let latency = due.elapsed();
                    heavy.worst = heavy.worst.max(latency);
                    if latency < deadline {
                        heavy.in_time += 1;
                    }
                }
                heavy
            })
        })
        .collect()
}

/// On-CPU time so far of this process's threads whose names start with `prefix`, from
/// `/proc/self/task/*/schedstat` (nanoseconds; Linux).
fn cpu_of_threads(prefix: &str) -> Duration {
    let mut total = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(total)
}

/// The heavy clients' work in lab 24, in threads held: more than one core has, less than
/// two.
const DEMAND: f64 = 1.3;

/// How long each heavy request of lab 24 holds the thread that runs it.
const HOLD: Duration = Duration::from_millis(10);

/// Lab 24's entry in the list of labs ([`super::all`]).
pub(super) const LAB24: Lab = Lab {
    id: 24,
    title: "Steal or stay: work stealing against one runtime per core",
    sheet: "labs/24-steal-or-stay.md",
    targets: &[],
    run: lab24,
};

pub(super) fn lab24(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let mut checks = Vec::new();

    // Skewed: a few heavy connections, all on one core. Each heavy request holds the thread
    // that runs it for HOLD (`--sleep block`: the thread sleeps, as a synchronous driver
    // would, instead of computing, so that the lab measures scheduling and not how many
    // CPUs this machine has free), at 1.3 threads' worth of work.
    let length = Duration::from_millis(2000);
    let deadline = Duration::from_millis(50);
    let scenario = foreground(100.0, 16, length, deadline);
    let heavy_rate = DEMAND / HOLD.as_secs_f64();
    let mut skew = Vec::new();
    for (arch, flag) in DESIGNS {
        let server = Servers::only(arch)
            .with(flag, 2)
            .with("sleep", "block")
            .start(arch, ServerArgs::default())?;
        let measured = (|| {
            let on = (arch == "async-per-core").then_some("core-1");
            let streams = (0..8)
                .map(|_| placed(server.addr(), on).map(|(s, r, _)| (s, r)))
                .collect::<Result<Vec<_>, _>>()?;
            let heavy = heavy_clients(
                streams,
                &format!("/sleep/{}", HOLD.as_millis()),
                heavy_rate,
                length,
                deadline,
            );
            let run = run_against(env, &server, &scenario);
            let heavy = heavy.into_iter().try_fold(Heavy::default(), |all, h| {
                let h = h.join().map_err(|_| SimError::Panicked("a heavy client"))?;
                Ok::<_, SimError>(Heavy {
                    sent: all.sent + h.sent,
                    answered: all.answered + h.answered,
                    in_time: all.in_time + h.in_time,
                    worst: all.worst.max(h.worst),
                })
            })?;
            let (report, snapshot) = run?;
            Ok::<_, SimError>((report, snapshot, heavy))
        })();
        stop(server)?;
        let (report, snapshot, heavy) = measured?;
        let (text, over) = ledger(&report);
        skew.push((arch, flag, text, over, per_runtime(&snapshot), heavy));
    }
    for (arch, flag, text, over, cores, heavy) in skew {
        let heavy_late = 1.0 - heavy.in_time as f64 / heavy.sent.max(1) as f64;
        let (expected, agrees) = if arch == "async-per-core" {
            (
                "core-1 is asked to hold its thread 1.3 s every second and has one thread: its queue grows through the run (by 0.3 s a second) while core-2 idles, so at least half of the heavy requests miss the deadline, and so do some GET / (those that land on core-1; a client whose request timed out reconnects, and may land on core-2)".to_owned(),
                heavy_late >= 0.5 && over > 0.0,
            )
        } else {
            (
                "the work holds 1.3 threads and there are two: whichever worker is free takes the next task (stealing from the other's queue), so every client stays within the deadline: under 5% of heavy requests and 2% of GET / over it".to_owned(),
                heavy_late < 0.05 && over < 0.02,
            )
        };
        checks.push(check(
            format!(
                "{arch}, 2 {flag}, --sleep block: 8 heavy connections{} asking /sleep/{} at {heavy_rate:.0}/s, {DEMAND} threads' worth in all; GET / at 100/s on 16 connections; deadline {} for both",
                if arch == "async-per-core" { " all on core-1" } else { "" },
                HOLD.as_millis(),
                human_us(micros(deadline))
            ),
            format!(
                "heavy: {} of {} within the deadline of their schedule ({:.0}% over; at worst {}); foreground: {text}; {cores}",
                heavy.in_time,
                heavy.sent,
                heavy_late * 100.0,
                human_us(micros(heavy.worst))
            ),
            expected,
            agrees,
        ));
    }

    // Uniform and cheap: GET / back to back from 8 clients; what each request costs the
    // threads that run tasks. Two rounds of each design, interleaved, so that a change in
    // what else this machine runs affects both alike; the CPU and requests are summed.
    let cheap = Scenario {
        load: Load::Duration(Duration::from_millis(750)),
        ..Scenario::get(8, "/", Duration::from_secs(1), Duration::ZERO)
    };
    let mut cost = [(Duration::ZERO, 0u64, 0u64); 2];
    let mut spread = [String::new(), String::new()];
    for _round in 0..2 {
        for (i, ((arch, flag), prefix)) in DESIGNS.into_iter().zip(["worker-", "core-"]).enumerate()
        {
            let server = Servers::only(arch)
                .with(flag, 2)
                .start(arch, ServerArgs::default())?;
            let before = cpu_of_threads(prefix);
            let run = run_against(env, &server, &cheap);
            let cpu = cpu_of_threads(prefix).saturating_sub(before);
            let snapshot = server.context().snapshot();
            stop(server)?;
            let (report, _) = run?;
            cost[i].0 += cpu;
            cost[i].1 += snapshot.requests.received;
            cost[i].2 = cost[i].2.max(report.latency_us.p99);
            spread[i] = per_runtime(&snapshot);
        }
    }
    let per_request =
        |(cpu, requests, _): (Duration, u64, u64)| cpu.as_secs_f64() * 1e6 / requests.max(1) as f64;
    let ratio = per_request(cost[1]) / per_request(cost[0]).max(1e-9);
    checks.push(check(
        "uniform cheap load: 8 clients sending GET / back to back, 2 × 750ms per design, 2 workers against 2 cores",
        DESIGNS
            .iter()
            .enumerate()
            .map(|(i, (arch, _))| {
                format!(
                    "{arch}: {:.1}µs of CPU per request ({} requests, p99 up to {}; last round {})",
                    per_request(cost[i]),
                    cost[i].1,
                    human_us(cost[i].2),
                    spread[i]
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
            + &format!("; per core ÷ work stealing = {ratio:.2}"),
        "one runtime per core spends no more CPU per request than work stealing (a ratio of at most 1.1, for noise): no task crosses a core, no queue is shared, no idle worker is woken to look for work",
        ratio <= 1.1,
    ));
    Ok(checks)
}
