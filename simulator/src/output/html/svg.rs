//! A small SVG writer for the report's charts: a plot area with two axes, and the marks
//! the charts need (lines, steps, rectangles, rules, labels). The charts are inline SVG, so
//! they need no script, no font and no other file to be seen.
//!
//! Coordinates are data values; each [`Plot`] maps them onto its pixels with its two
//! [`Scale`]s. Everything written is escaped, so a server's thread name or an error message
//! cannot break the page.

use std::fmt::Write as _;

/// The colours of the outcomes and series, chosen to be told apart in colour and in grey.
pub mod colour {
    pub const SERVED: &str = "#2e7d32";
    pub const CONNECT_TIMEOUT: &str = "#6a1b9a";
    pub const SERVICE_TIMEOUT: &str = "#c62828";
    pub const REFUSED: &str = "#37474f";
    pub const RESET: &str = "#ef6c00";
    pub const REJECTED: &str = "#f9a825";
    pub const BAD: &str = "#8d6e63";
    pub const STARVED: &str = "#9e9e9e";
    pub const CONNECTING: &str = "#cfd8dc";
    pub const WAITING: &str = "#90caf9";
    pub const SERVING: &str = "#1565c0";
    pub const HOLDING: &str = "#a5d6a7";
    pub const DEADLINE: &str = "#d32f2f";
    pub const GRID: &str = "#e0e0e0";
    pub const AXIS: &str = "#424242";
    /// Series of a comparison, one per architecture.
    pub const SERIES: [&str; 8] = [
        "#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#ad1457",
    ];
}

/// Escapes text for HTML and SVG.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// How data values map onto one axis.
#[derive(Debug, Clone, Copy)]
pub enum Scale {
    /// `min` to `max`, evenly.
    Linear { min: f64, max: f64 },
    /// Percentiles on a "nines" axis: the distance from `q` to 1 on a log scale, so 90%,
    /// 99%, 99.9% ... are evenly spaced; `max_nines` is the axis's end (3: 99.9%).
    Nines { max_nines: f64 },
}

impl Scale {
    /// `value` as a fraction of the axis, 0 to 1 (clamped).
    fn fraction(self, value: f64) -> f64 {
        let f = match self {
            Scale::Linear { min, max } => {
                if max > min {
                    (value - min) / (max - min)
                } else {
                    0.0
                }
            }
            Scale::Nines { max_nines } => nines(value) / max_nines.max(1e-9),
        };
        f.clamp(0.0, 1.0)
    }
}

/// How many nines a quantile has: 0.9 → 1, 0.99 → 2, 0.5 → 0.3.
pub fn nines(q: f64) -> f64 {
    -(1.0 - q.min(1.0 - 1e-12)).log10()
}

/// A "nice" upper end for an axis that must show `max`: 1, 2 or 5 times a power of ten.
pub fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * power >= max {
            return step * power;
        }
    }
    10.0 * power
}

/// Ticks for a linear axis from 0 to `max` (a [`nice_max`]): five or so.
pub fn ticks(max: f64) -> Vec<f64> {
    let step = nice_max(max / 5.0);
    let mut t = Vec::new();
    let mut v = 0.0;
    while v <= max * 1.0001 && t.len() < 12 {
        t.push(v);
        v += step;
    }
    t
}

/// Ticks for an axis of whole things (clients, threads, items) from 0 to at least `max`:
/// whole numbers only.
pub fn count_ticks(max: f64) -> Vec<f64> {
    let step = nice_max(max / 5.0).max(1.0);
    let mut t = Vec::new();
    let mut v = 0.0;
    while v <= max * 1.0001 && t.len() < 12 {
        t.push(v);
        v += step;
    }
    t
}

/// One chart: an SVG of `width` × `height` pixels with a plot area inside its margins.
#[derive(Debug, Clone)]
pub struct Plot {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    pub x: Scale,
    pub y: Scale,
    body: String,
}

impl Plot {
    pub fn new(width: f64, height: f64, x: Scale, y: Scale) -> Plot {
        Plot {
            width,
            height,
            left: 64.0,
            right: 16.0,
            top: 12.0,
            bottom: 40.0,
            x,
            y,
            body: String::new(),
        }
    }

    /// A chart with two linear axes from 0: to `x_max` across and `y_max` up.
    pub fn linear(width: f64, height: f64, x_max: f64, y_max: f64) -> Plot {
        Plot::new(
            width,
            height,
            Scale::Linear {
                min: 0.0,
                max: x_max,
            },
            Scale::Linear {
                min: 0.0,
                max: y_max,
            },
        )
    }

    /// Wider left margin (for row labels).
    pub fn left_margin(mut self, px: f64) -> Plot {
        self.left = px;
        self
    }

