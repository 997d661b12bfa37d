//! Drawing the live view: a [`Model`] onto a ratatui frame. Pure: the same model on the
//! same size of screen draws the same cells, which the tests check on ratatui's
//! `TestBackend`.
//!
//! The screen, top to bottom: a title line (what runs, the time, the deadline); the
//! clients, one row each filling in as the run goes on, or above a screenful the stacked
//! chart of how many are in each state; beside them the server's queues and busy threads;
//! the outcome counts (and for load runs requests per second and p99 as sparklines); the
//! legend and the keys. Each state has the report's colour and a character of its own, so
//! the view reads the same in a terminal without colours (and in a `tmux capture-pane`).

use std::time::Duration;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::model::{Kind, Model};
use super::Layout as ViewLayout;
use loadgen::tally::live::ClientState;

/// The smallest screen the view draws on, in columns and rows; smaller falls back to the
/// progress line.
pub(crate) const MIN_SIZE: (u16, u16) = (60, 16);

/// At most this many earlier runs of the command are listed under the title.
const EARLIER_SHOWN: usize = 4;

/// The width of the server's panel, when the server says what it is doing.
const SERVER_PANEL: u16 = 34;

/// The deadline's colour in the report.
const DEADLINE: Color = Color::Rgb(0xd3, 0x2f, 0x2f);

/// A kind's colour (the report's) and its character.
pub(crate) fn look(kind: Kind) -> (Color, char) {
    match kind {
        Kind::NotStarted => (Color::Reset, ' '),
        Kind::Connecting => (Color::Rgb(0xcf, 0xd8, 0xdc), '░'),
        Kind::Waiting => (Color::Rgb(0x90, 0xca, 0xf9), '▒'),
        Kind::Answering => (Color::Rgb(0x15, 0x65, 0xc0), '█'),
        Kind::Holding => (Color::Rgb(0xa5, 0xd6, 0xa7), '▓'),
        Kind::Idle => (Color::Rgb(0x75, 0x75, 0x75), '·'),
        Kind::Served => (Color::Rgb(0x2e, 0x7d, 0x32), '█'),
        Kind::TimedOut => (Color::Rgb(0xc6, 0x28, 0x28), '█'),
        Kind::Other => (Color::Rgb(0x9e, 0x9e, 0x9e), '█'),
    }
}

/// Draws `model` on `frame` in `layout`.
pub(crate) fn draw(frame: &mut Frame, model: &Model, layout: ViewLayout) {
    let area = frame.area();
    let big = layout == ViewLayout::Big;
    let footer = if model.shape.load { 3 } else { 2 };
    let earlier = model.shape.earlier.len().min(EARLIER_SHOWN) as u16;
    let [title, body, counts, footer_area] = Layout::vertical([
        Constraint::Length(if big { 2 } else { 1 } + earlier),
        Constraint::Min(4),
        Constraint::Length(footer),
        Constraint::Length(if big { 1 } else { 2 }),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(title_lines(model, big)), title);
    let server = model.server_series();
    let (clients, panel) = if server.is_empty() || body.width < MIN_SIZE.0 + SERVER_PANEL / 2 {
        (body, None)
    } else {
        let [c, p] =
            Layout::horizontal([Constraint::Min(20), Constraint::Length(SERVER_PANEL)]).areas(body);
        (c, Some(p))
    };
    clients_chart(frame.buffer_mut(), clients, model, big);
    if let Some(panel) = panel {
        frame.render_widget(Paragraph::new(server_lines(&server, big)), panel);
    }
    frame.render_widget(Paragraph::new(count_lines(model, counts.width)), counts);
    frame.render_widget(Paragraph::new(footer_lines(big)), footer_area);
}

/// The title: what runs, the time so far of the planned, the deadline, and the state of
/// the view.
fn title_lines(model: &Model, big: bool) -> Vec<Line<'static>> {
    let shape = &model.shape;
    let clock = if shape.from_start {
        "from the start"
    } else {
        "per call"
    };
    let mut spans = vec![
        Span::styled(
            "servelab live",
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            " · {} · {} of {} · deadline {} {clock}",
            shape.title,
            seconds(model.now()),
            seconds(shape.planned),
            seconds(shape.timeout)
        )),
    ];
    if model.stopping {
        spans.push(Span::styled(
            "  STOPPING",
            Style::default().fg(DEADLINE).add_modifier(Modifier::BOLD),
        ));
    } else if model.paused {
        spans.push(Span::styled(
            "  PAUSED (space to go on)",
            Style::default().add_modifier(Modifier::REVERSED),
        ));
    }
    let mut lines = vec![Line::from(spans)];
    // A comparison's architectures measured before this one, each as it ended: one panel
    // a line, so the room sees the whole comparison build up.
    let earlier = &shape.earlier;
    for line in &earlier[earlier.len().saturating_sub(EARLIER_SHOWN)..] {
        lines.push(Line::styled(
            format!("  before: {line}"),
            Style::default().add_modifier(Modifier::DIM),
        ));
    }
    if big {
        lines.push(Line::raw(""));
    }
    lines
}

