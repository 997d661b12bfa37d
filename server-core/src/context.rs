//! The state one server shares between all its threads.
//!
//! Every architecture creates one [`Context`] and hands an `Arc` of it to each thread it
//! starts. It holds what must be the same for everyone: the configuration, the counters, the
//! shutdown flag, and the registry of open connections. Nothing in it is "the current
//! client": per-client data lives with each connection, which one thread holds at a time.
//! (The lecture's servers kept the client's address in one global variable, so every
//! worker logged the last client's address; lab 9 shows that bug.)
//!
//! Most of it is written once, before any thread starts, and only read afterwards: the
//! settings, the routes' configuration, and the architecture's own description for
//! `/stats` (set once each through a `OnceLock`, so that reading them takes no lock). What
//! changes while the server runs is of three kinds, each shared in the cheapest safe way:
//!
//! * the counters ([`Stats`]): relaxed atomics, sharded per thread;
//! * the shutdown flag ([`Shutdown`]): one atomic, plus hooks run once;
//! * the registry of open connections: a map behind a mutex, touched once when a
//!   connection opens and once when it closes, and walked by the shutdown hook and by
//!   `/stats`. A mutex is enough there: those are rare next to the requests served.
//!
//! The registry is how shutdown reaches threads it otherwise could not: a thread blocked
//! reading an idle keep-alive connection is woken by shutting that socket's reading side
//! down. The registry holds a share of each socket (an `Arc<TcpStream>`), so the socket
//! cannot be closed, and its descriptor number reused by another connection, while the
//! hook may still touch it.

use std::collections::HashMap;
use std::net::{Shutdown as Direction, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use protocol::RouteConfig;

use crate::config::ServerArgs;
use crate::logging::RepeatLog;
use crate::shutdown::Shutdown;
use crate::stats::{Capacity, ConfigSnapshot, Connections, Figures, Requests, Snapshot, Stats};

/// The architecture's function that reports its own figures. Boxed, because each
/// architecture's closure is a type of its own; `Send + Sync`, because whichever thread
/// answers `/stats` calls it.
type FiguresFn = Box<dyn Fn() -> Figures + Send + Sync>;

/// One server's shared state. See the module documentation.
pub struct Context {
    /// The architecture's name, e.g. `single`; it is in `GET /`, `Server` and `/stats`.
    pub arch: &'static str,
    /// The shared flags, as parsed (or as a test or the simulator set them).
    pub args: ServerArgs,
    /// Every connection's settings, made once from `args` and shared by all connections.
    pub connection: Arc<protocol::Config>,
    /// What the routes need to know.
    pub routes: RouteConfig,
    /// The server's counters: every thread adds to them (see `stats`).
    pub stats: Stats,
    /// The shutdown flag and its hooks: any thread may ask whether the server is stopping,
    /// and the signal thread (or a test) may begin it.
    pub shutdown: Shutdown,
    /// When the context was made, for `/stats`' uptime.
    pub started: Instant,
    /// The rate limit for warnings that can repeat many times a second (a failing
    /// `accept` at the descriptor limit): one line of each kind per second, with a count of
    /// the others. Shared so that every thread of the server counts against the same limit.
    pub repeats: RepeatLog,
    /// Open connections by id, for shutdown to wake the threads blocked reading them.
    /// Shared because connections are opened and closed by many threads.
    open: Mutex<HashMap<u64, Registered>>,
    /// The next connection id. Relaxed is enough: only uniqueness matters, and `fetch_add`
    /// gives each caller a different number whatever the ordering.
    next_id: AtomicU64,
    /// The architecture's own settings (`--workers`, ...), for `/stats`.
    arch_config: OnceLock<serde_json::Value>,
    /// How many clients the architecture serves at once, for `/stats`.
    capacity: OnceLock<Capacity>,
    /// A function that reports the architecture's own figures (threads, queues) for `/stats`.
    arch_figures: OnceLock<FiguresFn>,
    /// Whether the architecture has started (or failed to), so that an in-process starter
    /// can wait for a server that is really up.
    ready: Mutex<Readiness>,
    /// Signalled when `ready` leaves `Starting`, for the starter waiting in `wait_ready`.
    ready_changed: Condvar,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("arch", &self.arch)
            .field("args", &self.args)
            .field("shutdown", &self.shutdown)
            .field("open_connections", &self.open_connections())
            .finish_non_exhaustive()
    }
}