    /// Wider right margin (for labels at the end of rows).
    pub fn right_margin(mut self, px: f64) -> Plot {
        self.right = px;
        self
    }

    /// Pixel x of data value `v`.
    pub fn px(&self, v: f64) -> f64 {
        self.left + self.x.fraction(v) * (self.width - self.left - self.right)
    }

    /// Pixel y of data value `v` (up is more).
    pub fn py(&self, v: f64) -> f64 {
        self.height - self.bottom - self.y.fraction(v) * (self.height - self.top - self.bottom)
    }

    /// The plot area's pixel bounds: (left, top, right, bottom).
    pub fn area(&self) -> (f64, f64, f64, f64) {
        (
            self.left,
            self.top,
            self.width - self.right,
            self.height - self.bottom,
        )
    }

    /// Grid lines and labels of the x axis at `ticks` (data values), with `label` for each.
    pub fn x_axis(&mut self, ticks: &[f64], label: impl Fn(f64) -> String, title: &str) {
        let (_, top, _, bottom) = self.area();
        for &t in ticks {
            let x = self.px(t);
            let _ = write!(
                self.body,
                r#"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="{}" />"#,
                colour::GRID
            );
            let _ = write!(
                self.body,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
                bottom + 14.0,
                escape(&label(t))
            );
        }
        let (left, _, right, _) = self.area();
        let _ = write!(
            self.body,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12" fill="{}">{}</text>"#,
            (left + right) / 2.0,
            self.height - 6.0,
            colour::AXIS,
            escape(title)
        );
    }

    /// Grid lines and labels of the y axis at `ticks`.
    pub fn y_axis(&mut self, ticks: &[f64], label: impl Fn(f64) -> String, title: &str) {
        let (left, _, right, _) = self.area();
        for &t in ticks {
            let y = self.py(t);
            let _ = write!(
                self.body,
                r#"<line x1="{left:.1}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="{}" />"#,
                colour::GRID
            );
            let _ = write!(
                self.body,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"#,
                left - 4.0,
                y + 4.0,
                escape(&label(t))
            );
        }
        let _ = write!(
            self.body,
            r#"<text x="12" y="{:.1}" font-size="12" fill="{}" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text>"#,
            self.height / 2.0,
            colour::AXIS,
            self.height / 2.0,
            escape(title)
        );
    }

