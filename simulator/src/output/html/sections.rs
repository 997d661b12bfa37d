//! The sections of the report's pages, each a piece of HTML with its charts.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::svg::{self, colour, escape, Plot, Scale};
use crate::labs::Check;
use crate::measure::sweep::SweepReport;
use crate::report::Report;
use crate::watch::StatsSample;
use loadgen::outcome::Outcome;
use loadgen::record::{ClientRecord, Phase};
use loadgen::scenario::{Load, Stages};
use loadgen::tally::Row;
use loadgen::units::human_us;

/// A line's points, in data values.
type Points = Vec<(f64, f64)>;

/// More clients than this are drawn as a sample of rows (and, all of them, as states over
/// time).
pub const TIMELINE_ROWS: usize = 120;

fn outcome_colour(o: Outcome) -> &'static str {
    match o {
        Outcome::Served => colour::SERVED,
        Outcome::ConnectTimeout => colour::CONNECT_TIMEOUT,
        Outcome::ServiceTimeout => colour::SERVICE_TIMEOUT,
        Outcome::Refused => colour::REFUSED,
        Outcome::Reset => colour::RESET,
        Outcome::Rejected => colour::REJECTED,
        Outcome::BadResponse => colour::BAD,
        Outcome::Starved => colour::STARVED,
    }
}

fn ms(us: f64) -> String {
    let ms = us / 1000.0;
    if ms >= 10_000.0 {
        format!("{:.0}s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else if ms >= 10.0 || ms == 0.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms:.1}ms")
    }
}

/// Everything about one run: outcome, timeline, latency, over time, server, fairness.
///
/// `id` tells this run's elements apart from another's on the same page (a comparison's
/// architectures); empty on a page of one run.
pub fn run_sections(report: &Report, id: &str) -> String {
    let mut out = summary(report);
    out.push_str(&timeline(report));
    out.push_str(&latency(report));
    if !report.series.is_empty() {
        out.push_str(&over_time(report));
    }
    if !report.server_series.is_empty() {
        out.push_str(&server_side(report));
    }
    out.push_str(&replay(report, id));
    out.push_str(&fairness(&report.clients));
    if let Some(config) = &report.server_config {
        let _ = write!(
            out,
            "<details>\n<summary>The server's settings</summary>\n<pre>{}</pre>\n</details>\n",
            escape(&serde_json::to_string_pretty(config).unwrap_or_default())
        );
    }
    out
}

/// The outcome, the prediction beside it, and the rule behind the prediction.
fn summary(report: &Report) -> String {
    let s = &report.summary;
    let mut out = String::from("<h2>Outcome</h2>\n<table>\n");
    let _ = writeln!(
        out,
        "<tr><th>served within the deadline</th><td class=\"n\">{} of {}</td></tr>",
        s.served, s.clients
    );
    for o in Outcome::ALL {
        let n = s.count(o);
        if n > 0 && o != Outcome::Served {
            let _ = writeln!(
                out,
                "<tr><th><span style=\"color:{}\">■</span> {}</th><td class=\"n\">{n}</td></tr>",
                outcome_colour(o),
                o.name()
            );
        }
    }
    if let Some(t) = &report.throughput {
        let _ = writeln!(
            out,
            "<tr><th>throughput</th><td class=\"n\">{:.0} served/s, {:.0} sent/s{}</td></tr>",
            t.per_second,
            t.sent_per_second,
            t.offered_per_second
                .map(|r| format!(", {r} offered/s"))
                .unwrap_or_default()
        );
    }
    if let Some(c) = &report.shards {
        let _ = writeln!(
            out,
            "<tr><th>shards merged</th><td>{} of {} ({} of the run's {} clients){}</td></tr>",
            c.merged.len(),
            c.count,
            c.covered,
            c.clients,
            c.missing
                .iter()
                .map(|m| format!(
                    "<br /><b>MISSING</b> shard {}/{}: {}",
                    m.index,
                    c.count,
                    escape(&m.reason)
                ))
                .collect::<String>()
        );
    }
    out.push_str("</table>\n");
    let class = match report.agrees {
        Some(true) => "agrees",
        Some(false) => "disagrees",
        None => "note",
    };
    let _ = writeln!(
        out,
        "<p class=\"{class}\">{}</p>",
        escape(&report.verdict())
    );
    if let Some(p) = &report.prediction {
        let _ = writeln!(out, "<p class=\"note\">Rule: {}</p>", escape(&p.rule));
    }
    out.push_str(&gates(report));
    out
}

