//! Prediction beside measurement: what simple queueing arithmetic says should happen.
//!
//! When the target is a servelab server, its `/stats` tells the architecture and its
//! configuration. From those and the scenario, the simulator predicts how many clients will
//! be served before their deadline, prints the rule it used in words, and flags a
//! measurement that disagrees. The model (see `docs/simulator.md`):
//!
//! * the server has `P` slots that each serve one client at a time, as its `/stats` states in
//!   `capacity` (see `server_core::Capacity`): 1 for `single`, the workers of a pool, one
//!   thread per client for thread-per-connection (up to `--max-threads`), the handlers of
//!   a pipeline. The model never names an architecture: each one describes itself;
//! * a client occupies its slot for `O = K·D + H`: its `K` requests of `D` each (`D` is the
//!   delay of `/sleep/{ms}` or `/echo/{ms}`, 0 for other routes), plus the time it holds the
//!   connection idle, `H = min(hold, keep-alive timeout)`;
//! * clients are taken in order, so client `k` (from 0) is answered at `⌊k/P⌋·O + K·D`;
//! * a client is served if that is strictly before its deadline `T` (the rule of
//!   [`loadgen::outcome::in_time`]). With the per-call clock each step has its own `T`: the
//!   first answer's wait is `⌊k/P⌋·O + D`, and every later one `D`.
//!
//! Distant clients (`--rtt R`, emulated by the engine: see [`loadgen::link`]) add their
//! round trips. A client connects after one `R` and each of its requests takes `R + D`,
//! so the first clients' last answers come at `R + K·(R + D)`. Where a slot is held
//! across a connection's idle time (a thread serves one connection to its end), it is also
//! held for the round trips between the requests: a later client, whose first request is
//! already waiting when the slot frees, keeps it for `O' = K·(R + D) − R/2 + H`, and client
//! `k` is answered at `R + K·(R + D) + ⌊k/P⌋·O'` (with `R = 0` this is the rule above).
//! Where slots are not held while a connection is idle (an event loop), only the work
//! queues: `⌊k/P⌋·(K·D + H)`. A spread of round trips is not predicted.
//!
//! Two kinds of architecture need more than one number:
//!
//! * where idle holders keep *readers* waiting (`capacity.idle_holds_readers`: a
//!   **pipeline** computes with its `--handlers`, but a served client that holds its
//!   connection keeps a *receiver* waiting for its next request). When the work is quick
//!   (`D` under [`QUICK_WORK`]) the first served clients come back to the receivers while
//!   the last new ones may still be arriving, and whether a newcomer or a returning holder
//!   gets the next free receiver is a race. The prediction is then a range: at least what a
//!   pool of `--receivers` would serve, at most what the handlers alone allow;
//! * where the server admits a fixed number of connections and turns the rest away
//!   (`capacity.admitted` with `rejects_beyond`: a **pre-fork pool** with `--when-full
//!   reject` admits `--workers` + `--queue`), every client beyond that gets 503 at once and
//!   is not served.
//!
//! Completion times are lower bounds: nothing can be served sooner than the arithmetic says,
//! only later (hand-overs, scheduling). So under the from-start clock a completion predicted
//! at or after the deadline is certainly late, and only one predicted a little *before* it
//! (within the margin, a twentieth of `T`, at least 25 ms) is *on the boundary*. Under the
//! per-call clock a client's timer starts when its own step starts, so a completion within
//! the margin on either side may go either way.

use std::fmt::Write as _;
use std::time::Duration;

use server_core::Capacity;

use crate::target::ServerInfo;
use loadgen::scenario::{DeadlineClock, Load, Scenario};

/// Work shorter than this counts as quick in the pipeline's model (see the module
/// documentation): served clients may come back to the receivers before every new client
/// has been read.
pub const QUICK_WORK: Duration = Duration::from_millis(10);

/// An architecture reduced to what the arithmetic needs, from the [`Capacity`] it states
/// in its `/stats`.
struct Model {
    /// How many clients are worked on at once.
    slots: usize,
    /// The slots in words: "4 clients at a time (4 workers)".
    slots_text: String,
    /// What a client occupies: "a worker", "its thread", "the one thread".
    slot_name: String,
    /// Whether a client that holds its connection idle keeps its slot meanwhile.
    holding_pins: bool,
    /// Readers that holders keep waiting (the pipeline's receivers).
    receivers: Option<usize>,
    /// Connections admitted before the rest get 503 at once, when the server rejects.
    admitted: Option<usize>,
}

