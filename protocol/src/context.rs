//! The state one server shares between all its threads.
//!
//! Every architecture creates one [`Context`] and hands an `Arc` of it to each thread it
//! starts. It holds what must be the same for everyone: the configuration, the counters, the
//! shutdown flag, and the registry of open connections. Nothing in it is "the current
//! client": per-client data lives in each thread's own [`Conn`](crate::Conn). (The lecture's
//! servers kept the client's address in one global variable, so every worker logged the
//! last client's address; lab 9 shows that bug.)

use std::collections::HashMap;
use std::net::{Shutdown as Direction, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::config::ServerArgs;
use crate::request::Limits;
use crate::shutdown::Shutdown;
use crate::stats::Stats;

type Figures = Box<dyn Fn() -> serde_json::Value + Send + Sync>;

/// One server's shared state. See the module documentation.
pub struct Context {
    /// The architecture's name, e.g. `single`; it is in `GET /`, `Server` and `/stats`.
    pub arch: &'static str,
    /// The value of every response's `Server` header.
    pub server_header: String,
    pub args: ServerArgs,
    pub limits: Limits,
    pub stats: Stats,
    pub shutdown: Shutdown,
    pub started: Instant,
    /// Open connections by id. The registry holds a second handle (a dup'd descriptor) of
    /// each socket, so that shutdown can wake a thread blocked reading it. Shared because
    /// connections are opened and closed by many threads.
    open: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
    /// The architecture's own settings (`--workers`, ...), for `/stats`.
    arch_config: OnceLock<serde_json::Value>,
    /// A function that reports the architecture's own figures (threads, queues) for `/stats`.
    arch_figures: OnceLock<Figures>,
    /// Set once the architecture has started its threads and begins accepting (or gave up),
    /// so that an in-process starter can wait for a server that is really up.
    ready: Mutex<bool>,
    ready_changed: Condvar,
}

impl Context {
    /// Creates the context and registers the shutdown hook that wakes idle connections.
    pub fn new(arch: &'static str, args: ServerArgs) -> Arc<Context> {
        let ctx = Arc::new(Context {
            arch,
            server_header: format!("servelab-{arch}"),
            limits: args.limits(),
            args,
            stats: Stats::default(),
            shutdown: Shutdown::new(),
            started: Instant::now(),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            arch_config: OnceLock::new(),
            arch_figures: OnceLock::new(),
            ready: Mutex::new(false),
            ready_changed: Condvar::new(),
        });
        // A weak reference, because the context owns the hook: a strong one would keep the
        // context alive forever.
        let weak: Weak<Context> = Arc::downgrade(&ctx);
        ctx.shutdown.on_trigger(move || {
            if let Some(ctx) = weak.upgrade() {
                for stream in ctx.open.lock().values() {
                    // Wakes a thread blocked in read() on this connection: the read returns
                    // 0 as if the client had closed. Writing still works, so a response in
                    // progress is delivered. An error means the socket is already gone.
                    let _ = stream.shutdown(Direction::Read);
                }
            }
        });
        ctx
    }

    /// Marks the server as up: its threads are started and it is accepting.
    pub(crate) fn set_ready(&self) {
        let mut ready = self.ready.lock();
        if !*ready {
            *ready = true;
            self.ready_changed.notify_all();
        }
    }

    /// Blocks until the server is up (see `set_ready`).
    pub(crate) fn wait_ready(&self) {
        let mut ready = self.ready.lock();
        while !*ready {
            self.ready_changed.wait(&mut ready);
        }
    }

    /// Adds a freshly accepted connection to the registry and returns its id. A connection
    /// registered after shutdown began has its read side shut at once, like the others.
    pub(crate) fn register(&self, stream: &TcpStream) -> std::io::Result<u64> {
        let id = self.next_id.fetch_add(1, Relaxed);
        let handle = stream.try_clone()?;
        let mut open = self.open.lock();
        if self.shutdown.is_triggered() {
            let _ = handle.shutdown(Direction::Read);
        }
        open.insert(id, handle);
        Ok(id)
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.open.lock().remove(&id);
    }

    /// Connections accepted and not closed yet.
    pub fn open_connections(&self) -> usize {
        self.open.lock().len()
    }

    /// Records the architecture's own settings for `/stats`. Only the first call counts.
    pub fn set_arch_config(&self, config: serde_json::Value) {
        let _ = self.arch_config.set(config);
    }

    /// Installs the function that reports the architecture's own figures for `/stats`. It
    /// should return an object; its fields are added to the snapshot. Only the first call
    /// counts.
    pub fn set_arch_figures(
        &self,
        figures: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) {
        let _ = self.arch_figures.set(Box::new(figures));
    }

    /// Everything `/stats` reports, as JSON.
    pub fn snapshot(&self) -> serde_json::Value {
        let mut config = serde_json::to_value(&self.args).unwrap_or_default();
        if let (Some(map), Some(serde_json::Value::Object(extra))) =
            (config.as_object_mut(), self.arch_config.get())
        {
            map.extend(extra.clone());
        }
        let mut snapshot = serde_json::json!({
            "architecture": self.arch,
            "uptime_ms": u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "shutting_down": self.shutdown.is_triggered(),
            "config": config,
            "connections": {
                "accepted": self.stats.accepted_total(),
                "open": self.open_connections(),
                "rejected": self.stats.rejected_total(),
            },
            "requests": {
                "received": self.stats.requests_total(),
                "served": self.stats.served_total(),
                "client_left": self.stats.client_left_total(),
                "in_flight": self.stats.in_flight(),
            },
            "responses": self.stats.responses_json(),
        });
        if let (Some(map), Some(figures)) = (snapshot.as_object_mut(), self.arch_figures.get()) {
            if let serde_json::Value::Object(extra) = figures() {
                map.extend(extra);
            }
        }
        snapshot
    }
}