/// Where an architecture is in starting up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Starting,
    /// Its threads are up and it accepts connections.
    Ready,
    /// It stopped before it was ready: it failed to start.
    Failed,
}

/// A registered connection: its socket, and whether it is between requests.
struct Registered {
    /// The socket, shared with the connection's driver, so that shutdown can shut its
    /// reading side down; `None` for a connection that stops by itself (an event loop's).
    /// Holding a share keeps the descriptor open while it is here, so shutdown never
    /// touches a descriptor that was closed (and perhaps reused by another connection).
    socket: Option<Arc<TcpStream>>,
    /// Shared between the registry (which reads them at shutdown) and the connection's
    /// driver (which sets `idle` as requests begin and end, and reads `read_shut`).
    flags: Arc<Flags>,
}

/// What the registry and a connection's driver tell each other.
#[derive(Debug, Default)]
struct Flags {
    /// Set by the connection's driver while no request has begun on it. Shutdown wakes only
    /// these; a request that is arriving is let finish and answered with `Connection: close`.
    idle: AtomicBool,
    /// Set by the shutdown hook before it shuts the connection's reading side. From then on
    /// the socket reads as if the client had closed its side, and only this flag tells the
    /// two apart (see `Registration::read_shut_by_server`).
    read_shut: AtomicBool,
}

/// A connection's place in the registry. Dropping it unregisters the connection (and lets
/// go of the registry's share of its socket).
pub struct Registration {
    ctx: Weak<Context>,
    id: u64,
    flags: Arc<Flags>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "registration of conn #{}", self.id)
    }
}

impl Registration {
    /// The connection's id, unique within the server, shown in logs as `conn #id`.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Tells shutdown whether the connection is between requests. Relaxed is enough: the
    /// shutdown hook reads this once, and either answer leads to an honest end (an idle
    /// connection closed; an arriving request completed, or answered 503 if shutdown cut it
    /// off; see `protocol::connection`).
    pub fn set_idle(&self, idle: bool) {
        self.flags.idle.store(idle, Relaxed);
    }

    /// Whether shutdown shut this connection's reading side. Then an end of stream on the
    /// socket is the server's own doing, not a sign that the client left: a request that was
    /// arriving just as shutdown began (the hook saw it idle a moment before it started) is
    /// still answered rather than dropped as abandoned.
    pub fn read_shut_by_server(&self) -> bool {
        self.flags.read_shut.load(Relaxed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.upgrade() {
            ctx.open.lock().remove(&self.id);
        }
    }
}

impl Context {
    /// Creates the context and registers the shutdown hook that wakes idle connections.
    pub fn new(arch: &'static str, args: ServerArgs) -> Arc<Context> {
        let ctx = Arc::new(Context {
            arch,
            connection: Arc::new(args.connection_config(arch)),
            routes: RouteConfig {
                architecture: arch,
                max_sleep: args.max_sleep,
                max_cpu: args.max_cpu,
                allow_crash: args.allow_crash,
            },
            args,
            stats: Stats::default(),
            shutdown: Shutdown::new(),
            started: Instant::now(),
            repeats: RepeatLog::default(),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            arch_config: OnceLock::new(),
            capacity: OnceLock::new(),
            arch_figures: OnceLock::new(),
            ready: Mutex::new(Readiness::Starting),
            ready_changed: Condvar::new(),
        });
        // A weak reference, because the context owns the hook: a strong one would keep the
        // context alive forever.
        let weak: Weak<Context> = Arc::downgrade(&ctx);
        ctx.shutdown.on_trigger(move || {
            if let Some(ctx) = weak.upgrade() {
                // Under the registry's lock: a connection that registers meanwhile waits,
                // then sees the flag and shuts its own reading side (see `register_as`).
                // Only idle connections are woken; a request that is arriving or being
                // handled is let finish.
                for registered in ctx.open.lock().values() {
                    if registered.flags.idle.load(Relaxed) {
                        registered.flags.read_shut.store(true, Relaxed);
                        shut_read(registered.socket.as_deref());
                    }
                }
            }
        });
        ctx
    }