impl Model {
    fn of(capacity: &Capacity, clients: usize) -> Model {
        let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let worker = &capacity.worker;
        let (slots, slots_text, slot_name) =
            match (capacity.concurrent.map(as_usize), capacity.per_client) {
                (limit, true) => (
                    clients.max(1).min(limit.unwrap_or(usize::MAX)),
                    match limit {
                        Some(max) => format!(
                            "every client at once, on a {worker} of its own (at most {max})"
                        ),
                        None => format!("every client at once, on a {worker} of its own"),
                    },
                    format!("its {worker}"),
                ),
                (None, false) => (
                    clients.max(1),
                    "every client at once".to_owned(),
                    format!("a {worker}"),
                ),
                (Some(1), false) => (
                    1,
                    "one client at a time".to_owned(),
                    format!("the one {worker}"),
                ),
                (Some(n), false) => (
                    n.max(1),
                    format!("{n} clients at a time ({n} {worker}s)"),
                    format!("a {worker}"),
                ),
            };
        Model {
            slots,
            slots_text,
            slot_name,
            holding_pins: capacity.idle_holds_worker,
            receivers: capacity.idle_holds_readers.map(as_usize),
            admitted: capacity
                .rejects_beyond
                .then_some(capacity.admitted)
                .flatten()
                .map(as_usize),
        }
    }
}

/// The prediction for one scenario against one server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    /// Clients predicted to be served (scenario runs): the most likely count.
    pub served: Option<usize>,
    /// Every served count that agrees with the model, lowest and highest (scenario runs).
    /// Equal to `served` unless a boundary or a race leaves the count open.
    pub served_range: Option<[usize; 2]>,
    /// Requests per second predicted (load runs of a route with a known delay).
    pub per_second: Option<f64>,
    /// The rule, in words, with the numbers filled in.
    pub rule: String,
    /// Some client's predicted completion is within the margin of its deadline.
    pub boundary: bool,
    /// Caveats that make the prediction less reliable (e.g. a small backlog).
    pub caveats: Vec<String>,
}

impl Prediction {
    /// Whether a measurement agrees: a served count in the predicted range (scenario runs),
    /// or throughput within 20% (load runs). `None` when nothing was predicted to compare.
    pub fn agrees(&self, served: usize, per_second: Option<f64>) -> Option<bool> {
        if let Some([low, high]) = self.served_range {
            return Some((low..=high).contains(&served));
        }
        match (self.per_second, per_second) {
            (Some(p), Some(m)) => Some(m >= 0.8 * p && m <= 1.2 * p),
            _ => None,
        }
    }

    /// The predicted count in words: "3", or "4 to 5".
    pub fn served_text(&self) -> Option<String> {
        let [low, high] = self.served_range?;
        Some(if low == high {
            low.to_string()
        } else {
            format!("{low} to {high}")
        })
    }
}

/// Predicts the scenario's outcome against `info`, or `None` for servers the model does not
/// know.
pub fn predict(info: &ServerInfo, scenario: &Scenario) -> Option<Prediction> {
    let model = Model::of(&info.snapshot.capacity, scenario.clients);
    let mut caveats = Vec::new();
    let backlog = u64::from(info.snapshot.config.backlog);
    let waiting = scenario.clients.saturating_sub(model.slots) as u64;
    if waiting > backlog + 1 {
        caveats.push(format!(
            "{waiting} clients must wait but the backlog holds {backlog}: late connects (SYN retries after ~1 s) shift the times"
        ));
    }
    let link = scenario.link;
    if link.rtt.min != link.rtt.max || link.bandwidth_bits_per_s.is_some() {
        return Some(Prediction {
            served: None,
            served_range: None,
            per_second: None,
            rule: format!(
                "{} serves {}, but the clients are each at their own distance ({}), and this arithmetic takes one round trip for all, so it predicts no count.",
                info.architecture,
                model.slots_text,
                link.describe()
            ),
            boundary: false,
            caveats,
        });
    }
    match scenario.load {
        Load::Requests(_) if !caveats.is_empty() => Some(Prediction {
            served: None,
            served_range: None,
            per_second: None,
            rule: format!(
                "{} serves {}, but more clients must wait than its backlog holds: the kernel drops their connection attempts and retries them about a second later, which this arithmetic does not model, so it predicts no count.",
                info.architecture, model.slots_text
            ),
            boundary: false,
            caveats,
        }),
        Load::Requests(k) => Some(predict_served(info, &model, scenario, k, caveats)),
        Load::Duration(_) | Load::Rate(_) => {
            let Throughput {
                per_second: capacity,
                mut rule,
                ..
            } = capacity(info, scenario)?;
            let per_second = match scenario.load {
                Load::Rate(open) => {
                    let _ = write!(
                        rule,
                        " {:.0} per second are offered, so at most {:.0} per second can be served.",
                        open.rate,
                        open.rate.min(capacity)
                    );
                    open.rate.min(capacity)
                }
                _ => capacity,
            };
            Some(Prediction {
                served: None,
                served_range: None,
                per_second: Some(per_second),
                rule,
                boundary: false,
                caveats,
            })
        }
    }
}

