//! Service-level gates: what a run must achieve for a CI job to pass.
//!
//! A load test in CI is useful only if it can fail. `--slo "p99<50ms,served>=99%,errors<0.1%"`
//! names the levels; after the run each gate is judged against what was measured, and the
//! simulator exits with status 3 if any is missed. This module is the language and the
//! judging, with no I/O: [`Gates::parse`] reads an expression, [`Gates::judge`] compares it
//! with a [`Measured`] and returns one [`Judged`] per gate, each saying what was measured
//! and what was required, for the text and JSON reports.
//!
//! The grammar is a comma-separated list of `METRIC OP VALUE`, spaces allowed:
//!
//! | metric | what it measures | value |
//! |---|---|---|
//! | `p50`, `p90`, `p99`, `p99.9`, `max` | latency at that percentile: corrected (from the moment a request was due) in open loops, each client's wait in scenario runs | a duration: `50ms`, `800us`, `1s` |
//! | `served` | the fraction served in time (2xx before the deadline) of the requests judged (open loop: those that came due, less any still unfinished at the end) | a percentage `99%` or a fraction `0.99` |
//! | `errors` | the fraction that got no 2xx answer at all: refused, reset, not HTTP, non-2xx, no answer by the deadline (a late 2xx is not an error, but it is not served either) | as `served` |
//! | `rps` | requests served in time per second (goodput) | a number |
//!
//! and `OP` is one of `<`, `<=`, `>`, `>=`. A request that timed out counts at the
//! deadline in the latency histogram, so a latency gate at or above the deadline cannot be
//! met by dropping slow requests.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// A gate expression that cannot be read, said in one sentence (the caller names the
/// flag and the expression: clap does, for `--slo`).
#[derive(Debug, thiserror::Error)]
#[error("{problem}")]
pub struct SloError {
    problem: String,
}

/// What a gate measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency percentile (0.5, 0.9, 0.99, 0.999), or the maximum (1.0).
    Latency(f64),
    Served,
    Errors,
    Rate,
}

/// How the measured value must compare with the gate's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds(self, measured: f64, required: f64) -> bool {
        match self {
            Cmp::Lt => measured < required,
            Cmp::Le => measured <= required,
            Cmp::Gt => measured > required,
            Cmp::Ge => measured >= required,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}

/// One gate: `metric op value`. Latency values are in microseconds, fractions in 0..=1.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub metric: Metric,
    pub cmp: Cmp,
    pub value: f64,
    /// The gate as written (trimmed), for the report.
    pub text: String,
}

/// The gates of one `--slo`, in the order written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gates(pub Vec<Gate>);

/// What the run measured, in the units the gates use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    /// Latency percentiles and the maximum, in microseconds.
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    pub max_us: u64,
    /// Served in time, as a fraction of those judged.
    pub served: f64,
    /// No 2xx answer at all, as a fraction of those judged.
    pub errors: f64,
    /// Served in time per second; `None` for scenario runs, which have no rate.
    pub rate: Option<f64>,
}

/// One gate's verdict, as the reports show it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Judged {
    /// The gate as written, e.g. `p99<50ms`.
    pub gate: String,
    /// The measured value in the gate's terms, e.g. `12.4ms`, `99.82%`, `41230/s`.
    pub measured: String,
    /// What was required, e.g. `< 50ms`.
    pub required: String,
    pub met: bool,
}

impl Gates {
    /// Reads an expression such as `p99<50ms,served>=99%,errors<0.1%`.
    pub fn parse(expression: &str) -> Result<Gates, SloError> {
        let fail = |problem: String| SloError { problem };
        let mut gates = Vec::new();
        for part in expression.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(fail(
                    "a gate is empty (two commas in a row, or one at an end)".into(),
                ));
            }
            gates.push(Gate::parse(part).map_err(fail)?);
        }
        Ok(Gates(gates))
    }

    /// Each gate judged against `measured`, in order.
    pub fn judge(&self, measured: &Measured) -> Vec<Judged> {
        self.0.iter().map(|gate| gate.judge(measured)).collect()
    }
}

impl Gate {
    /// One `METRIC OP VALUE`; the error is the problem, for [`Gates::parse`] to frame.
    fn parse(text: &str) -> Result<Gate, String> {
        // The operator: the first of `<`, `>` (with an `=` after it, if there is one).
        let at = text.find(['<', '>']).ok_or_else(|| {
            format!("{text:?} has no comparison: write METRIC<VALUE, <=, > or >= (e.g. p99<50ms)")
        })?;
        let (name, rest) = (text[..at].trim(), &text[at..]);
        let (cmp, value) = match (rest.as_bytes()[0], rest.as_bytes().get(1)) {
            (b'<', Some(b'=')) => (Cmp::Le, &rest[2..]),
            (b'<', _) => (Cmp::Lt, &rest[1..]),
            (_, Some(b'=')) => (Cmp::Ge, &rest[2..]),
            _ => (Cmp::Gt, &rest[1..]),
        };
        let metric = match name {
            "p50" => Metric::Latency(0.5),
            "p90" => Metric::Latency(0.9),
            "p99" => Metric::Latency(0.99),
            "p99.9" | "p999" => Metric::Latency(0.999),
            "max" => Metric::Latency(1.0),
            "served" => Metric::Served,
            "errors" => Metric::Errors,
            "rps" => Metric::Rate,
            other => {
                return Err(format!(
                "{other:?} is not a metric: use p50, p90, p99, p99.9, max, served, errors or rps"
            ))
            }
        };
        let value = parse_value(metric, value.trim())?;
        Ok(Gate {
            metric,
            cmp,
            value,
            text: text.to_string(),
        })
    }

