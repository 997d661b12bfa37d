//! The reports as people and programs read them: text, CSV, and the comparison table.

use std::fmt::Write as _;
use std::time::Duration;

use crate::outcome::Outcome;
use crate::report::Report;
use crate::scenario::{Load, Scenario};
use crate::units::{human_us, micros};

impl Report {
    /// The latency cell: "over" when the percentile is the deadline itself.
    fn pct(&self, value: u64) -> String {
        if self.latency_us.over_deadline > 0 && value >= micros(self.scenario.timeout) {
            "> deadline".into()
        } else {
            human_us(value)
        }
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let s = &self.summary;
        let _ = writeln!(
            out,
            "{} clients → {}{}: {} with a {} deadline{}",
            s.clients,
            self.target,
            self.architecture
                .as_deref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default(),
            self.scenario.request.line(),
            humantime::format_duration(self.scenario.timeout),
            if self.scenario.hold.is_zero() {
                String::new()
            } else {
                format!(
                    ", holding {}",
                    humantime::format_duration(self.scenario.hold)
                )
            },
        );
        if self.clients.len() <= 32 && matches!(self.scenario.load, Load::Requests(_)) {
            let _ = writeln!(
                out,
                "\n  client   outcome           connect   first byte   complete   server thread"
            );
            for c in &self.clients {
                let _ = writeln!(
                    out,
                    "  {:<8} {:<17} {:>8} {:>12} {:>10}   {}",
                    format!("#{}", c.id),
                    c.outcome.name(),
                    c.connect_us.map(human_us).unwrap_or_else(|| "-".into()),
                    c.first_byte_us.map(human_us).unwrap_or_else(|| "-".into()),
                    c.complete_us.map(human_us).unwrap_or_else(|| "-".into()),
                    c.server_thread.as_deref().unwrap_or("-"),
                );
            }
        }
        let _ = writeln!(out, "\nserved within deadline: {}/{}", s.served, s.clients);
        let counts: Vec<String> = Outcome::ALL
            .iter()
            .filter(|o| s.count(**o) > 0)
            .map(|o| format!("{} {}", o.name(), s.count(*o)))
            .collect();
        let _ = writeln!(out, "outcomes: {}", counts.join(", "));
        let l = &self.latency_us;
        let _ = writeln!(
            out,
            "latency: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples, {} over the deadline)",
            self.pct(l.p50),
            self.pct(l.p90),
            self.pct(l.p99),
            self.pct(l.p99_9),
            self.pct(l.max),
            l.samples,
            l.over_deadline
        );
        if let Some(t) = &self.throughput {
            let _ = writeln!(
                out,
                "throughput: {:.0} requests/s ({} served, {} failed in {:.2}s)",
                t.per_second, t.requests, t.failed, t.seconds
            );
        }
        if let Some(p) = &self.prediction {
            let _ = writeln!(out, "rule: {}", p.rule);
        }
        let _ = writeln!(out, "{}", self.verdict());
        out
    }

