//! The ledger: every client's record added up into the run's numbers.
//!
//! Clients by outcome ([`Summary`]), the latency distribution ([`Latency`], an
//! HdrHistogram with 3 significant figures), and for load runs the throughput and the
//! requests by what happened to them ([`crate::tally::Requests`]). Time is
//! judged with the one deadline rule, [`crate::outcome::in_time`], so the ledger and the
//! distribution cannot disagree.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::outcome::{in_time, Outcome};
use crate::record::{ClientRecord, Finished};
use crate::scenario::{Load, Scenario};
use crate::tally::Requests;
use crate::units::{micros, new_histogram};

/// Clients by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub clients: usize,
    pub served: usize,
    pub connect_timeout: usize,
    pub service_timeout: usize,
    pub refused: usize,
    pub reset: usize,
    pub rejected: usize,
    pub bad_response: usize,
    /// Load runs: clients that got no response at all before the run ended.
    pub starved: usize,
    /// From the moment the first client really started to the moment the last one really
    /// finished, in milliseconds.
    pub elapsed_ms: u64,
    /// How long after the common start the last client took its first step, in
    /// milliseconds: how evenly the engine started its clients.
    pub start_spread_ms: u64,
}

impl Summary {
    pub fn count(&self, outcome: Outcome) -> usize {
        match outcome {
            Outcome::Served => self.served,
            Outcome::ConnectTimeout => self.connect_timeout,
            Outcome::ServiceTimeout => self.service_timeout,
            Outcome::Refused => self.refused,
            Outcome::Reset => self.reset,
            Outcome::Rejected => self.rejected,
            Outcome::BadResponse => self.bad_response,
            Outcome::Starved => self.starved,
        }
    }

    pub(crate) fn add(&mut self, outcome: Outcome) {
        let slot = match outcome {
            Outcome::Served => &mut self.served,
            Outcome::ConnectTimeout => &mut self.connect_timeout,
            Outcome::ServiceTimeout => &mut self.service_timeout,
            Outcome::Refused => &mut self.refused,
            Outcome::Reset => &mut self.reset,
            Outcome::Rejected => &mut self.rejected,
            Outcome::BadResponse => &mut self.bad_response,
            Outcome::Starved => &mut self.starved,
        };
        *slot += 1;
    }
}

/// A latency distribution, in microseconds. In scenario runs a sample is each client's
/// `waited_us`, the wait its deadline applied to (connecting and queueing included); in
/// load runs, each request's time to its complete response, from the moment it was due
/// (corrected) or from its actual send (uncorrected; see [`crate::tally`]). Requests that
/// ran out of time are not left out: an answer that came late is recorded at its real
/// time, one that never came at the deadline itself, and both count in `over_deadline`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
    pub over_deadline: u64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>, over_deadline: u64) -> Latency {
        if histogram.is_empty() {
            return Latency {
                over_deadline,
                ..Latency::default()
            };
        }
        Latency {
            samples: histogram.len(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p99_9: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            over_deadline,
        }
    }
}

/// Load runs: requests per second over the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Throughput {
    /// Requests served (2xx, in time).
    pub requests: u64,
    /// Requests that failed (late ones included).
    pub failed: u64,
    /// The run's real length: first client's start to last client's end.
    pub seconds: f64,
    /// Served requests per second (goodput).
    pub per_second: f64,
    /// Requests sent per second.
    pub sent_per_second: f64,
    /// Open loop: the rate asked for.
    pub offered_per_second: Option<f64>,
}

/// The run's numbers from its clients' records and the engine's tally.
pub fn tally(scenario: &Scenario, run: &Finished) -> (Summary, Latency, Option<Throughput>) {
    let summary = summarize(&run.records, run.elapsed);
    if !scenario.load.is_load() {
        return (summary, wait_latency(scenario, &run.records), None);
    }
    let requests = &run.tally.requests;
    let latency = Latency::of(&run.tally.corrected, requests.over_deadline());
    let throughput = throughput(scenario, requests, run.elapsed);
    (summary, latency, Some(throughput))
}

/// Clients by outcome, with the run's length and how evenly its clients started.
pub fn summarize(clients: &[ClientRecord], elapsed: Duration) -> Summary {
    let mut summary = Summary {
        clients: clients.len(),
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        start_spread_ms: clients
            .iter()
            .filter_map(|c| c.started_us)
            .max()
            .unwrap_or(0)
            / 1000,
        ..Summary::default()
    };
    for record in clients {
        summary.add(record.outcome);
    }
    summary
}

/// Scenario runs: the distribution of the clients' waits. The sample is the wait the
/// deadline was applied to; a client still waiting when its deadline passed is recorded at
/// the deadline (all we know is that it waited at least that long).
pub fn wait_latency(scenario: &Scenario, clients: &[ClientRecord]) -> Latency {
    let (histogram, over_deadline) = wait_histogram(scenario, clients);
    Latency::of(&histogram, over_deadline)
}

/// Scenario runs: the histogram of the clients' waits (see [`wait_latency`]), and how many
/// were over the deadline.
pub fn wait_histogram(scenario: &Scenario, clients: &[ClientRecord]) -> (Histogram<u64>, u64) {
    let timeout_us = micros(scenario.timeout);
    let mut histogram = new_histogram();
    let mut over_deadline = 0;
    for record in clients {
        if record.outcome == Outcome::Served || record.outcome.timed_out() {
            let sample = record.waited_us.unwrap_or(timeout_us);
            if !in_time(sample, timeout_us) {
                over_deadline += 1;
            }
            histogram.saturating_record(sample.max(1));
        }
    }
    (histogram, over_deadline)
}

/// Load runs: `requests` over a run of `elapsed`.
pub fn throughput(scenario: &Scenario, requests: &Requests, elapsed: Duration) -> Throughput {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    Throughput {
        requests: requests.served,
        failed: requests.errors(),
        seconds,
        per_second: requests.served as f64 / seconds,
        sent_per_second: requests.sent as f64 / seconds,
        offered_per_second: match scenario.load {
            Load::Rate(open) => Some(open.rate),
            _ => None,
        },
    }
}
