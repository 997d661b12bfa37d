//! What the simulated clients do: how many, with which deadline, sending what, and for how
//! long they stay connected after being served; and which engine runs them.

use std::time::{Duration, SystemTime};

use crate::attack::Population;
use crate::link::Link;
use crate::Error;

/// A whole scenario: every client does the same thing, starting at the same moment.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Scenario {
    /// How many clients, each on its own thread and its own connection.
    pub clients: usize,
    /// Each client's deadline, counted from the common start: connecting, sending and
    /// receiving every response must all happen within it.
    #[serde(
        serialize_with = "contract::units::as_millis",
        deserialize_with = "contract::units::from_millis"
    )]
    pub timeout: Duration,
    /// How long a served client keeps its connection open and idle before it leaves.
    #[serde(
        serialize_with = "contract::units::as_millis",
        deserialize_with = "contract::units::from_millis"
    )]
    pub hold: Duration,
    pub request: RequestSpec,
    pub load: Load,
    /// Which clock the deadline runs on.
    pub deadline: DeadlineClock,
    /// How the simulator runs the clients. It changes nothing the clients do, only what
    /// it costs the simulator to do it.
    pub engine: Engine,
    /// The event-driven engine's threads; `None`: one per CPU (never more than clients).
    pub engine_threads: Option<usize>,
    /// This process runs one shard of the run (`--shard I/N`): its share of the clients
    /// and of the rate. `clients` and `rate` stay the whole run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The wall-clock moment the clients start (`--start-at`), so that shards on several
    /// processes or machines start together; `None`: as soon as they are ready. Not part of
    /// the report (its `started_at_unix_us` says when the run really started).
    #[serde(skip)]
    pub start_at: Option<SystemTime>,
    /// Hostile clients in the background (`--background`): they connect before the
    /// clients above start and misbehave until they are done ([`crate::attack`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub background: Vec<Population>,
    /// The path between each client and the server (`--rtt`, `--bandwidth`), emulated by
    /// the engine ([`crate::link`]); the default is loopback as it is.
    #[serde(default, skip_serializing_if = "link_is_loopback")]
    pub link: Link,
    /// A closed loop on a ramp (`--stages` with `--closed`): each stage's value is a number
    /// of clients, and client `k` (from 1) runs while the ramp is at `k` or above, so
    /// connections are added as it rises and removed as it falls; empty for a steady
    /// closed loop of `clients`.
    #[serde(default, skip_serializing_if = "Stages::is_empty")]
    pub clients_ramp: Stages,
}

/// Whether a scenario's clients are on plain loopback, so its JSON leaves `link` out.
fn link_is_loopback(link: &Link) -> bool {
    !link.is_active()
}

/// How the simulator runs its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// A few threads (one per CPU), each driving many clients' non-blocking sockets with
    /// `mio`. Thousands of clients cost a few megabytes and no more threads.
    #[default]
    Events,
    /// The lecture's simulator: every client is a thread of its own with blocking sockets.
    /// Each client's story can be read in the log by its thread's name.
    Threads,
}

/// Which clock a client's deadline runs on.
///
/// The two differ only when a client waits a long time for one step and then little for the
/// next, which is what a full listen backlog does to connects (see lab 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum DeadlineClock {
    /// servelab's rule: one deadline for the whole exchange, counted from the moment all
    /// clients start together. Connecting, sending and every response must fit in it.
    #[default]
    FromStart,
    /// The lecture's rule: its client sets `settimeout(T)` on the socket, so each blocking
    /// step starts a fresh `T`. Connecting must take less than `T`, and each response must
    /// arrive less than `T` after its request was sent.
    PerCall,
}

impl Scenario {
    /// `clients` clients each sending one `GET path` with a deadline of `timeout` and a
    /// hold of `hold`: the shape of every experiment in the lecture.
    pub fn get(clients: usize, path: &str, timeout: Duration, hold: Duration) -> Scenario {
        Scenario::new(clients, RequestSpec::get(path), timeout, hold)
    }

    /// `clients` clients each sending `request` once, with a deadline of `timeout` from the
    /// common start and a hold of `hold`.
    pub fn new(
        clients: usize,
        request: RequestSpec,
        timeout: Duration,
        hold: Duration,
    ) -> Scenario {
        Scenario {
            clients,
            timeout,
            hold,
            request,
            load: Load::Requests(1),
            deadline: DeadlineClock::FromStart,
            engine: Engine::Events,
            engine_threads: None,
            shard: None,
            start_at: None,
            background: Vec::new(),
            link: Link::default(),
            clients_ramp: Stages::default(),
        }
    }