/// The `--slo` gates, each as measured against required (nothing without `--slo`).
fn gates(report: &Report) -> String {
    if report.gates.is_empty() {
        return String::new();
    }
    let met = report.gates.iter().filter(|g| g.met).count();
    let mut out = format!(
        "<h3>Gates (--slo): {met} of {} met</h3>\n<table>\n<tr><th></th><th>gate</th><th>measured</th><th>required</th></tr>\n",
        report.gates.len()
    );
    for g in &report.gates {
        let (class, word) = if g.met {
            ("agrees", "met")
        } else {
            ("disagrees", "MISSED")
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"{class}\">{word}</td><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&g.gate),
            escape(&g.measured),
            escape(&g.required)
        );
    }
    out.push_str("</table>\n");
    out
}

fn phase_colour(p: Phase) -> &'static str {
    match p {
        Phase::Connecting => colour::CONNECTING,
        Phase::Waiting => colour::WAITING,
        Phase::Answering => colour::SERVING,
        Phase::Holding => colour::HOLDING,
    }
}

/// The phases of one client's life, from its record: (from µs, to µs, colour, name).
fn phases(c: &ClientRecord, end_us: f64) -> Vec<(f64, f64, &'static str, &'static str)> {
    c.phases(end_us as u64)
        .into_iter()
        .map(|(p, from, to)| (from as f64, to as f64, phase_colour(p), p.name()))
        .collect()
}

/// The per-client timeline: one row per client (or a sample of rows), the deadline as a
/// vertical line, each row ending in its outcome's colour; for large runs also every
/// client's state over time.
fn timeline(report: &Report) -> String {
    let Some(drawn) = timeline_plot(report) else {
        return String::new();
    };
    let clients = &report.clients;
    let load = report.scenario.load.is_load();
    let mut out = String::from("<h2>Clients on a timeline</h2>\n");
    out.push_str(&timeline_legend(clients));
    out.push_str(&timeline_note(clients.len(), drawn.step, load));
    out.push_str(&drawn.plot.finish("each client's timeline"));
    if drawn.step > 1 {
        out.push_str(&states_over_time(clients, drawn.span, drawn.x_max));
    }
    out
}

/// The timeline's margins, in pixels: the clients' ids on the left, the server thread
/// that answered each on the right.
const TIMELINE_LEFT: f64 = 56.0;
const TIMELINE_RIGHT: f64 = 120.0;

/// The timeline's chart, with what a replay or a frame needs to know of its axis.
pub(crate) struct TimelinePlot {
    pub(crate) plot: Plot,
    /// Microseconds from the common start to the last client's end (or the deadline, or
    /// the planned end of a load run, whichever is later): the part of the axis with data.
    pub(crate) span: f64,
    /// The axis's end, in microseconds.
    pub(crate) x_max: f64,
    /// One client in `step` has a row.
    step: usize,
}

/// The timeline's chart (no legend, no heading), or `None` for a run without clients.
pub(crate) fn timeline_plot(report: &Report) -> Option<TimelinePlot> {
    let clients = &report.clients;
    if clients.is_empty() {
        return None;
    }
    let load = report.scenario.load.is_load();
    let timeout_us = report.scenario.timeout.as_micros() as f64;
    let last_us = clients.iter().filter_map(|c| c.ended_us).max().unwrap_or(0) as f64;
    let planned_us = report.scenario.planned_length().as_micros() as f64;
    let span = if load {
        last_us.max(planned_us)
    } else {
        last_us.max(timeout_us)
    };
    let x_max = svg::nice_max(span.max(1.0) * 1.02);
    let step = clients.len().div_ceil(TIMELINE_ROWS).max(1);
    let rows: Vec<&ClientRecord> = clients.iter().step_by(step).collect();
    let row_h = if rows.len() > 60 { 5.0 } else { 14.0 };
    let height = 60.0 + rows.len() as f64 * row_h;
    let mut plot = Plot::linear(1000.0, height, x_max, rows.len() as f64)
        .left_margin(TIMELINE_LEFT)
        .right_margin(TIMELINE_RIGHT);
    plot.x_axis(&svg::ticks(x_max), ms, "time since the common start");
    for (i, c) in rows.iter().enumerate() {
        let y1 = (rows.len() - i) as f64 - 0.1;
        timeline_row(&mut plot, c, y1, span, x_max, row_h >= 10.0);
    }
    if load {
        plot.vrule(planned_us, colour::AXIS, "end of the run");
    } else {
        plot.vrule(timeout_us, colour::DEADLINE, "deadline");
    }
    Some(TimelinePlot {
        plot,
        span,
        x_max,
        step,
    })
}

/// The timeline's legend: the phases' colours, then the outcomes that occur.
fn timeline_legend(clients: &[ClientRecord]) -> String {
    let phases: Vec<(&str, &str)> = [
        Phase::Connecting,
        Phase::Waiting,
        Phase::Answering,
        Phase::Holding,
    ]
    .iter()
    .map(|p| (phase_colour(*p), p.name()))
    .collect();
    format!("{}{}", svg::legend(&phases), outcome_legend(clients))
}

