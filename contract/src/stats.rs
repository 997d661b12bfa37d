//! The `/stats` document as types.
//!
//! Every servelab server answers `GET /stats` with one JSON object: its settings, its
//! counters, how many clients it serves at once ([`Capacity`]), and figures of its own
//! threads, queues, semaphores, event loops and child processes. These are plain data with
//! serde's derives and nothing else: the server side (`server-core`) fills them in from its
//! atomics, and the client side deserializes them. Fields added later carry
//! `#[serde(default)]`, so a newer reader still reads an older server's document.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `/stats` document. See `docs/protocol.md` for every field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The architecture's name, e.g. `prefork-pool`.
    pub architecture: String,
    pub uptime_ms: u64,
    pub shutting_down: bool,
    /// The server's settings: the shared flags, and the architecture's own.
    pub config: ConfigSnapshot,
    pub connections: Connections,
    pub requests: Requests,
    /// Responses written, by status code; statuses never sent are left out.
    pub responses: BTreeMap<String, u64>,
    /// How many clients the architecture serves at once: what the simulator's predictions
    /// are made of.
    pub capacity: Capacity,
    /// The architecture's thread groups.
    #[serde(default)]
    pub threads: Vec<ThreadGroupSnapshot>,
    /// The architecture's queues.
    #[serde(default)]
    pub queues: Vec<QueueSnapshot>,
    /// The architecture's semaphores: how many of something it allows at once.
    #[serde(default)]
    pub limits: Vec<LimitSnapshot>,
    /// The architecture's event loops, if it has any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactors: Vec<ReactorSnapshot>,
    /// The architecture's child processes, if it has any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessSnapshot>,
    /// The architecture's async runtimes (tokio), if it is built on one: one for the
    /// work-stealing server, one per core for the per-core server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtimes: Vec<RuntimeSnapshot>,
    /// The architecture's io_uring rings, if it has any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rings: Vec<RingSnapshot>,
}

impl Snapshot {
    /// The thread group playing `role` (`worker`, `handler`, ...).
    pub fn thread_group(&self, role: &str) -> Option<&ThreadGroupSnapshot> {
        self.threads.iter().find(|g| g.role == role)
    }

    /// The queue called `name` (`connections`, `requests`, ...).
    pub fn queue(&self, name: &str) -> Option<&QueueSnapshot> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// The limit called `name` (`admission`, `threads`, ...).
    pub fn limit(&self, name: &str) -> Option<&LimitSnapshot> {
        self.limits.iter().find(|l| l.name == name)
    }

    /// Responses written with status `code`.
    pub fn responses_with(&self, code: u16) -> u64 {
        self.responses.get(&code.to_string()).copied().unwrap_or(0)
    }
}

/// The server's settings. Durations are whole milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigSnapshot {
    pub addr: String,
    pub backlog: u32,
    pub keep_alive_timeout: u64,
    pub read_timeout: u64,
    /// The request pace (`--header-timeout`, in milliseconds, and `--min-rate`).
    #[serde(default)]
    pub header_timeout: u64,
    #[serde(default)]
    pub min_rate: u32,
    pub shutdown_timeout: u64,
    pub max_header_bytes: u32,
    pub max_body_bytes: u32,
    pub max_sleep: u64,
    /// The most CPU time one request may use (`--max-cpu`), in milliseconds.
    #[serde(default)]
    pub max_cpu: u64,
    pub log: String,
    /// Whether `GET /crash` is served (`--allow-crash`).
    #[serde(default)]
    pub allow_crash: bool,
    /// The architecture's own flags (`workers`, `handlers`, ...), by name.
    #[serde(flatten)]
    pub architecture: BTreeMap<String, serde_json::Value>,
}

impl ConfigSnapshot {
    /// One of the architecture's own settings as a number.
    pub fn number(&self, key: &str) -> Option<u64> {
        self.architecture
            .get(key)
            .and_then(serde_json::Value::as_u64)
    }

