//! Bounded FIFO queues between threads, in two interchangeable implementations.
//!
//! The pre-fork pool and the pipeline hand work from one group of threads to another
//! through queues. This module gives them one interface with two engines behind it, chosen
//! with `--queue-impl`, so students can compare them:
//!
//! * [`QueueKind::Crossbeam`]: a `crossbeam-channel` bounded channel, the standard tool in
//!   Rust for this job, built to stay fast when many threads push and pop at once.
//! * [`QueueKind::Condvar`]: a `VecDeque` behind a mutex with two condition variables, the
//!   way the lecture builds its queue (chapter 3): a consumer waits while the queue is empty
//!   and a producer wakes it after adding an item. Unlike the lecture's version it is FIFO
//!   (`pop_front`), it re-checks its condition in a `while` loop (a wait may end without the
//!   condition being true: another consumer got there first, or a spurious wake-up), it is
//!   bounded (a producer waits while it is full), and it wakes one waiter per item instead
//!   of all of them.
//!
//! Both behave like channels: [`bounded`] returns a sender half and a receiver half, each
//! can be cloned, and when the last sender is dropped, receivers drain what is left and then
//! get `None`. That is how a server's threads learn that shutdown has reached their stage.
//!
//! Every queue keeps figures for `/stats`: its depth, its capacity, how many times a
//! producer found it full, and how long items waited on average, from the moment a producer
//! offered one (including any time the producer itself waited for room) until a consumer
//! took it. That waiting time is what tells which stage of a pipeline is the bottleneck.
//! The figures are relaxed atomics: each is read on its own for monitoring and guards no
//! other data.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::stats::QueueSnapshot;

/// Which engine a queue uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    /// crossbeam-channel's bounded channel.
    #[default]
    Crossbeam,
    /// A `Mutex<VecDeque>` with condition variables, built as in the lecture.
    Condvar,
}

impl QueueKind {
    /// The flag's value for this kind: `crossbeam` or `condvar`.
    pub fn name(self) -> &'static str {
        match self {
            QueueKind::Crossbeam => "crossbeam",
            QueueKind::Condvar => "condvar",
        }
    }
}

/// Why a non-blocking push did not happen. The item is handed back.
#[derive(Debug)]
pub enum TryPushError<T> {
    /// The queue is at capacity.
    Full(T),
    /// Every receiver is gone.
    Closed(T),
}

/// Creates a queue holding at most `capacity` items (at least 1).
pub fn bounded<T>(
    name: &'static str,
    capacity: usize,
    kind: QueueKind,
) -> (QueueSender<T>, QueueReceiver<T>) {
    let capacity = capacity.max(1);
    let stats = Arc::new(QueueStats {
        name,
        kind,
        capacity,
        depth: AtomicUsize::new(0),
        pushed: AtomicU64::new(0),
        full: AtomicU64::new(0),
        waited_ns: AtomicU64::new(0),
        popped: AtomicU64::new(0),
    });
    match kind {
        QueueKind::Crossbeam => {
            let (tx, rx) = crossbeam_channel::bounded(capacity);
            (
                QueueSender {
                    engine: SenderEngine::Channel(tx),
                    stats: Arc::clone(&stats),
                },
                QueueReceiver {
                    engine: ReceiverEngine::Channel(rx),
                    stats,
                },
            )
        }
        QueueKind::Condvar => {
            let queue = Arc::new(CondvarQueue {
                state: Mutex::new(State {
                    items: VecDeque::with_capacity(capacity),
                    senders: 1,
                    receivers: 1,
                }),
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
                capacity,
            });
            (
                QueueSender {
                    engine: SenderEngine::Condvar(Arc::clone(&queue)),
                    stats: Arc::clone(&stats),
                },
                QueueReceiver {
                    engine: ReceiverEngine::Condvar(queue),
                    stats,
                },
            )
        }
    }
}

/// An item with the moment a producer offered it, to measure how long it waited.
struct Stamped<T> {
    item: T,
    since: Instant,
}

/// The producing half of a queue.
pub struct QueueSender<T> {
    engine: SenderEngine<T>,
    stats: Arc<QueueStats>,
}

enum SenderEngine<T> {
    Channel(crossbeam_channel::Sender<Stamped<T>>),
    Condvar(Arc<CondvarQueue<Stamped<T>>>),
}

/// The consuming half of a queue.
pub struct QueueReceiver<T> {
    engine: ReceiverEngine<T>,
    stats: Arc<QueueStats>,
}

enum ReceiverEngine<T> {
    Channel(crossbeam_channel::Receiver<Stamped<T>>),
    Condvar(Arc<CondvarQueue<Stamped<T>>>),
}

impl<T> std::fmt::Debug for QueueSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sender of the {} queue", self.stats.name)
    }
}

impl<T> std::fmt::Debug for QueueReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "receiver of the {} queue", self.stats.name)
    }
}