/// The replay: the timeline and the server's queues again, uncovered from left to right at
/// the run's own pace (between 2 s and a minute a loop) by a CSS animation, with a
/// checkbox that pauses it. `id` makes the checkbox's id unique on the page (a comparison
/// has one replay per architecture).
fn replay(report: &Report, id: &str) -> String {
    let Some(mut drawn) = timeline_plot(report) else {
        return String::new();
    };
    // The curtain crosses the whole axis in the time the axis stands for (the run's own
    // pace), kept between 2 s and a minute; the loop then holds the whole chart for a
    // tenth of its length. The server's chart is put on the same axis, so the two
    // curtains move together.
    let axis_s = drawn.x_max / 1e6;
    let seconds = axis_s.clamp(2.0, 60.0);
    let real = drawn.span / 1e6;
    drawn.plot.curtain_animated(seconds / 0.9);
    let server = server_plot(report, Some(axis_s)).map(|(mut plot, legend, _)| {
        plot.curtain_animated(seconds / 0.9);
        format!(
            "{legend}{}",
            plot.finish("the server's queues and busy threads, replayed")
        )
    });
    let pace = if (seconds - axis_s).abs() < 0.05 {
        format!("at the run's own pace ({real:.1} s)")
    } else {
        format!("{seconds:.0} s across the chart (the run took {real:.1} s)")
    };
    let mut out = format!(
        "<h2 id=\"replay{id}\">Replay</h2>\n<div class=\"replay\">\n<input type=\"checkbox\" class=\"pause\" id=\"pause{id}\" /><label for=\"pause{id}\"> pause the replay</label>\n<p class=\"note\">The run again, {pace}: the red line is the moment, left of it what has happened.{}</p>\n",
        if server.is_some() {
            " Below the clients, the server's queues and busy threads on the same clock."
        } else {
            ""
        }
    );
    out.push_str(&timeline_legend(&report.clients));
    out.push_str(&drawn.plot.finish("each client's timeline, replayed"));
    if let Some(server) = server {
        out.push_str(&server);
    }
    out.push_str("</div>\n");
    out
}

/// One client's row of the timeline, its top at `y1`: a bar per phase of its life, then a
/// mark in its outcome's colour where it ended; with `labelled`, its id on the left and
/// the server thread that answered it on the right.
fn timeline_row(plot: &mut Plot, c: &ClientRecord, y1: f64, span: f64, x_max: f64, labelled: bool) {
    let y0 = y1 - 0.8;
    for (from, to, fill, name) in phases(c, span) {
        plot.rect(
            from,
            to,
            y0,
            y1,
            fill,
            &format!("client {}: {name}, {} to {}", c.id, ms(from), ms(to)),
        );
    }
    let end = c.ended_us.map_or(span, |e| e as f64);
    let tip = format!(
        "client {}: {}{}",
        c.id,
        c.outcome.name(),
        c.error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    plot.rect(
        end,
        end + x_max / 150.0,
        y0,
        y1,
        outcome_colour(c.outcome),
        &tip,
    );
    if labelled {
        let (left, _, right, _) = plot.area();
        let y = plot.py(y0 + 0.15);
        plot.text_px(left - 4.0, y, "end", 10.0, &format!("#{}", c.id));
        if let Some(thread) = &c.server_thread {
            plot.text_px(right + 4.0, y, "start", 10.0, thread);
        }
    }
}

/// The note under the timeline's legend: which clients are drawn when there are too many
/// for a row each (one in `step`), else how to read a row of a load run or of a scenario.
fn timeline_note(clients: usize, step: usize, load: bool) -> String {
    if step > 1 {
        format!(
            "<p class=\"note\">{} clients: one in {step} is drawn (ids 1, {}, {}, ...); the chart below counts all of them.</p>\n",
            clients,
            1 + step,
            1 + 2 * step
        )
    } else if load {
        "<p class=\"note\">A load run: each row runs from the client's first connect to its end; \"being answered\" spans its first response to its last served one.</p>\n".to_owned()
    } else {
        "<p class=\"note\">Each row is one client, as the lecture's log tells it; the row ends in its outcome's colour. On the right, the server thread that answered it.</p>\n".to_owned()
    }
}

fn outcome_legend(clients: &[ClientRecord]) -> String {
    let present: Vec<(&str, &str)> = Outcome::ALL
        .iter()
        .filter(|o| clients.iter().any(|c| c.outcome == **o))
        .map(|o| (outcome_colour(*o), o.name()))
        .collect();
    svg::legend(&present)
}

/// Every client's state at each moment, stacked: how a large run's clients moved from
/// connecting to waiting to done.
fn states_over_time(clients: &[ClientRecord], span: f64, x_max: f64) -> String {
    const BUCKETS: usize = 100;
    let width = span.max(1.0) / BUCKETS as f64;
    let mut plot = Plot::linear(1000.0, 260.0, x_max, clients.len() as f64)
        .left_margin(TIMELINE_LEFT)
        .right_margin(TIMELINE_RIGHT);
    plot.x_axis(&svg::ticks(x_max), ms, "time since the common start");
    plot.y_axis(
        &svg::count_ticks(clients.len() as f64),
        |v| format!("{v:.0}"),
        "clients",
    );
    for b in 0..BUCKETS {
        let at = (b as f64 + 0.5) * width;
        let mut counts: Vec<(&str, usize)> = Vec::new();
        let mut add = |colour: &'static str| match counts.iter_mut().find(|(c, _)| *c == colour) {
            Some((_, n)) => *n += 1,
            None => counts.push((colour, 1)),
        };
        for c in clients {
            let ended = c.ended_us.map_or(span, |e| e as f64);
            if at >= ended {
                add(outcome_colour(c.outcome));
                continue;
            }
            match phases(c, span)
                .iter()
                .find(|(from, to, _, _)| at >= *from && at < *to)
            {
                Some((_, _, colour, _)) => add(colour),
                None => add("#ffffff"),
            }
        }
        let mut y = 0.0;
        for (fill, n) in counts {
            let top = y + n as f64;
            plot.rect(
                b as f64 * width,
                (b + 1) as f64 * width,
                y,
                top,
                fill,
                &format!("{} at {}: {n} clients", fill, ms(at)),
            );
            y = top;
        }
    }
    format!(
        "<p class=\"note\">All clients by state over time (the same colours; ended clients in their outcome's).</p>\n{}",
        plot.finish("clients by state over time")
    )
}