    /// The clients this process runs: all of them, or its shard's share.
    pub fn own_clients(&self) -> usize {
        self.shard
            .map_or(self.clients, |s| s.clients_of(self.clients))
    }

    /// The ids (from 1) of the clients this process runs.
    pub fn own_ids(&self) -> Vec<usize> {
        let shard = self.shard.unwrap_or(Shard { index: 1, count: 1 });
        (shard.index..=self.clients).step_by(shard.count).collect()
    }

    /// The same scenario run by `engine`.
    pub fn on(self, engine: Engine) -> Scenario {
        Scenario { engine, ..self }
    }

    /// The run's planned length, when it has one: load runs last their duration; scenario
    /// runs at most their deadline plus their hold.
    pub fn planned_length(&self) -> std::time::Duration {
        match self.load {
            Load::Requests(_) => self.timeout + self.hold,
            Load::Duration(d) => d,
            Load::Rate(open) => open.duration,
        }
    }

    /// The same scenario with its deadline on `clock`.
    pub fn with_clock(self, clock: DeadlineClock) -> Scenario {
        Scenario {
            deadline: clock,
            ..self
        }
    }
}

/// One of several simulator processes that together run one scenario (`--shard I/N`).
///
/// The clients are dealt out like cards: shard `I` of `N` runs clients `I`, `I + N`,
/// `I + 2N`, ... (ids from 1), so every shard gets its share within one client and the
/// shards together run each client exactly once. In an open loop the clients are the
/// connections, and each connection carries the requests the whole run's schedule gives it
/// (see the event engine's dispatcher), so the shards' schedules together are exactly the
/// one-process schedule: with constant arrivals the same requests at the same moments,
/// with Poisson arrivals independent processes whose sum has the whole rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// From 1 to `count`.
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The most shards a run may be split into.
    pub const MAX: usize = 10_000;

    /// Parses `I/N` (`2/3`: the second of three shards).
    pub fn parse(text: &str) -> Result<Shard, Error> {
        let bad = || {
            Error::Invalid(format!(
                "--shard takes I/N, this process's place among N shards counted from 1 (for example 2/3); got {text:?}"
            ))
        };
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count)
    }

    /// Shard `index` (from 1) of `count`.
    pub fn new(index: usize, count: usize) -> Result<Shard, Error> {
        if count == 0 || count > Shard::MAX || index == 0 || index > count {
            return Err(Error::Invalid(format!(
                "a shard is I/N with 1 ≤ I ≤ N ≤ {}; got {index}/{count}",
                Shard::MAX
            )));
        }
        Ok(Shard { index, count })
    }

    /// The shard an orchestrator started this process as, one of `count`: Docker Swarm's
    /// task slot (`TASK_SLOT`, from 1, which the stack file sets from `{{.Task.Slot}}`), or
    /// a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` (from 0). `var` reads the
    /// environment.
    pub fn from_orchestrator(
        count: usize,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Shard, Error> {
        let read = |name: &str| -> Result<Option<usize>, Error> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    Error::Invalid(format!("{name} should be a whole number; got {v:?}"))
                }),
            }
        };
        if let Some(slot) = read("TASK_SLOT")? {
            return Shard::new(slot, count);
        }
        if let Some(index) = read("JOB_COMPLETION_INDEX")? {
            return Shard::new(index + 1, count);
        }
        Err(Error::Invalid(format!(
            "--shards {count} takes this process's place from the orchestrator, but neither TASK_SLOT (Docker Swarm) nor JOB_COMPLETION_INDEX (Kubernetes) is set; give --shard I/{count} instead"
        )))
    }

    /// Whether client `id` (from 1) is this shard's.
    pub fn owns(&self, id: usize) -> bool {
        id >= 1 && (id - 1) % self.count == self.index - 1
    }

    /// How many of a run's `clients` this shard runs.
    pub fn clients_of(&self, clients: usize) -> usize {
        if clients < self.index {
            0
        } else {
            (clients - self.index) / self.count + 1
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// How many requests each client sends.
///
/// An open loop's ramp makes `Rate` a few hundred bytes larger than the other variants. That
/// is allowed: a scenario is copied a handful of times per run (once per engine thread), never
/// per request, and a plain `Copy` value is simpler to share than a boxed one.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum Load {
    /// This many requests per client, one after another on one connection, all within the
    /// deadline. The lecture's experiments are `Requests(1)`.
    Requests(u32),
    /// A closed-loop load run: each client sends its next request as soon as the previous
    /// response is in, for this long. `timeout` then applies to each request.
    #[serde(
        serialize_with = "contract::units::as_millis",
        deserialize_with = "contract::units::from_millis"
    )]
    Duration(Duration),
    /// An open-loop load run: requests arrive on a schedule, whether or not earlier ones
    /// have been answered, and the clients are the connections that carry them.
    Rate(OpenLoop),
}

