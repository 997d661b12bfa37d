//! What the simulated clients do: how many, with which deadline, sending what, and for how
//! long they stay connected after being served; and which engine runs them.

use std::time::Duration;

use crate::SimError;

/// A whole scenario: every client does the same thing, starting at the same moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scenario {
    /// How many clients, each on its own thread and its own connection.
    pub clients: usize,
    /// Each client's deadline, counted from the common start: connecting, sending and
    /// receiving every response must all happen within it.
    #[serde(serialize_with = "server_core::config::as_millis")]
    pub timeout: Duration,
    /// How long a served client keeps its connection open and idle before it leaves.
    #[serde(serialize_with = "server_core::config::as_millis")]
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
}

/// How the simulator runs its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
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
        }
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

/// How many requests each client sends.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// This many requests per client, one after another on one connection, all within the
    /// deadline. The lecture's experiments are `Requests(1)`.
    Requests(u32),
    /// A closed-loop load run: each client sends its next request as soon as the previous
    /// response is in, for this long. `timeout` then applies to each request.
    #[serde(serialize_with = "server_core::config::as_millis")]
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
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct OpenLoop {
    /// Requests per second offered.
    pub rate: f64,
    /// How long requests arrive.
    #[serde(serialize_with = "server_core::config::as_millis")]
    pub duration: Duration,
    pub arrivals: Arrivals,
    pub when_busy: WhenBusy,
    /// The seed of the Poisson arrivals, so that a run can be repeated exactly.
    pub seed: u64,
}

/// When the requests of an open-loop run are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
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
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestSpec {
    pub method: String,
    pub path: String,
    pub body: Body,
}

/// The request body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    pub fn parse(
        text: &str,
        body: Option<String>,
        body_uuid: bool,
    ) -> Result<RequestSpec, SimError> {
        let mut words = text.split_whitespace();
        let (Some(method), Some(path), None) = (words.next(), words.next(), words.next()) else {
            return Err(SimError::Usage(format!(
                "--request takes \"METHOD PATH\", for example \"GET /sleep/400\"; got {text:?}"
            )));
        };
        if !method.bytes().all(|b| b.is_ascii_uppercase()) || !path.starts_with('/') {
            return Err(SimError::Usage(format!(
                "--request takes an upper-case method and a path starting with '/'; got {text:?}"
            )));
        }
        let body = match (body, body_uuid) {
            (Some(_), true) => {
                return Err(SimError::Usage(
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