/// What a server can serve of a stream of requests, by the arithmetic.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// Requests per second at most.
    pub per_second: f64,
    /// The share of the connections that are ever served: below 1 when each connection
    /// keeps its slot while idle and there are more connections than slots, so that the
    /// requests sent on the others wait until they give up.
    pub served_share: f64,
    /// The rule, in words with the numbers.
    pub rule: String,
}

/// The most requests per second the server `info` describes can serve of `scenario`'s
/// request over its clients' connections: `P` requests at a time (its slots, at most the
/// connections), each taking the route's `D`, is `P / D` per second. `None` for a route
/// without a known service time.
pub fn capacity(info: &ServerInfo, scenario: &Scenario) -> Option<Throughput> {
    let work = scenario.request.service_time();
    if work.is_zero() {
        return None;
    }
    let model = Model::of(&info.snapshot.capacity, scenario.clients);
    let busy = model.slots.min(scenario.clients);
    let mut per_second = busy as f64 / work.as_secs_f64();
    let mut rule = format!(
        "{} serves {}, so at most {busy} requests at a time over {} connections, each taking {}: {busy} ÷ {} = {per_second:.0} requests per second.",
        info.architecture,
        model.slots_text,
        scenario.clients,
        fmt(work),
        fmt(work)
    );
    let rtt = scenario.link.rtt.max;
    if !rtt.is_zero() {
        // A connection carries one request per round trip plus its work; a slot held across
        // the round trips serves only its own connection at that pace.
        let cycle = (work + rtt).as_secs_f64();
        let carriers = if model.holding_pins {
            busy
        } else {
            scenario.clients
        };
        let paced = carriers as f64 / cycle;
        if paced < per_second {
            per_second = paced;
            let _ = write!(
                rule,
                " But the clients are {} away, so each of the {carriers} {} carries one request per {}: {carriers} ÷ {} = {per_second:.0} requests per second.",
                fmt(rtt),
                if model.holding_pins { "busy connections" } else { "connections" },
                fmt(work + rtt),
                fmt(work + rtt)
            );
        }
    }
    let served_share = if model.holding_pins && scenario.clients > model.slots {
        let _ = write!(
            rule,
            " But a connection keeps {} between its requests, so only {} of the {} connections are ever served, and the requests sent on the others wait until they give up.",
            model.slot_name, model.slots, scenario.clients
        );
        model.slots as f64 / scenario.clients as f64
    } else {
        1.0
    };
    Some(Throughput {
        per_second,
        served_share,
        rule,
    })
}

/// What the arithmetic says for each client of a scenario run.
struct Schedule {
    /// Client k's predicted answer: the wait its deadline applies to.
    waits: Vec<Duration>,
    served: usize,
    /// Counts that are also possible because a completion is within the margin.
    boundary_low: usize,
    boundary_high: usize,
    boundary: bool,
}