/// The latency histogram of a run: each request's corrected latency in load runs, each
/// client's wait in scenario runs.
fn latency_histograms(report: &Report) -> (Histogram<u64>, Option<Histogram<u64>>) {
    if report.scenario.load.is_load() {
        if let Some((corrected, uncorrected)) = &report.histograms {
            let open = matches!(report.scenario.load, Load::Rate(_));
            return (corrected.clone(), open.then(|| uncorrected.clone()));
        }
    }
    let (h, _) = loadgen::ledger::wait_histogram(&report.scenario, &report.clients);
    (h, None)
}

/// The points of a percentile spectrum: (quantile, value in µs).
fn spectrum(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<(f64, f64)> = h
        .iter_quantiles(4)
        .map(|v| (v.quantile_iterated_to(), v.value_iterated_to() as f64))
        .collect();
    points.insert(0, (0.0, h.min() as f64));
    points
}

/// The nines axis for `samples`: far enough to reach the last sample, at least 99.9%.
fn nines_for(samples: u64) -> f64 {
    (samples.max(1) as f64).log10().ceil().clamp(3.0, 6.0)
}

fn nines_axis(plot: &mut Plot, max_nines: f64) {
    let ticks: Vec<f64> = (0..=max_nines as u32)
        .map(|n| 1.0 - 10f64.powi(-(n as i32)))
        .chain([0.5])
        .collect();
    plot.x_axis(
        &ticks,
        |q| {
            if q <= 0.0 {
                "0%".into()
            } else {
                let p = q * 100.0;
                let text = format!("{p:.4}");
                format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
            }
        },
        "percentile (each step right is one more nine)",
    );
}

/// An empty chart of latency percentiles: a nines axis far enough for `samples`, and a
/// latency axis up to `max_us`. Returns it with the latency axis's end (µs).
fn spectrum_plot(max_us: u64, samples: u64) -> (Plot, f64) {
    let y_max = svg::nice_max((max_us as f64).max(1.0) * 1.05);
    let max_nines = nines_for(samples);
    let mut plot = Plot::new(
        1000.0,
        340.0,
        Scale::Nines { max_nines },
        Scale::Linear {
            min: 0.0,
            max: y_max,
        },
    );
    nines_axis(&mut plot, max_nines);
    plot.y_axis(&svg::ticks(y_max), ms, "latency");
    (plot, y_max)
}