impl Load {
    /// A load run (closed or open loop), as opposed to the lecture's scenario.
    pub fn is_load(&self) -> bool {
        !matches!(self, Load::Requests(_))
    }
}

/// The schedule of an open-loop run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenLoop {
    /// Requests per second offered (with `stages`, their mean over the run).
    pub rate: f64,
    /// How long requests arrive.
    #[serde(
        serialize_with = "contract::units::as_millis",
        deserialize_with = "contract::units::from_millis"
    )]
    pub duration: Duration,
    pub arrivals: Arrivals,
    pub when_busy: WhenBusy,
    /// The seed of the Poisson arrivals, so that a run can be repeated exactly.
    pub seed: u64,
    /// A ramp (`--stages`): the rate changes linearly from one stage's rate to the next,
    /// from 0 at the start; empty for a steady `rate`. `duration` is then their sum.
    #[serde(default, skip_serializing_if = "Stages::is_empty")]
    pub stages: Stages,
}

/// At most this many stages in a ramp: enough for any ramp typed on a command line, and a
/// fixed size keeps a scenario a plain value that is copied, not shared.
pub const MAX_STAGES: usize = 16;

/// The stages of a ramp, in order (at most [`MAX_STAGES`]); serialized as a list.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stages {
    len: usize,
    items: [Stage; MAX_STAGES],
}

impl Stages {
    /// The stages, or the one sentence that says there are too many.
    pub fn new(stages: &[Stage]) -> Result<Stages, String> {
        if stages.len() > MAX_STAGES {
            return Err(format!(
                "{} stages is too many: a ramp has at most {MAX_STAGES}",
                stages.len()
            ));
        }
        let mut items = [Stage::default(); MAX_STAGES];
        items[..stages.len()].copy_from_slice(stages);
        Ok(Stages {
            len: stages.len(),
            items,
        })
    }

    pub fn as_slice(&self) -> &[Stage] {
        &self.items[..self.len]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How long the stages last in all.
    pub fn total(&self) -> Duration {
        self.as_slice().iter().map(|s| s.duration).sum()
    }

    /// The highest value any stage reaches.
    pub fn peak(&self) -> f64 {
        self.as_slice().iter().map(|s| s.rate).fold(0.0, f64::max)
    }

    /// The ramp's value `t` after its start: linear within each stage from the previous
    /// stage's value (0 before the first), the last stage's after the end.
    pub fn level_at(&self, t: Duration) -> f64 {
        let (mut before, mut start) = (0.0, Duration::ZERO);
        for stage in self.as_slice() {
            let end = start + stage.duration;
            if t < end {
                let into = (t - start).as_secs_f64() / stage.duration.as_secs_f64();
                return before + (stage.rate - before) * into;
            }
            (before, start) = (stage.rate, end);
        }
        before
    }

    /// The first moment at or after `from` (counted from the ramp's start, before its end)
    /// when the ramp's value is at least `x`; `None` if it never is again.
    pub fn reaches(&self, x: f64, from: Duration) -> Option<Duration> {
        let (mut before, mut start) = (0.0, Duration::ZERO);
        for stage in self.as_slice() {
            let end = start + stage.duration;
            let (a, b) = (before, stage.rate);
            (before, start) = (b, end);
            if end <= from {
                continue;
            }
            let begin = from.max(end - stage.duration);
            if self.level_at(begin) >= x {
                return Some(begin);
            }
            if b >= x && b > a {
                // Rising through x within this stage: where the line crosses it.
                let fraction = (x - a) / (b - a);
                let at = (end - stage.duration) + stage.duration.mul_f64(fraction);
                return Some(at.max(begin));
            }
        }
        None
    }
}

impl serde::Serialize for Stages {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Stages {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Stages, D::Error> {
        let list = Vec::<Stage>::deserialize(deserializer)?;
        Stages::new(&list).map_err(serde::de::Error::custom)
    }
}

/// One stage of a ramp: over `duration`, the rate moves linearly from the previous stage's
/// rate (0 before the first) to `rate`. A stage of 0 s is a step.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Stage {
    #[serde(
        serialize_with = "contract::units::as_millis",
        deserialize_with = "contract::units::from_millis"
    )]
    pub duration: Duration,
    /// Requests per second at the stage's end (for a closed loop's ramp, clients).
    pub rate: f64,
}