/// The served count of a scenario run against `model` with `slots` slots.
fn schedule(
    scenario: &Scenario,
    slots: usize,
    occupancy: Duration,
    k_requests: u32,
    admitted: Option<usize>,
) -> Schedule {
    let work = scenario.request.service_time();
    // The connect's round trip, and one more for every request (zero on loopback).
    let rtt = scenario.link.rtt.max;
    let margin = boundary_margin(scenario.timeout);
    let t = scenario.timeout;
    let mut waits = Vec::with_capacity(scenario.clients);
    let (mut served, mut low, mut high, mut boundary) = (0, 0, 0, false);
    for k in 0..scenario.clients {
        if admitted.is_some_and(|a| k >= a) {
            // Turned away at once (503): never served, however the clocks fall.
            continue;
        }
        let rounds = u32::try_from(k / slots.max(1)).unwrap_or(u32::MAX);
        let queued = occupancy.saturating_mul(rounds);
        let (wait, later_ok) = match scenario.deadline {
            // One deadline for the whole exchange: the last answer must be in before it.
            DeadlineClock::FromStart => {
                (queued.saturating_add(rtt + (work + rtt) * k_requests), true)
            }
            // A fresh deadline per step: the first answer waits for the slot, later ones
            // only for their own work and round trip.
            DeadlineClock::PerCall => (
                queued.saturating_add(work + rtt),
                k_requests <= 1 || work + rtt < t,
            ),
        };
        waits.push(wait);
        let in_time = wait < t && later_ok;
        let near = match scenario.deadline {
            // Completions are lower bounds: one predicted before the deadline may slip past
            // it, never the other way round.
            DeadlineClock::FromStart => wait < t && t - wait < margin,
            // A client's own timer starts a little after the common start, so a predicted
            // completion just after the deadline may still be in time for that client.
            DeadlineClock::PerCall => wait.abs_diff(t) < margin,
        };
        boundary |= near;
        served += usize::from(in_time);
        low += usize::from(in_time && !near);
        high += usize::from(in_time || near);
    }
    Schedule {
        waits,
        served,
        boundary_low: low,
        boundary_high: high,
        boundary,
    }
}

/// How long a client of a scenario run keeps its slot: its `k` requests of `work` each,
/// then `pinned`, the part of its hold that keeps the slot (none where holding does not).
struct Occupancy {
    work: Duration,
    k: u32,
    pinned: Duration,
    /// The round trips the slot is held for besides (distant clients on a server whose
    /// slot stays with the connection): `K·R − R/2`, zero on loopback.
    trips: Duration,
}

impl Occupancy {
    /// `O = K·D + H` (plus the round trips a held slot waits through), the time between
    /// two clients taking the same slot.
    fn total(&self) -> Duration {
        self.work * self.k + self.pinned + self.trips
    }
}

/// The served count of a scenario run of `k` requests per client, with the rule in words:
/// the queue of clients in front of the slots, the race for the pipeline's receivers where
/// there is one, and which answers come in time.
fn predict_served(
    info: &ServerInfo,
    model: &Model,
    scenario: &Scenario,
    k: u32,
    caveats: Vec<String>,
) -> Prediction {
    let hold = effective_hold(info, scenario);
    let rtt = scenario.link.rtt.max;
    let occupancy = Occupancy {
        work: scenario.request.service_time(),
        k,
        pinned: if model.holding_pins {
            hold
        } else {
            Duration::ZERO
        },
        trips: if model.holding_pins {
            (rtt * k).saturating_sub(rtt / 2)
        } else {
            Duration::ZERO
        },
    };
    let main = schedule(scenario, model.slots, occupancy.total(), k, model.admitted);
    let (mut low, high) = (main.boundary_low, main.boundary_high);
    let mut rule = queue_rule(info, model, scenario, &occupancy, &main.waits);
    if let Some(pool) = receivers_race(model, scenario, &occupancy, hold, main.served, &mut rule) {
        low = low.min(pool);
    }
    rule.push_str(&served_rule(scenario, main.served));
    Prediction {
        served: Some(main.served),
        served_range: Some([low, high.max(low)]),
        per_second: None,
        rule,
        boundary: main.boundary,
        caveats,
    }
}

