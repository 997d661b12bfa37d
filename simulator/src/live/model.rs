//! What the live view shows, as plain data: the run's shape (clients, deadline, planned
//! length), and a history of what the engines' live counters said at each of the view's
//! ticks, with the server's `/stats` readings on the same clock.
//!
//! Nothing here draws or touches a terminal, so the drawing ([`super::draw`]) can be tested
//! on a model made by hand, and the model on counters filled in by hand.

use std::time::Duration;

use loadgen::outcome::Outcome;
use loadgen::scenario::{DeadlineClock, Scenario};
use loadgen::tally::live::{ClientState, Live, LiveLatency, LiveTotals};

use crate::watch::StatsSample;

/// At most this many ticks are kept; past it, every other one is dropped (the chart loses
/// resolution, not its beginning). At five ticks a second, a quarter of an hour.
const MAX_TICKS: usize = 4096;

/// Clients whose every state is kept at each tick, for one row each. Above it only the
/// counts per state are kept: no screen has that many rows.
pub(crate) const MAX_ROWS: usize = 512;

/// The fixed facts of the run the view shows.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    /// What runs, in a line: the server and the scenario.
    pub(crate) title: String,
    pub(crate) clients: usize,
    /// The deadline, and whether it counts from the common start (then it is one column).
    pub(crate) timeout: Duration,
    pub(crate) from_start: bool,
    /// How long the run is planned to last.
    pub(crate) planned: Duration,
    /// A load run (a duration or a rate): requests per second and p99 are worth drawing.
    pub(crate) load: bool,
    /// The prediction, in words ("2 served", "850 req/s"), shown beside the measurement;
    /// `None` when the model does not know the server.
    pub(crate) predicted: Option<String>,
    /// How the earlier runs of the same command ended, oldest first, a line each (a
    /// comparison's architectures already measured, a lab's earlier steps).
    pub(crate) earlier: Vec<String>,
}

impl Shape {
    /// The shape of `scenario`'s run against `server`.
    pub(crate) fn of(server: &str, scenario: &Scenario) -> Shape {
        Shape {
            title: format!("{server} · {} clients", scenario.clients),
            clients: scenario.clients,
            timeout: scenario.timeout,
            from_start: scenario.deadline == DeadlineClock::FromStart,
            planned: scenario.planned_length(),
            load: scenario.load.is_load(),
            predicted: None,
            earlier: Vec::new(),
        }
    }
}

/// The states a client can be in, grouped as the view colours them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    NotStarted,
    Connecting,
    Waiting,
    Answering,
    Holding,
    Idle,
    Served,
    TimedOut,
    Other,
}

impl Kind {
    /// Every kind, bottom of the stacked chart first.
    pub(crate) const ALL: [Kind; 9] = [
        Kind::Served,
        Kind::Holding,
        Kind::Answering,
        Kind::Waiting,
        Kind::Connecting,
        Kind::Idle,
        Kind::TimedOut,
        Kind::Other,
        Kind::NotStarted,
    ];

    pub(crate) fn of(state: ClientState) -> Kind {
        match state {
            ClientState::NotStarted => Kind::NotStarted,
            ClientState::Connecting => Kind::Connecting,
            ClientState::Waiting => Kind::Waiting,
            ClientState::Answering => Kind::Answering,
            ClientState::Holding => Kind::Holding,
            ClientState::Idle => Kind::Idle,
            ClientState::Ended(Outcome::Served) => Kind::Served,
            ClientState::Ended(o) if o.timed_out() => Kind::TimedOut,
            ClientState::Ended(_) => Kind::Other,
        }
    }

    /// The kind in the lecture's words.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::NotStarted => "not started",
            Kind::Connecting => "waiting to connect",
            Kind::Waiting => "waiting for service",
            Kind::Answering => "being answered",
            Kind::Holding => "holding",
            Kind::Idle => "idle",
            Kind::Served => "served",
            Kind::TimedOut => "timed out",
            Kind::Other => "other outcome",
        }
    }

    fn index(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// What the view saw at one tick.
#[derive(Debug, Clone)]
pub(crate) struct Tick {
    /// Since the clients started.
    pub(crate) at: Duration,
    /// Every client's state, client 1 first, when there are at most [`MAX_ROWS`].
    pub(crate) states: Vec<ClientState>,
    /// How many clients were of each [`Kind`], in the order of [`Kind::ALL`].
    pub(crate) counts: [usize; 9],
    /// Requests per second since the tick before, and the p99 of their answers (µs).
    pub(crate) rate: f64,
    pub(crate) p99_us: Option<u64>,
}

/// The history the view draws.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub(crate) shape: Shape,
    pub(crate) ticks: Vec<Tick>,
    /// The live counters at the last tick.
    pub(crate) totals: LiveTotals,
    /// The server's `/stats` readings so far (none for a server that is not servelab's).
    pub(crate) server: Vec<StatsSample>,
    /// The display is paused (space): the run goes on, the screen stands still.
    pub(crate) paused: bool,
    /// `q` was pressed: the run is ending.
    pub(crate) stopping: bool,
    /// The answers by latency at the last tick, to take the next tick's p99 from.
    latency: LiveLatency,
}