    /// One of the architecture's own settings as text.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.architecture
            .get(key)
            .and_then(serde_json::Value::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    pub accepted: u64,
    pub open: u64,
    /// Open connections on which a request has begun and is still arriving (only drivers
    /// that block on reads keep this; 0 otherwise).
    #[serde(default)]
    pub receiving: u64,
    /// Turned away without being served (a 503 because the server was full).
    pub rejected: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    /// Complete requests read.
    pub received: u64,
    /// Responses written to a client that was still there, errors included.
    pub served: u64,
    /// Requests whose client had left by the time the response was ready.
    pub client_left: u64,
    /// Read and not answered yet.
    pub in_flight: u64,
}

/// How many clients an architecture serves at once, in the terms of the simulator's
/// queueing model (`simulator/src/predict.rs`). Each architecture states its own, so the
/// model never needs to know architectures by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// How many clients' requests are worked on at once; `None` when there is no bound
    /// short of the number of clients (an event loop waits for any number of timers).
    pub concurrent: Option<u64>,
    /// Whether each client gets a worker of its own (thread-per-connection), up to
    /// `concurrent`, rather than sharing a fixed set.
    pub per_client: bool,
    /// What does the work, as a noun: `thread`, `worker`, `handler`.
    pub worker: String,
    /// Whether a client that holds its connection idle keeps its worker meanwhile.
    pub idle_holds_worker: bool,
    /// Readers that a client holding its connection idle keeps waiting for its next
    /// request (the pipeline's receivers): once all wait, new clients are not read.
    pub idle_holds_readers: Option<u64>,
    /// Connections taken in (served or waiting for a worker) before further clients wait
    /// in the kernel's backlog or are turned away.
    pub admitted: Option<u64>,
    /// Whether clients beyond `admitted` are turned away at once (503).
    pub rejects_beyond: bool,
}

impl Capacity {
    /// A fixed number of workers, each serving one client at a time and kept by a client
    /// that holds its connection idle.
    pub fn workers(n: u64, worker: &str) -> Capacity {
        Capacity {
            concurrent: Some(n),
            per_client: false,
            worker: worker.to_owned(),
            idle_holds_worker: true,
            idle_holds_readers: None,
            admitted: None,
            rejects_beyond: false,
        }
    }
}

/// One thread group's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadGroupSnapshot {
    pub role: String,
    /// Threads running now.
    pub alive: u64,
    /// Threads handling a request now.
    pub busy: u64,
    /// The most threads busy at once.
    pub busy_peak: u64,
    /// The most threads alive at once.
    pub peak: u64,
    /// Threads started in all.
    pub started: u64,
}

/// One queue's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub name: String,
    /// `crossbeam` or `condvar`.
    #[serde(rename = "impl")]
    pub implementation: String,
    pub capacity: u64,
    /// Items in the queue now.
    pub depth: u64,
    /// Times a producer found it full.
    pub full: u64,
    pub pushed: u64,
    /// How long items waited on average, from the moment a producer offered one (including
    /// any time the producer waited for room) until a consumer took it.
    pub mean_wait_us: f64,
}

/// One semaphore's figures: at most `max` of something at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitSnapshot {
    /// What is limited: `admission`, `threads`, `connections`.
    pub name: String,
    pub max: u64,
    pub in_use: u64,
    /// The most in use at once.
    pub peak: u64,
    /// Times a newcomer found none left and was turned away.
    pub refused: u64,
}

/// One event loop's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReactorSnapshot {
    pub name: String,
    /// Connections registered with this loop now.
    pub connections: u64,
    /// Connections this loop has accepted in all. Side by side, the reactors' counts show
    /// where the newcomers landed: with a shared listening socket, on whichever reactor was
    /// free to accept; with `--accept reuseport`, where the kernel's hash sent them.
    pub accepted: u64,
    /// The CPU this loop's thread is pinned to (`--pin on`); absent when the kernel places
    /// it. Added after the first version of the document, hence the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u64>,
    /// Times `poll` returned (with events, or because a timer was due).
    pub wakeups: u64,
    /// Readiness events handled in all.
    pub events: u64,
    /// `events / wakeups`: how much work one wake-up finds. High under load: one system
    /// call to `epoll_wait` serves many connections.
    pub events_per_wakeup: f64,
    /// Timers waiting: connection deadlines and sleeping requests.
    pub timers: u64,
    /// Requests whose computation went to the helper threads, in all.
    pub offloaded: u64,
}

