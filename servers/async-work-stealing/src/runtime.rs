//! A tokio runtime whose threads servelab can see, and its figures for `/stats`.
//!
//! tokio starts and names its own threads: the *workers*, which run tasks, and the
//! *blocking threads*, which run what `spawn_blocking` hands them. servelab counts every
//! server thread in a [`ThreadGroup`] (alive, busy, started), so that `/stats` can show them
//! and shutdown can wait for them. tokio's builder has a hook for each moment of a thread's
//! life, and [`build`] uses them:
//!
//! ```text
//!   thread_name_fn     the first `workers` threads are worker-1..N, the rest blocking-1..
//!   on_thread_start    joins its ThreadGroup (a guard kept in a thread-local)
//!   on_thread_unpark   a worker has tasks to run: busy        (workers only)
//!   on_thread_park     a worker found nothing to do: idle     (workers only)
//!   on_thread_stop     leaves its ThreadGroup
//! ```
//!
//! A worker is "busy" from the moment it wakes until it parks again, which is what the
//! runtime's own `worker_total_busy_duration` measures too. A blocking thread is busy while
//! it computes (the connection task marks it).
//!
//! **Which thread is a worker.** tokio runs its workers on threads of the blocking pool:
//! building the runtime queues one "run worker N" task per worker and starts a thread for
//! each, and any thread of the pool takes whichever task is first in the queue. So the
//! first `workers` threads are the workers only if nothing else is queued before each of
//! them has taken its task; [`build`] therefore waits until every worker has parked once
//! (only a thread running a worker calls the park hook) before it returns and anything
//! can be handed to the pool.
//!
//! The blocking pool is started full, [`prestart_blocking`], and kept: its threads never
//! time out. tokio's default grows the pool on demand up to 512 threads and lets idle ones
//! end after 10 s; for CPU work more threads than CPUs buy nothing, and a pool that comes
//! and goes would make a server's thread count depend on its recent past. Fixed, it is the
//! same pool as the event loop's helpers.
//!
//! [`RuntimeStats`] is what the server counts per runtime and per worker (connections,
//! requests, computations handed off), next to the figures tokio itself exposes *stably*:
//! the number of workers, the tasks alive, the depth of the shared queue, and per worker
//! the times it parked and the time it was busy. Everything else tokio can tell (steals per
//! worker, each worker's local queue, the LIFO slot's hits, poll counts and their times, the
//! blocking pool's queue) is behind the `tokio_unstable` build flag, which servelab does not
//! set: it would have to be set for every crate of the build (`RUSTFLAGS`), and it makes no
//! promise from one tokio release to the next.

use std::cell::{Cell, RefCell};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::Duration;

use server_core::stats::{RuntimeSnapshot, WorkerSnapshot};
use server_core::threads::{BusyGuard, Member};
use server_core::ThreadGroup;
use tokio::runtime::{Builder, Handle, Runtime};

/// How long an idle blocking thread waits for work before it ends: in effect, never. The
/// pool is started full and stays so (see the module documentation).
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long building a runtime waits for its workers to start.
const WORKERS_START: Duration = Duration::from_secs(10);