/// The first sentences of a scenario run's rule: how many clients the server takes at
/// once, how long each keeps its slot, when client k is answered (with the first few
/// times, `waits`), and how many a rejecting pool turns away.
fn queue_rule(
    info: &ServerInfo,
    model: &Model,
    scenario: &Scenario,
    occupancy: &Occupancy,
    waits: &[Duration],
) -> String {
    let Occupancy {
        work,
        k,
        pinned,
        trips,
    } = *occupancy;
    let rtt = scenario.link.rtt.max;
    let mut rule = String::new();
    let _ = write!(rule, "{} serves {}. ", info.architecture, model.slots_text);
    if !rtt.is_zero() {
        let _ = write!(
            rule,
            "The clients are {} away: connecting takes one round trip, and each request one more. ",
            fmt(rtt)
        );
    }
    let _ = write!(
        rule,
        "Each client keeps {} for {}{}",
        model.slot_name,
        fmt(occupancy.total()),
        occupancy_parts(work, k, pinned)
    );
    if !trips.is_zero() {
        let _ = write!(
            rule,
            ", held through its round trips too ({k} × {} less the half trip before its first request arrives: {})",
            fmt(rtt),
            fmt(trips)
        );
    }
    let _ = write!(
        rule,
        ", so client k (counting from 0) is answered at ⌊k/{}⌋ × {} + {}: {}. ",
        model.slots,
        fmt(occupancy.total()),
        fmt(match scenario.deadline {
            DeadlineClock::FromStart => rtt + (work + rtt) * k,
            DeadlineClock::PerCall => work + rtt,
        }),
        list_times(waits)
    );
    if let Some(admitted) = model.admitted {
        if scenario.clients > admitted {
            let _ = write!(
                rule,
                "The pool admits {admitted} connections (workers plus queue); the other {} get 503 at once. ",
                scenario.clients - admitted
            );
        }
    }
    rule
}

/// The pipeline's receivers: with quick work and clients that hold their connection, a
/// newcomer and a returning holder race for the next free receiver. When that race is on,
/// says so in `rule` and returns the count a pool of receivers would serve, the low end of
/// the range (`served` is the high end, what the handlers alone allow).
fn receivers_race(
    model: &Model,
    scenario: &Scenario,
    occupancy: &Occupancy,
    hold: Duration,
    served: usize,
    rule: &mut String,
) -> Option<usize> {
    let receivers = model.receivers?;
    let Occupancy { work, k, .. } = *occupancy;
    if hold.is_zero() || work >= QUICK_WORK || scenario.clients <= receivers {
        return None;
    }
    let pinned_pool = schedule(scenario, receivers, work * k + hold, k, None);
    let _ = write!(
        rule,
        "But each served client then holds its connection idle for {}, keeping a receiver waiting for its next request: once all {receivers} receivers wait on holders, new clients are not even read. Whether the next free receiver picks up a newcomer or a returning holder depends on which reached the connections queue first, so between {} (a pool of {receivers}) and {} are served. ",
        fmt(hold),
        pinned_pool.served,
        served,
    );
    Some(pinned_pool.boundary_low)
}

/// The rule's last sentence: which answers count as served under the scenario's deadline
/// clock, and how many that is.
fn served_rule(scenario: &Scenario, served: usize) -> String {
    format!(
        "Served: those answered {} — {}.",
        match scenario.deadline {
            DeadlineClock::FromStart => format!(
                "before the {} deadline (counted from the common start)",
                fmt(scenario.timeout)
            ),
            DeadlineClock::PerCall => format!(
                "less than {} after they asked (each step has its own {})",
                fmt(scenario.timeout),
                fmt(scenario.timeout)
            ),
        },
        served
    )
}