/// `d` in seconds, with one decimal.
fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The clients: a row each when they fit (two lines each in the big layout, when those
/// fit), else the stacked chart; and the time axis below either.
fn clients_chart(buf: &mut Buffer, area: Rect, model: &Model, big: bool) {
    if area.height < 2 || area.width < 24 {
        return;
    }
    let clients = model.ticks.last().map_or(0, |t| t.states.len());
    let rows_room = usize::from(area.height - 1);
    let thickness = if big && clients * 2 <= rows_room {
        2
    } else {
        1
    };
    // The bar: after the client's number, before its state's name.
    let label = 6u16;
    let name = 22u16;
    let bar = Rect {
        x: area.x + label,
        y: area.y,
        width: area.width.saturating_sub(label + name),
        height: area.height - 1,
    };
    let rows = model.shape.clients == clients && clients > 0 && clients * thickness <= rows_room;
    if rows {
        // The axis right under the last row.
        let bar = Rect {
            height: (clients * thickness) as u16,
            ..bar
        };
        client_rows(buf, area, bar, model, thickness);
        axis(buf, bar, model);
    } else {
        stacked(buf, bar, model);
        buf.set_string(
            area.x,
            area.y,
            format!("{}", model.shape.clients),
            Style::default(),
        );
        buf.set_string(area.x, bar.y + bar.height - 1, "0", Style::default());
        axis(buf, bar, model);
    }
}

/// One row per client: its number, its states over time, its state now.
fn client_rows(buf: &mut Buffer, area: Rect, bar: Rect, model: &Model, thickness: usize) {
    let Some(last) = model.ticks.last() else {
        return;
    };
    let deadline = deadline_column(bar, model);
    for (i, state) in last.states.iter().enumerate() {
        for line in 0..thickness {
            let y = bar.y + (i * thickness + line) as u16;
            if line == 0 {
                buf.set_string(area.x, y, format!("{:>5}", i + 1), Style::default());
                let (colour, _) = look(Kind::of(*state));
                let text = match state {
                    ClientState::Ended(o) => o.name().replace('_', " "),
                    s => Kind::of(*s).name().to_owned(),
                };
                buf.set_string(bar.x + bar.width + 1, y, text, Style::default().fg(colour));
            }
            for col in 0..bar.width {
                let kind = column_time(bar, model, col)
                    .and_then(|t| model.tick_at(t).or(model.ticks.first()))
                    .and_then(|tick| tick.states.get(i))
                    .map_or(Kind::NotStarted, |s| Kind::of(*s));
                // An ended client's row stops where it ended; its outcome is at the right.
                let kind = match kind {
                    Kind::Served | Kind::TimedOut | Kind::Other => Kind::NotStarted,
                    k => k,
                };
                let (colour, symbol) = look(kind);
                let cell = &mut buf[(bar.x + col, y)];
                cell.set_char(symbol).set_fg(colour);
                if Some(col) == deadline {
                    cell.set_char('┃').set_fg(DEADLINE);
                }
            }
        }
    }
}

/// The stacked chart: for each column of time, how many clients were in each state,
/// bottom to top in the order of [`Kind::ALL`].
fn stacked(buf: &mut Buffer, bar: Rect, model: &Model) {
    let clients = model.shape.clients.max(1);
    let deadline = deadline_column(bar, model);
    let height = usize::from(bar.height);
    for col in 0..bar.width {
        // Before the first tick, the first tick's picture (the clients start at once).
        let tick =
            column_time(bar, model, col).and_then(|t| model.tick_at(t).or(model.ticks.first()));
        let Some(tick) = tick else {
            continue;
        };
        let mut below = 0usize;
        let mut filled = 0usize;
        for (kind, count) in Kind::ALL.iter().zip(tick.counts) {
            below += count;
            // Rounded, so that each kind's share is within half a cell.
            let top = (below * height + clients / 2) / clients;
            let (colour, symbol) = look(*kind);
            for cell in filled..top.min(height) {
                let y = bar.y + bar.height - 1 - cell as u16;
                buf[(bar.x + col, y)].set_char(symbol).set_fg(colour);
            }
            filled = filled.max(top);
        }
        if Some(col) == deadline {
            for y in bar.y..bar.y + bar.height {
                buf[(bar.x + col, y)].set_char('┃').set_fg(DEADLINE);
            }
        }
    }
}

/// The moment column `col` of `bar` stands for (its end), if the view has reached it.
fn column_time(bar: Rect, model: &Model, col: u16) -> Option<Duration> {
    let span = model.span();
    let t = span.mul_f64(f64::from(col + 1) / f64::from(bar.width.max(1)));
    (t <= model.now() + span / u32::from(bar.width.max(1))).then_some(t)
}

/// The column of the deadline, when it is one moment for every client (counted from the
/// common start) and within the axis.
fn deadline_column(bar: Rect, model: &Model) -> Option<u16> {
    if !model.shape.from_start || model.shape.load || bar.width == 0 {
        return None;
    }
    let share = model.shape.timeout.as_secs_f64() / model.span().as_secs_f64();
    let col = (share * f64::from(bar.width)).round() as i64 - 1;
    u16::try_from(col).ok().filter(|c| *c < bar.width)
}

/// The time axis under the chart: 0 on the left, the span on the right, the deadline
/// under its column.
fn axis(buf: &mut Buffer, bar: Rect, model: &Model) {
    let y = bar.y + bar.height;
    let style = Style::default().fg(Color::DarkGray);
    buf.set_string(bar.x, y, "0 s", style);
    let end = seconds(model.span());
    let end_x = (bar.x + bar.width).saturating_sub(end.len() as u16);
    // The deadline's mark reads away from its column: to the right if there is room
    // before the end's label, else to the left; the end's label gives way to it.
    let mut end_free = true;
    if let Some(col) = deadline_column(bar, model) {
        let x = bar.x + col;
        let right = format!("┃ deadline {}", seconds(model.shape.timeout));
        let left = format!("deadline {} ┃", seconds(model.shape.timeout));
        let len = right.chars().count() as u16;
        if x + len < end_x {
            buf.set_string(x, y, right, Style::default().fg(DEADLINE));
        } else if x + 1 >= bar.x + 4 + len {
            buf.set_string(x + 1 - len, y, left, Style::default().fg(DEADLINE));
            end_free = x + 1 < end_x;
        }
    }
    if end_free {
        buf.set_string(end_x, y, end, style);
    }
}

/// The server's panel: each figure of its `/stats`, its value now and a sparkline of its
/// history (in the big layout, only the value).
fn server_lines(series: &[(String, Vec<u64>)], big: bool) -> Vec<Line<'static>> {
    let mut lines = vec![Line::styled(
        "server (/stats)",
        Style::default().add_modifier(Modifier::BOLD),
    )];
    for (name, history) in series {
        let now = history.last().copied().unwrap_or(0);
        if big {
            lines.push(Line::raw(format!("{name}: {now}")));
            continue;
        }
        let values: Vec<f64> = history.iter().map(|v| *v as f64).collect();
        lines.push(Line::raw(format!("{name:<18.18}{now:>5}")));
        lines.push(Line::styled(
            format!("  {}", spark(&values, usize::from(SERVER_PANEL) - 3)),
            Style::default().fg(Color::Rgb(0x15, 0x65, 0xc0)),
        ));
    }
    lines
}

