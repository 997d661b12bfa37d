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
//!
//! Reading the figures of a pipeline under load, for example:
//!
//! ```text
//!   connections  depth    0  full     0  mean wait   40 µs   receivers keep up
//!   requests     depth   64  full  9120  mean wait  95 ms    the handlers are the bottleneck
//!   responses    depth    0  full     0  mean wait   25 µs   senders keep up
//! ```
//!
//! A queue that is often full and whose items wait long sits in front of the slow stage;
//! the queues after it are nearly empty. Adding threads to any other stage changes nothing.
//!
//! Why bounded at all? An unbounded queue in front of a slow stage grows for as long as the
//! load lasts: memory grows with it, and every request waits behind all those queued before
//! it, long after its client has given up. A bound turns that into back-pressure: the stage
//! in front waits, then the one in front of it, and finally the clients, whose requests
//! wait in their own sockets and the kernel's backlog, where they cost the server nothing.
//! What the bound should be is a trade: large enough to absorb a burst, small enough that a
//! queued request is still worth answering when its turn comes.
//!
//! Who holds which half decides how shutdown travels. A stage holds the receiving half of
//! the queue in front of it and the sending halves of the queues after it, and nothing else.
//! When a stage's threads end, they drop their senders, the next queue closes, the next
//! stage drains it and ends in turn: the whole pipeline stops from front to back, without a
//! flag for anyone to forget to check.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::stats::QueueSnapshot;

/// Which engine a queue uses. A flag of its own (`--queue-impl`) on every server with a
/// queue, so that the two can be compared under the same load with nothing else changed.
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

/// Why a non-blocking push did not happen. The item is handed back, so that the caller
/// can still answer it (a 503 for its client) instead of losing it.
#[derive(Debug)]
pub enum TryPushError<T> {
    /// The queue is at capacity.
    Full(T),
    /// Every receiver is gone.
    Closed(T),
}

/// Creates a queue holding at most `capacity` items (at least 1).
///
/// When it is full, [`QueueSender::push`] blocks until a consumer takes an item, and
/// [`QueueSender::try_push`] hands the item back at once: the caller chooses between
/// back-pressure and refusal. `name` is what `/stats` calls the queue (`connections`,
/// `requests`, ...). Both halves share one set of figures, so whoever holds either half can
/// report them.
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
        // crossbeam counts its own senders and receivers, and wakes the other side when
        // the last one of either goes.
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
        // The lecture's queue counts its halves itself (see the `Clone` and `Drop` impls
        // below), starting from the one sender and the one receiver made here.
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
    /// When the producer called `push`: the wait counted includes the producer's own wait
    /// for room, because that too is time the item spent between two stages.
    since: Instant,
}

/// The producing half of a queue. Clone it for every producer thread; when the last clone
/// is dropped, the queue is closed for the consumers (they drain it, then get `None`).
pub struct QueueSender<T> {
    engine: SenderEngine<T>,
    /// The queue's figures, shared with the other half and the `/stats` writer.
    stats: Arc<QueueStats>,
}

/// Which engine a sender drives. An enum rather than a trait object: the choice is made
/// once per queue, and a `match` per push costs less than a call through a vtable.
enum SenderEngine<T> {
    Channel(crossbeam_channel::Sender<Stamped<T>>),
    /// The queue itself is shared by every half, hence the `Arc`.
    Condvar(Arc<CondvarQueue<Stamped<T>>>),
}

/// The consuming half of a queue. Clone it for every consumer thread; each item goes to
/// exactly one of them. When the last clone is dropped, producers stop waiting for room:
/// `push` hands the item back.
pub struct QueueReceiver<T> {
    engine: ReceiverEngine<T>,
    /// The queue's figures, shared with the other half and the `/stats` writer.
    stats: Arc<QueueStats>,
}

/// Which engine a receiver drives (see [`SenderEngine`]).
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
        // The wait starts now, before any wait for room.
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
            // The same wait, on the condition variable `not_full`.
            SenderEngine::Condvar(queue) => queue.push(stamped),
        };
        result.map_err(|stamped| {
            self.stats.depth.fetch_sub(1, Relaxed);
            self.stats.pushed.fetch_sub(1, Relaxed);
            stamped.item
        })
    }

    /// Adds `item` at the back if there is room; never blocks. For a caller that must not
    /// wait: an event loop (a full queue then means 503), or an accept loop that refuses
    /// rather than stalls. A full queue is counted, as in `push`.
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

    /// The one non-blocking attempt both `push` and `try_push` start with. It does not count
    /// a full queue itself: `push` counts it once even if it then waits, and `try_push`
    /// counts it when it gives up.
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
        // Not pushed after all (full or closed): the item was never visible, so taking the
        // counts back cannot confuse a reader for longer than this moment.
        if result.is_err() {
            self.stats.depth.fetch_sub(1, Relaxed);
            self.stats.pushed.fetch_sub(1, Relaxed);
        }
        result
    }

    /// The queue's figures, shared with its receivers. Architectures hand a clone to the
    /// `/stats` function, which may outlive both halves: the figures stay readable after
    /// the queue itself is gone (at shutdown, say).
    pub fn stats(&self) -> Arc<QueueStats> {
        Arc::clone(&self.stats)
    }
}