    /// Marks the server as up: its threads are started and it is accepting.
    pub fn set_ready(&self) {
        self.set_readiness(Readiness::Ready);
    }

    /// Marks a server that stopped before it was ready as failed to start.
    pub(crate) fn set_stopped(&self) {
        self.set_readiness(Readiness::Failed);
    }

    /// Moves from starting to `state`; later changes are ignored.
    fn set_readiness(&self, state: Readiness) {
        let mut ready = self.ready.lock();
        if *ready == Readiness::Starting {
            *ready = state;
            self.ready_changed.notify_all();
        }
    }

    /// Blocks until the server is up or has failed to start.
    pub(crate) fn wait_ready(&self) -> Readiness {
        let mut ready = self.ready.lock();
        while *ready == Readiness::Starting {
            // Releases the lock and sleeps until the architecture calls `set_ready`, or
            // its `serve` returns (then `set_stopped`); re-checks after every wake-up.
            self.ready_changed.wait(&mut ready);
        }
        *ready
    }

    /// Adds a freshly accepted connection to the registry. A connection registered after
    /// shutdown began has its read side shut at once, like the others that were idle.
    pub fn register(self: &Arc<Self>, socket: &Arc<TcpStream>) -> Registration {
        self.register_as(Some(Arc::clone(socket)))
    }

    /// Adds a connection that its own driver stops at shutdown (an event loop's): it is
    /// counted as open, but the shutdown hook never touches it.
    pub fn register_self_stopping(self: &Arc<Self>) -> Registration {
        self.register_as(None)
    }

    /// Adds a connection, with its socket if shutdown is to wake it. Its flags are shared
    /// between the registry (which reads them at shutdown) and the connection's driver
    /// (which sets them as requests begin and end), so they are behind an `Arc`.
    fn register_as(self: &Arc<Self>, socket: Option<Arc<TcpStream>>) -> Registration {
        let id = self.next_id.fetch_add(1, Relaxed);
        // A connection the hook wakes starts idle: no request has begun on it yet.
        let flags = Arc::new(Flags {
            idle: AtomicBool::new(socket.is_some()),
            read_shut: AtomicBool::new(false),
        });
        let mut open = self.open.lock();
        // The flag is read under the registry's lock, which the shutdown hook holds while
        // it walks the registry: either the hook sees this connection, or this sees the
        // flag. A connection accepted just as shutdown begins cannot be missed by both.
        if self.shutdown.is_triggered() && socket.is_some() {
            flags.read_shut.store(true, Relaxed);
            shut_read(socket.as_deref());
        }
        open.insert(
            id,
            Registered {
                socket,
                flags: Arc::clone(&flags),
            },
        );
        Registration {
            ctx: Arc::downgrade(self),
            id,
            flags,
        }
    }

    /// Connections accepted and not closed yet: the registry's size. The tests check it
    /// after stopping a server (nothing left open), and `/stats` reports it as `open`.
    pub fn open_connections(&self) -> usize {
        self.open.lock().len()
    }

    /// Open connections on which a request is arriving (not idle between requests). The
    /// difference from `open` is what idle keep-alive clients cost a server: each of those
    /// holds a connection, and in most designs a thread, while sending nothing.
    pub fn receiving_connections(&self) -> usize {
        self.open
            .lock()
            .values()
            .filter(|r| !r.flags.idle.load(Relaxed))
            .count()
    }

    /// Records the architecture's own settings for `/stats`. Only the first call counts.
    /// An architecture calls it at the start of `serve`, with its flags as JSON (and any
    /// default it resolved, such as the number of CPUs, filled in), so that a reader of
    /// `/stats` knows exactly what ran.
    pub fn set_arch_config(&self, config: serde_json::Value) {
        let _ = self.arch_config.set(config);
    }

    /// Records how many clients the architecture serves at once. Only the first call counts.
    /// The simulator's predictions read it: whether idle clients hold a worker, how many
    /// are admitted, whether the rest wait or are refused.
    pub fn set_capacity(&self, capacity: Capacity) {
        let _ = self.capacity.set(capacity);
    }