/// The outcome counts (clients by outcome, those still running by state), and for load
/// runs the requests so far with sparklines of requests per second and p99.
fn count_lines(model: &Model, width: u16) -> Vec<Line<'static>> {
    let served = model.count(Kind::Served);
    let timed_out = model.count(Kind::TimedOut);
    let other = model.count(Kind::Other);
    let running: usize = [
        Kind::Connecting,
        Kind::Waiting,
        Kind::Answering,
        Kind::Holding,
        Kind::Idle,
    ]
    .iter()
    .map(|k| model.count(*k))
    .sum();
    let bold = |kind: Kind| {
        Style::default()
            .fg(look(kind).0)
            .add_modifier(Modifier::BOLD)
    };
    let predicted = model
        .shape
        .predicted
        .as_ref()
        .map(|p| format!(" (predicted {p})"))
        .unwrap_or_default();
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("served {served}"), bold(Kind::Served)),
        Span::raw(predicted),
        Span::raw(" · "),
        Span::styled(format!("timed out {timed_out}"), bold(Kind::TimedOut)),
        Span::raw(" · "),
        Span::styled(format!("other {other}"), bold(Kind::Other)),
        Span::raw(format!(
            " · running {running} · not started {}",
            model.count(Kind::NotStarted)
        )),
    ])];
    let t = model.totals;
    lines.push(Line::raw(format!(
        "requests: {} sent · {} served · {} failed",
        t.sent, t.served, t.errors
    )));
    if model.shape.load {
        let room = usize::from(width / 2).saturating_sub(22).max(8);
        let rates: Vec<f64> = model.ticks.iter().map(|t| t.rate).collect();
        let p99: Vec<f64> = model
            .ticks
            .iter()
            .map(|t| t.p99_us.unwrap_or(0) as f64)
            .collect();
        let last_p99 = model.ticks.iter().rev().find_map(|t| t.p99_us);
        lines.push(Line::raw(format!(
            "req/s {:>8.0} {}  p99 ≈{:>9} {}",
            rates.last().copied().unwrap_or(0.0),
            spark(&rates, room),
            last_p99.map_or("-".to_owned(), |us| format!("{:.1} ms", us as f64 / 1000.0)),
            spark(&p99, room),
        )));
    }
    lines
}

