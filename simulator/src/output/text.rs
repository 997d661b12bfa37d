//! The reports as people read them on a terminal: one run with its ledger and timeline,
//! the comparison table, a sweep's steps, a lab's checks.

use std::fmt::Write as _;
use std::time::Duration;

use loadgen::attack::PopulationLedger;
use loadgen::outcome::Outcome;
use loadgen::record::Phase;
use loadgen::scenario::Load;
use loadgen::units::{human_us, micros};
use loadgen::Scenario;

use crate::labs::{Check, Lab, LabEnv};
use crate::measure::sweep::SweepReport;
use crate::report::Report;

/// Scenario runs of up to this many clients get a timeline in their text report.
pub const TIMELINE_CLIENTS: usize = 40;

impl Report {
    /// The latency cell: "over" when the percentile is the deadline itself.
    fn pct(&self, value: u64) -> String {
        if self.latency_us.over_deadline > 0 && value >= micros(self.scenario.timeout) {
            "> deadline".into()
        } else {
            human_us(value)
        }
    }

    /// The human-readable report: what ran, who was served (per client for a small
    /// scenario run), the requests and their latency (load runs), how the engine ran, the
    /// prediction's rule, and the verdict. Each part is written by one of the methods below,
    /// in the order they are printed.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.heading_text(&mut out);
        self.coverage_text(&mut out);
        let scenario_run = matches!(self.scenario.load, Load::Requests(_));
        if self.clients.len() <= 32 && scenario_run {
            self.clients_text(&mut out);
        }
        if self.clients.len() <= TIMELINE_CLIENTS && scenario_run {
            out.push_str(&self.timeline_text());
        }
        self.outcomes_text(&mut out);
        self.requests_text(&mut out);
        self.latency_text(&mut out);
        self.engine_text(&mut out);
        if let Some(p) = &self.prediction {
            let _ = writeln!(out, "rule: {}", p.rule);
        }
        if !self.background.is_empty() {
            let _ = writeln!(
                out,
                "the clients above were the foreground; in the background, hostile clients:"
            );
            out.push_str(&background_text(&self.background));
        }
        self.gates_text(&mut out);
        let _ = writeln!(out, "{}", self.verdict());
        out
    }

    /// The `--slo` gates, each as measured against required (nothing without `--slo`).
    fn gates_text(&self, out: &mut String) {
        if self.gates.is_empty() {
            return;
        }
        let met = self.gates.iter().filter(|g| g.met).count();
        let _ = writeln!(out, "gates (--slo): {met} of {} met", self.gates.len());
        let width = self.gates.iter().map(|g| g.gate.len()).max().unwrap_or(0);
        for g in &self.gates {
            let _ = writeln!(
                out,
                "  {:<6}  {:<width$}  measured {}, required {}",
                if g.met { "met" } else { "MISSED" },
                g.gate,
                g.measured,
                g.required,
            );
        }
    }

    /// The first line: how many clients ran against which target, doing what.
    fn heading_text(&self, out: &mut String) {
        let arch = self
            .architecture
            .as_deref()
            .map(|a| format!(" ({a})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{} {} → {}{arch}: {}",
            self.summary.clients,
            who(&self.scenario),
            self.target,
            what(&self.scenario)
        );
    }

    /// Which part of a sharded run this report covers: one shard's clients, or the shards a
    /// merge found and those it did not (a merged report never hides a missing shard).
    fn coverage_text(&self, out: &mut String) {
        if let Some(shard) = self.scenario.shard {
            let _ = writeln!(
                out,
                "shard {shard}: clients {}, {}, ... of the run's {} (this shard's {})",
                shard.index,
                shard.index + shard.count,
                self.scenario.clients,
                self.summary.clients
            );
        }
        if let Some(c) = &self.shards {
            let merged: Vec<String> = c.merged.iter().map(|i| i.to_string()).collect();
            let _ = writeln!(
                out,
                "merged {} of {} shards ({}): {} of the run's {} clients",
                c.merged.len(),
                c.count,
                merged.join(", "),
                c.covered,
                c.clients
            );
            for m in &c.missing {
                let _ = writeln!(
                    out,
                    "MISSING shard {}/{}: {} (its clients are not in this report)",
                    m.index, c.count, m.reason
                );
            }
        }
    }

    /// A table of the clients of a small scenario run: each one's outcome, when it
    /// connected, got its first byte and its answer, and the server thread that answered.
    fn clients_text(&self, out: &mut String) {
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

    /// The ledger: clients served within their deadline, and the count of every outcome
    /// that happened.
    fn outcomes_text(&self, out: &mut String) {
        let s = &self.summary;
        let _ = writeln!(out, "\nserved within deadline: {}/{}", s.served, s.clients);
        let counts: Vec<String> = Outcome::ALL
            .iter()
            .filter(|o| s.count(**o) > 0)
            .map(|o| format!("{} {}", o.name(), s.count(*o)))
            .collect();
        let _ = writeln!(out, "outcomes: {}", counts.join(", "));
    }

    /// Load runs: the requests by what happened to them, rare outcomes only when they
    /// happened.
    fn requests_text(&self, out: &mut String) {
        let Some(r) = &self.requests else {
            return;
        };
        let mut text = format!(
            "requests: {} sent, {} answered ({} served, {} late, {} rejected), {} timed out",
            r.sent, r.completed, r.served, r.late, r.rejected, r.timed_out
        );
        for (count, what) in [
            (r.connect_timeout, "not connected in time"),
            (r.refused, "refused"),
            (r.reset, "reset"),
            (r.bad_response, "not HTTP"),
            (r.dropped, "dropped (no free connection)"),
            (r.queued, "waited for a free connection"),
        ] {
            if count > 0 {
                let _ = write!(text, ", {count} {what}");
            }
        }
        let _ = writeln!(
            out,
            "{text}, {} unfinished when the run ended",
            r.unfinished
        );
    }

    /// The latency percentiles. An open loop has two (corrected, from when each request
    /// was due; uncorrected, from its actual send) and its own scheduling delay; every
    /// other run has one.
    fn latency_text(&self, out: &mut String) {
        if !matches!(self.scenario.load, Load::Rate(_)) {
            let _ = writeln!(out, "{}", self.latency_line("latency: ", &self.latency_us));
            return;
        }
        let _ = writeln!(
            out,
            "{}",
            self.latency_line(
                "latency, corrected (from when each was due):  ",
                &self.latency_us
            )
        );
        if let Some(l) = &self.latency_uncorrected_us {
            let _ = writeln!(
                out,
                "{}",
                self.latency_line("latency, uncorrected (from its actual send): ", l)
            );
        }
        if let Some(lag) = &self.schedule_lag_us {
            let _ = writeln!(
                out,
                "schedule lag (sent after it was due, with a connection free): p50 {}  p99 {}  max {}",
                human_us(lag.p50),
                human_us(lag.p99),
                human_us(lag.max)
            );
        }
    }

    /// One line of latency percentiles, after `label`.
    fn latency_line(&self, label: &str, l: &loadgen::ledger::Latency) -> String {
        format!(
            "{label}p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples, {} over the deadline)",
            self.pct(l.p50),
            self.pct(l.p90),
            self.pct(l.p99),
            self.pct(l.p99_9),
            self.pct(l.max),
            l.samples,
            l.over_deadline
        )
    }

    /// The throughput (load runs), then the engine that ran the clients and how together
    /// they started.
    fn engine_text(&self, out: &mut String) {
        if let Some(t) = &self.throughput {
            let _ = writeln!(
                out,
                "throughput: {:.0} served/s, {:.0} sent/s{} ({} served, {} failed in {:.2}s)",
                t.per_second,
                t.sent_per_second,
                t.offered_per_second
                    .map(|r| format!(", {r} offered/s"))
                    .unwrap_or_default(),
                t.requests,
                t.failed,
                t.seconds
            );
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "engine: {}, {} thread{}; the last client started {} after the common start; {} from the first start to the last end",
            flag_name(self.scenario.engine),
            self.engine_threads,
            if self.engine_threads == 1 { "" } else { "s" },
            human_us(s.start_spread_ms * 1000),
            human_us(s.elapsed_ms * 1000),
        );
    }

    /// A compact timeline, one line per client: a bar scaled so that the deadline is at
    /// the same column on every line, so the queue can be seen forming in the terminal.
    fn timeline_text(&self) -> String {
        const WIDTH: u64 = 48;
        let timeout = micros(self.scenario.timeout);
        let last = self
            .clients
            .iter()
            .filter_map(|c| c.ended_us)
            .max()
            .unwrap_or(0);
        let span = timeout.max(last).max(1);
        let column = |us: u64| (us.min(span) * WIDTH / span) as usize;
        let mut out = format!(
            "\n  timeline: one column = {}; . waiting to connect, - waiting for service, # being answered, = holding; | the deadline\n",
            human_us(span.div_ceil(WIDTH))
        );
        for c in &self.clients {
            let mut bar = vec![' '; WIDTH as usize + 1];
            // Each phase takes the columns its time covers, after the phase before it; an
            // answer gets at least one column, so that one that took no time still shows.
            let mut free = 0;
            for (phase, from, to) in c.phases(span) {
                let mark = match phase {
                    Phase::Connecting => '.',
                    Phase::Waiting => '-',
                    Phase::Answering => '#',
                    Phase::Holding => '=',
                };
                let a = column(from).max(free);
                let b = match phase {
                    Phase::Answering => column(to).max(a + 1),
                    _ => column(to),
                }
                .min(bar.len());
                if b <= a {
                    continue;
                }
                for cell in bar.iter_mut().take(b).skip(a) {
                    *cell = mark;
                }
                free = free.max(b);
            }
            let deadline = column(timeout);
            if bar[deadline] == ' ' {
                bar[deadline] = '|';
            }
            let _ = writeln!(
                out,
                "  {:<6} {} {}",
                format!("#{}", c.id),
                bar.iter().collect::<String>(),
                c.outcome.name()
            );
        }
        out
    }
}

/// The comparison table: the scenario, one row per architecture (its ledger, latency and
/// prediction, then its throughput and background lines), a legend of the columns, and
/// each server's settings in force.
pub fn compare_text(scenario: &Scenario, reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}, {}{}\n",
        scenario.clients,
        who(scenario),
        what(scenario),
        if scenario.load.is_load() {
            ""
        } else {
            ", all starting together"
        }
    );
    let _ = writeln!(
        out,
        "{:<19} {:>7} {:>7} {:>7} {:>7} {:>6} {:>8} {:>5} {:>10} {:>10} {:>10} {:>10}   prediction",
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
        compare_row(&mut out, scenario, r);
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
            "  {:<19} {}",
            r.architecture.as_deref().unwrap_or(&r.target),
            r.server_config
                .as_ref()
                .map_or_else(|| "not a servelab server: unknown".to_owned(), settings)
        );
    }
    out
}