/// One async runtime's figures. The first three are tokio's own (`RuntimeMetrics`, the part
/// of it that is stable: no `tokio_unstable` build flag); the counts are the server's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeSnapshot {
    /// `runtime` (the work-stealing server's one) or `core-1`, `core-2`, ... (per core).
    pub name: String,
    /// Worker threads that run its tasks (`num_workers`): `--workers`, or 1 per core.
    pub workers: u64,
    /// Tasks alive now (`num_alive_tasks`): one per open connection, and the accept loop
    /// where it is a task of its own (on the work-stealing runtime).
    pub alive_tasks: u64,
    /// Tasks waiting in the runtime's shared queue (`global_queue_depth`): woken from a
    /// thread that is not one of its workers (an answer from a blocking thread), or
    /// overflowing a worker's own queue.
    pub global_queue_depth: u64,
    /// Per worker, by tokio's number for it (0 to `workers` − 1): times it parked with
    /// nothing to do (`worker_park_count`).
    pub worker_parks: Vec<u64>,
    /// Per worker, by tokio's number: time it spent running tasks, in milliseconds
    /// (`worker_total_busy_duration`).
    pub worker_busy_ms: Vec<u64>,
    /// Connections open on this runtime now.
    pub connections: u64,
    /// Connections it accepted, in all.
    pub accepted: u64,
    /// Requests its workers read, in all.
    pub requests: u64,
    /// Computations it handed to its blocking threads (`spawn_blocking`), in all.
    pub offloaded: u64,
    /// The server's counts per worker thread. (Which thread is tokio's worker number N is
    /// not in tokio's stable API, hence the two lists.)
    pub worker_threads: Vec<WorkerSnapshot>,
}

/// What one worker thread of an async runtime did, by the server's count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSnapshot {
    /// The thread's name: `worker-1`, or `core-1`.
    pub name: String,
    /// Connections it accepted (the accept loop is a task, and runs on any worker).
    pub accepted: u64,
    /// Requests it read: with work stealing, the share of each worker shows how evenly the
    /// tasks were spread.
    pub requests: u64,
}

/// One io_uring ring's figures: a thread that hands the kernel the operations it wants done
/// (accepts, receives, sends, timeouts) and collects their completions, in batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingSnapshot {
    pub name: String,
    /// Connections this ring serves now.
    pub connections: u64,
    /// Connections this ring has accepted in all.
    pub accepted: u64,
    /// Times the ring's thread came back from waiting for completions.
    pub wakeups: u64,
    /// System calls into the ring (`io_uring_enter`): one per wake-up, plus one whenever the
    /// submission queue filled up in the middle of a round.
    pub enters: u64,
    /// Operations handed to the kernel (submission queue entries), in all.
    pub submissions: u64,
    /// Completions taken from the completion queue, in all.
    pub completions: u64,
    /// `submissions / wakeups`: how many operations one system call hands over.
    pub submissions_per_wakeup: f64,
    /// `completions / wakeups`: how much finished work one wake-up finds.
    pub completions_per_wakeup: f64,
    /// Operations the kernel holds now: armed receives and sends, timeouts, the accept, the
    /// read that wakes the ring for the helpers' answers.
    pub in_kernel: u64,
    /// The submission and completion queues' sizes.
    pub sq_entries: u64,
    pub cq_entries: u64,
    /// Provided buffers and the size of each: the ring's receive memory, lent to the kernel
    /// and shared by all the ring's connections (none is a connection's own).
    pub buffers: u64,
    pub buffer_size: u64,
    /// Receives that found every provided buffer taken (`ENOBUFS`); each is re-armed.
    pub buffers_exhausted: u64,
    /// Timeouts armed now: connection deadlines and sleeping requests.
    pub timers: u64,
    /// Requests whose computation went to the helper threads, in all.
    pub offloaded: u64,
}

/// One child process of the server (a handler process of the process pipeline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessSnapshot {
    pub name: String,
    /// The process id of the one running now (0 while it is being replaced).
    pub pid: u32,
    /// Requests it (and the processes it replaced) handled.
    pub handled: u64,
    /// Times it died and was replaced.
    pub restarts: u64,
    /// Whether it is handling a request now.
    pub busy: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reactor's figures as the event loop wrote them before `cpu` was added.
    const OLDER_REACTOR: &str = r#"{"name":"reactor-1","connections":0,"accepted":7,
        "wakeups":9,"events":12,"events_per_wakeup":1.33,"timers":0,"offloaded":0}"#;

    #[test]
    fn an_older_reactor_document_still_reads_and_an_unpinned_one_has_no_cpu() {
        let reactor: ReactorSnapshot =
            serde_json::from_str(OLDER_REACTOR).expect("an older document reads");
        assert_eq!(reactor.accepted, 7);
        assert_eq!(reactor.cpu, None);
        // Unpinned, the field is left out, so the document reads as it always did.
        let text = serde_json::to_string(&reactor).expect("serializes");
        assert!(!text.contains("cpu"), "{text}");
    }

    #[test]
    fn a_pinned_reactor_names_its_cpu() {
        let mut reactor: ReactorSnapshot =
            serde_json::from_str(OLDER_REACTOR).expect("an older document reads");
        reactor.cpu = Some(1);
        let text = serde_json::to_string(&reactor).expect("serializes");
        assert!(text.contains(r#""cpu":1"#), "{text}");
        let back: ReactorSnapshot = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, reactor);
    }
}