impl Stage {
    /// Reads `--stages "10s:100,30s:1000,10s:0"`: each stage DURATION:RATE. The error is
    /// one sentence.
    pub fn parse_list(text: &str) -> Result<Stages, String> {
        let mut stages = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (duration, rate) = part
                .split_once(':')
                .ok_or_else(|| format!("stage {part:?} is not DURATION:RATE (e.g. 10s:100)"))?;
            let duration = humantime::parse_duration(duration.trim())
                .map_err(|_| format!("stage {part:?}: {duration:?} is not a duration"))?;
            let rate = rate
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| r.is_finite() && *r >= 0.0)
                .ok_or_else(|| {
                    format!(
                        "stage {part:?}: {rate:?} is not a rate (requests per second, 0 or more)"
                    )
                })?;
            stages.push(Stage { duration, rate });
        }
        let total: Duration = stages.iter().map(|s| s.duration).sum();
        if total.is_zero() {
            return Err("the stages last 0 s in all: give at least one a duration".into());
        }
        if stages.iter().all(|s| s.rate == 0.0) {
            return Err("every stage's rate is 0: no request would ever be due".into());
        }
        Stages::new(&stages)
    }
}

impl OpenLoop {
    /// A ramp through `stages` (see [`Stage`]): `duration` is their sum and `rate` their
    /// mean.
    pub fn staged(stages: Stages, arrivals: Arrivals, when_busy: WhenBusy, seed: u64) -> Self {
        let duration: Duration = stages.as_slice().iter().map(|s| s.duration).sum();
        let (mut before, mut count) = (0.0, 0.0);
        for stage in stages.as_slice() {
            count += (before + stage.rate) / 2.0 * stage.duration.as_secs_f64();
            before = stage.rate;
        }
        OpenLoop {
            rate: count / duration.as_secs_f64().max(1e-9),
            duration,
            arrivals,
            when_busy,
            seed,
            stages,
        }
    }

    /// When, counted from the start, the schedule's cumulative count of requests reaches
    /// `x` (request `i` is due at `offset(i)`); `None` if it never does within the run.
    ///
    /// A steady rate: `x / rate`. A ramp: the count is the integral of the rate, piecewise
    /// quadratic in time, so within a stage whose rate goes from `a` to `b` over `d`,
    /// `y = a·τ + (b − a)/(2d)·τ²` requests have come due after `τ`; solved for `τ` as
    /// `2y / (a + √(a² + 2(b − a)y/d))`, a form that stays exact when `a` is 0 or
    /// `b = a`.
    pub fn offset(&self, x: f64) -> Option<Duration> {
        if self.stages.is_empty() {
            let at = x / self.rate.max(1e-9);
            return Duration::try_from_secs_f64(at)
                .ok()
                .filter(|at| *at < self.duration);
        }
        let (mut before, mut start, mut reached) = (0.0_f64, 0.0_f64, 0.0_f64);
        for stage in self.stages.as_slice() {
            let d = stage.duration.as_secs_f64();
            let (a, b) = (before, stage.rate);
            let here = (a + b) / 2.0 * d;
            if x < reached + here {
                let y = x - reached;
                let root = (a * a + 2.0 * (b - a) * y / d).max(0.0).sqrt();
                let tau = 2.0 * y / (a + root).max(1e-12);
                return Duration::try_from_secs_f64(start + tau.min(d)).ok();
            }
            reached += here;
            start += d;
            before = b;
        }
        None
    }
}

/// When the requests of an open-loop run are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Arrivals {
    /// Evenly spaced: request i is due at start + i / rate.
    #[default]
    Constant,
    /// A Poisson process: independent arrivals with exponential gaps of mean 1 / rate, as
    /// many independent users would produce.
    Poisson,
}