/// One architecture's row of the comparison table, then its throughput (load runs) and
/// its background populations' ledgers, each on a line of their own.
fn compare_row(out: &mut String, scenario: &Scenario, r: &Report) {
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
        "{:<19} {:>7} {:>7} {:>7} {:>7} {:>6} {:>8} {:>5} {:>10} {:>10} {:>10} {:>10}   {}",
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
        let _ = writeln!(out, "{:<19} {:.0} requests/s", "", t.per_second);
    }
    out.push_str(&background_text(&r.background));
}

/// A server's settings in a few words, from its `/stats`: the architecture's own flags,
/// then the shared timeouts and backlog.
pub fn settings(config: &contract::stats::ConfigSnapshot) -> String {
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

/// A value's name as its flag spells it (`poisson`, `when-busy drop`, ...).
pub(crate) fn flag_name(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// Who the scenario's clients are: "clients", or the "connections" of an open loop.
fn who(scenario: &Scenario) -> &'static str {
    match scenario.load {
        Load::Rate(_) => "connections",
        _ => "clients",
    }
}

/// What the scenario's clients do, in a phrase: "GET / with a 1s deadline, holding 500ms",
/// "GET / back to back for 2s (closed loop), a 1s deadline per request", ...
fn what(scenario: &Scenario) -> String {
    let plain = what_on_loopback(scenario);
    if scenario.link.is_active() {
        format!("{plain}; the clients are {}", scenario.link.describe())
    } else {
        plain
    }
}

/// [`what`] but for the clients' distance.
fn what_on_loopback(scenario: &Scenario) -> String {
    let request = scenario.request.line();
    let deadline = humantime::format_duration(scenario.timeout);
    match scenario.load {
        Load::Requests(k) => format!(
            "{request}{} with a {deadline} deadline{}",
            if k > 1 {
                format!(" × {k}")
            } else {
                String::new()
            },
            if scenario.hold.is_zero() {
                String::new()
            } else {
                format!(", holding {}", humantime::format_duration(scenario.hold))
            },
        ),
        Load::Duration(d) if !scenario.clients_ramp.is_empty() => format!(
            "{request} back to back for {} (closed loop) by clients on a ramp through {} (clients at each stage's end, from 0), a {deadline} deadline per request",
            humantime::format_duration(d),
            scenario
                .clients_ramp
                .as_slice()
                .iter()
                .map(|s| format!("{}:{}", humantime::format_duration(s.duration), s.rate))
                .collect::<Vec<_>>()
                .join(","),
        ),
        Load::Duration(d) => format!(
            "{request} back to back for {} (closed loop), a {deadline} deadline per request",
            humantime::format_duration(d),
        ),
        Load::Rate(open) if !open.stages.is_empty() => format!(
            "{request} on a ramp through {} (requests/s at each stage's end, from 0; {:.0}/s on average; {} arrivals, {} when busy) for {} (open loop), a {deadline} deadline per request",
            open.stages
                .as_slice()
                .iter()
                .map(|s| format!("{}:{}", humantime::format_duration(s.duration), s.rate))
                .collect::<Vec<_>>()
                .join(","),
            open.rate,
            flag_name(open.arrivals),
            flag_name(open.when_busy),
            humantime::format_duration(open.duration),
        ),
        Load::Rate(open) => format!(
            "{request} at {} requests/s ({} arrivals, {} when busy) for {} (open loop), a {deadline} deadline per request",
            open.rate,
            flag_name(open.arrivals),
            flag_name(open.when_busy),
            humantime::format_duration(open.duration),
        ),
    }
}

/// A sweep as a table for people.
pub fn sweep_text(report: &SweepReport) -> String {
    let mut out = String::new();
    let s = &report.spec.scenario;
    let (arrivals, when_busy) = match s.load {
        Load::Rate(open) => (open.arrivals, open.when_busy),
        _ => Default::default(),
    };
    let _ = writeln!(
        out,
        "sweep of {}{}: {} over {} connections, {} arrivals, {} when busy, deadline {}, {} per step; goal: {:.1}% in time\n",
        report.target,
        report.architecture
            .as_deref()
            .map(|a| format!(" ({a})"))
            .unwrap_or_default(),
        s.request.line(),
        s.clients,
        flag_name(arrivals),
        flag_name(when_busy),
        humantime::format_duration(s.timeout),
        humantime::format_duration(report.spec.step),
        report.spec.goal * 100.0
    );
    if let Some(ramp) = report.spec.ramp {
        let _ = writeln!(
            out,
            "one run on a ramp over {} instead of steps: each row is one second of it, at the ramp's rate in its middle (failures counted as timed out)\n",
            humantime::format_duration(ramp)
        );
    }
    let _ = writeln!(
        out,
        "{:>11} {:>9} {:>11} {:>8} {:>10} {:>10} {:>8} {:>9}",
        "offered/s", "sent/s", "goodput/s", "in time", "p50", "p99", "dropped", "timed out"
    );
    for step in &report.steps {
        let _ = writeln!(
            out,
            "{:>11.0} {:>9.0} {:>11.0} {:>7.1}% {:>10} {:>10} {:>8} {:>9}{}",
            step.offered_per_second,
            step.sent_per_second,
            step.goodput_per_second,
            step.in_time * 100.0,
            human_us(step.p50_us),
            human_us(step.p99_us),
            step.dropped,
            step.timed_out,
            if step.meets_goal { "" } else { "   ✗" }
        );
    }
    sweep_knee_text(report, &mut out);
    out
}

/// The end of a sweep's text: the measured knee, and the predicted one with its rule.
fn sweep_knee_text(report: &SweepReport, out: &mut String) {
    let _ = writeln!(
        out,
        "\nknee: {}",
        match report.knee_per_second {
            Some(k) => format!(
                "{k:.0} requests/s (the highest rate with every rate up to it meeting the goal)"
            ),
            None => "none: even the lowest rate missed the goal".into(),
        }
    );
    match (&report.predicted_per_second, &report.rule) {
        (None, Some(rule)) => {
            let _ = writeln!(out, "predicted: no knee: no rate can meet the goal. {rule}");
        }
        (Some(p), Some(rule)) => {
            let _ = writeln!(
                out,
                "predicted: {p:.0} requests/s{}. {rule}",
                report
                    .knee_per_second
                    .map(|k| format!(" (measured knee ÷ predicted = {:.2})", k / p))
                    .unwrap_or_default()
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "predicted: nothing (not a servelab server, or a route without a known service time)"
            );
        }
    }
}

/// The printed result of a lab.
pub fn lab_text(lab: &Lab, env: &LabEnv, checks: &[Check]) -> String {
    let mut out = format!(
        "lab {}: {} (scale {}: one lecture second = {})\nsheet: {}\n\n",
        lab.id,
        lab.title,
        env.scale,
        humantime::format_duration(Duration::from_millis((1000.0 * env.scale).round() as u64)),
        lab.sheet
    );
    for check in checks {
        let _ = writeln!(
            out,
            "{} {}\n    measured: {}\n    expected: {}",
            if check.agrees { "ok  " } else { "FAIL" },
            check.what,
            check.measured,
            check.expected
        );
    }
    let failed = checks.iter().filter(|c| !c.agrees).count();
    let _ = writeln!(
        out,
        "\n{}",
        if failed == 0 {
            format!("all {} checks agree with the expected result", checks.len())
        } else {
            format!(
                "{failed} of {} checks DISAGREE with the expected result",
                checks.len()
            )
        }
    );
    out
}

/// The background populations' ledgers, one line each.
fn background_text(ledgers: &[PopulationLedger]) -> String {
    let mut text = String::new();
    for l in ledgers {
        let statuses = l
            .statuses
            .iter()
            .map(|(code, n)| format!("{n}×{code}"))
            .collect::<Vec<_>>()
            .join(", ");
        let held = match (l.held_ms_p50, l.held_ms_max) {
            (Some(p50), Some(max)) => format!(", held {p50} ms (median) to {max} ms"),
            _ => String::new(),
        };
        let reset = if l.reset > 0 {
            format!(", {} of them reset", l.reset)
        } else {
            String::new()
        };
        let failed = if l.failed_connects > 0 {
            format!(", {} connects failed", l.failed_connects)
        } else {
            String::new()
        };
        let statuses = if statuses.is_empty() {
            statuses
        } else {
            format!(" ({statuses})")
        };
        let _ = writeln!(
            text,
            "  background {}: {} connected, {} cut off by the server{statuses}{reset}{held}, {} still held at the end{failed}",
            l.population, l.connected, l.cut_off, l.open_at_end,
        );
    }
    text
}
