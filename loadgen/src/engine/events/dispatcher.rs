//! The open-loop schedule: when each request is due, and what happens to one that finds
//! every connection busy.
//!
//! An open loop is a schedule, not a set of clients: request `i` is due at its moment
//! whether or not the server has answered the ones before it, as users' requests are. The
//! engine carries the schedule on a pool of connections. When a request comes due, the
//! reactor hands it to an idle connection, which sends it in the same turn; when every
//! connection is busy, `--when-busy` decides: `queue` keeps it here until a connection
//! frees up or its deadline passes (its wait counts in its latency, which is counted from
//! its due moment), `drop` gives it up at once and counts it as dropped.
//!
//! A request's deadline always counts from its due moment, so no way of carrying the
//! schedule can make a late answer look timely: that is the correction for coordinated
//! omission.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::outcome::Outcome;
use crate::scenario::{Arrivals, OpenLoop, WhenBusy};
use crate::tally::Tally;

/// The open-loop schedule of one engine thread: when its requests are due, and the queue
/// of those waiting for a connection.
///
/// Each thread carries its own share of the run's `N` connections (connection `c`, from 0,
/// belongs to thread `c mod T`; in a shard, among the shard's connections), so it carries
/// the same share of the rate. With constant arrivals the run's schedule is one sequence,
/// request `i` due at `i/R`, and request `i` goes to the thread that owns connection
/// `i mod N`: a thread takes the requests whose `i mod N` is one of its connections, so the
/// threads of every shard together send exactly the one-process schedule. With Poisson
/// arrivals each thread draws its own process at its share of the rate, `R × n_t / N` (the
/// sum of independent Poisson processes is a Poisson process of the summed rate), seeded by
/// its first connection, so that no two threads in any shard draw the same process.
pub(super) struct Dispatcher {
    /// The run's common start: the schedule counts from it.
    start: Instant,
    /// The run's end: no request is due at or after it.
    pub(super) end: Instant,
    /// Each request's deadline, from its due moment.
    timeout: Duration,
    arrivals: Arrivals,
    when_busy: WhenBusy,
    /// The whole run's schedule: its steady rate, or its ramp (`OpenLoop::offset` says
    /// when the run's count of due requests reaches a number).
    open: OpenLoop,
    /// The run's connections, and this thread's: the residues `i mod N` it takes.
    connections: u64,
    mine: Vec<u64>,
    /// How many requests this thread has scheduled so far.
    scheduled: u64,
    /// The run's end has been handled: the idle connections were let go.
    pub(super) ended: bool,
    /// When the next request is due (at or after `end`: none).
    next: Instant,
    /// Poisson arrivals: this thread's random gaps, seeded so that a run can be repeated.
    rng: SmallRng,
    /// Poisson arrivals: where this thread's process stands, in the run's count of due
    /// requests (each gap adds an exponential draw of mean `N / n_t`).
    count: f64,
    /// Requests due but waiting for a free connection (`--when-busy queue`), oldest
    /// first, by when they were due. Unbounded in count, but bounded in time: a request
    /// leaves it when its deadline passes.
    pub(super) queue: VecDeque<Instant>,
}

impl Dispatcher {
    pub(super) fn new(
        open: OpenLoop,
        start: Instant,
        timeout: Duration,
        mine: Vec<u64>,
        connections: usize,
    ) -> Self {
        let connections = connections.max(1) as u64;
        let first = mine.first().copied().unwrap_or(0);
        let mut d = Dispatcher {
            start,
            end: start + open.duration,
            timeout,
            arrivals: open.arrivals,
            when_busy: open.when_busy,
            connections,
            mine,
            scheduled: 0,
            ended: false,
            next: start,
            rng: SmallRng::seed_from_u64(open.seed.wrapping_add(first)),
            count: 0.0,
            queue: VecDeque::new(),
            open,
        };
        d.next = match d.arrivals {
            Arrivals::Constant => d.constant_due(0),
            Arrivals::Poisson => d.poisson_due(),
        };
        d
    }