/// How the run ended, in a line for the next run's view of the same command: the server,
/// the clients served of all, and the prediction.
pub(crate) fn ended_line(model: &Model) -> String {
    format!(
        "{}: served {} of {}{}",
        model.shape.title,
        model.count(Kind::Served),
        model.shape.clients,
        model
            .shape
            .predicted
            .as_ref()
            .map(|p| format!(" (predicted {p})"))
            .unwrap_or_default()
    )
}

/// The outcome counts in a line of plain text, as the view's last frame had them.
pub(crate) fn summary(model: &Model) -> String {
    let t = model.totals;
    format!(
        "{}: served {} · timed out {} · other {}; requests {} sent, {} served, {} failed",
        model.shape.title,
        model.count(Kind::Served),
        model.count(Kind::TimedOut),
        model.count(Kind::Other),
        t.sent,
        t.served,
        t.errors
    )
}

/// The legend and the keys.
fn footer_lines(big: bool) -> Vec<Line<'static>> {
    let keys = Line::styled(
        "q: stop the run (the report follows) · space: pause the display",
        Style::default().fg(Color::DarkGray),
    );
    if big {
        return vec![keys];
    }
    let mut spans = Vec::new();
    for kind in [
        Kind::Connecting,
        Kind::Waiting,
        Kind::Answering,
        Kind::Holding,
    ] {
        let (colour, symbol) = look(kind);
        spans.push(Span::styled(
            format!("{symbol}{symbol}"),
            Style::default().fg(colour),
        ));
        spans.push(Span::raw(format!(" {}  ", kind.name())));
    }
    spans.push(Span::styled("┃", Style::default().fg(DEADLINE)));
    spans.push(Span::raw(" deadline"));
    vec![Line::from(spans), keys]
}

