//! Lab 27: far clients. The same server and the same clients, on loopback and 50 ms away.
//!
//! Every other lab runs its clients a dozen microseconds from the server. Real clients are
//! tens of milliseconds away, and a design that gives a connection a thread for its whole
//! life then holds that thread through every round trip between the requests, doing
//! nothing. The simulator emulates the distance itself (`--rtt`, see [`loadgen::link`]):
//! the handshake, each request and each answer are delayed on the way.
//!
//! The clients: 32 at once, each connecting and sending `GET /` four times on its
//! connection, all within 900 ms of the start. Three servers:
//!
//! * a pool of 4 workers: on loopback a connection lasts about a millisecond and everyone
//!   is served; at 50 ms it holds its worker for four round trips, about 200 ms, so the
//!   pool serves 4 clients per 175 ms and only 16 finish in time (the prediction works it
//!   out: `R + K·(R + D) + ⌊k/P⌋·(K·(R + D) − R/2)`);
//! * a thread per connection: it serves all 32, but Little's law sets its price: threads
//!   alive at once = connections arriving per second × how long each stays open. Stretched
//!   from a millisecond to 200 ms, every one of the 32 connections is open at the same time,
//!   so it needs 32 threads at once;
//! * the event loop: a connection idle between round trips costs it nothing but an entry
//!   in its poll, and it serves all 32 with its two reactors.

use std::time::Duration;

use super::*;
use loadgen::link::{Link, Rtt};

/// Lab 27's entry in the list of labs ([`super::all`]).
/// The question before running: which of a pool of 4, a thread per connection and the
/// event loop still serve everyone when the clients are 50 ms away, and at what cost?
pub(super) const LAB27: Lab = Lab {
    id: 27,
    title: "Far clients: the same load at 0 and 50 ms round trip",
    sheet: "labs/27-far-clients.md",
    targets: &[],
    run: lab27,
};

/// The clients, each `ROUND_TRIP` away (zero: on loopback).
fn far_clients(round_trip: Duration) -> Scenario {
    // 32 clients, each with a 900 ms deadline from the common start, and no hold: a
    // client's time on the server is its four round trips and nothing else.
    let mut scenario = Scenario::get(32, "/", Duration::from_millis(900), Duration::ZERO);
    // Four requests on one connection: the thread a connection holds is held through the
    // three round trips between them, which is what distance costs a thread-per-connection
    // design.
    scenario.load = Load::Requests(4);
    // Every client at the same distance (a spread would leave the served count to the
    // draw); no bandwidth limit: `GET /` is a few hundred bytes each way.
    scenario.link = Link {
        rtt: Rtt {
            min: round_trip,
            max: round_trip,
        },
        bandwidth_bits_per_s: None,
    };
    scenario
}

/// Lab 27: each server on loopback, then 50 ms away; and the threads a thread per
/// connection needs for it.
pub(super) fn lab27(env: &LabEnv) -> Result<Vec<Check>, SimError> {
    let mut checks = Vec::new();
    // The same three servers twice: first on loopback, the control, where every design
    // serves everyone; then 50 ms away, where only the designs that do not tie a thread to a
    // connection keep doing so.
    for round_trip in [Duration::ZERO, Duration::from_millis(50)] {
        let scenario = far_clients(round_trip);
        let far = !round_trip.is_zero();
        let away = if far { "50 ms away" } else { "on loopback" };
        // Step 1: the pool of 4. Its prediction knows the distance (see `predict`), so the
        // check is the predicted count: all 32 on loopback, 16 when far.
        let pool = Servers::default().with("workers", 4);
        checks.push(served_step(
            env,
            "prefork-pool",
            &pool,
            &scenario,
            if far { &[16] } else { &[32] },
            &if far {
                format!("{away}: each client holds a worker for 4 round trips (~200 ms); 4 workers get through 16 clients in 900 ms")
            } else {
                format!("{away}: a client holds a worker for about a millisecond")
            },
        )?);
        // Step 2: a thread per connection, measured by hand rather than with `served_step`,
        // because its `/stats` is wanted too: the threads' peak is the price of distance.
        let flags = Servers::default();
        let (report, stats) = measure(
            env,
            "thread-per-conn",
            &flags,
            flags.server_args(&scenario),
            &scenario,
        )?;
        checks.push(served_check(
            "thread-per-conn",
            &scenario,
            &report,
            &[32],
            &format!("{away}: every client gets a thread of its own"),
        ));
        if far {
            let peak = stats.threads.iter().map(|t| t.peak).max().unwrap_or(0);
            checks.push(check(
                "thread-per-conn 50 ms away: the most threads alive at once",
                format!("{peak} threads (/stats threads peak)"),
                "Little's law: connections open at once = arrivals per second × how long each stays open; 32 connections that each stay ~200 ms, all arriving together, are all open at once: 32 threads",
                // Every connection overlaps every other for most of its 200 ms; a margin of
                // two for a thread that ends as the last one starts.
                peak >= 30,
            ));
        }
        // Step 3: the event loop, with its default two reactors: a far connection waits in
        // the poll set between its round trips and costs no thread.
        checks.push(served_step(
            env,
            "event-loop",
            &flags,
            &scenario,
            &[32],
            &format!("{away}: an idle connection costs the loop nothing between round trips"),
        )?);
    }
    Ok(checks)
}