    /// When the run's count of due requests reaches `x`: on the schedule, or the end (no
    /// request is due at or after it) if it never does.
    fn at(&self, x: f64) -> Instant {
        self.open
            .offset(x)
            .map_or(self.end, |offset| self.start + offset)
    }

    /// Constant arrivals: when this thread's `k`-th request is due. Its `k`-th request is
    /// the run's request `i` for the `(k mod n_t)`-th of its connections, in the
    /// `⌊k / n_t⌋`-th round of `N`, so the threads' requests interleave into the one
    /// schedule `i / R`.
    fn constant_due(&self, k: u64) -> Instant {
        let share = self.mine.len().max(1) as u64;
        let i = (k / share) * self.connections
            + self.mine.get((k % share) as usize).copied().unwrap_or(0);
        self.at(i as f64)
    }

    /// Poisson arrivals: this thread's next request. Its process is the run's schedule
    /// thinned to its share `n_t / N`, so in the run's count its gaps are exponential of
    /// mean `N / n_t`, drawn by inverting the exponential distribution's CDF at a uniform
    /// `u` (`1 − u` keeps the logarithm's argument above 0). On a steady rate `R` that is a
    /// gap of mean `N / (R × n_t)` in time; on a ramp, the gaps in time shrink and grow with
    /// the rate (a non-homogeneous Poisson process, by rescaling time).
    fn poisson_due(&mut self) -> Instant {
        let u: f64 = self.rng.random();
        let share = self.mine.len() as f64 / self.connections as f64;
        self.count += -(1.0 - u).ln() / share.max(1e-9);
        self.at(self.count)
    }

    /// The next request due by `now`, if any (none at or after the end). The reactor calls
    /// it until it says none, so a loop that woke late takes every request it missed at
    /// once, each with its own due moment: lateness is measured, not hidden.
    pub(super) fn next_due(&mut self, now: Instant) -> Option<Instant> {
        if self.next > now || self.next >= self.end {
            return None;
        }
        let due = self.next;
        self.scheduled += 1;
        self.next = match self.arrivals {
            Arrivals::Constant => self.constant_due(self.scheduled),
            Arrivals::Poisson => self.poisson_due(),
        };
        Some(due)
    }

    /// When a queued request due at `due` gives up: its deadline, unless the run ends
    /// first (it is then unfinished, not late).
    fn gives_up(&self, due: Instant) -> Option<Instant> {
        let deadline = due + self.timeout;
        (deadline < self.end).then_some(deadline)
    }

    /// The next moment the dispatcher needs the loop awake: the next due request, a
    /// queued request's deadline, or the end of the run.
    pub(super) fn next_moment(&self) -> Option<Instant> {
        let due = (self.next < self.end).then_some(self.next);
        let queued = self.queue.front().and_then(|due| self.gives_up(*due));
        let end = (!self.ended).then_some(self.end);
        [due, queued, end].into_iter().flatten().min()
    }

    /// A request due at `due` found every connection busy. Queued, it waits for the next
    /// free connection, oldest first; dropped, it is counted and forgotten.
    pub(super) fn busy(&mut self, due: Instant, tally: &mut Tally) {
        match self.when_busy {
            WhenBusy::Queue => {
                tally.queued();
                self.queue.push_back(due);
            }
            WhenBusy::Drop => tally.dropped(due),
        }
    }

    /// Queued requests whose deadline has passed give up: counted over the deadline,
    /// never sent.
    pub(super) fn expire_queued(&mut self, now: Instant, tally: &mut Tally) {
        while let Some(&due) = self.queue.front() {
            match self.gives_up(due) {
                Some(deadline) if deadline <= now => {
                    self.queue.pop_front();
                    tally.failed(Outcome::ServiceTimeout, due, None, now);
                }
                _ => break,
            }
        }
    }