/// What an open-loop run does with a request that is due when every connection is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum WhenBusy {
    /// Wait for the next free connection; the wait counts in the corrected latency (and a
    /// request still waiting when its deadline passes is counted over the deadline).
    #[default]
    Queue,
    /// Give the request up at once and count it as `dropped`.
    Drop,
}

/// The request each client sends.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RequestSpec {
    pub method: String,
    pub path: String,
    pub body: Body,
}

/// The request body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    None,
    Text(String),
    /// A fresh random 36-byte UUID per request, like the lecture's heavy-request clients.
    Uuid,
}

impl RequestSpec {
    /// `GET path`, no body.
    pub fn get(path: &str) -> RequestSpec {
        RequestSpec {
            method: "GET".into(),
            path: path.into(),
            body: Body::None,
        }
    }

    /// The lecture's heavy request: `POST /echo/{ms}` with a fresh 36-byte UUID, which the
    /// server echoes after `ms` milliseconds of processing.
    pub fn heavy(delay: Duration) -> RequestSpec {
        RequestSpec {
            method: "POST".into(),
            path: format!("/echo/{}", delay.as_millis()),
            body: Body::Uuid,
        }
    }

    /// Parses `"METHOD PATH"`, e.g. `"GET /sleep/400"`.
    pub fn parse(text: &str, body: Option<String>, body_uuid: bool) -> Result<RequestSpec, Error> {
        let mut words = text.split_whitespace();
        let (Some(method), Some(path), None) = (words.next(), words.next(), words.next()) else {
            return Err(Error::Invalid(format!(
                "--request takes \"METHOD PATH\", for example \"GET /sleep/400\"; got {text:?}"
            )));
        };
        if !method.bytes().all(|b| b.is_ascii_uppercase()) || !path.starts_with('/') {
            return Err(Error::Invalid(format!(
                "--request takes an upper-case method and a path starting with '/'; got {text:?}"
            )));
        }
        let body = match (body, body_uuid) {
            (Some(_), true) => {
                return Err(Error::Invalid(
                    "use either --body or --body-uuid, not both".into(),
                ))
            }
            (Some(text), false) => Body::Text(text),
            (None, true) => Body::Uuid,
            (None, false) => Body::None,
        };
        Ok(RequestSpec {
            method: method.to_owned(),
            path: path.to_owned(),
            body,
        })
    }

