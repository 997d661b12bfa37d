//! One ring: a thread, an io_uring instance, a listening socket, and the connections it
//! accepted.
//!
//! ```text
//!   loop {
//!       io_uring_enter          <- the one system call of a round, and the only wait: hands
//!                                  the kernel every operation queued since the last one, and
//!                                  sleeps until the completions it expects at once (the
//!                                  sends just handed over) and at least one more are in
//!       for each completion:
//!           accept   -> a new connection; queue its first receive
//!           receive  -> copy the bytes into the connection's machine, give the buffer back
//!           send     -> tell the machine how much went out
//!           timeout  -> a deadline to look at, or a sleeping request to answer
//!           wake     -> the helpers have answers (taken below)
//!       for each connection touched this round:
//!           parse every complete request, answer or start its work,
//!           queue a send of everything ready, a receive if it wants more, its deadline
//!   }
//! ```
//!
//! Nothing here waits but `io_uring_enter`. The thread never asks whether a socket is
//! ready: it queues the operation itself and learns, from its completion, that it is done.
//! The queued operations of a whole round (sends for every connection that got answers,
//! receives for those that want more, timeouts) go to the kernel together in the next
//! `io_uring_enter`: under load one system call carries many operations and brings back
//! many completions (lab 25 counts them).
//!
//! **One request's life**, on a keep-alive connection with a receive in the kernel:
//!
//! ```text
//!   round 1  the request's bytes arrive; the kernel completes the receive into a provided
//!            buffer -> `received` copies them into the connection's machine and gives the
//!            buffer back; `advance` parses the request, answers it, and queues a send of
//!            the answer and a new receive
//!   round 2  io_uring_enter hands both to the kernel; the send completes at once (the
//!            socket has room) -> `sent` tells the machine what went out; the receive
//!            stays in the kernel, holding no buffer, until the next request comes
//! ```
//!
//! Two operations per request, and no system call of its own: the `io_uring_enter` of each
//! round carries the operations of every connection the round touched.
//!
//! **Who owns what while the kernel holds it.** An operation in flight may point into our
//! memory, and that memory must stay put and untouched until its completion arrives:
//!
//! * a **receive** names no memory: the kernel takes a buffer from the provided-buffer ring
//!   when bytes arrive (see `buffers.rs`);
//! * a **send** points into the connection's `sending` buffer: a copy of the machine's
//!   output (the machine may grow its own buffer while the send is in flight, which would
//!   move it). `sending` is not touched while `send_armed`, and a connection is not freed
//!   while a send or receive of it is in the kernel: closing cancels them and waits for
//!   their completions;
//! * a **timeout** points at a `Timespec` that the kernel copies when it takes the
//!   submission; the timespecs live in `timespecs` until the submission queue is empty;
//! * the **wake** read writes 8 bytes into `wake_buffer`, which lives as long as the ring.
//!
//! When the thread ends it cancels everything still in the kernel and waits for each
//! completion to come back before it frees any of that memory; what does not come back is
//! leaked, never freed under the kernel.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use io_uring::{cqueue, opcode, squeue, types, IoUring as Kernel};
use protocol::{route, Connection, Event, Response, Status, Ticket, Work};
use server_core::context::Registration;
use server_core::listener::accept_failure;
use server_core::offload::{self, WakeUp};
use server_core::queue::QueueSender;
use server_core::stats::RingSnapshot;
use server_core::{Context, ThreadGroup};
use slab::Slab;

use crate::buffers::{self, BufferRing};
use crate::ops::{self, Op};
use crate::wake::Wake;

/// A computation for the helpers (see `server_core::offload`), its answer addressed to a
/// connection of this ring by its slot and generation.
pub type Task = offload::Task<(u32, u32)>;
type Reply = offload::Reply<(u32, u32)>;
type Done = offload::Done<(u32, u32)>;

/// Submission queue entries: operations queued in one round before the ring must hand
/// them over early (then one more system call that round). A round queues about two per
/// connection it touched.
pub const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries. When more completions than this are waiting, the kernel keeps
/// the rest on a list of its own (`IORING_FEAT_NODROP`) until there is room.
pub const CQ_ENTRIES: u32 = 4 * SQ_ENTRIES;
/// The most of one connection's output a send carries (and so the most copied into its
/// `sending` buffer at once): a large answer goes out in several sends.
const SEND_CHUNK: usize = 256 * 1024;
/// A `sending` buffer larger than this is released once its send is done, so that an idle
/// connection keeps only a small one.
const KEEP_SENDING: usize = 4096;
/// The longest a round waits beyond the completions it expects at once (see `Ring::run`).
const SETTLE: Duration = Duration::from_millis(1);

/// A ring's figures for `/stats`. Shared with the thread that writes `/stats`, so they
/// are atomics; each is read on its own and guards nothing, so relaxed is enough.
#[derive(Default)]
pub struct RingStats {
    /// Connections open now: a level, stored at the end of each round (`publish`).
    pub connections: AtomicU64,
    /// Connections accepted, in all.
    pub accepted: AtomicU64,
    /// Rounds: times the thread came back from `io_uring_enter` (`woken`).
    pub wakeups: AtomicU64,
    /// System calls into the ring: one per round, plus one for each submission queue that
    /// filled up in the middle of a round (`push`).
    pub enters: AtomicU64,
    /// Operations handed to the kernel, in all, as `io_uring_enter` reports them.
    pub submissions: AtomicU64,
    /// Completions taken from the completion queue, in all.
    pub completions: AtomicU64,
    /// Operations the kernel holds now: a level, like `connections`.
    pub in_kernel: AtomicU64,
    /// Receives that found every provided buffer out (`ENOBUFS`).
    pub buffers_exhausted: AtomicU64,
    /// Timeouts armed now, deadlines and sleeps together: a level.
    pub timers: AtomicU64,
    /// Computations handed to the helpers, in all.
    pub offloaded: AtomicU64,
    /// The ring's shape, set before the stats are shared and never changed.
    pub buffers: u64,
    pub buffer_size: u64,
}

impl RingStats {
    /// The ring's figures for `/stats`, each read on its own.
    pub fn snapshot(&self, name: &str) -> RingSnapshot {
        let wakeups = self.wakeups.load(Relaxed);
        let submissions = self.submissions.load(Relaxed);
        let completions = self.completions.load(Relaxed);
        // An average per round, to two decimals; nothing before the first round.
        let per_wakeup = |n: u64| {
            if wakeups == 0 {
                0.0
            } else {
                (n as f64 / wakeups as f64 * 100.0).round() / 100.0
            }
        };
        RingSnapshot {
            name: name.to_owned(),
            connections: self.connections.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            wakeups,
            enters: self.enters.load(Relaxed),
            submissions,
            completions,
            submissions_per_wakeup: per_wakeup(submissions),
            completions_per_wakeup: per_wakeup(completions),
            in_kernel: self.in_kernel.load(Relaxed),
            sq_entries: u64::from(SQ_ENTRIES),
            cq_entries: u64::from(CQ_ENTRIES),
            buffers: self.buffers,
            buffer_size: self.buffer_size,
            buffers_exhausted: self.buffers_exhausted.load(Relaxed),
            timers: self.timers.load(Relaxed),
            offloaded: self.offloaded.load(Relaxed),
        }
    }
}