    /// The oldest queued request that can still meet its deadline.
    pub(super) fn take_queued(&mut self, now: Instant, tally: &mut Tally) -> Option<Instant> {
        self.expire_queued(now, tally);
        self.queue.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Stage;

    fn ramp(stages: &str) -> OpenLoop {
        OpenLoop::staged(
            Stage::parse_list(stages).expect("valid stages"),
            Arrivals::Constant,
            WhenBusy::Queue,
            1,
        )
    }

    /// Every request due, in order, from a dispatcher that owns all `connections`.
    fn schedule(open: OpenLoop, start: Instant) -> Vec<Instant> {
        let mut d = Dispatcher::new(open, start, Duration::from_secs(1), vec![0, 1, 2], 3);
        let far = start + open.duration + Duration::from_secs(1);
        std::iter::from_fn(|| d.next_due(far)).collect()
    }

    /// On a ramp, requests come due on the ramped schedule: as many in each tenth of a
    /// second as the integral of the rate over it (to within the one request a window's
    /// edge can split), none after the end, and the whole run's count is the ramp's area.
    #[test]
    fn a_ramp_schedules_requests_at_its_changing_rate() {
        let open = ramp("1s:1000,1s:1000,1s:0");
        let start = Instant::now();
        let due = schedule(open, start);
        assert_eq!(
            due.len(),
            2000,
            "the area under 0→1000→1000→0 over 1 s each"
        );
        assert!(due.windows(2).all(|w| w[0] <= w[1]), "in order");
        // The count of requests that came due by t: 500 t² in the first second, then
        // 500 + 1000 (t − 1), then falling back to 0 in the third.
        let expected = |t: f64| match t {
            t if t <= 1.0 => 500.0 * t * t,
            t if t <= 2.0 => 500.0 + 1000.0 * (t - 1.0),
            t => 2000.0 - 500.0 * (3.0 - t) * (3.0 - t),
        };
        for tenth in 1..=30 {
            let t = f64::from(tenth) / 10.0;
            let by = start + Duration::from_secs_f64(t);
            let counted = due.iter().filter(|d| **d < by).count() as f64;
            assert!(
                (counted - expected(t)).abs() <= 1.0,
                "by {t} s: {counted} due, the ramp says {}",
                expected(t)
            );
        }
        assert!(*due.last().expect("some") < start + open.duration);
    }

    /// A steady rate keeps its old schedule exactly: request i at i / R.
    #[test]
    fn a_steady_rate_is_one_request_every_one_over_r() {
        let open = OpenLoop {
            rate: 100.0,
            duration: Duration::from_millis(100),
            arrivals: Arrivals::Constant,
            when_busy: WhenBusy::Queue,
            seed: 1,
            stages: Default::default(),
        };
        let start = Instant::now();
        let due = schedule(open, start);
        assert_eq!(due.len(), 10);
        for (i, d) in due.iter().enumerate() {
            let offset = d.duration_since(start).as_secs_f64();
            assert!(
                (offset - i as f64 / 100.0).abs() < 1e-6,
                "request {i} at {offset}"
            );
        }
    }

    /// Poisson arrivals on a ramp follow it too: far fewer requests in the ramp's first
    /// tenth than in its last (the rate there is 19 times higher), and about its area in all.
    #[test]
    fn poisson_arrivals_follow_a_ramp() {
        let open = OpenLoop {
            arrivals: Arrivals::Poisson,
            ..ramp("1s:10000")
        };
        let start = Instant::now();
        let due = schedule(open, start);
        let total = due.len() as f64;
        assert!(
            (4500.0..=5500.0).contains(&total),
            "{total} requests, expected about 5000"
        );
        let within = |from: f64, to: f64| {
            due.iter()
                .filter(|d| {
                    let t = d.duration_since(start).as_secs_f64();
                    (from..to).contains(&t)
                })
                .count()
        };
        let (first, last) = (within(0.0, 0.1), within(0.9, 1.0));
        // Expected 50 and 950.
        assert!(
            first < 150 && last > 750,
            "first tenth {first}, last tenth {last}"
        );
    }
}