impl<T> QueueSender<T> {
    /// Adds `item` at the back. Blocks while the queue is full, until a consumer takes an
    /// item. Returns the item if every receiver is gone.
    pub fn push(&self, item: T) -> Result<(), T> {
        let stamped = Stamped {
            item,
            since: Instant::now(),
        };
        // Try without blocking first, to count how often producers find the queue full.
        let stamped = match self.try_push_stamped(stamped) {
            Ok(()) => return Ok(()),
            Err(TryPushError::Closed(s)) => return Err(s.item),
            Err(TryPushError::Full(s)) => {
                self.stats.full.fetch_add(1, Relaxed);
                s
            }
        };
        // Count the item before it is visible, so a fast consumer never sees the depth go
        // below zero, and whoever sees the item's effects (its response) also sees it
        // counted; undo both if the push fails.
        self.stats.depth.fetch_add(1, Relaxed);
        self.stats.pushed.fetch_add(1, Relaxed);
        let result = match &self.engine {
            // Blocks until there is room or every receiver is dropped.
            SenderEngine::Channel(tx) => tx.send(stamped).map_err(|e| e.into_inner()),
            SenderEngine::Condvar(queue) => queue.push(stamped),
        };
        result.map_err(|stamped| {
            self.stats.depth.fetch_sub(1, Relaxed);
            self.stats.pushed.fetch_sub(1, Relaxed);
            stamped.item
        })
    }

    /// Adds `item` at the back if there is room; never blocks.
    pub fn try_push(&self, item: T) -> Result<(), TryPushError<T>> {
        let stamped = Stamped {
            item,
            since: Instant::now(),
        };
        self.try_push_stamped(stamped).map_err(|e| match e {
            TryPushError::Full(s) => {
                self.stats.full.fetch_add(1, Relaxed);
                TryPushError::Full(s.item)
            }
            TryPushError::Closed(s) => TryPushError::Closed(s.item),
        })
    }

    fn try_push_stamped(&self, stamped: Stamped<T>) -> Result<(), TryPushError<Stamped<T>>> {
        // Counted before the item is visible, as in `push`.
        self.stats.depth.fetch_add(1, Relaxed);
        self.stats.pushed.fetch_add(1, Relaxed);
        let result = match &self.engine {
            SenderEngine::Channel(tx) => tx.try_send(stamped).map_err(|e| match e {
                crossbeam_channel::TrySendError::Full(s) => TryPushError::Full(s),
                crossbeam_channel::TrySendError::Disconnected(s) => TryPushError::Closed(s),
            }),
            SenderEngine::Condvar(queue) => queue.try_push(stamped),
        };
        if result.is_err() {
            self.stats.depth.fetch_sub(1, Relaxed);
            self.stats.pushed.fetch_sub(1, Relaxed);
        }
        result
    }

    /// The queue's figures, shared with its receivers.
    pub fn stats(&self) -> Arc<QueueStats> {
        Arc::clone(&self.stats)
    }
}