/// What a ring is made of, handed to its thread.
pub struct Settings {
    /// `ring-1`, `ring-2`, ...: the thread's name, in the log and in `/stats`.
    pub name: String,
    /// The ring's own listening socket (the server's, or one bound with SO_REUSEPORT).
    pub listener: TcpListener,
    /// The provided-buffer pool's shape: how many buffers, of how many bytes each.
    pub buffers: u16,
    pub buffer_size: u32,
    /// The server's context: its settings, routes and counters, and its shutdown.
    pub ctx: Arc<Context>,
    /// The helpers' queue, bounded: the ring only ever `try_push`es into it.
    pub tasks: QueueSender<Task>,
    /// Set (once) by the shutdown hook, which then writes to `wake`. Relaxed loads are
    /// enough: the flag guards no data, and the wake-up's completion is what makes the
    /// ring look at it promptly.
    pub stopping: Arc<AtomicBool>,
    /// The eventfd the helpers and the shutdown hook write to wake the ring.
    pub wake: Arc<Wake>,
    /// The ring's figures, shared with the thread that writes `/stats`.
    pub stats: Arc<RingStats>,
}

/// One accepted connection.
struct Conn {
    /// Declared before `stream`, so that the connection leaves the server's registry before
    /// its socket closes.
    _registration: Registration,
    /// The socket, left blocking as accepted: this thread never reads or writes it, the
    /// kernel does, so nothing here can block on it.
    stream: TcpStream,
    /// The HTTP/1.1 connection (`protocol::Connection`): the same machine as every
    /// servelab server's, fed with bytes and answers, asked for output and deadlines.
    machine: Connection,
    /// Tells this connection from a later one in the same slot (see `ops.rs`).
    generation: u32,
    /// A receive of this connection is in the kernel.
    recv_armed: bool,
    /// Its cancellation has been asked for (at shutdown, for an idle connection).
    recv_cancelling: bool,
    /// A send of this connection is in the kernel, pointing into `sending`.
    send_armed: bool,
    /// The bytes the send in flight carries. Lent to the kernel while `send_armed`.
    sending: Vec<u8>,
    /// When this connection's deadline timeout is armed to fire, if it is.
    timer: Option<Instant>,
    /// The sending side has been shut down.
    write_shut: bool,
    /// The connection is over; it is freed once the kernel has given back its receive
    /// and send.
    closing: bool,
    /// In this round's list of connections to advance.
    dirty: bool,
    /// Told to the helpers computing for this connection when its client goes: shared with
    /// their tasks. Made at the first offloaded request, so an idle connection costs none.
    gone: Option<Arc<AtomicBool>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.send_armed {
            // Only when a ring gave up on operations that never came back: the kernel may
            // still read these bytes, so they are leaked rather than freed.
            std::mem::forget(std::mem::take(&mut self.sending));
        }
    }
}

/// A request waiting for its `/sleep` timeout.
struct Sleeper {
    /// The connection it belongs to: its slot, and which of the slot's connections.
    key: u32,
    generation: u32,
    /// Which of the connection's requests it answers.
    ticket: Ticket,
    /// The answer, decided when the request arrived and held until the timeout fires.
    response: Response,
}

/// Everything one ring owns. Only its own thread touches it, except the figures.
pub struct Ring {
    /// `ring-1`, ...: for the log.
    name: String,
    /// The io_uring instance: its submission and completion queues, memory shared with the
    /// kernel, and the system call that hands them over.
    kernel: Kernel,
    /// Whether the kernel runs completions' work only when this thread asks for them
    /// (`IORING_SETUP_DEFER_TASKRUN`, Linux 6.1): fewer interruptions of the thread.
    deferred: bool,
    /// The listening socket, kept open until the ring ends (its accept may be in flight).
    listener: TcpListener,
    /// The listening socket still accepts (shutdown has not shut it or cancelled its accept).
    listening: bool,
    /// The multishot accept is in the kernel.
    accept_armed: bool,
    /// A pause before accepting again is in the kernel (accepting failed).
    accept_retry: bool,
    /// The connections, by slot (`key`). A freed slot is reused; its generation tells the
    /// new connection from the old.
    conns: Slab<Conn>,
    /// Requests waiting for their `/sleep` timeout, by slot: a timeout's label carries it.
    sleepers: Slab<Sleeper>,
    /// The receive memory lent to the kernel (see `buffers.rs`).
    buffers: BufferRing,
    /// The server's context: its settings, routes and counters, and its shutdown.
    ctx: Arc<Context>,
    /// The helpers' queue: the ring only ever `try_push`es into it (full: 503 at once).
    tasks: QueueSender<Task>,
    /// Answers from the helpers, and the sending half the helpers are given.
    inbox: Receiver<Done>,
    inbox_sender: Sender<Done>,
    /// The eventfd a helper writes after each answer; a read of it is always in the kernel.
    wake: Arc<Wake>,
    /// What a helper calls once its answer is in `inbox`: writes to `wake`.
    wake_up: WakeUp,
    /// The eventfd read's destination: 8 bytes the kernel writes while `wake_armed`.
    wake_buffer: Box<u64>,
    wake_armed: bool,
    /// The server's shutdown flag (see `Settings::stopping`).
    stopping: Arc<AtomicBool>,
    /// This ring has seen the flag and begun its shutdown (`stop`).
    stopped: bool,
    /// The grace period's timeout has fired: whatever is left is abandoned.
    grace_over: bool,
    /// This ring's figures, shared with the thread that writes `/stats`.
    stats: Arc<RingStats>,
    /// Connections taken in so far: the source of each one's generation.
    generation: u64,
    /// The time, read once per wake-up: deadlines are milliseconds.
    now: Instant,
    /// Connections touched this round, to advance once every completion is in.
    dirty: Vec<usize>,
    /// Timespecs of timeouts queued but perhaps not yet taken by the kernel (it copies
    /// them when it takes the submission). Boxed, so they stay put as the vector grows:
    /// the kernel has their addresses.
    #[allow(clippy::vec_box)]
    timespecs: Vec<Box<types::Timespec>>,
    /// Operations the kernel will complete that have not completed yet (each counted
    /// from the moment it is queued).
    in_kernel: usize,
    /// Operations queued this round that usually complete the moment the kernel takes them
    /// (sends, cancellations, timeout updates): the next wait counts on their completions.
    expected_at_once: usize,
    /// Operations that found the submission queue full even after handing it over.
    overflow: VecDeque<squeue::Entry>,
    /// Deadline timeouts armed (for `/stats`).
    deadline_timers: usize,
    /// The completions of one round, reused.
    completions: Vec<cqueue::Entry>,
}