    /// Writes the request's bytes into `out` (cleared first). `host` is the Host header.
    pub fn encode(&self, host: &str, out: &mut Vec<u8>) {
        out.clear();
        let uuid;
        let body: &[u8] = match &self.body {
            Body::None => b"",
            Body::Text(text) => text.as_bytes(),
            Body::Uuid => {
                uuid = uuid::Uuid::new_v4().hyphenated().to_string();
                uuid.as_bytes()
            }
        };
        out.extend_from_slice(
            format!("{} {} HTTP/1.1\r\nHost: {host}\r\n", self.method, self.path).as_bytes(),
        );
        if !body.is_empty() || self.method == "POST" {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }

    /// Whether the body changes with every request (so it must be encoded every time).
    pub fn varies(&self) -> bool {
        self.body == Body::Uuid
    }

    /// A HEAD request's response has no body.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// How long servelab's handler works on this request, when the path says so
    /// (`/sleep/{ms}`, `/echo/{ms}`). Used by the prediction.
    pub fn service_time(&self) -> Duration {
        self.path
            .strip_prefix("/sleep/")
            .or_else(|| self.path.strip_prefix("/echo/"))
            .and_then(|ms| ms.parse().ok())
            .map_or(Duration::ZERO, Duration::from_millis)
    }

    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::{OpenLoop, Stage};
    use std::time::Duration;

    fn ramp(stages: &str) -> OpenLoop {
        OpenLoop::staged(
            Stage::parse_list(stages).expect("valid stages"),
            super::Arrivals::Constant,
            super::WhenBusy::Queue,
            1,
        )
    }

    fn at(open: &OpenLoop, x: f64) -> f64 {
        open.offset(x).expect("within the run").as_secs_f64()
    }

    #[test]
    fn a_ramps_schedule_inverts_the_area_under_its_rate() {
        // 0 → 1000/s over 1 s: 500 t² requests by t.
        let up = ramp("1s:1000");
        assert!((at(&up, 125.0) - 0.5).abs() < 1e-9);
        assert!((up.rate - 500.0).abs() < 1e-9, "the mean rate");
        assert_eq!(up.duration, Duration::from_secs(1));
        assert_eq!(
            up.offset(500.0),
            None,
            "the area is 500: none due at or after the end"
        );
        // A step to 100/s, held for 1 s.
        let step = ramp("0s:100,1s:100");
        assert!((at(&step, 50.0) - 0.5).abs() < 1e-9);
        // A step to 1000/s, then down to 0 over 1 s: 1000 t − 500 t².
        let down = ramp("0s:1000,1s:0");
        assert!((at(&down, 375.0) - 0.5).abs() < 1e-9);
        // A flat stage between two ramps.
        let hill = ramp("1s:1000,1s:1000,1s:0");
        assert!((at(&hill, 1000.0) - 1.5).abs() < 1e-9);
    }

    #[test]
    fn a_ramps_level_and_when_it_reaches_a_value() {
        let ms = Duration::from_millis;
        let ramp = Stage::parse_list("0s:4,500ms:4,500ms:0,0s:2,100ms:2").expect("valid");
        assert_eq!(ramp.total(), ms(1100));
        assert_eq!(ramp.peak(), 4.0);
        assert_eq!(ramp.level_at(ms(0)), 4.0);
        assert_eq!(ramp.level_at(ms(750)), 2.0);
        assert_eq!(ramp.level_at(ms(1050)), 2.0);
        // Client 3 runs until the fall passes 3 (625 ms), then never again.
        assert_eq!(ramp.reaches(3.0, ms(0)), Some(ms(0)));
        assert_eq!(ramp.reaches(3.0, ms(700)), None);
        // Client 2 leaves at 750 ms and is back with the step at 1 s.
        assert_eq!(ramp.reaches(2.0, ms(800)), Some(ms(1000)));
        // On a rising stage: where the line crosses the value.
        let up = Stage::parse_list("1s:10").expect("valid");
        assert_eq!(up.reaches(5.0, ms(0)), Some(ms(500)));
        assert_eq!(up.reaches(5.0, ms(600)), Some(ms(600)));
    }

    #[test]
    fn bad_stages_are_one_sentence_each() {
        for (text, says) in [
            ("10s", "is not DURATION:RATE"),
            ("ten:100", "is not a duration"),
            ("1s:-5", "is not a rate"),
            ("1s:fast", "is not a rate"),
            ("0s:100", "last 0 s in all"),
            ("1s:0,1s:0", "every stage's rate is 0"),
        ] {
            let error = Stage::parse_list(text).expect_err(text);
            assert!(error.contains(says), "{text:?}: {error}");
        }
        let many = vec!["1s:1"; 17].join(",");
        assert!(Stage::parse_list(&many)
            .expect_err("17")
            .contains("at most 16"));
    }

    use super::*;

    #[test]
    fn shards_deal_every_client_out_exactly_once() {
        for clients in [1, 2, 3, 10, 11, 12, 1000] {
            for count in 1..=7usize.min(clients) {
                let mut seen = vec![0u32; clients + 1];
                let mut sizes = Vec::new();
                for index in 1..=count {
                    let shard = Shard::new(index, count).expect("a valid shard");
                    let scenario = Scenario {
                        shard: Some(shard),
                        ..Scenario::get(clients, "/", Duration::from_secs(1), Duration::ZERO)
                    };
                    let ids = scenario.own_ids();
                    assert_eq!(ids.len(), scenario.own_clients());
                    assert!(ids.iter().all(|&id| shard.owns(id)));
                    for id in ids {
                        seen[id] += 1;
                    }
                    sizes.push(scenario.own_clients());
                }
                assert!(seen[1..].iter().all(|&n| n == 1), "{clients} in {count}");
                // Shares differ by at most one client.
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{sizes:?}");
            }
        }
    }

    #[test]
    fn a_shard_is_i_of_n_counted_from_one() {
        assert_eq!(Shard::parse("2/3").ok(), Some(Shard { index: 2, count: 3 }));
        assert_eq!(
            Shard::parse(" 1 / 1 ").ok(),
            Some(Shard { index: 1, count: 1 })
        );
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "1/3/4", "-1/3", "1/10001"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Shard { index: 2, count: 3 }.to_string(), "2/3");
    }
}
