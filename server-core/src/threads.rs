//! Named groups of threads that can be counted and joined with a deadline.
//!
//! Every concurrent architecture starts threads in groups: `worker-1..8`, `receiver-1..4`,
//! one `conn-N` per connection. A [`ThreadGroup`] starts them with a name (so logs and the
//! `X-Servelab-Thread` header say who did what), counts how many are alive and how many are
//! busy (for `/stats`), and at shutdown waits for all of them to finish, but only until a
//! deadline: a handler stuck in a 60-second `/sleep` must not keep the process alive forever.
//!
//! The counters that only feed `/stats` (`busy`, `busy_peak`, `peak`, `spawned`) are relaxed
//! atomics: each is read on its own and guards no other data, so any recent value will do.
//! `alive` is different: `join` waits for it to reach zero, so it lives under a mutex with
//! the condition variable that announces the change.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::stats::ThreadGroupSnapshot;

/// A group of threads with one role. Cheap to clone; clones share the same counts.
#[derive(Debug, Clone)]
pub struct ThreadGroup {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    role: &'static str,
    /// Threads started and not yet finished. Guarded by a mutex (not an atomic) because
    /// `join` waits on `all_done` for it to reach zero, and a condition variable needs the
    /// mutex that protects the condition.
    alive: Mutex<usize>,
    all_done: Condvar,
    /// Threads handling a request now.
    busy: AtomicUsize,
    /// The most threads of the group busy at once.
    busy_peak: AtomicUsize,
    peak: AtomicUsize,
    spawned: AtomicU64,
    /// Handles of threads not joined yet. Finished ones are joined and dropped as new
    /// threads start, so a thread-per-connection server does not collect one handle per
    /// connection it ever served.
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl ThreadGroup {
    /// A group whose threads play `role` (shown in `/stats`, e.g. "worker").
    pub fn new(role: &'static str) -> Self {
        ThreadGroup {
            inner: Arc::new(Inner {
                role,
                alive: Mutex::new(0),
                all_done: Condvar::new(),
                busy: AtomicUsize::new(0),
                busy_peak: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                spawned: AtomicU64::new(0),
                handles: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Starts a thread called `name` running `work`. `stack_size` overrides the default
    /// stack (2 MiB for Rust threads), which is mostly untouched virtual memory anyway.
    pub fn spawn(
        &self,
        name: String,
        stack_size: Option<usize>,
        work: impl FnOnce() + Send + 'static,
    ) -> io::Result<()> {
        let alive_now = {
            let mut alive = self.inner.alive.lock();
            *alive += 1;
            *alive
        };
        self.inner.peak.fetch_max(alive_now, Relaxed);
        let mut builder = thread::Builder::new().name(name);
        if let Some(size) = stack_size {
            builder = builder.stack_size(size);
        }
        let inner = Arc::clone(&self.inner);
        let spawned = builder.spawn(move || {
            // Counted as finished even if `work` panics, because the guard drops on unwind.
            let _member = Member(inner);
            work();
        });
        match spawned {
            Ok(handle) => {
                self.inner.spawned.fetch_add(1, Relaxed);
                let mut handles = self.inner.handles.lock();
                if handles.len() >= 64 && handles.len() >= 2 * alive_now {
                    reap_finished(&mut handles);
                }
                handles.push(handle);
                Ok(())
            }
            Err(e) => {
                self.finished();
                Err(e)
            }
        }
    }

    /// Counts the calling thread, which this group did not start, as a member until the
    /// guard is dropped. The sequential server uses it for its one thread.
    pub fn enter(&self) -> Member {
        let alive_now = {
            let mut alive = self.inner.alive.lock();
            *alive += 1;
            *alive
        };
        self.inner.peak.fetch_max(alive_now, Relaxed);
        self.inner.spawned.fetch_add(1, Relaxed);
        Member(Arc::clone(&self.inner))
    }

    /// Marks the calling thread busy until the guard is dropped.
    pub fn busy(&self) -> BusyGuard {
        let now = self.inner.busy.fetch_add(1, Relaxed) + 1;
        self.inner.busy_peak.fetch_max(now, Relaxed);
        BusyGuard(Arc::clone(&self.inner))
    }

    pub fn alive(&self) -> usize {
        *self.inner.alive.lock()
    }

    pub fn busy_count(&self) -> usize {
        self.inner.busy.load(Relaxed)
    }

    /// Waits until every thread of the group has finished, or until `deadline`, then joins
    /// the finished ones. Returns how many are still running (0 on a clean shutdown).
    pub fn join(&self, deadline: Instant) -> usize {
        let mut alive = self.inner.alive.lock();
        while *alive > 0 {
            // Blocks until a thread of the group exits (it notifies) or the deadline passes.
            if self
                .inner
                .all_done
                .wait_until(&mut alive, deadline)
                .timed_out()
            {
                break;
            }
        }
        let still_running = *alive;
        drop(alive);
        reap_finished(&mut self.inner.handles.lock());
        still_running
    }

    /// The group's figures for `/stats`.
    pub fn snapshot(&self) -> ThreadGroupSnapshot {
        ThreadGroupSnapshot {
            role: self.inner.role.to_owned(),
            alive: self.alive() as u64,
            busy: self.busy_count() as u64,
            busy_peak: self.inner.busy_peak.load(Relaxed) as u64,
            peak: self.inner.peak.load(Relaxed) as u64,
            started: self.inner.spawned.load(Relaxed),
        }
    }

    fn finished(&self) {
        self.inner.exit();
    }
}

impl Inner {
    fn exit(&self) {
        let mut alive = self.alive.lock();
        *alive -= 1;
        if *alive == 0 {
            self.all_done.notify_all();
        }
    }
}

/// Joins (without blocking) every thread that has already returned.
fn reap_finished(handles: &mut Vec<JoinHandle<()>>) {
    let mut i = 0;
    while i < handles.len() {
        if handles[i].is_finished() {
            // The thread has returned, so this join does not wait. A panic inside it was
            // already reported by the panic hook; there is nothing more to do with it.
            let _ = handles.swap_remove(i).join();
        } else {
            i += 1;
        }
    }
}

/// Counts a thread as alive while it lives. See [`ThreadGroup::enter`].
#[derive(Debug)]
pub struct Member(Arc<Inner>);

impl Drop for Member {
    fn drop(&mut self) {
        self.0.exit();
    }
}

/// Marks a thread busy while it lives. See [`ThreadGroup::busy`].
#[derive(Debug)]
pub struct BusyGuard(Arc<Inner>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Relaxed);
    }
}