impl Ring {
    /// Sets up the ring on the calling thread, which must be the one that runs it (the
    /// ring is created for a single submitter).
    pub fn new(settings: Settings) -> io::Result<Ring> {
        // The ring first (its queues are memory the kernel maps into the process), then the
        // receive memory, allocated here and lent to it.
        let (kernel, deferred) = setup()?;
        let mut buffers = BufferRing::new(settings.buffers, settings.buffer_size)?;
        buffers.register(&kernel)?;
        // Unbounded, but it never holds more answers than the computations this ring
        // handed out, which the helpers' bounded queue and their number bound.
        let (inbox_sender, inbox) = crossbeam_channel::unbounded();
        let wake_up: WakeUp = {
            let wake = Arc::clone(&settings.wake);
            Arc::new(move || wake.wake())
        };
        let mut ring = Ring {
            name: settings.name,
            kernel,
            deferred,
            listener: settings.listener,
            listening: true,
            accept_armed: false,
            accept_retry: false,
            conns: Slab::new(),
            sleepers: Slab::new(),
            buffers,
            ctx: settings.ctx,
            tasks: settings.tasks,
            inbox,
            inbox_sender,
            wake: settings.wake,
            wake_up,
            wake_buffer: Box::new(0),
            wake_armed: false,
            stopping: settings.stopping,
            stopped: false,
            grace_over: false,
            stats: settings.stats,
            generation: 0,
            now: Instant::now(),
            dirty: Vec::new(),
            timespecs: Vec::new(),
            in_kernel: 0,
            expected_at_once: 0,
            overflow: VecDeque::new(),
            deadline_timers: 0,
            // Room for a full completion queue, so that no round grows it.
            completions: Vec::with_capacity(CQ_ENTRIES as usize),
        };
        // The first two operations, queued for the first `io_uring_enter`: the accept, which
        // completes once per client, and the read that a helper's eventfd write completes.
        ring.arm_accept();
        ring.arm_wake();
        Ok(ring)
    }

    /// Runs the ring until shutdown has closed every connection or the grace period is
    /// over, then hands everything still in the kernel back (see [`Ring::teardown`]).
    ///
    /// Each turn of the loop is one round: hand the kernel what was queued and wait for
    /// completions (the only wait), then, busy, take in every completion, the helpers'
    /// answers, and advance each connection they touched, which queues the next round's
    /// operations.
    pub fn run(mut self, group: &ThreadGroup) {
        self.announce();
        loop {
            // Shutdown is done: every connection has finished what it owed.
            if self.stopped && self.conns.is_empty() {
                break;
            }
            // The grace period is over: what is left is given up.
            if self.grace_over {
                self.abandon_all();
                break;
            }
            self.requeue_overflow();
            if let Err(e) = self.enter() {
                tracing::warn!("{}: io_uring_enter failed: {e}", self.name);
                self.abandon_all();
                break;
            }
            // Busy until the end of the round: `/stats` shows how much of its time the ring's
            // thread works rather than waits.
            let _busy = group.busy();
            self.woken();
            self.take_completions();
            self.collect_answers();
            self.advance_touched();
            self.publish();
        }
        self.teardown();
    }

    /// Says in the log that the ring is up, and how it was set up.
    fn announce(&self) {
        tracing::debug!(
            "{}: ring up ({} × {} B provided buffers{})",
            self.name,
            self.buffers.count(),
            self.buffers.size(),
            if self.deferred {
                ", deferred task work"
            } else {
                ""
            }
        );
    }