    /// A polyline through `points` (data values).
    pub fn line(&mut self, points: &[(f64, f64)], stroke: &str, width: f64, dashed: bool) {
        if points.is_empty() {
            return;
        }
        let mut d = String::new();
        for (i, (x, y)) in points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                self.px(*x),
                self.py(*y)
            );
        }
        let _ = write!(
            self.body,
            r#"<path d="{d}" fill="none" stroke="{stroke}" stroke-width="{width}"{} />"#,
            if dashed {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            }
        );
    }

    /// A rectangle from (x0, y0) to (x1, y1) in data values, with a tooltip.
    pub fn rect(&mut self, x0: f64, x1: f64, y0: f64, y1: f64, fill: &str, title: &str) {
        let (a, b) = (self.px(x0), self.px(x1));
        let (c, d) = (self.py(y1), self.py(y0));
        let _ = write!(
            self.body,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"><title>{}</title></rect>"#,
            a.min(b),
            c.min(d),
            (b - a).abs().max(0.8),
            (d - c).abs().max(0.8),
            escape(title)
        );
    }

    /// A vertical rule at data x `v`, labelled at its top.
    pub fn vrule(&mut self, v: f64, stroke: &str, label: &str) {
        let (_, top, _, bottom) = self.area();
        let x = self.px(v);
        let _ = write!(
            self.body,
            r#"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="{stroke}" stroke-width="1.5" stroke-dasharray="6 3" />"#
        );
        let _ = write!(
            self.body,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" fill="{stroke}">{}</text>"#,
            x + 3.0,
            top + 10.0,
            escape(label)
        );
    }

    /// A horizontal rule at data y `v`, labelled at its right end.
    pub fn hrule(&mut self, v: f64, stroke: &str, label: &str) {
        let (left, _, right, _) = self.area();
        let y = self.py(v);
        let _ = write!(
            self.body,
            r#"<line x1="{left:.1}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="{stroke}" stroke-width="1.5" stroke-dasharray="6 3" />"#
        );
        let _ = write!(
            self.body,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11" fill="{stroke}">{}</text>"#,
            right - 2.0,
            y - 4.0,
            escape(label)
        );
    }

    /// A label at pixel coordinates.
    pub fn text_px(&mut self, x: f64, y: f64, anchor: &str, size: f64, text: &str) {
        let _ = write!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" font-size="{size}">{}</text>"#,
            escape(text)
        );
    }

    /// A dot at data (x, y).
    pub fn dot(&mut self, x: f64, y: f64, fill: &str, title: &str) {
        let _ = write!(
            self.body,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{fill}"><title>{}</title></circle>"#,
            self.px(x),
            self.py(y),
            escape(title)
        );
    }

    /// A replay's curtain over the plot area, drawn over everything so far: a white veil
    /// that uncovers the chart from left to right over `seconds`, led by a red line, then
    /// holds the whole chart for a tenth of the loop and starts again. It moves by CSS
    /// animation alone (the page's `replay-uncover` and `replay-cursor` keyframes), so the
    /// page keeps no script; the page pauses it by setting `animation-play-state` on the
    /// `moving` class.
    pub fn curtain_animated(&mut self, seconds: f64) {
        let (left, top, right, bottom) = self.area();
        let (w, h) = (right - left, bottom - top);
        let timing = format!("animation-duration: {seconds:.2}s");
        let _ = write!(
            self.body,
            r#"<rect class="moving veil" x="{left:.1}" y="{top:.1}" width="{w:.1}" height="{h:.1}" fill="white" fill-opacity="0.88" style="{timing}" />"#
        );
        let _ = write!(
            self.body,
            r#"<line class="moving cursor" x1="{left:.1}" y1="{top:.1}" x2="{left:.1}" y2="{bottom:.1}" stroke="{}" stroke-width="2" style="{timing}; --travel: {w:.1}px" />"#,
            colour::DEADLINE
        );
    }

    /// A still of the replay at data x `at`: the chart right of `at` veiled, a red line at
    /// `at`, and `label` (the moment) at the line's top. One frame of `--frames`.
    pub fn curtain_at(&mut self, at: f64, label: &str) {
        let (left, top, right, bottom) = self.area();
        let x = self.px(at).clamp(left, right);
        let _ = write!(
            self.body,
            r#"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="white" fill-opacity="0.88" />"#,
            right - x,
            bottom - top
        );
        let _ = write!(
            self.body,
            r#"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="{}" stroke-width="2" />"#,
            colour::DEADLINE
        );
        let anchor = if x > (left + right) / 2.0 {
            "end"
        } else {
            "start"
        };
        let nudge = if anchor == "end" { -4.0 } else { 4.0 };
        let _ = write!(
            self.body,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" font-size="13" font-weight="bold" fill="{}">{}</text>"#,
            x + nudge,
            top + 14.0,
            colour::DEADLINE,
            escape(label)
        );
    }

    /// The finished chart as an SVG file of its own: with its namespace (a file needs it,
    /// inline SVG does not) and a white background, so that it shows the same on a dark
    /// slide.
    pub fn finish_standalone(self, label: &str) -> String {
        let (w, h) = (self.width, self.height);
        let inline = self.finish(label);
        let open_end = inline.find('>').map_or(0, |i| i + 1);
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}<rect x=\"0\" y=\"0\" width=\"{w:.0}\" height=\"{h:.0}\" fill=\"#ffffff\" />{}\n",
            inline[..open_end].replacen("<svg ", "<svg xmlns=\"http://www.w3.org/2000/svg\" ", 1),
            &inline[open_end..]
        )
    }

    /// The finished SVG, described by `label` for screen readers.
    pub fn finish(self, label: &str) -> String {
        let (left, top, right, bottom) = self.area();
        format!(
            r#"<svg class="chart" viewBox="0 0 {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}" role="img" aria-label="{label}" font-family="sans-serif"><rect x="{left:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="{axis}" />{body}</svg>"#,
            right - left,
            bottom - top,
            w = self.width,
            h = self.height,
            label = escape(label),
            axis = colour::AXIS,
            body = self.body,
        )
    }
}

/// A legend: coloured squares with names, as HTML.
pub fn legend(items: &[(&str, &str)]) -> String {
    let mut out = String::from(r#"<p class="legend">"#);
    for (colour, name) in items {
        let _ = write!(
            out,
            r#"<span><i style="background:{colour}"></i>{}</span> "#,
            escape(name)
        );
    }
    out.push_str("</p>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_space_percentiles_evenly() {
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert!(nines(1.0).is_finite());
        let s = Scale::Nines { max_nines: 4.0 };
        assert!((s.fraction(0.99) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_max(7.3), 10.0);
        assert_eq!(nice_max(1500.0), 2000.0);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(ticks(10.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(count_ticks(2.0), [0.0, 1.0, 2.0]);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let mut p = Plot::new(
            100.0,
            100.0,
            Scale::Linear { min: 0.0, max: 1.0 },
            Scale::Linear { min: 0.0, max: 1.0 },
        );
        p.rect(0.0, 1.0, 0.0, 1.0, "red", "</svg><script>");
        assert!(!p.finish("x").contains("<script>"));
    }
}