thread_local! {
    /// This thread's membership of its group, while it lives: dropped by `on_thread_stop`.
    static MEMBER: RefCell<Option<Member>> = const { RefCell::new(None) };
    /// Held while this worker runs tasks (between an unpark and the next park).
    static BUSY: RefCell<Option<BusyGuard>> = const { RefCell::new(None) };
    /// This thread has parked at least once: it runs a worker (see the module docs).
    static PARKED: Cell<bool> = const { Cell::new(false) };
    /// This thread's worker index in its runtime (0 for a core's thread and for threads
    /// that are no worker), so that a task can count on its worker's own counters.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The runtime to build.
#[derive(Debug)]
pub struct Plan {
    /// A multi-threaded runtime with this many workers (which steal tasks from each
    /// other), or `None` for a single-threaded one, whose only worker is the thread that
    /// calls `block_on` (one core's thread).
    pub workers: Option<usize>,
    /// The blocking threads: the pool's size (its maximum and, once prestarted, its size).
    pub blocking_threads: usize,
    /// The blocking threads' names: `blocking` gives `blocking-1`, `blocking-2`, ...
    pub blocking_name: String,
    /// The group the workers count in (for one core: the core threads' group, which the
    /// core thread itself joined when it was spawned).
    pub workers_group: ThreadGroup,
    /// The group the blocking threads count in (one for all the cores, on the per-core
    /// server).
    pub blocking_group: ThreadGroup,
}

/// Builds the runtime of `plan`, its threads counted in their groups.
///
/// The builder is given a hook for each moment of a thread's life (see the module
/// documentation); then, once tokio has started the workers, `build` waits until each has
/// parked once, so that nothing is handed to the blocking pool before every worker has
/// taken its thread.
pub fn build(plan: Plan) -> io::Result<Runtime> {
    let worker_count = plan.workers.unwrap_or(0);
    // How many threads have run a worker: counted at each one's first park, and waited for
    // below. A mutex and a condition variable, because `build` sleeps until it changes.
    let running: Running = Arc::new((Mutex::new(0usize), Condvar::new()));
    let runtime = builder(plan, Arc::clone(&running)).build()?;
    wait_for_workers(&running, worker_count)?;
    Ok(runtime)
}

/// How many threads have run a worker, and the condition variable `build` waits on for it
/// to change. Shared between `build` and the park hook of every thread.
type Running = Arc<(Mutex<usize>, Condvar)>;

/// tokio's builder for `plan`: a multi-threaded or a single-threaded scheduler, the
/// blocking pool's size and keep-alive, and the hooks that name the threads and count them
/// in their groups. `parked` counts the workers that have parked once.
fn builder(plan: Plan, parked: Running) -> Builder {
    let Plan {
        workers,
        blocking_threads,
        blocking_name,
        workers_group,
        blocking_group,
    } = plan;
    let mut builder = match workers {
        Some(n) => {
            let mut b = Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => Builder::new_current_thread(),
    };
    let worker_count = workers.unwrap_or(0);
    let unpark_group = workers_group.clone();
    builder
        .enable_all()
        .max_blocking_threads(blocking_threads.max(1))
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .thread_name_fn(thread_names(worker_count, blocking_name))
        .on_thread_start(on_start(workers_group, blocking_group))
        .on_thread_stop(|| {
            BUSY.take();
            MEMBER.take();
        })
        // Called only on the threads that run tasks: the workers, or a core's own thread.
        .on_thread_park(on_park(parked))
        .on_thread_unpark(move || {
            BUSY.set(Some(unpark_group.busy()));
        });
    builder
}

/// Names each thread as tokio starts it: `worker-1` to `worker-N`, then the blocking
/// threads after `blocking_name`.
fn thread_names(
    worker_count: usize,
    blocking_name: String,
) -> impl Fn() -> String + Send + Sync + 'static {
    // Threads are numbered as tokio starts them: the workers all start when the runtime is
    // built, before any blocking thread, so the first `worker_count` are the workers.
    let started = Arc::new(AtomicUsize::new(0));
    move || {
        let n = started.fetch_add(1, Relaxed) + 1;
        if n <= worker_count {
            format!("worker-{n}")
        } else {
            format!("{blocking_name}-{}", n - worker_count)
        }
    }
}

/// What a thread does first, on itself: it joins its group (a worker also notes its index
/// and counts busy until it first parks), by the name [`thread_names`] gave it.
fn on_start(workers: ThreadGroup, blocking: ThreadGroup) -> impl Fn() + Send + Sync + 'static {
    move || {
        let name = std::thread::current().name().map(str::to_owned);
        let worker = name
            .as_deref()
            .and_then(|n| n.strip_prefix("worker-"))
            .and_then(|i| i.parse::<usize>().ok());
        match worker {
            Some(i) => {
                WORKER.set(i - 1);
                MEMBER.set(Some(workers.enter()));
                // A worker starts out looking for tasks: busy until it first parks.
                BUSY.set(Some(workers.busy()));
            }
            None => MEMBER.set(Some(blocking.enter())),
        }
    }
}

/// What a thread that runs tasks does each time it parks: it is idle from now on; the first
/// time, it also counts itself among the threads that run a worker, and wakes `build`.
fn on_park(parked: Running) -> impl Fn() + Send + Sync + 'static {
    move || {
        BUSY.take();
        if !PARKED.replace(true) {
            let (count, changed) = &*parked;
            *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            changed.notify_all();
        }
    }
}

/// Blocks until every worker runs (each parks at once, having nothing to do), at most
/// WORKERS_START; an error if fewer than `worker_count` did.
fn wait_for_workers(running: &Running, worker_count: usize) -> io::Result<()> {
    let (count, changed) = &**running;
    let started = changed
        .wait_timeout_while(
            count.lock().unwrap_or_else(|e| e.into_inner()),
            WORKERS_START,
            |running| *running < worker_count,
        )
        .map_or(0, |(running, _)| *running);
    if started < worker_count {
        return Err(io::Error::other(format!(
            "only {started} of its {worker_count} workers started within {WORKERS_START:?}"
        )));
    }
    Ok(())
}

/// Marks the calling thread (a core's own thread, which runs its runtime with `block_on`)
/// busy until it first parks: the state a worker that tokio started begins in.
pub fn enter_as_worker(group: &ThreadGroup) {
    WORKER.set(0);
    BUSY.set(Some(group.busy()));
}

/// Ends what [`enter_as_worker`] began, before the thread leaves its group.
pub fn leave_as_worker() {
    BUSY.take();
}