    /// The one system call of a round: hands over every operation queued since the last,
    /// and waits until at least one has completed. This is the only place the ring's
    /// thread waits. `Err` only when the ring cannot go on.
    ///
    /// The sends just queued usually complete at once, while the kernel takes them (the
    /// socket has room), and waiting for "at least one completion" would then return at
    /// once too, only to find bookkeeping: each round would cost a second system call to
    /// wait for the next requests. So the ring waits for one completion more than the
    /// operations it expects back at once, but at most `SETTLE`: a send that went out only
    /// in part (a large answer) has its next part queued after at most that much delay.
    fn enter(&mut self) -> io::Result<()> {
        let expected = std::mem::take(&mut self.expected_at_once);
        let entered = if expected == 0 {
            // Blocks until a completion is in (a client, bytes, a timeout, a wake-up).
            self.kernel.submit_and_wait(1)
        } else {
            let settle = types::Timespec::from(SETTLE);
            let args = types::SubmitArgs::new().timespec(&settle);
            // Blocks until `expected + 1` completions are in, or `SETTLE` has passed.
            self.kernel
                .submitter()
                .submit_with_args(expected + 1, &args)
        };
        match entered {
            Ok(n) => self.submitted(n),
            // Nothing was submitted and the wait ended at `SETTLE`; a signal; or a
            // completion queue so full that the kernel wants completions taken before
            // it takes more submissions: take them, then go on.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                self.submitted(0);
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// What the ring does first after each wake-up: reads the clock once for the round,
    /// frees the timespecs the kernel has copied, and looks at the shutdown flag.
    fn woken(&mut self) {
        self.now = Instant::now();
        self.stats.wakeups.fetch_add(1, Relaxed);
        if self.kernel.submission().is_empty() && self.overflow.is_empty() {
            // Every queued timeout has been taken (and its timespec copied).
            self.timespecs.clear();
        }
        if self.stopping.load(Relaxed) && !self.stopped {
            self.stop();
        }
    }

    /// Takes every completion waiting in the completion queue and handles each. The
    /// queue is read without a system call: it is memory shared with the kernel.
    fn take_completions(&mut self) {
        // The same vector every round, taken out meanwhile so that `complete` may borrow
        // the ring.
        let mut completions = std::mem::take(&mut self.completions);
        completions.clear();
        completions.extend(self.kernel.completion());
        self.stats
            .completions
            .fetch_add(completions.len() as u64, Relaxed);
        for cqe in &completions {
            self.complete(cqe);
        }
        self.completions = completions;
    }

    /// Advances every connection touched this round, each once: their sends, receives
    /// and deadlines are queued now and go to the kernel together at the next
    /// `io_uring_enter`.
    fn advance_touched(&mut self) {
        for key in std::mem::take(&mut self.dirty) {
            if let Some(conn) = self.conns.get_mut(key) {
                // Unmarked, so that the next round's completions list it again.
                conn.dirty = false;
            }
            self.advance(key);
        }
    }

    /// Counts a system call into the ring that handed over `n` operations.
    fn submitted(&self, n: usize) {
        self.stats.enters.fetch_add(1, Relaxed);
        self.stats.submissions.fetch_add(n as u64, Relaxed);
    }

    /// Updates the figures that are levels rather than counts.
    fn publish(&self) {
        self.stats
            .connections
            .store(self.conns.len() as u64, Relaxed);
        self.stats.in_kernel.store(self.in_kernel as u64, Relaxed);
        self.stats
            .timers
            .store((self.deadline_timers + self.sleepers.len()) as u64, Relaxed);
    }

    /// Queues an operation for the next submission.
    ///
    /// # Safety
    ///
    /// Whatever memory `entry` points to must stay valid, and untouched by this thread,
    /// until the kernel is done with it: a send's bytes until its completion; a timespec
    /// until the submission is taken (see `timespec`).
    unsafe fn push(&mut self, entry: squeue::Entry) {
        // Counted from the moment it is queued, until its last completion (`complete`).
        self.in_kernel += 1;
        // Entries already waiting for room keep their place: operations reach the kernel
        // in the order they were queued.
        if !self.overflow.is_empty() {
            self.overflow.push_back(entry);
            return;
        }
        // SAFETY: forwarded from the caller.
        if unsafe { self.kernel.submission().push(&entry) }.is_ok() {
            return;
        }
        // The submission queue is full: hand it over now, in the middle of the round (one
        // more system call), and queue the entry in the room that makes.
        match self.kernel.submit() {
            Ok(n) => self.submitted(n),
            Err(e) => tracing::debug!("{}: early submission failed: {e}", self.name),
        }
        // SAFETY: as above.
        if unsafe { self.kernel.submission().push(&entry) }.is_err() {
            // Still no room (the kernel is refusing submissions until completions are
            // taken): the entry waits for the next round.
            self.overflow.push_back(entry);
        }
    }

    /// Moves operations that found no room last round into the submission queue.
    fn requeue_overflow(&mut self) {
        while let Some(entry) = self.overflow.pop_front() {
            // SAFETY: these entries were queued with `push`, whose callers keep their
            // memory valid; nothing has been handed over since.
            if unsafe { self.kernel.submission().push(&entry) }.is_err() {
                self.overflow.push_front(entry);
                return;
            }
        }
    }

    /// A timespec for a timeout `after` from now, valid until the kernel has taken the
    /// submission that points at it.
    fn timespec(&mut self, after: Duration) -> *const types::Timespec {
        let boxed = Box::new(types::Timespec::from(after));
        let pointer: *const types::Timespec = &*boxed;
        self.timespecs.push(boxed);
        pointer
    }

    /// Keeps a multishot accept in the kernel: one submission, a completion per client.
    fn arm_accept(&mut self) {
        // One accept at a time; none while a retry waits, and none once shutdown has begun
        // or the listening socket is shut.
        if self.accept_armed || self.accept_retry || self.stopped || !self.listening {
            return;
        }
        self.accept_armed = true;
        // Each accepted descriptor is closed on `exec`, as the standard library's own
        // accept does.
        let entry = opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(Op::Accept.encode());
        // SAFETY: a multishot accept asks for no peer address, so it names no memory; the
        // listening socket stays open until the ring ends.
        unsafe { self.push(entry) };
    }

    /// Keeps a read of the eventfd in the kernel, so that a helper's write wakes the ring.
    fn arm_wake(&mut self) {
        if self.wake_armed {
            return;
        }
        self.wake_armed = true;
        // An eventfd read takes exactly 8 bytes: the counter, which the read resets to 0.
        let target: *mut u64 = &mut *self.wake_buffer;
        let entry = opcode::Read::new(types::Fd(self.wake.fd()), target.cast(), 8)
            .build()
            .user_data(Op::Wake.encode());
        // SAFETY: the kernel writes 8 bytes into `wake_buffer`, a box that lives as long
        // as the ring and that the thread never reads or writes while `wake_armed`; the
        // eventfd (`self.wake`) stays open as long as the ring.
        unsafe { self.push(entry) };
    }

    /// Handles one completion.
    ///
    /// A completion carries three things: the label of the operation (`user_data`, see
    /// `ops.rs`), its result (what the system call would have returned: a byte count, a
    /// new descriptor, or minus an error number), and flags: `IORING_CQE_F_MORE` when the
    /// operation stays in the kernel and will complete again (the multishot accept), and
    /// `IORING_CQE_F_BUFFER` with the id of the provided buffer a receive filled.
    /// Completions come in the order operations finish, not the order they were queued.
    fn complete(&mut self, cqe: &cqueue::Entry) {
        let (result, flags) = (cqe.result(), cqe.flags());
        if !cqueue::more(flags) {
            // The operation's last completion: the kernel no longer holds it.
            self.in_kernel = self.in_kernel.saturating_sub(1);
        }
        match Op::decode(cqe.user_data()) {
            Some(Op::Accept) => self.accepted(result, flags),
            // The pause after a failed accept is over: accept again.
            Some(Op::AcceptRetry) => {
                self.accept_retry = false;
                self.arm_accept();
            }
            Some(Op::Wake) => {
                self.wake_armed = false;
                // The answers are collected after every completion of the round.
                self.arm_wake();
            }
            // The grace period is over: the loop abandons what is left.
            Some(Op::Grace) => self.grace_over = true,
            Some(Op::Recv { key, generation }) => self.received(key, generation, result, flags),
            Some(Op::Send { key, .. }) => self.sent(key, result),
            Some(Op::Deadline { key, generation }) => self.deadline_due(key, generation),
            Some(Op::Sleep { sleeper }) => self.slept(sleeper, result),
            // A cancellation's or an update's own completion: what counts is its target's.
            Some(Op::Cancel) | None => {}
        }
    }

    /// A completion of the multishot accept: a new client, or an error.
    fn accepted(&mut self, result: i32, flags: u32) {
        if !cqueue::more(flags) {
            // The kernel ended the multishot accept (an error, or our cancellation).
            self.accept_armed = false;
        }
        if result >= 0 {
            // SAFETY: the kernel created descriptor `result` for this accept and gave it
            // to us alone; the stream now owns it and closes it once.
            let stream = unsafe { TcpStream::from_raw_fd(result) };
            self.add(stream);
        } else {
            match -result {
                // Our cancellation at shutdown, or the listening socket shut down by it (then
                // accepting fails with EINVAL): the accept ends for good.
                libc::ECANCELED | libc::EINVAL => self.listening = false,
                // A client that gave up before it was taken.
                libc::ECONNABORTED | libc::EINTR | libc::EAGAIN => {}
                errno => {
                    // Usually "too many open files": accept again in 50 ms rather than at
                    // once, as connections close and free descriptors meanwhile. One line
                    // a second is enough, for all the rings together.
                    let e = io::Error::from_raw_os_error(errno);
                    let name = &self.name;
                    self.ctx.repeats.warn(accept_failure(&e), || {
                        format!("{name}: accept failed: {e}; retrying in 50 ms")
                    });
                    if !self.accept_armed && !self.stopped {
                        self.accept_retry = true;
                        let at = self.timespec(Duration::from_millis(50));
                        let entry = opcode::Timeout::new(at)
                            .build()
                            .user_data(Op::AcceptRetry.encode());
                        // SAFETY: the timespec lives in `timespecs` until the kernel has
                        // taken this submission.
                        unsafe { self.push(entry) };
                    }
                }
            }
        }
        self.arm_accept();
    }

    /// Takes in a freshly accepted connection and queues its first receive (its request
    /// is probably there already: the kernel tries a receive the moment it takes it, and
    /// completes it at once if bytes are waiting).
    ///
    /// The connection is registered with the server as one that its own driver stops at
    /// shutdown: the ring cancels its receive itself, instead of the shutdown hook shutting
    /// its socket's reading side from another thread.
    fn add(&mut self, stream: TcpStream) {
        let entry = self.conns.vacant_entry();
        // A label carries the slot in 32 bits (see `ops.rs`).
        let Ok(key) = u32::try_from(entry.key()) else {
            tracing::warn!("{}: too many connections for one ring", self.name);
            return;
        };
        // A new generation: labels meant for the slot's former connection no longer match.
        self.generation += 1;
        let registration = self.ctx.register_self_stopping();
        let mut machine = Connection::new(Arc::clone(&self.ctx.connection), self.now);
        if self.stopped {
            // Accepted as shutdown began: told at once, as every other connection was.
            machine.stop();
        }
        entry.insert(Conn {
            _registration: registration,
            stream,
            machine,
            generation: ops::generation(self.generation),
            recv_armed: false,
            recv_cancelling: false,
            send_armed: false,
            sending: Vec::new(),
            timer: None,
            write_shut: false,
            closing: false,
            dirty: false,
            gone: None,
        });
        self.ctx.stats.accepted();
        self.stats.accepted.fetch_add(1, Relaxed);
        let key = key as usize;
        self.arm_recv(key);
        self.mark(key);
    }

    /// Adds connection `key` to this round's list, once. A connection may complete a
    /// receive, a send and a timeout in one round; it is advanced once, after all of them,
    /// so that everything it has to say goes out in one send.
    fn mark(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Queues a receive into a provided buffer.
    ///
    /// A completion-based server must say where received bytes go before they arrive. A
    /// buffer of the connection's own would sit idle for as long as the client is silent:
    /// 10,000 idle keep-alive clients would hold 10,000 buffers. With `BUFFER_SELECT` the
    /// receive names only the ring's pool (`buffers::GROUP`), and the kernel takes a buffer
    /// from it when the bytes come.
    fn arm_recv(&mut self, key: usize) {
        let size = self.buffers.size();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.recv_armed = true;
        conn.recv_cancelling = false;
        let entry = opcode::Recv::new(
            types::Fd(conn.stream.as_raw_fd()),
            std::ptr::null_mut(),
            size,
        )
        .buf_group(buffers::GROUP)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT)
        .user_data(Op::recv(key, conn.generation).encode());
        // SAFETY: the receive names no memory of ours: the kernel takes a buffer from the
        // provided-buffer ring when bytes arrive, and the completion says which. The socket
        // stays open while `recv_armed` (a connection is freed only after).
        unsafe { self.push(entry) };
    }

    /// Queues a send of the connection's output (at most `SEND_CHUNK` of it).
    ///
    /// The bytes are copied into the connection's `sending` buffer first. Sending straight
    /// from the machine's output would lend the kernel memory the machine still owns: an
    /// answer arriving from a helper while the send is in flight appends to that output,
    /// which may move it, and the kernel would read freed memory. The copy is the price of
    /// driving the same sans-IO machine as every other server; a server written for
    /// io_uring alone would hand its answers over as owned buffers instead.
    fn arm_send(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let output = conn.machine.output();
        let n = output.len().min(SEND_CHUNK);
        conn.sending.clear();
        conn.sending.extend_from_slice(&output[..n]);
        conn.send_armed = true;
        let entry = opcode::Send::new(
            types::Fd(conn.stream.as_raw_fd()),
            conn.sending.as_ptr(),
            n as u32,
        )
        // A send to a client that has gone fails with EPIPE, instead of killing the process
        // with SIGPIPE.
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(Op::send(key, conn.generation).encode());
        // SAFETY: the kernel reads `n` bytes of `sending` until the send completes. Until
        // then `send_armed` is set, and nothing clears, grows or frees `sending` while it
        // is (`arm_send` is called only when it is not; a connection is freed only when it
        // is not, and a dropped one leaks its `sending` if it is). Moving the `Conn` within
        // the slab moves the vector's pointer, not its heap buffer.
        unsafe { self.push(entry) };
        // Usually done the moment the kernel takes it: the socket has room.
        self.expected_at_once += 1;
    }

    /// A connection's receive completed: bytes in a provided buffer, the end of the
    /// stream, or an error. Whatever happened, a buffer the kernel handed over goes back
    /// to the pool before the round ends, so between rounds the kernel owns every buffer.
    fn received(&mut self, key: u32, generation: u32, result: i32, flags: u32) {
        // The buffer the kernel picked, if the receive brought bytes.
        let buffer = cqueue::buffer_select(flags);
        let key = key as usize;
        let now = self.now;
        match self.conns.get_mut(key) {
            Some(conn) if conn.generation == generation => {
                // Out of the kernel: `advance` arms the next if the machine wants more.
                conn.recv_armed = false;
                match result {
                    n if n > 0 => match buffer {
                        Some(id) => {
                            // SAFETY: this completion handed buffer `id` over with `n`
                            // bytes written; it is given back just below, after the copy.
                            let bytes = unsafe { self.buffers.get(id, n as usize) };
                            // A closing connection's bytes are dropped: nobody answers them.
                            if !conn.closing {
                                conn.machine.receive(bytes, now);
                            }
                        }
                        // The kernel names the buffer of every receive that brought bytes;
                        // without one the bytes cannot be found, and the connection ends.
                        None => {
                            tracing::warn!("{}: a receive completed without a buffer", self.name);
                            self.begin_close(key, false);
                        }
                    },
                    // The end of the stream: the client closed its sending side.
                    0 => {
                        conn.machine.receive(&[], now);
                        if let Some(gone) = &conn.gone {
                            gone.store(true, Relaxed);
                        }
                    }
                    e if -e == libc::ENOBUFS => {
                        // Every provided buffer was out: armed again when it is advanced.
                        self.stats.buffers_exhausted.fetch_add(1, Relaxed);
                    }
                    // Cancelled (at shutdown) or interrupted: nothing arrived, and `advance`
                    // decides what comes next.
                    e if matches!(-e, libc::ECANCELED | libc::EINTR | libc::EAGAIN) => {}
                    // A reset or another error: nothing more will come.
                    _ => {
                        if let Some(gone) = &conn.gone {
                            gone.store(true, Relaxed);
                        }
                        self.begin_close(key, false);
                    }
                }
            }
            _ => tracing::warn!("{}: a receive completed for no connection", self.name),
        }
        if let Some(id) = buffer {
            self.buffers.give_back(id);
        }
        self.mark(key);
    }

    /// A connection's send completed. It may have sent only part (the client's receive
    /// window was full): the machine is told how much, and the next round sends the rest.
    /// From here `sending` is the thread's again.
    fn sent(&mut self, key: u32, result: i32) {
        let key = key as usize;
        let now = self.now;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.send_armed = false;
        // A large answer's copy is not kept for a connection that may now idle.
        if conn.sending.capacity() > KEEP_SENDING {
            conn.sending = Vec::new();
        }
        match result {
            // The machine drops what went out; what remains goes in the next round's send.
            n if n > 0 => conn.machine.wrote(n as usize, now),
            e if matches!(-e, libc::ECANCELED | libc::EINTR | libc::EAGAIN) => {}
            // Nothing written, a broken pipe or a reset: the client is gone.
            _ => self.begin_close(key, false),
        }
        self.mark(key);
    }

    /// A connection's deadline timeout fired (or was cancelled).
    fn deadline_due(&mut self, key: u32, generation: u32) {
        // Fired or removed, the timeout is out of the kernel.
        self.deadline_timers = self.deadline_timers.saturating_sub(1);
        let key = key as usize;
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.generation == generation {
                conn.timer = None;
                // The machine applies whatever deadline has passed (or none yet), and
                // `schedule` arms the next.
                self.mark(key);
            }
        }
    }

    /// A sleeping request's timeout fired: its answer is due. Unlike a connection's
    /// deadline, a sleep is never moved or cancelled while the ring runs: its connection
    /// waits for it (a closed one is recognised by its generation and the answer dropped).
    fn slept(&mut self, sleeper: u32, result: i32) {
        let Some(Sleeper {
            key,
            generation,
            ticket,
            response,
        }) = self.sleepers.try_remove(sleeper as usize)
        else {
            return;
        };
        if -result == libc::ECANCELED {
            // Cancelled at the end of the ring: the request is abandoned.
            return;
        }
        let key = key as usize;
        // Answered only if its connection is still the one that asked, and still open.
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.generation == generation && !c.closing)
        {
            self.respond(key, ticket, &response);
            self.mark(key);
        }
    }