/// "(1 request of 400ms, then holding the connection idle for 3s)".
fn occupancy_parts(work: Duration, k: u32, pinned: Duration) -> String {
    let requests = if work.is_zero() {
        format!(
            "{k} request{} that take{} no time",
            plural(k),
            if k == 1 { "s" } else { "" }
        )
    } else {
        format!("{k} request{} of {} each", plural(k), fmt(work))
    };
    if pinned.is_zero() {
        format!(" ({requests})")
    } else {
        format!(
            " ({requests}, then holding its connection idle for {})",
            fmt(pinned)
        )
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The first few predicted times: "0, 500ms, 1s, 1.5s, 2s".
fn list_times(times: &[Duration]) -> String {
    const SHOWN: usize = 8;
    let mut text: Vec<String> = times.iter().take(SHOWN).map(|t| fmt(*t)).collect();
    if times.len() > SHOWN {
        text.push(format!("… ({} clients)", times.len()));
    }
    text.join(", ")
}

/// The hold time a server actually grants: it closes idle connections after its keep-alive
/// timeout (and at once when keep-alive is off).
fn effective_hold(info: &ServerInfo, scenario: &Scenario) -> Duration {
    match info.snapshot.config.keep_alive_timeout {
        0 => Duration::ZERO,
        ms => scenario.hold.min(Duration::from_millis(ms)),
    }
}

/// How close to the deadline a predicted completion may come before it is "on the
/// boundary": 5% of the deadline, at least 25 ms.
pub fn boundary_margin(timeout: Duration) -> Duration {
    (timeout / 20).max(Duration::from_millis(25))
}

fn fmt(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else {
        humantime::format_duration(Duration::from_millis(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        ))
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A servelab server as its `/stats` describes it: keep-alive 60 s, backlog 1024.
    fn info(arch: &str, capacity: Capacity) -> ServerInfo {
        let stats = serde_json::json!({
            "architecture": arch, "uptime_ms": 0, "shutting_down": false,
            "config": { "addr": "127.0.0.1:7777", "backlog": 1024, "keep_alive_timeout": 60_000,
                        "read_timeout": 10_000, "shutdown_timeout": 10_000, "max_header_bytes": 8192,
                        "max_body_bytes": 1_048_576, "max_sleep": 60_000, "log": "quiet" },
            "connections": { "accepted": 0, "open": 0, "rejected": 0 },
            "requests": { "received": 0, "served": 0, "client_left": 0, "in_flight": 0 },
            "responses": {}, "capacity": capacity,
        });
        ServerInfo::from(serde_json::from_value::<server_core::Snapshot>(stats).unwrap())
    }

    fn single() -> ServerInfo {
        info("single", Capacity::workers(1, "thread"))
    }

    fn pool(workers: u64, queue: u64, rejects: bool) -> ServerInfo {
        info(
            "prefork-pool",
            Capacity {
                admitted: Some(workers + queue),
                rejects_beyond: rejects,
                ..Capacity::workers(workers, "worker")
            },
        )
    }

    fn scenario(clients: usize, timeout_ms: u64, hold_ms: u64, path: &str) -> Scenario {
        Scenario::get(
            clients,
            path,
            Duration::from_millis(timeout_ms),
            Duration::from_millis(hold_ms),
        )
    }

    fn range(p: &Prediction) -> [usize; 2] {
        p.served_range.unwrap()
    }

    #[test]
    fn the_lectures_first_experiment_is_three_under_a_strict_common_clock() {
        let single = single();
        // E1: 5 clients hold 5 s, timeout 15 s: the 4th is answered at 15 s at the earliest,
        // so a deadline counted from the common start always misses it.
        let e1 = predict(&single, &scenario(5, 15_000, 5_000, "/")).unwrap();
        assert_eq!(e1.served, Some(3));
        assert_eq!(range(&e1), [3, 3]);
        assert!(!e1.boundary);
        // With the lecture's per-call clock the 4th client's own timer starts a little late:
        // on the boundary, 3 or 4.
        let e1 = predict(
            &single,
            &scenario(5, 15_000, 5_000, "/").with_clock(DeadlineClock::PerCall),
        )
        .unwrap();
        assert_eq!(range(&e1), [3, 4]);
        assert!(e1.boundary);
        // Just before the deadline is on the boundary under either clock.
        let close = predict(&single, &scenario(5, 15_100, 5_000, "/")).unwrap();
        assert_eq!(range(&close), [3, 4]);
    }

    #[test]
    fn the_lectures_questions() {
        let single = single();
        // Q1: timeout 5 s, hold 30 s: only the first.
        let q1 = predict(&single, &scenario(5, 5_000, 30_000, "/")).unwrap();
        assert_eq!(range(&q1), [1, 1]);
        // Q2: a pool of 4.
        let pool4 = pool(4, 64, false);
        assert_eq!(
            range(&predict(&pool4, &scenario(5, 5_000, 30_000, "/")).unwrap()),
            [4, 4]
        );
        // E3: heavy requests of 4 s, timeout 10 s: two.
        assert_eq!(
            range(&predict(&single, &scenario(5, 10_000, 0, "/sleep/4000")).unwrap()),
            [2, 2]
        );
        let tpc = info(
            "thread-per-conn",
            Capacity {
                per_client: true,
                ..Capacity::workers(4096, "thread")
            },
        );
        assert_eq!(
            range(&predict(&tpc, &scenario(5, 10_000, 0, "/sleep/4000")).unwrap()),
            [5, 5]
        );
    }

    /// `clients` clients sending `GET /` `k` times each, `rtt` away.
    fn far(clients: usize, k: u32, timeout_ms: u64, rtt: &str) -> Scenario {
        let mut s = scenario(clients, timeout_ms, 0, "/");
        s.load = Load::Requests(k);
        s.link.rtt = loadgen::link::Rtt::parse(rtt).unwrap();
        s
    }

    #[test]
    fn distant_clients_hold_a_pool_through_their_round_trips() {
        let pool4 = pool(4, 64, false);
        // On loopback all 32 are served; 50 ms away each round of 4 takes 175 ms after a
        // first of 250 ms: answers at 250, 425, 600, 775, 950 ms, so 4 rounds by 900 ms.
        assert_eq!(
            range(&predict(&pool4, &far(32, 4, 900, "0ms")).unwrap()),
            [32, 32]
        );
        let p = predict(&pool4, &far(32, 4, 900, "50ms")).unwrap();
        assert_eq!(range(&p), [16, 16]);
        assert!(p.rule.contains("50ms away"), "{}", p.rule);
        // The sequential server measured with 4 clients × 3 requests at 50 ms: the last
        // answers at 200, 325, 450 and 575 ms.
        let s = predict(&single(), &far(4, 3, 2_000, "50ms")).unwrap();
        assert!(s.rule.contains("200ms, 325ms, 450ms, 575ms"), "{}", s.rule);
        // A spread is reported, not predicted.
        let spread = predict(&pool4, &far(32, 4, 900, "20ms..80ms")).unwrap();
        assert_eq!(spread.served, None);
        assert!(spread.rule.contains("own distance"), "{}", spread.rule);
    }

    #[test]
    fn a_full_pool_that_rejects_serves_only_what_it_admits() {
        let p = predict(&pool(4, 1, true), &scenario(6, 500, 3_000, "/")).unwrap();
        assert_eq!(range(&p), [4, 4]);
        assert!(p.rule.contains("admits 5"), "{}", p.rule);
    }

    #[test]
    fn idle_holders_keep_a_pipelines_receivers_waiting() {
        let pipeline = info(
            "pipeline",
            Capacity {
                idle_holds_worker: false,
                idle_holds_readers: Some(4),
                admitted: Some(1024),
                ..Capacity::workers(4, "handler")
            },
        );
        // The documented example: quick requests, clients that hold. At least the 4 the
        // receivers can read, at most all 5.
        let p = predict(&pipeline, &scenario(5, 500, 3_000, "/")).unwrap();
        assert_eq!(range(&p), [4, 5]);
        assert!(p.rule.contains("receivers"), "{}", p.rule);
        // Slow requests are all read before the first served client comes back.
        let p = predict(&pipeline, &scenario(16, 1_000, 0, "/sleep/400")).unwrap();
        assert_eq!(range(&p), [8, 8]);
        let p = predict(&pipeline, &scenario(5, 1_000, 3_000, "/sleep/400")).unwrap();
        assert_eq!(range(&p), [5, 5]);
    }

    #[test]
    fn the_rule_reads_as_sentences() {
        let p = predict(&single(), &scenario(5, 1_400, 500, "/")).unwrap();
        assert_eq!(
            p.rule,
            "single serves one client at a time. Each client keeps the one thread for 500ms (1 request that takes no time, then holding its connection idle for 500ms), so client k (counting from 0) is answered at ⌊k/1⌋ × 500ms + 0: 0, 500ms, 1s, 1s 500ms, 2s. Served: those answered before the 1s 400ms deadline (counted from the common start) — 3."
        );
    }

    /// A whole response with `status` and `body`, as the probe reads it.
    fn answer(status: u16, body: &[u8]) -> loadgen::http::Response {
        loadgen::http::Response {
            status,
            server_thread: None,
            close: true,
            headers: Vec::new(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn other_servers_are_not_servelab() {
        assert!(ServerInfo::from_stats_response(&answer(200, b"{\"hello\": 1}")).is_none());
        assert!(ServerInfo::from_stats_response(&answer(404, b"")).is_none());
    }
}