impl<T> QueueReceiver<T> {
    /// Takes the item at the front. Items go out in the order they came in, whatever the
    /// engine, so a connection's requests queued one after another are taken in order. Blocks while the queue is empty, until a producer adds
    /// one. Returns `None` once the queue is empty and every sender has been dropped.
    pub fn pop(&self) -> Option<T> {
        let stamped = match &self.engine {
            // Blocks until an item is there, or every sender is gone and nothing is left.
            ReceiverEngine::Channel(rx) => rx.recv().ok(),
            ReceiverEngine::Condvar(queue) => queue.pop(),
        }?;
        // The item's wait ends now: from the producer's `push` to this moment.
        self.stats.depth.fetch_sub(1, Relaxed);
        self.stats.popped.fetch_add(1, Relaxed);
        let waited = u64::try_from(stamped.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.waited_ns.fetch_add(waited, Relaxed);
        Some(stamped.item)
    }

    /// The queue's figures, shared with its senders.
    pub fn stats(&self) -> Arc<QueueStats> {
        Arc::clone(&self.stats)
    }
}

/// A new sender of the same queue. The lecture's queue counts it, so that it knows when
/// the last sender is gone.
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

/// A new receiver of the same queue: one more consumer taking items from the front.
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

/// A sender going away. crossbeam does its own counting; the lecture's queue counts here,
/// and closing it is what tells the consumers that shutdown has reached their stage.
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

/// A receiver going away: once the last one has, nobody will ever make room, so a producer
/// waiting for some must be told.
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
    /// What `/stats` calls the queue.
    name: &'static str,
    /// Which engine it uses, shown beside the figures so that two runs can be compared.
    kind: QueueKind,
    capacity: usize,
    /// Items in the queue now (counted in before they are visible, out when taken).
    depth: AtomicUsize,
    /// Items ever added.
    pushed: AtomicU64,
    /// Times a producer found the queue full: back-pressure happening.
    full: AtomicU64,
    /// The total wait of the items taken, in nanoseconds; divided by `popped` it is the
    /// mean wait, which points at the slow stage of a pipeline.
    waited_ns: AtomicU64,
    /// Items ever taken.
    popped: AtomicU64,
}

impl QueueStats {
    /// Items in the queue now. Counted apart from the engine (crossbeam's own `len` would
    /// do for one engine only), so that both engines report it the same way.
    pub fn depth(&self) -> usize {
        self.depth.load(Relaxed)
    }

    /// How many times a producer found the queue full. A `push` that waited counts once,
    /// however long it waited; a `try_push` that gave up counts once too.
    pub fn times_full(&self) -> u64 {
        self.full.load(Relaxed)
    }

    /// The queue's figures for `/stats`. The mean wait is in microseconds, to one decimal:
    /// a queue between busy stages waits micro- to milliseconds.
    pub fn snapshot(&self) -> QueueSnapshot {
        // Items still queued have not finished waiting: only the taken ones are averaged.
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
///
/// Every operation takes the one lock, so producers and consumers take turns: under heavy
/// contention that is why it tends to be slower than crossbeam's channel, whose producers
/// and consumers mostly work on separate ends. `--queue-impl` lets a lab measure it.
struct CondvarQueue<T> {
    /// Items and the number of live halves, under one lock so that "is it empty?" and "is
    /// anyone still sending?" are answered together.
    state: Mutex<State<T>>,
    /// Signalled when an item is added: a consumer waiting for one can go on.
    not_empty: Condvar,
    /// Signalled when an item is taken: a producer waiting for room can go on.
    not_full: Condvar,
    /// The most items it holds; a producer waits (`push`) or gives up (`try_push`) beyond.
    capacity: usize,
}

/// What the lock of a [`CondvarQueue`] guards.
struct State<T> {
    /// The items, oldest first: pushed at the back, popped from the front (FIFO, unlike the
    /// lecture's list, which popped from the back).
    items: VecDeque<T>,
    /// Live senders and receivers. When no sender is left, consumers drain and stop; when
    /// no receiver is left, producers stop waiting for room.
    senders: usize,
    receivers: usize,
}

impl<T> CondvarQueue<T> {
    /// Adds an item, waiting while the queue is full. Hands it back if every receiver is
    /// gone (then nobody would ever take it).
    fn push(&self, item: T) -> Result<(), T> {
        let mut state = self.state.lock();
        // A `while`, not an `if`: a wake-up does not mean there is room (another producer
        // may have taken it first, or the wake-up was spurious).
        while state.items.len() >= self.capacity && state.receivers > 0 {
            // Releases the lock and sleeps until a consumer takes an item (or all leave).
            self.not_full.wait(&mut state);
        }
        // Woken because the last receiver left: nobody will take the item.
        if state.receivers == 0 {
            return Err(item);
        }
        state.items.push_back(item);
        drop(state);
        // One new item can satisfy one consumer, so wake one. (The lecture's queue woke all
        // of them, and all but one went back to sleep: the "thundering herd".)
        self.not_empty.notify_one();
        Ok(())
    }

    /// Adds an item if there is room, without waiting.
    fn try_push(&self, item: T) -> Result<(), TryPushError<T>> {
        let mut state = self.state.lock();
        if state.receivers == 0 {
            return Err(TryPushError::Closed(item));
        }
        if state.items.len() >= self.capacity {
            return Err(TryPushError::Full(item));
        }
        state.items.push_back(item);
        // Notified after the lock is released, so that the consumer it wakes does not
        // at once block on the lock still held here.
        drop(state);
        self.not_empty.notify_one();
        Ok(())
    }

    /// Takes the oldest item, waiting while the queue is empty; `None` once it is empty and
    /// every sender is gone.
    fn pop(&self) -> Option<T> {
        let mut state = self.state.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                drop(state);
                // One slot was freed, so one waiting producer can go on.
                self.not_full.notify_one();
                return Some(item);
            }
            // Empty, and nobody will ever add to it: the queue is closed and drained.
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