    /// Drives connection `key` as far as it can go without waiting: handles every complete
    /// request, and queues what it needs next: a send, a receive, a deadline.
    ///
    /// This is the same dialogue with `protocol::Connection` that every servelab server
    /// has (`poll` for requests, `respond`, `output`, `wrote`, `next_deadline`); only the
    /// I/O differs. Where the event loop reads and writes here, the ring queues a receive
    /// and a send and comes back when their completions arrive.
    fn advance(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.closing {
            return self.free_if_done(key);
        }
        if self.end_if_departed(key) || self.close_if_idle(key) {
            return;
        }
        if self.handle_requests(key) {
            self.queue_next(key);
        }
    }

    /// Once shutdown has begun, ends connection `key` if its client has left while answers
    /// are still owed to it. Returns whether it did.
    fn end_if_departed(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get(key) else {
            return false;
        };
        let owed = conn.machine.owed();
        if !(self.stopped && conn.machine.peer_closed() && owed > 0) {
            return false;
        }
        // Shutdown has begun and the client has left (closed its side) while answers
        // are still owed to it: a `/sleep` waiting for its timeout, a computation on a
        // helper. Nobody would read them, and the ring would only wait longer to stop,
        // so the connection ends; each is counted as a client that left, as the
        // blocking servers count it. Before shutdown nothing changes.
        for _ in 0..owed {
            self.ctx.stats.client_left();
        }
        self.begin_close(key, false);
        true
    }

