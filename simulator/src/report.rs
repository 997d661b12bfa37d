//! One run's results: what was measured, what was predicted, and whether they agree.

use std::fmt::Write as _;
use std::time::Duration;

use crate::client::ClientRecord;
use crate::ledger::{self, Latency, Summary, Throughput};
use crate::predict::{predict, Prediction};
use crate::scenario::Scenario;
use crate::target::ServerInfo;

/// Everything measured in one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub target: String,
    /// The target's architecture, when it is a servelab server.
    pub architecture: Option<String>,
    /// The server's settings as its `/stats` reported them before the run, when it is a
    /// servelab server.
    pub server_config: Option<server_core::stats::ConfigSnapshot>,
    pub scenario: Scenario,
    pub summary: Summary,
    pub latency_us: Latency,
    /// Load runs only.
    pub throughput: Option<Throughput>,
    pub prediction: Option<Prediction>,
    /// Whether the measurement agrees with the prediction (absent without a prediction).
    pub agrees: Option<bool>,
    pub clients: Vec<ClientRecord>,
}

impl Report {
    /// Adds up the clients' records and sets the prediction beside them.
    pub fn new(
        target: &str,
        info: Option<&ServerInfo>,
        scenario: &Scenario,
        clients: Vec<ClientRecord>,
        elapsed: Duration,
    ) -> Report {
        let (summary, latency, throughput) = ledger::tally(scenario, &clients, elapsed);
        let prediction = info.and_then(|info| predict(info, scenario));
        let agrees = prediction
            .as_ref()
            .and_then(|p| p.agrees(summary.served, throughput.as_ref().map(|t| t.per_second)));
        Report {
            target: target.to_owned(),
            architecture: info.map(|i| i.architecture.clone()),
            server_config: info.map(|i| i.snapshot.config.clone()),
            scenario: scenario.clone(),
            summary,
            latency_us: latency,
            throughput,
            prediction,
            agrees,
            clients,
        }
    }

    /// One line saying how the prediction fared.
    pub fn verdict(&self) -> String {
        match (&self.prediction, self.agrees) {
            (Some(p), Some(agrees)) => {
                let predicted = match (p.served_text(), p.per_second) {
                    (Some(n), _) => format!("{n} served"),
                    (None, Some(r)) => format!("{r:.0} req/s"),
                    _ => String::new(),
                };
                let mut line = format!(
                    "predicted {predicted}: {}{}",
                    if agrees { "agrees" } else { "DISAGREES" },
                    if p.boundary { " (a predicted answer is on the deadline boundary: either side is possible)" } else { "" }
                );
                for caveat in &p.caveats {
                    let _ = write!(line, "; note: {caveat}");
                }
                line
            }
            (Some(p), None) => format!("no prediction: {}", p.caveats.join("; ")),
            _ => "no prediction (not a servelab server, or a load run of a route without a known service time)".into(),
        }
    }
}