    fn judge(&self, m: &Measured) -> Judged {
        let (measured, shown) = match self.metric {
            Metric::Latency(q) => {
                let us = match q {
                    q if q <= 0.5 => m.p50_us,
                    q if q <= 0.9 => m.p90_us,
                    q if q <= 0.99 => m.p99_us,
                    q if q <= 0.999 => m.p99_9_us,
                    _ => m.max_us,
                };
                (us as f64, show_us(us as f64))
            }
            Metric::Served => (m.served, show_fraction(m.served)),
            Metric::Errors => (m.errors, show_fraction(m.errors)),
            // A scenario run has no rate: the gate cannot be met.
            Metric::Rate => match m.rate {
                Some(rate) => (rate, format!("{rate:.0}/s")),
                None => (f64::NAN, "no rate (not a load run)".into()),
            },
        };
        let required = match self.metric {
            Metric::Latency(_) => show_us(self.value),
            Metric::Served | Metric::Errors => show_fraction(self.value),
            Metric::Rate => format!("{:.0}/s", self.value),
        };
        Judged {
            gate: self.text.clone(),
            measured: shown,
            required: format!("{} {required}", self.cmp.symbol()),
            met: self.cmp.holds(measured, self.value),
        }
    }
}

/// A gate's value in its metric's unit: microseconds, a fraction, or requests a second.
fn parse_value(metric: Metric, text: &str) -> Result<f64, String> {
    match metric {
        Metric::Latency(_) => humantime::parse_duration(text)
            .map(|d: Duration| d.as_secs_f64() * 1e6)
            .map_err(|_| format!("{text:?} is not a duration (write e.g. 50ms, 800us or 1s)")),
        Metric::Served | Metric::Errors => {
            let (number, scale) = match text.strip_suffix('%') {
                Some(number) => (number.trim(), 100.0),
                None => (text, 1.0),
            };
            match number.parse::<f64>() {
                Ok(v) if v.is_finite() && (0.0..=1.0).contains(&(v / scale)) => Ok(v / scale),
                _ => Err(format!(
                    "{text:?} is not a fraction: write a percentage from 0% to 100% or a number from 0 to 1"
                )),
            }
        }
        Metric::Rate => match text.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(format!(
                "{text:?} is not a rate: write requests per second, e.g. 1000"
            )),
        },
    }
}

fn show_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1}ms", us / 1000.0)
    } else {
        format!("{us:.0}us")
    }
}

fn show_fraction(f: f64) -> String {
    format!("{:.2}%", f * 100.0)
}

impl fmt::Display for Gates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<&str> = self.0.iter().map(|g| g.text.as_str()).collect();
        f.write_str(&texts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured() -> Measured {
        Measured {
            p50_us: 400,
            p90_us: 2_000,
            p99_us: 12_400,
            p99_9_us: 40_000,
            max_us: 50_000,
            served: 0.9982,
            errors: 0.0004,
            rate: Some(41_230.0),
        }
    }

    #[test]
    fn reads_every_metric_and_operator() {
        let gates =
            Gates::parse("p99<50ms, served>=99%, errors<0.1%, rps>40000, p50<=1ms, max>0.5s")
                .expect("a valid expression");
        let kinds: Vec<(Metric, Cmp, f64)> =
            gates.0.iter().map(|g| (g.metric, g.cmp, g.value)).collect();
        assert_eq!(
            kinds,
            vec![
                (Metric::Latency(0.99), Cmp::Lt, 50_000.0),
                (Metric::Served, Cmp::Ge, 0.99),
                (Metric::Errors, Cmp::Lt, 0.001),
                (Metric::Rate, Cmp::Gt, 40_000.0),
                (Metric::Latency(0.5), Cmp::Le, 1_000.0),
                (Metric::Latency(1.0), Cmp::Gt, 500_000.0),
            ]
        );
        assert_eq!(
            gates.to_string(),
            "p99<50ms,served>=99%,errors<0.1%,rps>40000,p50<=1ms,max>0.5s"
        );
    }

    #[test]
    fn judges_met_and_missed_gates_with_what_was_measured() {
        let gates =
            Gates::parse("p99<50ms,p99<10ms,served>=99%,served>=99.9%,rps>=50000").expect("valid");
        let judged = gates.judge(&measured());
        let met: Vec<bool> = judged.iter().map(|j| j.met).collect();
        assert_eq!(met, vec![true, false, true, false, false]);
        assert_eq!(judged[1].measured, "12.4ms");
        assert_eq!(judged[1].required, "< 10.0ms");
        assert_eq!(judged[3].measured, "99.82%");
        assert_eq!(judged[4].measured, "41230/s");
    }

    #[test]
    fn a_rate_gate_on_a_scenario_run_is_missed() {
        let judged = Gates::parse("rps>1")
            .expect("valid")
            .judge(&Measured::default());
        assert!(!judged[0].met);
        assert_eq!(judged[0].measured, "no rate (not a load run)");
    }

    #[test]
    fn bad_expressions_are_one_sentence_each() {
        for (expression, says) in [
            ("p98<5ms", "\"p98\" is not a metric"),
            ("p99=5ms", "has no comparison"),
            ("p99<fast", "\"fast\" is not a duration"),
            ("served>=120%", "is not a fraction"),
            ("errors<-1", "is not a fraction"),
            ("rps>lots", "is not a rate"),
            ("p99<5ms,,served>1%", "a gate is empty"),
            ("", "a gate is empty"),
        ] {
            let error = Gates::parse(expression).expect_err(expression).to_string();
            assert!(error.contains(says), "{expression:?}: {error}");
            assert!(
                !error.contains('\n'),
                "{expression:?}: one line, got {error}"
            );
        }
    }
}