/// The latency distribution on a nines axis, with the deadline marked.
fn latency(report: &Report) -> String {
    let (corrected, uncorrected) = latency_histograms(report);
    if corrected.is_empty() {
        return "<h2>Latency</h2>\n<p class=\"note\">No latency was measured.</p>\n".into();
    }
    let deadline = report.scenario.timeout.as_micros() as f64;
    let max_value = corrected
        .max()
        .max(uncorrected.as_ref().map_or(0, |h| h.max()));
    let (mut plot, y_max) = spectrum_plot(max_value, corrected.len());
    plot.line(&spectrum(&corrected), colour::SERIES[0], 2.0, false);
    let mut legend = vec![(
        colour::SERIES[0],
        if uncorrected.is_some() {
            "corrected (from when each request was due)"
        } else if report.scenario.load.is_load() {
            "each request"
        } else {
            "each client's wait"
        },
    )];
    if let Some(u) = &uncorrected {
        plot.line(&spectrum(u), colour::SERIES[1], 2.0, true);
        legend.push((colour::SERIES[1], "uncorrected (from its actual send)"));
    }
    if deadline <= y_max {
        plot.hrule(deadline, colour::DEADLINE, "deadline");
    }
    let l = &report.latency_us;
    let share = if l.samples > 0 {
        100.0 * l.over_deadline as f64 / l.samples as f64
    } else {
        0.0
    };
    format!(
        "<h2>Latency</h2>\n{}<p>p50 {} · p90 {} · p99 {} · p99.9 {} · max {} · <b>{} of {} ({share:.2}%) over the deadline</b></p>\n{}",
        svg::legend(&legend),
        human_us(l.p50),
        human_us(l.p90),
        human_us(l.p99),
        human_us(l.p99_9),
        human_us(l.max),
        l.over_deadline,
        l.samples,
        plot.finish("latency percentile spectrum")
    )
}

/// A small chart of one quantity per second.
fn per_second_chart(
    title: &str,
    seconds: f64,
    series: &[(&str, &str, Points)],
    label: fn(f64) -> String,
) -> String {
    let max = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y))
        .fold(0.0, f64::max);
    let y_max = svg::nice_max(max.max(1.0) * 1.05);
    let mut plot = Plot::linear(1000.0, 200.0, seconds, y_max);
    plot.x_axis(
        &svg::ticks(seconds),
        |s| format!("{s:.0}s"),
        "seconds since the start",
    );
    plot.y_axis(&svg::ticks(y_max), label, title);
    for (colour, _, points) in series {
        plot.line(points, colour, 2.0, false);
    }
    let legend: Vec<(&str, &str)> = series.iter().map(|(c, n, _)| (*c, *n)).collect();
    format!("{}{}", svg::legend(&legend), plot.finish(title))
}

/// Throughput, errors and p99 per second.
fn over_time(report: &Report) -> String {
    let rows = &report.series;
    let seconds = svg::nice_max((rows.len() as f64).max(1.0));
    // One line of the chart: a field of every row, at the middle of its second.
    let line = |colour: &'static str, name: &'static str, field: fn(&Row) -> u64| {
        let points = rows
            .iter()
            .map(|r| (r.second as f64 + 0.5, field(r) as f64))
            .collect();
        (colour, name, points)
    };
    let mut out = String::from("<h2>Over time</h2>\n");
    let mut lines = vec![
        line(colour::SERIES[0], "served", |r| r.served),
        line(colour::SERIES[3], "sent", |r| r.sent),
        line(colour::SERIES[1], "errors", |r| r.errors),
    ];
    // On an open-loop ramp (`--stages`), the rate asked for in each second beside what was
    // sent: the ramp's mean over the second, so the two lines meet where the generator kept up.
    if let Load::Rate(open) = &report.scenario.load {
        if !open.stages.is_empty() {
            let asked = asked_per_second(&open.stages, rows.len());
            lines.push((colour::SERIES[2], "asked (--stages)", asked));
        }
    }
    out.push_str(&per_second_chart(
        "requests per second",
        seconds,
        &lines,
        |v| format!("{v:.0}"),
    ));
    out.push_str(&per_second_chart(
        "latency of the requests that ended in each second",
        seconds,
        &[
            line(colour::SERIES[0], "p50", |r| r.p50_us),
            line(colour::SERIES[1], "p99", |r| r.p99_us),
        ],
        ms,
    ));
    out
}

