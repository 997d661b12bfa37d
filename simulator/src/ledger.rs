//! The ledger: every client's record added up into the run's numbers.
//!
//! Clients by outcome ([`Summary`]), the latency distribution ([`Latency`], an
//! HdrHistogram with 3 significant figures), and for load runs the throughput. Time is
//! judged with the one deadline rule, [`crate::outcome::in_time`], so the ledger and the
//! distribution cannot disagree.

use std::time::Duration;

use crate::client::ClientRecord;
use crate::outcome::{in_time, Outcome};
use crate::scenario::{Load, Scenario};
use crate::units::{micros, new_histogram};

/// Clients by outcome.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub clients: usize,
    pub served: usize,
    pub connect_timeout: usize,
    pub service_timeout: usize,
    pub refused: usize,
    pub reset: usize,
    pub rejected: usize,
    pub bad_response: usize,
    /// Wall time from the start to the last client's end, in milliseconds.
    pub elapsed_ms: u64,
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
        };
        *slot += 1;
    }
}

/// The latency distribution. In scenario runs a sample is each client's `waited_us`, the
/// wait its deadline applied to (connecting and queueing included); in load runs, each
/// request's time from sending to its complete response. Requests that ran out of time are
/// not left out: an answer that came late is recorded at its real time, one that never came
/// at the deadline itself, and both count in `over_deadline`.
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

/// Load runs: served requests per second over the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Throughput {
    pub requests: u64,
    pub failed: u64,
    pub seconds: f64,
    pub per_second: f64,
}

/// The run's numbers from its clients' records. `elapsed` is the wall time from the start
/// to the last client's end.
pub fn tally(
    scenario: &Scenario,
    clients: &[ClientRecord],
    elapsed: Duration,
) -> (Summary, Latency, Option<Throughput>) {
    let mut summary = Summary {
        clients: clients.len(),
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        ..Summary::default()
    };
    let timeout_us = micros(scenario.timeout);
    let mut histogram = new_histogram();
    let mut over_deadline = 0;
    let mut requests = 0;
    let mut failed = 0;
    for record in clients {
        summary.add(record.outcome);
        match scenario.load {
            Load::Requests(_) => {
                // The sample is the wait the deadline was applied to; a client still waiting
                // when its deadline passed is recorded at the deadline (all we know is that
                // it waited at least that long).
                if record.outcome == Outcome::Served || record.outcome.timed_out() {
                    let sample = record.waited_us.unwrap_or(timeout_us);
                    if !in_time(sample, timeout_us) {
                        over_deadline += 1;
                    }
                    let _ = histogram.record(sample.max(1));
                }
            }
            Load::Duration(_) => {
                // Responses that arrived (late ones included) are in `latencies`; requests
                // that were never answered are recorded at the deadline.
                let _ = histogram.add(&record.latencies);
                if record.censored > 0 {
                    // (Recording a count of 0 would still move the histogram's maximum.)
                    let _ = histogram.record_n(timeout_us.max(1), record.censored);
                }
                over_deadline += record.failures.iter().filter(|o| o.timed_out()).count() as u64;
                requests += record.served_requests;
                failed += record.failed_requests;
            }
        }
    }
    let latency = Latency {
        samples: histogram.len(),
        p50: histogram.value_at_quantile(0.5),
        p90: histogram.value_at_quantile(0.9),
        p99: histogram.value_at_quantile(0.99),
        p99_9: histogram.value_at_quantile(0.999),
        max: histogram.max(),
        over_deadline,
    };
    let throughput = matches!(scenario.load, Load::Duration(_)).then(|| Throughput {
        requests,
        failed,
        seconds: elapsed.as_secs_f64(),
        per_second: requests as f64 / elapsed.as_secs_f64().max(1e-9),
    });
    (summary, latency, throughput)
}