/// The last `width` of `values` as a sparkline, scaled to their largest.
pub(crate) fn spark(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let shown = &values[values.len().saturating_sub(width)..];
    let max = shown.iter().copied().fold(0.0, f64::max);
    shown
        .iter()
        .map(|v| {
            if max <= 0.0 {
                BARS[0]
            } else {
                let level = (v / max * 7.0).round().clamp(0.0, 7.0) as usize;
                BARS[level]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::model::{Shape, Tick};
    use loadgen::outcome::Outcome;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn shape(clients: usize, load: bool) -> Shape {
        Shape {
            title: format!("single · {clients} clients"),
            clients,
            timeout: Duration::from_millis(1500),
            from_start: true,
            planned: Duration::from_millis(2000),
            load,
            predicted: None,
            earlier: Vec::new(),
        }
    }

    /// A model whose clients each go through `states` at ticks 200 ms apart; client `k`
    /// (from 0) is `2k` ticks behind client 0, as a queue would make them.
    fn model(clients: usize, states: &[ClientState], load: bool) -> Model {
        lagging(clients, states, load, 2)
    }

    /// [`model`] with client `k` `lag × k` ticks behind client 0.
    fn lagging(clients: usize, states: &[ClientState], load: bool, lag: usize) -> Model {
        let mut model = Model::new(shape(clients, load));
        for tick in 0..8usize {
            let states: Vec<ClientState> = (0..clients)
                .map(|k| states[tick.saturating_sub(lag * k).min(states.len() - 1)])
                .collect();
            let mut counts = [0; 9];
            for s in &states {
                let kind = Kind::of(*s);
                counts[Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)] += 1;
            }
            model.push(Tick {
                at: Duration::from_millis(200 * (tick as u64 + 1)),
                states: if clients <= 512 { states } else { Vec::new() },
                counts,
                rate: tick as f64 * 100.0,
                p99_us: Some(1000 * tick as u64 + 1),
            });
        }
        model
    }

    /// The screen's text, line by line.
    fn screen(model: &Model, layout: ViewLayout, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a terminal");
        terminal
            .draw(|frame| draw(frame, model, layout))
            .expect("drawn");
        let buffer = terminal.backend().buffer().clone();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_owned())
                    .collect()
            })
            .collect()
    }

    const LIFE: [ClientState; 4] = [
        ClientState::Connecting,
        ClientState::Waiting,
        ClientState::Holding,
        ClientState::Ended(Outcome::Served),
    ];

    #[test]
    fn each_client_is_a_row_with_its_states_the_deadline_and_its_state_now() {
        let model = model(5, &LIFE, false);
        let lines = screen(&model, ViewLayout::Normal, 100, 20);
        assert!(lines[0].starts_with("servelab live · single · 5 clients · 1.6 s of 2.0 s"));
        for (id, row) in lines.iter().enumerate().take(6).skip(1) {
            assert!(row.starts_with(&format!("{id:>5} ")), "{row}");
            assert!(row.contains('┃'), "the deadline column: {row}");
        }
        // Client 1 went through every state and is served; client 4 waits for service,
        // client 5 is still connecting.
        assert!(lines[1].contains('░') && lines[1].contains('▒') && lines[1].contains('▓'));
        assert!(lines[1].trim_end().ends_with("served"), "{}", lines[1]);
        let now = |id: usize| lines[id].trim_end().to_owned();
        assert!(now(4).ends_with("waiting for service"), "{}", now(4));
        assert!(now(5).ends_with("waiting to connect"), "{}", now(5));
        assert!(!lines[5].contains('▒'), "{}", lines[5]);
        // The deadline sits at 1.5 s of the 2 s axis, in the same column on every row.
        let column = |row: &str| row.chars().position(|c| c == '┃');
        assert!((2..=5).all(|id| column(&lines[id]) == column(&lines[1])));
        assert!(lines[6].contains("deadline 1.5 s"), "{}", lines[6]);
        let counts = lines
            .iter()
            .find(|l| l.starts_with("served "))
            .expect("counts");
        assert!(
            counts.contains("served 3 · timed out 0 · other 0 · running 2"),
            "{counts}"
        );
        assert!(lines.iter().any(|l| l.contains("q: stop the run")));
        assert!(lines.iter().any(|l| l.contains("▒▒ waiting for service")));
    }

    #[test]
    fn above_a_screenful_the_clients_are_a_stacked_chart() {
        // Everyone together: connecting at first, all served by the last tick.
        let model = lagging(100, &LIFE, false, 0);
        let lines = screen(&model, ViewLayout::Normal, 100, 20);
        assert!(lines[1].starts_with("100 "), "{}", lines[1]);
        assert!(!lines.iter().any(|l| l.starts_with("   50 ")));
        // The first column of the chart has everyone connecting; the last, at 1.6 s,
        // served ones at the bottom.
        let bottom = lines
            .iter()
            .rev()
            .find(|l| l.starts_with("0 "))
            .expect("the 0 row");
        assert!(bottom.contains('░') && bottom.contains('█'), "{bottom}");
        let counts = lines
            .iter()
            .find(|l| l.starts_with("served "))
            .expect("counts");
        assert!(counts.contains("not started 0"), "{counts}");
    }

    #[test]
    fn a_load_run_draws_requests_per_second_and_p99() {
        let model = model(10, &[ClientState::Waiting], true);
        let lines = screen(&model, ViewLayout::Normal, 100, 24);
        let rates = lines
            .iter()
            .find(|l| l.starts_with("req/s"))
            .expect("rates");
        assert!(rates.contains("700"), "{rates}");
        assert!(
            rates.contains("p99 ≈") && rates.contains("7.0 ms"),
            "{rates}"
        );
        assert!(rates.contains('█') && rates.contains('▁'), "{rates}");
        // A load run's deadline is each request's: no column.
        assert!(!lines[1].contains('┃'), "{}", lines[1]);
    }

    #[test]
    fn the_big_layout_draws_rows_twice_as_thick_and_no_legend() {
        let model = model(5, &LIFE, false);
        let lines = screen(&model, ViewLayout::Big, 100, 20);
        let rows: Vec<&String> = lines.iter().filter(|l| l.contains('┃')).collect();
        assert_eq!(rows.len(), 10 + 1, "two lines a client and the axis");
        assert!(!lines.iter().any(|l| l.contains("▒▒ waiting for service")));
        assert!(lines.iter().any(|l| l.contains("q: stop the run")));
    }

    #[test]
    fn pause_and_stop_show_in_the_title() {
        let mut model = model(5, &LIFE, false);
        model.paused = true;
        assert!(screen(&model, ViewLayout::Normal, 100, 20)[0].contains("PAUSED"));
        model.stopping = true;
        assert!(screen(&model, ViewLayout::Normal, 100, 20)[0].contains("STOPPING"));
    }

    #[test]
    fn sparklines_scale_to_their_largest_and_keep_the_latest() {
        assert_eq!(spark(&[0.0, 1.0, 2.0], 3), "▁▅█");
        assert_eq!(spark(&[9.0, 0.0, 0.0], 2), "▁▁");
        assert_eq!(spark(&[], 4), "");
        let summary = summary(&model(5, &LIFE, false));
        assert!(
            summary.starts_with("single · 5 clients: served 3 · timed out 0"),
            "{summary}"
        );
    }
}