impl<T> QueueReceiver<T> {
    /// Takes the item at the front. Blocks while the queue is empty, until a producer adds
    /// one. Returns `None` once the queue is empty and every sender has been dropped.
    pub fn pop(&self) -> Option<T> {
        let stamped = match &self.engine {
            ReceiverEngine::Channel(rx) => rx.recv().ok(),
            ReceiverEngine::Condvar(queue) => queue.pop(),
        }?;
        self.stats.depth.fetch_sub(1, Relaxed);
        self.stats.popped.fetch_add(1, Relaxed);
        let waited = u64::try_from(stamped.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.waited_ns.fetch_add(waited, Relaxed);
        Some(stamped.item)
    }

    pub fn stats(&self) -> Arc<QueueStats> {
        Arc::clone(&self.stats)
    }
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        let engine = match &self.engine {
            SenderEngine::Channel(tx) => SenderEngine::Channel(tx.clone()),
            SenderEngine::Condvar(queue) => {
                queue.state.lock().senders += 1;
                SenderEngine::Condvar(Arc::clone(queue))
            }
        };
        QueueSender {
            engine,
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<T> Clone for QueueReceiver<T> {
    fn clone(&self) -> Self {
        let engine = match &self.engine {
            ReceiverEngine::Channel(rx) => ReceiverEngine::Channel(rx.clone()),
            ReceiverEngine::Condvar(queue) => {
                queue.state.lock().receivers += 1;
                ReceiverEngine::Condvar(Arc::clone(queue))
            }
        };
        QueueReceiver {
            engine,
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        if let SenderEngine::Condvar(queue) = &self.engine {
            let mut state = queue.state.lock();
            state.senders -= 1;
            if state.senders == 0 {
                // Wake every waiting consumer so it can see that nothing more will come.
                queue.not_empty.notify_all();
            }
        }
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        if let ReceiverEngine::Condvar(queue) = &self.engine {
            let mut state = queue.state.lock();
            state.receivers -= 1;
            if state.receivers == 0 {
                // Wake every waiting producer so it can give up instead of waiting forever.
                queue.not_full.notify_all();
            }
        }
    }
}

/// A queue's figures for `/stats`. Shared by both halves of the queue and by the function
/// that reports them, so they are atomics.
#[derive(Debug)]
pub struct QueueStats {
    name: &'static str,
    kind: QueueKind,
    capacity: usize,
    depth: AtomicUsize,
    pushed: AtomicU64,
    full: AtomicU64,
    waited_ns: AtomicU64,
    popped: AtomicU64,
}

impl QueueStats {
    /// Items in the queue now.
    pub fn depth(&self) -> usize {
        self.depth.load(Relaxed)
    }

    /// How many times a producer found the queue full.
    pub fn times_full(&self) -> u64 {
        self.full.load(Relaxed)
    }

    /// The queue's figures for `/stats`.
    pub fn snapshot(&self) -> QueueSnapshot {
        let popped = self.popped.load(Relaxed);
        let mean_wait_us = self
            .waited_ns
            .load(Relaxed)
            .checked_div(popped)
            .map_or(0.0, |ns| ns as f64 / 1000.0);
        QueueSnapshot {
            name: self.name.to_owned(),
            implementation: self.kind.name().to_owned(),
            capacity: self.capacity as u64,
            depth: self.depth() as u64,
            full: self.times_full(),
            pushed: self.pushed.load(Relaxed),
            mean_wait_us: (mean_wait_us * 10.0).round() / 10.0,
        }
    }
}

/// The lecture-style queue: a deque behind a mutex, and two condition variables to sleep on
/// instead of spinning ("no threads idling free").
struct CondvarQueue<T> {
    /// Items and the number of live halves, under one lock so that "is it empty?" and "is
    /// anyone still sending?" are answered together.
    state: Mutex<State<T>>,
    /// Signalled when an item is added: a consumer waiting for one can go on.
    not_empty: Condvar,
    /// Signalled when an item is taken: a producer waiting for room can go on.
    not_full: Condvar,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receivers: usize,
}

impl<T> CondvarQueue<T> {
    fn push(&self, item: T) -> Result<(), T> {
        let mut state = self.state.lock();
        while state.items.len() >= self.capacity && state.receivers > 0 {
            // Releases the lock and sleeps until a consumer takes an item (or all leave).
            self.not_full.wait(&mut state);
        }
        if state.receivers == 0 {
            return Err(item);
        }
        state.items.push_back(item);
        drop(state);
        // One new item can satisfy one consumer, so wake one.
        self.not_empty.notify_one();
        Ok(())
    }

    fn try_push(&self, item: T) -> Result<(), TryPushError<T>> {
        let mut state = self.state.lock();
        if state.receivers == 0 {
            return Err(TryPushError::Closed(item));
        }
        if state.items.len() >= self.capacity {
            return Err(TryPushError::Full(item));
        }
        state.items.push_back(item);
        drop(state);
        self.not_empty.notify_one();
        Ok(())
    }

    fn pop(&self) -> Option<T> {
        let mut state = self.state.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                drop(state);
                // One slot was freed, so one waiting producer can go on.
                self.not_full.notify_one();
                return Some(item);
            }
            if state.senders == 0 {
                return None;
            }
            // Releases the lock and sleeps until a producer adds an item (or all leave).
            // The loop re-checks afterwards: another consumer may have taken the item.
            self.not_empty.wait(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fifo_and_close(kind: QueueKind) {
        let (tx, rx) = bounded("test", 4, kind);
        for i in 0..4 {
            tx.push(i).unwrap();
        }
        assert!(matches!(tx.try_push(9), Err(TryPushError::Full(9))));
        assert_eq!(tx.stats().times_full(), 1);
        assert_eq!(rx.stats().depth(), 4);
        drop(tx);
        let drained: Vec<i32> = std::iter::from_fn(|| rx.pop()).collect();
        assert_eq!(drained, vec![0, 1, 2, 3]);
        assert_eq!(rx.stats().depth(), 0);
    }

    #[test]
    fn crossbeam_is_fifo_and_closes() {
        fifo_and_close(QueueKind::Crossbeam);
    }

    #[test]
    fn condvar_is_fifo_and_closes() {
        fifo_and_close(QueueKind::Condvar);
    }

    fn many_threads(kind: QueueKind) {
        let (tx, rx) = bounded("test", 8, kind);
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || std::iter::from_fn(|| rx.pop()).sum::<u64>())
            })
            .collect();
        drop(rx);
        let producers: Vec<_> = (0..3)
            .map(|p| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        tx.push(p * 1000 + i).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        for p in producers {
            p.join().unwrap();
        }
        let total: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(total, (0..3000u64).sum::<u64>());
    }

    #[test]
    fn crossbeam_many_threads_lose_nothing() {
        many_threads(QueueKind::Crossbeam);
    }

    #[test]
    fn condvar_many_threads_lose_nothing() {
        many_threads(QueueKind::Condvar);
    }

    #[test]
    fn push_fails_when_receivers_are_gone() {
        for kind in [QueueKind::Crossbeam, QueueKind::Condvar] {
            let (tx, rx) = bounded("test", 1, kind);
            drop(rx);
            assert_eq!(tx.push(1), Err(1));
        }
    }
}
