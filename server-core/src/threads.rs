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
//!
//! Why not simply keep the `JoinHandle`s and join them one by one? Because `JoinHandle::join`
//! has no timeout: one thread stuck in a long `/sleep` would keep shutdown waiting for as
//! long as it sleeps. Counting live threads under a mutex lets `join` wait on a condition
//! variable with a deadline instead, and report how many it gave up on. The handles are
//! still kept, and joined once their threads have returned, so that the operating system
//! can release each finished thread's resources.
//!
//! A thread is counted as finished by a guard ([`Member`]) that lives on its own stack, so
//! it is counted even if its work panics: the group's numbers never drift, and `join`
//! never waits for a thread that is already gone.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::stats::ThreadGroupSnapshot;

/// A group of threads with one role. Cheap to clone; clones share the same counts.
///
/// Every thread of the group holds a clone (to mark itself busy), so does the code that
/// starts them, and so does the `/stats` function that reports them: the counts live
/// behind one `Arc`, shared by all.
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
    /// The most threads of the group alive at once: for thread-per-connection, the
    /// largest number of clients served together.
    peak: AtomicUsize,
    /// Threads ever started (shown as `started`; it also numbers new threads' names).
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
        // Counted alive before it starts, so that a `join` that begins meanwhile waits
        // for it; given back below if it cannot start.
        let alive_now = {
            let mut alive = self.inner.alive.lock();
            *alive += 1;
            *alive
        };
        self.inner.peak.fetch_max(alive_now, Relaxed);
        // The name is what `ps -L`, a debugger, the log and the `X-Servelab-Thread`
        // header show.
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
                // Reaping costs a look at every handle, so it is done only when the list
                // has grown to twice the live threads: the list stays within a small
                // multiple of the threads alive, at a constant cost per thread started.
                if handles.len() >= 64 && handles.len() >= 2 * alive_now {
                    reap_finished(&mut handles);
                }
                handles.push(handle);
                Ok(())
            }
            // The thread never started (the process is out of threads or memory): it is
            // no longer counted alive, and the caller decides what to tell its client.
            Err(e) => {
                self.finished();
                Err(e)
            }
        }
    }

    /// Counts the calling thread, which this group did not start, as a member until the
    /// guard is dropped. The sequential server uses it for its one thread. There is no
    /// handle to join for such a thread: `join` waits for its guard to be dropped, as it
    /// waits for the others.
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

    /// Marks the calling thread busy until the guard is dropped. "Busy" means working for a
    /// client (handling a request, reading one that is arriving), as opposed to waiting for
    /// one: `/stats` shows how many of a group's threads are busy now and at most, which is
    /// how a fixed pool shows that it is saturated.
    pub fn busy(&self) -> BusyGuard {
        let now = self.inner.busy.fetch_add(1, Relaxed) + 1;
        self.inner.busy_peak.fetch_max(now, Relaxed);
        BusyGuard(Arc::clone(&self.inner))
    }

    /// Threads of the group alive now.
    pub fn alive(&self) -> usize {
        *self.inner.alive.lock()
    }

    /// Threads of the group busy now (see [`ThreadGroup::busy`]).
    pub fn busy_count(&self) -> usize {
        self.inner.busy.load(Relaxed)
    }

    /// Waits until every thread of the group has finished, or until `deadline`, then joins
    /// the finished ones. Returns how many are still running (0 on a clean shutdown).
    /// Threads still running at the deadline are left to the process's end: the caller
    /// logs how many, and the binary's exit ends them.
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
        // The count's lock is released before the handles' lock is taken: a thread that
        // ends now takes the count's lock, and must never wait behind the handles.
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

    /// Counts a thread that never started as gone again.
    fn finished(&self) {
        self.inner.exit();
    }
}

impl Inner {
    /// One thread of the group is gone. The last one wakes every `join` waiting for the
    /// group to empty; the others change nothing a waiter looks at, so they wake nobody.
    fn exit(&self) {
        let mut alive = self.alive.lock();
        *alive -= 1;
        if *alive == 0 {
            self.all_done.notify_all();
        }
    }
}

/// Joins (without blocking) every thread that has already returned. A thread that has
/// returned but was never joined keeps its stack mapped and its kernel task around until
/// it is: a thread-per-connection server that never reaped would hold one per connection
/// it ever served.
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

/// Counts a thread as alive while it lives. See [`ThreadGroup::enter`]. Every thread the
/// group starts holds one too, made on its first line, so that it is dropped on the
/// thread's last, however the thread ends.
#[derive(Debug)]
pub struct Member(Arc<Inner>);

impl Drop for Member {
    fn drop(&mut self) {
        self.0.exit();
    }
}

/// Marks a thread busy while it lives. See [`ThreadGroup::busy`]. Held on the stack for
/// the span of one piece of work, so the count is right even if the work panics.
#[derive(Debug)]
pub struct BusyGuard(Arc<Inner>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Relaxed);
    }
}