    /// Once shutdown has begun, starts closing connection `key` if it is idle with a
    /// receive in the kernel. Returns whether it is such a connection (then there is
    /// nothing more to do for it this round).
    fn close_if_idle(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if !(self.stopped && conn.recv_armed && conn.machine.is_idle()) {
            return false;
        }
        // Shutdown closes an idle connection, but a request that reached the socket
        // meanwhile must not be thrown away: its receive is cancelled first, and the
        // connection is looked at again when the kernel gives the receive back, with
        // the bytes if there were any.
        if !conn.recv_cancelling {
            conn.recv_cancelling = true;
            let target = Op::recv(key, conn.generation);
            self.cancel(target);
        }
        true
    }

    /// Handles every complete request in what connection `key` received, in order: each
    /// is answered, or its work started. Returns `false` when the connection is over (the
    /// protocol closed it; it is closing now).
    fn handle_requests(&mut self, key: usize) -> bool {
        let now = self.now;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return false;
            };
            match conn.machine.poll(now) {
                // Counted started here, and finished when it is answered (`respond`).
                Event::Request(request, ticket) => {
                    self.ctx.stats.request_started();
                    let work = route(&request, &self.ctx.routes);
                    self.start_work(key, ticket, work);
                }
                // A request the machine refused (malformed, too large): its error answer
                // takes its place in the order of answers.
                Event::Reject(response, ticket) => {
                    self.ctx.stats.responded(response.status);
                    conn.machine.respond(ticket, &response, now);
                }
                // No complete request left: the rest waits for more bytes.
                Event::Wait => return true,
                Event::Closed(why) => {
                    tracing::debug!("{}: connection closed: {why:?}", self.name);
                    self.begin_close(key, false);
                    return false;
                }
            }
        }
    }

    /// Queues what connection `key` needs next: a send of everything ready, the end of
    /// its answers, a receive if it wants more, and a timeout for its next deadline.
    fn queue_next(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        // Everything ready, in one send (queued with the rest of the round's).
        if !conn.send_armed && !conn.machine.output().is_empty() {
            self.arm_send(key);
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.machine.should_close_write() && !conn.write_shut && !conn.send_armed {
            conn.write_shut = true;
            // The client sees the end of the answers. A direct system call: it happens
            // once per connection, and only on connections that end.
            let _ = conn.stream.shutdown(Shutdown::Write);
        }
        // A receive in the kernel while the machine wants input, and only then: a client
        // that pipelines more than the machine will hold (16 owed answers, 64 KiB of
        // unwritten output) gets no new receive until it reads, so its bytes wait in the
        // socket, not in our memory. (A receive already in the kernel may still bring one
        // buffer's worth: the bound is one buffer, not what the client sends.) At shutdown
        // an idle connection gets none: it is closing.
        let wants = conn.machine.wants_input() && !(self.stopped && conn.machine.is_idle());
        if wants && !conn.recv_armed {
            self.arm_recv(key);
        }
        self.schedule(key);
    }

    /// Starts the work a request needs: answers it now, arms a timeout, or hands it to a
    /// helper. Never waits.
    ///
    /// The three kinds of work map onto what the ring can wait for: an answer needs nothing,
    /// a `/sleep` becomes a timeout operation in the kernel (its completion is the moment to
    /// answer), and a computation goes to a helper thread, whose answer comes back as the
    /// completion of the eventfd read.
    fn start_work(&mut self, key: usize, ticket: Ticket, work: Work) {
        match work {
            Work::Respond(response) => self.respond(key, ticket, &response),
            Work::Stats => {
                let response = self.ctx.stats_response();
                self.respond(key, ticket, &response);
            }
            // The connection waits; the ring does not: the kernel keeps the timeout.
            Work::Sleep { delay, then } => {
                let Some(generation) = self.conns.get(key).map(|c| c.generation) else {
                    return;
                };
                // The request waits in `sleepers`; the timeout's label carries its slot, so
                // that the completion finds it.
                let sleeper = self.sleepers.insert(Sleeper {
                    key: key as u32,
                    generation,
                    ticket,
                    response: then,
                });
                // A relative timeout: due `delay` after the kernel takes it, at the next
                // `io_uring_enter`, a moment after the request was read.
                let at = self.timespec(delay);
                let entry = opcode::Timeout::new(at).build().user_data(
                    Op::Sleep {
                        sleeper: sleeper as u32,
                    }
                    .encode(),
                );
                // SAFETY: the timespec lives in `timespecs` until the kernel has taken
                // this submission; the timeout names no other memory.
                unsafe { self.push(entry) };
            }
            Work::Compute(job) => {
                let Some(conn) = self.conns.get_mut(key) else {
                    return;
                };
                // Where the answer goes: this ring's inbox and eventfd, and the connection
                // (slot and generation) and request it answers.
                let back = Reply {
                    inbox: self.inbox_sender.clone(),
                    wake: Arc::clone(&self.wake_up),
                    to: (key as u32, conn.generation),
                    ticket,
                };
                // Made at the connection's first computation and shared with each: set
                // when the client goes, so that the helper stops computing for nobody.
                let gone = conn
                    .gone
                    .get_or_insert_with(|| Arc::new(AtomicBool::new(false)))
                    .clone();
                // Never blocks: a full queue gives the reply back, for a 503 at once.
                match offload::submit(&self.tasks, Task { job, back, gone }) {
                    Ok(()) => {
                        self.stats.offloaded.fetch_add(1, Relaxed);
                    }
                    Err(back) => {
                        let mut busy = Response::error(
                            Status::ServiceUnavailable,
                            "every helper thread is busy and their queue is full; retry later",
                        );
                        busy.retry_after = Some(1);
                        self.respond(key, back.ticket, &busy);
                    }
                }
            }
        }
    }

    /// Gives a request's answer to its connection, and counts it.
    fn respond(&mut self, key: usize, ticket: Ticket, response: &Response) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if self.stopping.load(Relaxed) {
            // Shutdown has begun, even if this ring has not handled it yet: the answer
            // must say the connection closes.
            conn.machine.stop();
        }
        if conn.machine.peer_closed() {
            // The client closed its side while its request was handled: the answer is
            // still written, for a client that only half-closed, but not counted served.
            self.ctx.stats.client_left();
            // `peer_addr` is a system call of its own, made only on this rare path.
            tracing::info!(
                "client {} left before the server could handle it ({})",
                conn.stream
                    .peer_addr()
                    .map_or_else(|_| "(gone)".into(), |a| a.to_string()),
                self.name
            );
        } else {
            self.ctx.stats.responded(response.status);
        }
        self.ctx.stats.request_finished();
        conn.machine.respond(ticket, response, now);
    }

    /// Makes sure the connection's deadline has a timeout armed at or before it: arms one,
    /// or moves the armed one earlier. A later deadline moves nothing: the timeout fires
    /// early, finds the real deadline, and is armed again for it, so a busy keep-alive
    /// connection costs one timeout per keep-alive period, not one per request.
    fn schedule(&mut self, key: usize) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(deadline) = conn.machine.next_deadline() else {
            return;
        };
        let armed = conn.timer;
        if armed.is_some_and(|at| at <= deadline) {
            return;
        }
        conn.timer = Some(deadline);
        let label = Op::deadline(key, conn.generation).encode();
        // Relative to now: a deadline already past gives a timeout of zero, due at once.
        let at = self.timespec(deadline.saturating_duration_since(now));
        let entry = match armed {
            // A nearer deadline: move the armed timeout (its own completion comes when
            // it fires; the update's, at once, says only whether it found it).
            Some(_) => {
                self.expected_at_once += 1;
                opcode::TimeoutUpdate::new(label, at)
                    .build()
                    .user_data(Op::Cancel.encode())
            }
            None => {
                self.deadline_timers += 1;
                opcode::Timeout::new(at).build().user_data(label)
            }
        };
        // SAFETY: the timespec lives in `timespecs` until the kernel has taken this
        // submission; neither operation names other memory.
        unsafe { self.push(entry) };
    }

    /// Queues the cancellation of the operation labelled `target`.
    fn cancel(&mut self, target: Op) {
        let entry = opcode::AsyncCancel::new(target.encode())
            .build()
            .user_data(Op::Cancel.encode());
        // SAFETY: a cancellation names no memory, only the label of its target.
        unsafe { self.push(entry) };
        // Its own completion comes at once (the target's follows).
        self.expected_at_once += 1;
    }

    /// Ends connection `key`: cancels what it has in the kernel and frees it once all of
    /// that has come back. Requests it still owed are counted finished, unless the ring is
    /// `abandoning` them (the grace period is over: they stay counted in flight, so the
    /// server's final line counts them as abandoned).
    fn begin_close(&mut self, key: usize, abandoning: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.closing = true;
        // Its computations stop: nobody will read their answers.
        if let Some(gone) = &conn.gone {
            gone.store(true, Relaxed);
        }
        if !abandoning {
            for _ in 0..conn.machine.owed() {
                self.ctx.stats.request_finished();
            }
        }
        // What it has in the kernel: a receive (unless its cancellation is already asked
        // for), a send, a deadline timeout.
        let generation = conn.generation;
        let (recv, send, timer) = (
            conn.recv_armed && !conn.recv_cancelling,
            conn.send_armed,
            conn.timer.take().is_some(),
        );
        if recv {
            conn.recv_cancelling = true;
            self.cancel(Op::recv(key, generation));
        }
        if send {
            self.cancel(Op::send(key, generation));
        }
        if timer {
            let entry = opcode::TimeoutRemove::new(Op::deadline(key, generation).encode())
                .build()
                .user_data(Op::Cancel.encode());
            // SAFETY: a timeout removal names no memory, only its target's label.
            unsafe { self.push(entry) };
            self.expected_at_once += 1;
        }
        // Freed now if the kernel holds nothing of it; otherwise when the last of its
        // operations comes back (`received` and `sent` mark it, and `advance` looks again).
        self.free_if_done(key);
    }

    /// Frees a closing connection once the kernel holds nothing of it: no receive (which
    /// would keep the socket, and might take a buffer) and no send (which reads
    /// `sending`). Its deadline timeout needs no waiting for: the kernel copied its
    /// timespec long ago, and the removal queued in `begin_close` ends it; should it fire
    /// first, its label's generation no longer matches anything.
    fn free_if_done(&mut self, key: usize) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.closing && !c.recv_armed && !c.send_armed)
        {
            // Dropping it unregisters it from the server, then closes the socket.
            self.conns.remove(key);
        }
    }

    /// Writes the answers the helpers computed. Called every round, not only when the
    /// eventfd read completed: a helper sends its answer before it writes the eventfd, so an
    /// answer may be in the channel a round before its wake-up, and taking it early is free.
    fn collect_answers(&mut self) {
        // Never blocks: `try_iter` takes only what is there.
        let answers: Vec<Done> = self.inbox.try_iter().collect();
        for done in answers {
            let (key, generation) = (done.to.0 as usize, done.to.1);
            if self
                .conns
                .get(key)
                .is_some_and(|c| c.generation == generation && !c.closing)
            {
                self.respond(key, done.ticket, &done.response);
                self.mark(key);
            }
            // Otherwise the connection closed meanwhile: its request was counted then.
        }
    }

    /// Shutdown: stop accepting, and let every connection finish what it owes, for at most
    /// the grace period (a ring timeout marks its end).
    ///
    /// The multishot accept is cancelled (the shutdown hook has also shut the listening
    /// socket, so the kernel's backlog refuses newcomers). Every connection's machine is
    /// told to stop: an idle one closes once its receive is back (see `advance`), one with a
    /// request arriving or answers owed finishes them, the last with `Connection: close`.
    fn stop(&mut self) {
        self.stopped = true;
        if self.accept_armed {
            self.cancel(Op::Accept);
        }
        // The grace period's end as a ring timeout: its completion ends the loop (`Grace`).
        let grace = self
            .ctx
            .shutdown
            .deadline(self.ctx.args.shutdown_timeout)
            .saturating_duration_since(self.now);
        let at = self.timespec(grace);
        let entry = opcode::Timeout::new(at)
            .build()
            .user_data(Op::Grace.encode());
        // SAFETY: the timespec lives in `timespecs` until the kernel has taken this
        // submission.
        unsafe { self.push(entry) };
        // Every connection is told, and advanced this round: an idle one starts closing.
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.conns[key].machine.stop();
            self.mark(key);
        }
        tracing::info!(
            "{}: shutting down; {} connections still owe answers",
            self.name,
            self.conns.len()
        );
    }

    /// Gives up on every connection left (the grace period is over).
    fn abandon_all(&mut self) {
        let owed: usize = self.conns.iter().map(|(_, c)| c.machine.owed()).sum();
        if owed > 0 {
            tracing::warn!(
                "{}: {owed} requests still unanswered after the shutdown timeout",
                self.name
            );
        }
        // Closing cancels what each connection has in the kernel; `teardown` then waits for
        // those completions before anything is freed.
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.begin_close(key, true);
        }
    }

    /// The end of the ring: cancels everything still in the kernel (the accept, receives,
    /// sends, timeouts, the wake read) in one operation, and waits (at most a second) for
    /// every completion to come back. Only then are the buffers unregistered and freed;
    /// whatever never came back is leaked instead.
    fn teardown(mut self) {
        let everything = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(Op::Cancel.encode());
        // SAFETY: a cancellation names no memory.
        unsafe { self.push(everything) };
        // At most a second; whatever is still out then is leaked (see below).
        let give_up = Instant::now() + Duration::from_secs(1);
        while self.in_kernel > 0 && Instant::now() < give_up {
            self.requeue_overflow();
            let wait = types::Timespec::from(Duration::from_millis(100));
            let args = types::SubmitArgs::new().timespec(&wait);
            // Waits for a completion, at most 100 ms.
            match self.kernel.submitter().submit_with_args(1, &args) {
                Ok(n) => self.submitted(n),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Err(e) => {
                    tracing::warn!("{}: io_uring_enter failed at the end: {e}", self.name);
                    break;
                }
            }
            // Only the bookkeeping that frees memory matters now: a buffer given back, a
            // receive or a send out of the kernel, the wake read home. Nothing is answered.
            let completions: Vec<cqueue::Entry> = self.kernel.completion().collect();
            for cqe in completions {
                if !cqueue::more(cqe.flags()) {
                    self.in_kernel = self.in_kernel.saturating_sub(1);
                }
                if let Some(id) = cqueue::buffer_select(cqe.flags()) {
                    self.buffers.give_back(id);
                }
                // What came back holds no memory of ours any more: the flags that keep a
                // connection's `sending`, or the ring's `wake_buffer`, from being freed are
                // cleared.
                match Op::decode(cqe.user_data()) {
                    Some(Op::Recv { key, .. }) => {
                        if let Some(conn) = self.conns.get_mut(key as usize) {
                            conn.recv_armed = false;
                        }
                    }
                    Some(Op::Send { key, .. }) => {
                        if let Some(conn) = self.conns.get_mut(key as usize) {
                            conn.send_armed = false;
                        }
                    }
                    Some(Op::Wake) => self.wake_armed = false,
                    _ => {}
                }
            }
        }
        // Closes every socket left (a send still in the kernel leaks its bytes).
        self.conns.clear();
        self.publish();
        // Everything came back: the buffers may be taken back from the kernel, and freed.
        if self.in_kernel == 0 {
            if let Err(e) = self.buffers.unregister(&self.kernel) {
                tracing::warn!("{}: could not unregister the buffers: {e}", self.name);
            }
        } else {
            tracing::warn!(
                "{}: {} operations never came back; their memory is left allocated",
                self.name,
                self.in_kernel
            );
        }
        // The kernel ring closes here (see `Drop`); the buffers are freed after it, or
        // leaked if still lent.
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.wake_armed {
            // The eventfd read never came back (a ring that gave up, or a thread that
            // panicked): the kernel may still write these 8 bytes, so they are leaked.
            std::mem::forget(std::mem::take(&mut self.wake_buffer));
        }
    }
}

/// Creates a ring for this thread alone. Asks for deferred task work (Linux 6.1: the
/// kernel finishes completions only when this thread waits for them, instead of
/// interrupting it), and falls back to a plain ring on older kernels.
fn setup() -> io::Result<(Kernel, bool)> {
    // Single issuer: only this thread submits, so the kernel may skip the locking that
    // several submitters would need (and refuses a submission from any other thread).
    let deferred = Kernel::builder()
        .setup_cqsize(CQ_ENTRIES)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(SQ_ENTRIES);
    match deferred {
        Ok(kernel) => Ok((kernel, true)),
        // A kernel that does not know a flag refuses the setup with EINVAL: a plain ring.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((
            Kernel::builder()
                .setup_cqsize(CQ_ENTRIES)
                .build(SQ_ENTRIES)?,
            false,
        )),
        Err(e) => Err(e),
    }
}