/// Starts all `n` blocking threads of the runtime now, so that the pool is full from the
/// start (see the module documentation). Blocks until they are all up: each first task
/// waits at a barrier for the others, so no thread can take two of them.
pub fn prestart_blocking(handle: &Handle, n: usize) {
    let barrier = Arc::new(Barrier::new(n + 1));
    for _ in 0..n {
        let barrier = Arc::clone(&barrier);
        handle.spawn_blocking(move || {
            // Blocks until all `n` threads (and the caller) have arrived.
            barrier.wait();
        });
    }
    // Blocks until every blocking thread has started and arrived.
    barrier.wait();
}

/// What one worker counts. Alone on its cache lines (128 bytes), so that two workers
/// counting at once never pull the same line back and forth between their cores.
#[derive(Default)]
#[repr(align(128))]
#[derive(Debug)]
pub struct WorkerCounters {
    /// Connections this worker accepted (it ran the accept loop when each came).
    pub accepted: AtomicU64,
    /// Requests this worker read and started: where the work of serving ran.
    pub requests: AtomicU64,
    /// Computations this worker handed to a blocking thread.
    pub offloaded: AtomicU64,
}

/// One runtime's figures. Shared by its connection tasks (which count) and the thread that
/// writes `/stats` (which reads): atomics, each read on its own and guarding nothing, so
/// relaxed is enough.
#[derive(Debug)]
pub struct RuntimeStats {
    /// `runtime`, or `core-1`, `core-2`, ...
    name: String,
    /// The workers' names, in tokio's worker order.
    worker_names: Vec<String>,
    /// One set of counters per worker. A task counts on the counters of the worker that
    /// runs it at that moment (with work stealing, that changes from poll to poll).
    workers: Box<[WorkerCounters]>,
    /// Connections open on this runtime now. A connection may open on one worker and close
    /// on another, so this is one count for the runtime (touched twice per connection).
    pub connections: AtomicU64,
    /// The runtime, for tokio's own figures; set once it is built.
    handle: std::sync::OnceLock<Handle>,
}

impl RuntimeStats {
    /// Figures for the runtime called `name`, with a set of counters per worker, all zero;
    /// tokio's own figures join them once the runtime is built ([`RuntimeStats::attach`]).
    pub fn new(name: &str, worker_names: Vec<String>) -> Arc<RuntimeStats> {
        Arc::new(RuntimeStats {
            name: name.to_owned(),
            workers: worker_names
                .iter()
                .map(|_| WorkerCounters::default())
                .collect(),
            worker_names,
            connections: AtomicU64::new(0),
            handle: std::sync::OnceLock::new(),
        })
    }

    /// Connects the figures to the runtime they describe. Only the first call counts.
    pub fn attach(&self, handle: Handle) {
        let _ = self.handle.set(handle);
    }

    /// The counters of the worker running the calling task.
    pub fn mine(&self) -> &WorkerCounters {
        // The thread's worker index, set when it started (see `on_start`), kept within the
        // counters: a thread that is no worker of this runtime counts on the first.
        let i = WORKER.get().min(self.workers.len().saturating_sub(1));
        &self.workers[i]
    }

    /// The runtime's figures for `/stats`: tokio's stable metrics and the server's counts.
    pub fn snapshot(&self) -> RuntimeSnapshot {
        let metrics = self.handle.get().map(Handle::metrics);
        let sum = |f: fn(&WorkerCounters) -> &AtomicU64| {
            self.workers.iter().map(|w| f(w).load(Relaxed)).sum::<u64>()
        };
        let worker_threads = self
            .worker_names
            .iter()
            .zip(self.workers.iter())
            .map(|(name, counts)| WorkerSnapshot {
                name: name.clone(),
                accepted: counts.accepted.load(Relaxed),
                requests: counts.requests.load(Relaxed),
            })
            .collect();
        // tokio numbers its workers 0..N; which thread runs which is not in its stable
        // API, so its per-worker figures are listed by that number, apart from the threads.
        let workers = metrics.as_ref().map_or(0, |m| m.num_workers());
        let per_worker = |f: &dyn Fn(usize) -> u64| (0..workers).map(f).collect::<Vec<u64>>();
        RuntimeSnapshot {
            name: self.name.clone(),
            workers: workers as u64,
            alive_tasks: metrics.as_ref().map_or(0, |m| m.num_alive_tasks()) as u64,
            global_queue_depth: metrics.as_ref().map_or(0, |m| m.global_queue_depth()) as u64,
            worker_parks: per_worker(&|i| metrics.as_ref().map_or(0, |m| m.worker_park_count(i))),
            worker_busy_ms: per_worker(&|i| {
                metrics.as_ref().map_or(0, |m| {
                    u64::try_from(m.worker_total_busy_duration(i).as_millis()).unwrap_or(u64::MAX)
                })
            }),
            connections: self.connections.load(Relaxed),
            accepted: sum(|w| &w.accepted),
            requests: sum(|w| &w.requests),
            offloaded: sum(|w| &w.offloaded),
            worker_threads,
        }
    }
}