    /// One CSV row per client, with a header line.
    pub fn to_csv(&self) -> String {
        let mut out = csv::Writer::from_writer(Vec::new());
        write_csv(&mut out, &self.clients, None);
        String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

/// The comparison of several reports as CSV: one row per client, with an `architecture`
/// column first.
pub fn compare_csv(reports: &[Report]) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    for (i, report) in reports.iter().enumerate() {
        let arch = report.architecture.as_deref().unwrap_or(&report.target);
        write_csv_rows(&mut out, &report.clients, Some(arch), i == 0);
    }
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn write_csv(
    out: &mut csv::Writer<Vec<u8>>,
    clients: &[crate::client::ClientRecord],
    arch: Option<&str>,
) {
    write_csv_rows(out, clients, arch, true);
}

/// Writes the clients' rows (and the header, if asked). The `csv` crate quotes fields with
/// commas, quotes or line breaks in them, such as error messages.
fn write_csv_rows(
    out: &mut csv::Writer<Vec<u8>>,
    clients: &[crate::client::ClientRecord],
    arch: Option<&str>,
    header: bool,
) {
    const HEADER: [&str; 11] = [
        "id",
        "outcome",
        "connect_us",
        "first_byte_us",
        "complete_us",
        "waited_us",
        "status",
        "server_thread",
        "served_requests",
        "failed_requests",
        "error",
    ];
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    if header {
        let mut row: Vec<&str> = arch.map(|_| "architecture").into_iter().collect();
        row.extend(HEADER);
        let _ = out.write_record(&row);
    }
    for c in clients {
        let mut row: Vec<String> = arch.map(str::to_owned).into_iter().collect();
        row.extend([
            c.id.to_string(),
            c.outcome.name().to_owned(),
            opt(c.connect_us),
            opt(c.first_byte_us),
            opt(c.complete_us),
            opt(c.waited_us),
            c.status.map(|s| s.to_string()).unwrap_or_default(),
            c.server_thread.clone().unwrap_or_default(),
            c.served_requests.to_string(),
            c.failed_requests.to_string(),
            c.error.clone().unwrap_or_default(),
        ]);
        let _ = out.write_record(&row);
    }
}

/// The comparison table.
pub fn compare_text(scenario: &Scenario, reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} clients, {}, deadline {}{}, all starting together\n",
        scenario.clients,
        scenario.request.line(),
        humantime::format_duration(scenario.timeout),
        if scenario.hold.is_zero() {
            String::new()
        } else {
            format!(", holding {}", humantime::format_duration(scenario.hold))
        }
    );
    let _ = writeln!(
        out,
        "{:<16} {:>7} {:>7} {:>7} {:>7} {:>6} {:>8} {:>5} {:>10} {:>10} {:>10} {:>10}   prediction",
        "architecture",
        "served",
        "conn_to",
        "svc_to",
        "refused",
        "reset",
        "rejected",
        "bad",
        "p50",
        "p90",
        "p99",
        "max",
    );
    for r in reports {
        let s = &r.summary;
        let pct = |v: u64| {
            if r.latency_us.over_deadline > 0 && v >= micros(scenario.timeout) {
                "> deadline".to_owned()
            } else {
                human_us(v)
            }
        };
        let prediction = match (&r.prediction, r.agrees) {
            (Some(p), Some(agrees)) => format!(
                "{} {}{}",
                p.served_text()
                    .unwrap_or_else(|| format!("{:.0}/s", p.per_second.unwrap_or(0.0))),
                if agrees { "agrees" } else { "DISAGREES" },
                if p.boundary { " (boundary)" } else { "" }
            ),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:>7} {:>7} {:>7} {:>7} {:>6} {:>8} {:>5} {:>10} {:>10} {:>10} {:>10}   {}",
            r.architecture.as_deref().unwrap_or(&r.target),
            format!("{}/{}", s.served, s.clients),
            s.connect_timeout,
            s.service_timeout,
            s.refused,
            s.reset,
            s.rejected,
            s.bad_response,
            pct(r.latency_us.p50),
            pct(r.latency_us.p90),
            pct(r.latency_us.p99),
            pct(r.latency_us.max),
            prediction,
        );
        if let Some(t) = &r.throughput {
            let _ = writeln!(out, "{:<16} {:.0} requests/s", "", t.per_second);
        }
    }
    let _ = writeln!(
        out,
        "\nserved: clients with complete 2xx answers before their deadline; conn_to: not connected by the deadline;\n\
         svc_to: connected but not answered in time; refused: connection refused; reset: closed or reset before an\n\
         answer; rejected: answered with an error status (503, ...); bad: not HTTP. p50 … max: the wait the deadline\n\
         applies to (\"> deadline\": a client that missed it); prediction: the served count queueing arithmetic gives\n\
         (`--format json` has its rule in words)."
    );
    let _ = writeln!(out, "\nsettings in force:");
    for r in reports {
        let _ = writeln!(
            out,
            "  {:<16} {}",
            r.architecture.as_deref().unwrap_or(&r.target),
            r.server_config
                .as_ref()
                .map_or_else(|| "not a servelab server: unknown".to_owned(), settings)
        );
    }
    out
}

/// A server's settings in a few words, from its `/stats`: the architecture's own flags,
/// then the shared timeouts and backlog.
pub fn settings(config: &server_core::stats::ConfigSnapshot) -> String {
    let ms = |ms: u64| humantime::format_duration(Duration::from_millis(ms)).to_string();
    let own: Vec<String> = config
        .architecture
        .iter()
        .map(|(key, value)| {
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            format!("{} {value}", key.replace('_', "-"))
        })
        .collect();
    let mut line = own.join(", ");
    if !line.is_empty() {
        line.push_str("; ");
    }
    let _ = write!(
        line,
        "keep-alive timeout {}, read timeout {}, backlog {}",
        if config.keep_alive_timeout == 0 {
            "0 (off)".to_owned()
        } else {
            ms(config.keep_alive_timeout)
        },
        ms(config.read_timeout),
        config.backlog
    );
    line
}