/// The ramp's asked rate in each of the first `seconds` seconds: its mean over the second
/// (the average of its value at ten points), placed at the second's middle as the series is.
fn asked_per_second(stages: &Stages, seconds: usize) -> Points {
    let end = stages.total();
    (0..seconds)
        .map(|second| {
            let mean = (0..10)
                .map(|tenth| {
                    let t = Duration::from_millis(second as u64 * 1000 + tenth * 100 + 50);
                    if t < end {
                        stages.level_at(t)
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
                / 10.0;
            (second as f64 + 0.5, mean)
        })
        .collect()
}

/// The server's queues and busy threads over time, from `/stats` polled during the run.
fn server_side(report: &Report) -> String {
    let Some((plot, legend, samples)) = server_plot(report, None) else {
        return String::new();
    };
    let costs: Vec<u64> = samples.iter().map(|s| s.cost_us).collect();
    let mean = costs.iter().sum::<u64>() as f64 / costs.len().max(1) as f64;
    format!(
        "<h2>Inside the server</h2>\n<p class=\"note\">The server's own <code>/stats</code>, read {} times during the run (every {} ms; each read took {} on average, at most {}): its queues' depths and its busy threads, on the same clock as the clients. No black-box load tool can show this.</p>\n{legend}{}",
        samples.len(),
        crate::watch::PERIOD.as_millis(),
        human_us(mean as u64),
        human_us(costs.iter().copied().max().unwrap_or(0)),
        plot.finish("the server's queues and busy threads over time")
    )
}

/// The chart of the server's queues and busy threads from the `/stats` read during the
/// run, its legend, and the readings; `None` if none were read. The time axis ends at
/// `x_max` seconds if given (a replay puts it on the timeline's axis and margins), else a
/// little past the last reading.
fn server_plot(report: &Report, x_max: Option<f64>) -> Option<(Plot, String, &[StatsSample])> {
    let samples = &report.server_series;
    if samples.is_empty() {
        return None;
    }
    let seconds = samples
        .last()
        .map_or(1.0, |s| s.at_ms as f64 / 1000.0)
        .max(0.001);
    let on_timeline_axis = x_max.is_some();
    let x_max = x_max.unwrap_or(if seconds < 1.0 {
        seconds * 1.05
    } else {
        svg::nice_max(seconds)
    });
    let mut series: Vec<(&str, String, Points)> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for s in samples {
        for (name, _) in &s.values {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    for (i, name) in names.iter().enumerate() {
        let points = samples
            .iter()
            .filter_map(|s| {
                s.values
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| (s.at_ms as f64 / 1000.0, *v as f64))
            })
            .collect();
        series.push((
            colour::SERIES[i % colour::SERIES.len()],
            name.clone(),
            points,
        ));
    }
    let max = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y))
        .fold(0.0, f64::max);
    let y_max = svg::nice_max(max.max(1.0) * 1.05);
    let mut plot = Plot::linear(1000.0, 260.0, x_max, y_max);
    if on_timeline_axis {
        // The timeline's margins too, so that the same moment is the same column in both.
        plot = plot.left_margin(TIMELINE_LEFT).right_margin(TIMELINE_RIGHT);
    }
    plot.x_axis(
        &svg::ticks(x_max),
        |s| format!("{s:.1}s"),
        "seconds since the watch began (the run starts at once)",
    );
    plot.y_axis(
        &svg::count_ticks(y_max),
        |v| format!("{v:.0}"),
        "items, threads",
    );
    for (colour, _, points) in &series {
        plot.line(points, colour, 2.0, false);
    }
    let legend: Vec<(&str, &str)> = series.iter().map(|(c, n, _)| (*c, n.as_str())).collect();
    Some((plot, svg::legend(&legend), samples))
}

/// Jain's fairness index over the clients' served requests, and who got most and least.
fn fairness(clients: &[ClientRecord]) -> String {
    if clients.len() < 2 {
        return String::new();
    }
    let served: Vec<f64> = clients.iter().map(|c| c.served_requests as f64).collect();
    let sum: f64 = served.iter().sum();
    let squares: f64 = served.iter().map(|x| x * x).sum();
    let jain = if squares > 0.0 {
        sum * sum / (clients.len() as f64 * squares)
    } else {
        0.0
    };
    let most = clients
        .iter()
        .max_by_key(|c| (c.served_requests, std::cmp::Reverse(c.id)));
    let least = clients.iter().min_by_key(|c| (c.served_requests, c.id));
    let (Some(most), Some(least)) = (most, least) else {
        return String::new();
    };
    format!(
        "<h2>Fairness</h2>\n<p>Jain's index over the requests each client had served: <b>{jain:.3}</b> (1 when every client got the same; 1/{n} = {:.3} when one client got everything). Most served: client {} with {}; least served: client {} with {}.</p>\n",
        1.0 / clients.len() as f64,
        most.id,
        most.served_requests,
        least.id,
        least.served_requests,
        n = clients.len()
    )
}

/// A comparison's settings: the scenario every architecture ran.
pub fn comparison_settings(report: &Report) -> String {
    format!(
        "<h2>Settings</h2>\n<p>Every architecture ran this scenario, engine threads {} (each server's own settings are in its section above).</p>\n<pre>{}</pre>\n",
        report.engine_threads,
        escape(&serde_json::to_string_pretty(&report.scenario).unwrap_or_default())
    )
}

/// The run's settings: the target and the scenario, as JSON (the server's own settings
/// are in the run's sections).
pub fn settings(report: &Report) -> String {
    let scenario = serde_json::to_string_pretty(&report.scenario).unwrap_or_default();
    format!(
        "<h2>Settings</h2>\n<p>Target <code>{}</code>{}, engine threads {}.</p>\n<pre>{}</pre>\n",
        escape(&report.target),
        report
            .architecture
            .as_deref()
            .map(|a| format!(" ({})", escape(a)))
            .unwrap_or_default(),
        report.engine_threads,
        escape(&scenario)
    )
}

/// A comparison's table and its shared charts: the clients each architecture served, and
/// every architecture's latency spectrum on one axis.
pub fn comparison(reports: &[Report]) -> String {
    let mut out = comparison_table(reports);
    out.push_str(&served_bars(reports));
    out.push_str(&spectra_side_by_side(reports));
    out
}

/// The comparison as a table: served, p50, p99, max, and the verdict on the prediction.
fn comparison_table(reports: &[Report]) -> String {
    let mut out = String::from("<h2>Side by side</h2>\n<table>\n<tr><th>architecture</th><th>served</th><th>p50</th><th>p99</th><th>max</th><th>prediction</th></tr>\n");
    for r in reports {
        let class = match r.agrees {
            Some(true) => "agrees",
            Some(false) => "disagrees",
            None => "note",
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}/{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"{class}\">{}</td></tr>",
            escape(r.architecture.as_deref().unwrap_or(&r.target)),
            r.summary.served,
            r.summary.clients,
            human_us(r.latency_us.p50),
            human_us(r.latency_us.p99),
            human_us(r.latency_us.max),
            escape(&r.verdict())
        );
    }
    out.push_str("</table>\n");
    out
}

/// The clients each architecture served within the deadline, as bars on one axis.
fn served_bars(reports: &[Report]) -> String {
    let clients = reports.iter().map(|r| r.summary.clients).max().unwrap_or(1) as f64;
    let mut bars = Plot::linear(
        1000.0,
        60.0 + 26.0 * reports.len() as f64,
        clients,
        reports.len() as f64,
    )
    .left_margin(160.0);
    bars.x_axis(
        &svg::count_ticks(clients),
        |v| format!("{v:.0}"),
        "clients served within the deadline",
    );
    for (i, r) in reports.iter().enumerate() {
        let y1 = (reports.len() - i) as f64 - 0.15;
        let name = r.architecture.as_deref().unwrap_or(&r.target);
        bars.rect(
            0.0,
            r.summary.served as f64,
            y1 - 0.7,
            y1,
            colour::SERIES[i % colour::SERIES.len()],
            &format!(
                "{name}: {} of {} served",
                r.summary.served, r.summary.clients
            ),
        );
        let (left, _, _, _) = bars.area();
        let y = bars.py(y1 - 0.5);
        bars.text_px(left - 6.0, y, "end", 12.0, name);
    }
    bars.finish("clients served by each architecture")
}

/// Every architecture's latency spectrum on one nines axis, with the deadline when it
/// falls inside the chart; nothing for an empty comparison.
fn spectra_side_by_side(reports: &[Report]) -> String {
    let spectra: Vec<(String, Histogram<u64>)> = reports
        .iter()
        .map(|r| {
            (
                r.architecture.clone().unwrap_or_else(|| r.target.clone()),
                latency_histograms(r).0,
            )
        })
        .filter(|(_, h)| !h.is_empty())
        .collect();
    let Some(first) = reports.first() else {
        return String::new();
    };
    let (mut plot, y_max) = spectrum_plot(
        spectra.iter().map(|(_, h)| h.max()).max().unwrap_or(1),
        spectra.iter().map(|(_, h)| h.len()).max().unwrap_or(1),
    );
    for (i, (_, h)) in spectra.iter().enumerate() {
        plot.line(
            &spectrum(h),
            colour::SERIES[i % colour::SERIES.len()],
            2.0,
            false,
        );
    }
    let deadline = first.scenario.timeout.as_micros() as f64;
    if deadline <= y_max {
        plot.hrule(deadline, colour::DEADLINE, "deadline");
    }
    let legend: Vec<(&str, &str)> = spectra
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (colour::SERIES[i % colour::SERIES.len()], n.as_str()))
        .collect();
    let mut out = String::from("<h2>Latency, side by side</h2>\n");
    out.push_str(&svg::legend(&legend));
    out.push_str(&plot.finish("latency percentile spectra of every architecture"));
    out
}

/// A sweep's charts: goodput and the fraction in time against the offered rate, one line
/// per target with its knee and its predicted capacity, then the knees as a table.
pub fn sweep(reports: &[SweepReport]) -> String {
    let mut out = String::new();
    let max_rate = reports
        .iter()
        .flat_map(|r| r.steps.iter().map(|s| s.offered_per_second))
        .fold(1.0, f64::max);
    let x_max = svg::nice_max(max_rate * 1.02);
    let names: Vec<String> = reports
        .iter()
        .map(|r| r.architecture.clone().unwrap_or_else(|| r.target.clone()))
        .collect();
    let legend: Vec<(&str, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (colour::SERIES[i % colour::SERIES.len()], n.as_str()))
        .collect();
    out.push_str("<h2>Goodput against offered load</h2>\n");
    out.push_str(&svg::legend(&legend));
    let (mut goodput, mut fraction) = sweep_plots(x_max);
    for (i, (r, name)) in reports.iter().zip(&names).enumerate() {
        sweep_lines(
            &mut goodput,
            &mut fraction,
            r,
            name,
            colour::SERIES[i % colour::SERIES.len()],
        );
    }
    let goal = reports.first().map_or(0.99, |r| r.spec.goal);
    fraction.hrule(goal, colour::DEADLINE, &format!("goal {}%", goal * 100.0));
    out.push_str(&goodput.finish("goodput against offered rate"));
    out.push_str("<h2>Requests in time against offered load</h2>\n");
    out.push_str(&fraction.finish("fraction in time against offered rate"));
    out.push_str(&knees_table(reports, &names));
    out
}

/// The sweep's two empty charts over offered rates up to `x_max`: goodput (with the
/// diagonal where every offered request is served in time) and the fraction in time.
fn sweep_plots(x_max: f64) -> (Plot, Plot) {
    let mut goodput = Plot::linear(1000.0, 320.0, x_max, x_max);
    goodput.x_axis(
        &svg::ticks(x_max),
        |v| format!("{v:.0}"),
        "offered requests per second",
    );
    goodput.y_axis(
        &svg::ticks(x_max),
        |v| format!("{v:.0}"),
        "served in time per second",
    );
    goodput.line(&[(0.0, 0.0), (x_max, x_max)], colour::GRID, 1.0, true);
    let mut fraction = Plot::new(
        1000.0,
        280.0,
        Scale::Linear {
            min: 0.0,
            max: x_max,
        },
        Scale::Linear { min: 0.0, max: 1.0 },
    );
    fraction.x_axis(
        &svg::ticks(x_max),
        |v| format!("{v:.0}"),
        "offered requests per second",
    );
    fraction.y_axis(
        &[0.0, 0.25, 0.5, 0.75, 1.0],
        |v| format!("{:.0}%", v * 100.0),
        "in time",
    );
    (goodput, fraction)
}

/// One sweep's steps in `colour`, in order of rate: its goodput line with a dot per step
/// and its measured knee, and its fraction in time with its predicted capacity.
fn sweep_lines(goodput: &mut Plot, fraction: &mut Plot, r: &SweepReport, name: &str, colour: &str) {
    let mut steps = r.steps.clone();
    steps.sort_by(|a, b| a.offered_per_second.total_cmp(&b.offered_per_second));
    let g: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| (s.offered_per_second, s.goodput_per_second))
        .collect();
    let f: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| (s.offered_per_second, s.in_time))
        .collect();
    goodput.line(&g, colour, 2.0, false);
    fraction.line(&f, colour, 2.0, false);
    for s in &steps {
        goodput.dot(
            s.offered_per_second,
            s.goodput_per_second,
            colour,
            &format!(
                "{}: {:.0}/s offered, {:.0}/s served in time, p99 {}",
                name,
                s.offered_per_second,
                s.goodput_per_second,
                human_us(s.p99_us)
            ),
        );
    }
    if let Some(knee) = r.knee_per_second {
        goodput.vrule(knee, colour, &format!("{} knee {knee:.0}/s", name));
    }
    if let Some(p) = r.predicted_per_second {
        fraction.vrule(p, colour, &format!("{} predicted {p:.0}/s", name));
    }
}

/// Every sweep's knee, measured and predicted, with the prediction's rule.
fn knees_table(reports: &[SweepReport], names: &[String]) -> String {
    let mut out = String::from("<h2>The knees</h2>\n<table>\n<tr><th>target</th><th>knee (measured)</th><th>predicted</th><th>rule</th></tr>\n");
    for (r, name) in reports.iter().zip(names) {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(name),
            r.knee_per_second
                .map_or("none".into(), |k| format!("{k:.0}/s")),
            r.predicted_per_second
                .map_or("-".into(), |k| format!("{k:.0}/s")),
            escape(r.rule.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table>\n");
    out
}

/// A lab's checks: measured against expected.
pub fn checks(checks: &[Check]) -> String {
    let mut out = String::from(
        "<h2>Checks</h2>\n<table>\n<tr><th></th><th>step</th><th>measured</th><th>expected</th></tr>\n",
    );
    for c in checks {
        let _ = writeln!(
            out,
            "<tr><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if c.agrees { "agrees" } else { "disagrees" },
            if c.agrees { "ok" } else { "FAIL" },
            escape(&c.what),
            escape(&c.measured),
            escape(&c.expected)
        );
    }
    out.push_str("</table>\n");
    out
}