    /// Installs the function that reports the architecture's own figures for `/stats`.
    /// Only the first call counts. The function runs on whichever thread answers `/stats`,
    /// so it reads only shared figures (thread groups, queue stats, permits), never a
    /// thread's private state.
    pub fn set_arch_figures(&self, figures: impl Fn() -> Figures + Send + Sync + 'static) {
        let _ = self.arch_figures.set(Box::new(figures));
    }

    /// Everything `/stats` reports.
    ///
    /// Built fresh on every request for `/stats`, from figures read one at a time: the
    /// document is a consistent shape, but its numbers may be a few requests apart (see
    /// `stats`). Durations are milliseconds; the architecture's own settings are merged
    /// into `config.architecture` as the architecture described them.
    pub fn snapshot(&self) -> Snapshot {
        let a = &self.args;
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        // The architecture's flags, as the JSON object it serialised them to.
        let architecture = match self.arch_config.get() {
            Some(serde_json::Value::Object(map)) => {
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            _ => Default::default(),
        };
        // The architecture's threads, queues, limits, reactors or processes, as it reports
        // them now (an architecture that reports none has none).
        let figures = self.arch_figures.get().map(|f| f()).unwrap_or_default();
        let served = self.stats.served_total();
        Snapshot {
            architecture: self.arch.to_owned(),
            uptime_ms: millis(self.started.elapsed()),
            shutting_down: self.shutdown.is_triggered(),
            config: ConfigSnapshot {
                addr: a.addr.to_string(),
                backlog: a.backlog,
                keep_alive_timeout: millis(a.keep_alive_timeout),
                read_timeout: millis(a.read_timeout),
                header_timeout: millis(a.header_timeout),
                min_rate: a.min_rate,
                shutdown_timeout: millis(a.shutdown_timeout),
                max_header_bytes: a.max_header_bytes,
                max_body_bytes: a.max_body_bytes,
                max_sleep: millis(a.max_sleep),
                max_cpu: millis(a.max_cpu),
                log: format!("{:?}", a.log).to_lowercase(),
                allow_crash: a.allow_crash,
                architecture,
            },
            // Connections: accepted in all, open now, with a request arriving now (not idle),
            // and turned away without being served.
            connections: Connections {
                accepted: self.stats.accepted_total(),
                open: self.open_connections() as u64,
                receiving: self.receiving_connections() as u64,
                rejected: self.stats.rejected_total(),
            },
            // Requests: read, answered to a client still there, answered after the client
            // had left, and not answered yet.
            requests: Requests {
                received: self.stats.requests_total(),
                served,
                client_left: self.stats.client_left_total(),
                in_flight: self.stats.in_flight(),
            },
            responses: self.stats.responses(),
            // An architecture that did not say is taken to serve one client at a time.
            capacity: self
                .capacity
                .get()
                .cloned()
                .unwrap_or_else(|| Capacity::workers(1, "thread")),
            threads: figures.threads,
            queues: figures.queues,
            limits: figures.limits,
            reactors: figures.reactors,
            processes: figures.processes,
            runtimes: figures.runtimes,
            rings: figures.rings,
        }
    }

    /// The `/stats` document as the body of a response.
    pub fn stats_response(&self) -> protocol::Response {
        // Pretty-printed: the document is read by people with curl as often as by the
        // simulator, and its size does not matter next to what it reports. Serialising a
        // plain struct cannot fail; an empty body would be the answer if it ever did.
        let mut body = serde_json::to_vec_pretty(&self.snapshot()).unwrap_or_default();
        body.push(b'\n');
        protocol::Response::new(protocol::Status::Ok, protocol::response::JSON, body)
    }
}

/// Shuts down the reading side of a registered socket, which wakes a thread blocked in
/// `read()` on it: the read returns 0 as if the client had closed. Writing still works, so
/// a response in progress is delivered. An error (the client is already gone) is harmless
/// and ignored. A connection without a socket here stops by itself.
fn shut_read(socket: Option<&TcpStream>) {
    if let Some(socket) = socket {
        let _ = socket.shutdown(Direction::Read);
    }
}