impl Model {
    pub(crate) fn new(shape: Shape) -> Model {
        Model {
            shape,
            ticks: Vec::new(),
            totals: LiveTotals::default(),
            server: Vec::new(),
            paused: false,
            stopping: false,
            latency: LiveLatency::default(),
        }
    }

    /// Reads `live` at `at` since the start: one more tick.
    pub(crate) fn sample(&mut self, live: &Live, at: Duration) {
        let clients = live.clients();
        let mut counts = [0; 9];
        let mut states = Vec::new();
        for id in 1..=clients {
            let state = live.state(id);
            counts[Kind::of(state).index()] += 1;
            if clients <= MAX_ROWS {
                states.push(state);
            }
        }
        let totals = live.totals();
        let latency = live.latency();
        let since = at.saturating_sub(self.ticks.last().map_or(Duration::ZERO, |t| t.at));
        let rate =
            totals.sent.saturating_sub(self.totals.sent) as f64 / since.as_secs_f64().max(1e-3);
        let p99_us = latency.since(&self.latency).quantile(0.99);
        self.totals = totals;
        self.latency = latency;
        self.push(Tick {
            at,
            states,
            counts,
            rate,
            p99_us,
        });
    }

    /// Adds `tick`, halving the history when it is full.
    pub(crate) fn push(&mut self, tick: Tick) {
        if self.ticks.len() >= MAX_TICKS {
            let mut keep = 0;
            self.ticks.retain(|_| {
                keep += 1;
                keep % 2 == 1
            });
        }
        self.ticks.push(tick);
    }

    /// The time the view has reached.
    pub(crate) fn now(&self) -> Duration {
        self.ticks.last().map_or(Duration::ZERO, |t| t.at)
    }

    /// The span of the time axis: the planned length, or longer if the run overran it.
    pub(crate) fn span(&self) -> Duration {
        self.shape
            .planned
            .max(self.now())
            .max(Duration::from_millis(100))
    }

    /// The counts of the last tick by kind.
    pub(crate) fn counts(&self) -> [usize; 9] {
        self.ticks.last().map_or([0; 9], |t| t.counts)
    }

    /// How many clients are of `kind` at the last tick.
    pub(crate) fn count(&self, kind: Kind) -> usize {
        self.counts()[kind.index()]
    }

    /// The tick in force at `at`: the last one at or before it.
    pub(crate) fn tick_at(&self, at: Duration) -> Option<&Tick> {
        let after = self.ticks.partition_point(|t| t.at <= at);
        after.checked_sub(1).map(|i| &self.ticks[i])
    }

    /// The last reading of each of the server's figures, with its history.
    pub(crate) fn server_series(&self) -> Vec<(String, Vec<u64>)> {
        let Some(last) = self.server.last() else {
            return Vec::new();
        };
        last.values
            .iter()
            .map(|(name, _)| {
                let history = self
                    .server
                    .iter()
                    .map(|s| {
                        s.values
                            .iter()
                            .find(|(n, _)| n == name)
                            .map_or(0, |(_, v)| *v)
                    })
                    .collect();
                (name.clone(), history)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(clients: usize) -> Shape {
        Shape {
            title: "single · 3 clients".into(),
            clients,
            timeout: Duration::from_millis(1500),
            from_start: true,
            planned: Duration::from_millis(2000),
            load: false,
            predicted: None,
            earlier: Vec::new(),
        }
    }

    #[test]
    fn a_tick_counts_every_client_by_its_kind() {
        let live = Live::with_clients(1, 3);
        let mut model = Model::new(shape(3));
        model.sample(&live, Duration::from_millis(200));
        assert_eq!(model.count(Kind::NotStarted), 3);
        model.sample(&live, Duration::from_millis(400));
        assert_eq!(model.ticks.len(), 2);
        assert_eq!(model.ticks[1].states, vec![ClientState::NotStarted; 3]);
        assert_eq!(
            model.tick_at(Duration::from_millis(300)).map(|t| t.at),
            Some(Duration::from_millis(200))
        );
        assert!(model.tick_at(Duration::from_millis(100)).is_none());
    }

    #[test]
    fn a_full_history_keeps_its_beginning_at_half_the_resolution() {
        let mut model = Model::new(shape(0));
        let live = Live::with_clients(1, 0);
        for i in 0..=MAX_TICKS as u64 {
            model.sample(&live, Duration::from_millis(i * 200));
        }
        assert!(model.ticks.len() <= MAX_TICKS / 2 + 1);
        assert_eq!(model.ticks[0].at, Duration::ZERO);
        assert_eq!(model.now(), Duration::from_millis(MAX_TICKS as u64 * 200));
    }
}
