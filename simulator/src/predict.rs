//! Prediction beside measurement: what simple queueing arithmetic says should happen.
//!
//! When the target is a servelab server, its `/stats` tells the architecture and its
//! configuration. From those and the scenario, the simulator predicts how many clients will
//! be served before their deadline, prints the rule it used, and flags a measurement that
//! disagrees. The model (see `docs/simulator.md`):
//!
//! * the server has `P` slots that each serve one client at a time: 1 for `single`, the
//!   workers of a pool, one thread per client for thread-per-connection (up to
//!   `--max-threads`), and the handlers of a pipeline;
//! * a client occupies its slot for `O = K·D + H`: its `K` requests of `D` each (`D` is the
//!   `ms` of `/sleep/{ms}`, 0 for other routes), plus the time it holds the connection idle,
//!   `H = min(hold, keep-alive timeout)`. A pipeline's handlers are freed as soon as the
//!   response is computed, so there `O = K·D`: idle clients hold receivers, not handlers;
//! * clients are taken in order, so client `k` (from 0) completes at `⌊k/P⌋·O + K·D`, and is
//!   served if that is before its deadline `T`.
//!
//! A predicted completion closer to the deadline than the margin (a twentieth of `T`, at
//! least 25 ms) is flagged as *on the boundary*: real clocks, scheduling and the order of accepts
//! decide it, and the measurement may go either way.

use std::time::Duration;

use serde_json::Value;

use crate::scenario::{Load, Scenario};

/// What the target said about itself in `/stats`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub architecture: String,
    pub stats: Value,
}

impl ServerInfo {
    /// Reads a whole HTTP response to `GET /stats`; `None` if it is not servelab's.
    pub fn from_stats_response(response: &[u8]) -> Option<ServerInfo> {
        let body = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|at| &response[at + 4..])?;
        serde_json::from_slice(body)
            .ok()
            .and_then(ServerInfo::from_stats)
    }

    /// Reads a `/stats` document; `None` if it is not servelab's.
    pub fn from_stats(stats: Value) -> Option<ServerInfo> {
        let architecture = stats.get("architecture")?.as_str()?.to_owned();
        stats.get("config")?.as_object()?;
        Some(ServerInfo {
            architecture,
            stats,
        })
    }

    fn config(&self, key: &str) -> Option<u64> {
        self.stats["config"][key].as_u64()
    }

    /// How many clients the server serves at once, and whether idle holding occupies a slot.
    fn slots(&self, clients: usize) -> Option<(usize, bool, String)> {
        let clients = clients.max(1);
        let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Some(match self.architecture.as_str() {
            "single" => (1, true, "1 thread".into()),
            "thread-per-conn" => {
                let max = as_usize(self.config("max_threads")?);
                (
                    clients.min(max),
                    true,
                    format!("a thread per client (at most {max})"),
                )
            }
            "prefork-pool" => {
                let workers = as_usize(self.config("workers")?);
                (workers, true, format!("{workers} workers"))
            }
            "pipeline" => {
                let handlers = if self.stats["config"]["handler_pool"] == "rayon" {
                    // The pool's size: the handler group's live threads.
                    self.stats["threads"]
                        .as_array()?
                        .iter()
                        .find(|g| g["role"] == "handler")?["alive"]
                        .as_u64()
                        .map(as_usize)?
                } else {
                    as_usize(self.config("handlers")?)
                };
                (handlers, false, format!("{handlers} handlers"))
            }
            _ => return None,
        })
    }
}

/// The prediction for one scenario against one server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    /// Clients predicted to be served (scenario runs).
    pub served: Option<usize>,
    /// Requests per second predicted (load runs of `/sleep/{ms}`).
    pub per_second: Option<f64>,
    /// The rule, in words, with the numbers filled in.
    pub rule: String,
    /// Some client's predicted completion is within the margin of its deadline.
    pub boundary: bool,
    /// Caveats that make the prediction less reliable (e.g. a small backlog).
    pub caveats: Vec<String>,
}

impl Prediction {
    /// Whether a measurement agrees: the same served count (scenario runs), or throughput
    /// within 20% (load runs). A boundary prediction accepts either side of the boundary.
    pub fn agrees(
        &self,
        served: usize,
        per_second: Option<f64>,
        model: &Scenario,
        info: &ServerInfo,
    ) -> bool {
        if let Some(predicted) = self.served {
            if predicted == served {
                return true;
            }
            // On the boundary the other rule's count is as good.
            return self.boundary
                && predict_count(info, model, true).is_some_and(|(alt, _)| alt == served);
        }
        match (self.per_second, per_second) {
            (Some(p), Some(m)) => m >= 0.8 * p && m <= 1.2 * p,
            _ => true,
        }
    }
}

/// Predicts the scenario's outcome against `info`, or `None` for servers the model does not
/// know.
pub fn predict(info: &ServerInfo, scenario: &Scenario) -> Option<Prediction> {
    let (slots, holds, slots_text) = info.slots(scenario.clients)?;
    let mut caveats = Vec::new();
    let backlog = info.config("backlog").unwrap_or(u64::MAX);
    let waiting = scenario.clients.saturating_sub(slots) as u64;
    if waiting > backlog + 1 {
        caveats.push(format!(
            "{waiting} clients must wait but the backlog holds {backlog}: late connects (SYN retries after ~1 s) shift the times"
        ));
    }
    let d = scenario.request.service_time();
    match scenario.load {
        Load::Requests(_) => {
            let (served, boundary) = predict_count(info, scenario, false)?;
            let k = match scenario.load {
                Load::Requests(k) => k,
                Load::Duration(_) => 1,
            };
            let hold = effective_hold(info, scenario);
            let occupancy = d * k + if holds { hold } else { Duration::ZERO };
            let rule = format!(
                "{} serves {slots_text} at a time; each client occupies a slot for {} ({k} × {} of work{}); client k completes at ⌊k/{slots}⌋·{} + {}, served if before the {} deadline",
                info.architecture,
                fmt(occupancy),
                fmt(d),
                if holds { format!(" + {} held", fmt(hold)) } else { String::new() },
                fmt(occupancy),
                fmt(d * k),
                fmt(scenario.timeout),
            );
            Some(Prediction {
                served: Some(served),
                per_second: None,
                rule,
                boundary,
                caveats,
            })
        }
        Load::Duration(_) if !d.is_zero() => {
            let busy = slots.min(scenario.clients);
            let per_second = busy as f64 / d.as_secs_f64();
            Some(Prediction {
                served: None,
                per_second: Some(per_second),
                rule: format!(
                    "{} works on {busy} requests of {} at a time: {busy} / {} = {per_second:.0} requests/s",
                    info.architecture,
                    fmt(d),
                    fmt(d)
                ),
                boundary: false,
                caveats,
            })
        }
        Load::Duration(_) => None,
    }
}

/// The hold time a server actually grants: it closes idle connections after its keep-alive
/// timeout (and at once when keep-alive is off).
fn effective_hold(info: &ServerInfo, scenario: &Scenario) -> Duration {
    match info.config("keep_alive_timeout") {
        Some(0) => Duration::ZERO,
        Some(ms) => scenario.hold.min(Duration::from_millis(ms)),
        None => scenario.hold,
    }
}

/// Served count and whether any completion is on the boundary. With `inclusive`, a
/// completion exactly at the deadline counts as served (the other reading of the boundary).
fn predict_count(info: &ServerInfo, scenario: &Scenario, inclusive: bool) -> Option<(usize, bool)> {
    let (slots, holds, _) = info.slots(scenario.clients)?;
    let k_requests = match scenario.load {
        Load::Requests(k) => k,
        Load::Duration(_) => return None,
    };
    let work = scenario.request.service_time() * k_requests;
    let occupancy = work
        + if holds {
            effective_hold(info, scenario)
        } else {
            Duration::ZERO
        };
    let margin = boundary_margin(scenario.timeout);
    let mut served = 0;
    let mut boundary = false;
    for k in 0..scenario.clients {
        let rounds = u32::try_from(k / slots.max(1)).unwrap_or(u32::MAX);
        let done = occupancy.saturating_mul(rounds).saturating_add(work);
        let distance = if done > scenario.timeout {
            done - scenario.timeout
        } else {
            scenario.timeout - done
        };
        boundary |= distance < margin;
        let within = if inclusive {
            done <= scenario.timeout + margin
        } else {
            done < scenario.timeout
        };
        if within {
            served += 1;
        }
    }
    Some((served, boundary))
}

/// How close to the deadline a predicted completion may come before it is "on the
/// boundary": 5% of the deadline, at least 25 ms.
pub fn boundary_margin(timeout: Duration) -> Duration {
    (timeout / 20).max(Duration::from_millis(25))
}

fn fmt(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else {
        humantime::format_duration(Duration::from_millis(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        ))
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(arch: &str, config: Value) -> ServerInfo {
        ServerInfo::from_stats(serde_json::json!({ "architecture": arch, "config": config }))
            .unwrap()
    }

    fn scenario(clients: usize, timeout_ms: u64, hold_ms: u64, path: &str) -> Scenario {
        Scenario::get(
            clients,
            path,
            Duration::from_millis(timeout_ms),
            Duration::from_millis(hold_ms),
        )
    }

    #[test]
    fn the_lectures_experiments() {
        let ka = serde_json::json!({ "keep_alive_timeout": 60_000, "backlog": 1024 });
        let single = info("single", ka.clone());
        // E1: 5 clients hold 5 s, timeout 15 s: the 4th completes exactly at 15 s.
        let e1 = predict(&single, &scenario(5, 15_000, 5_000, "/")).unwrap();
        assert_eq!(e1.served, Some(3));
        assert!(e1.boundary);
        // Q1: timeout 5 s, hold 30 s: only the first.
        assert_eq!(
            predict(&single, &scenario(5, 5_000, 30_000, "/"))
                .unwrap()
                .served,
            Some(1)
        );
        // Q2: a pool of 4.
        let pool4 = info(
            "prefork-pool",
            serde_json::json!({ "workers": 4, "keep_alive_timeout": 60_000, "backlog": 1024 }),
        );
        assert_eq!(
            predict(&pool4, &scenario(5, 5_000, 30_000, "/"))
                .unwrap()
                .served,
            Some(4)
        );
        // E3: heavy requests of 4 s, timeout 10 s: two.
        assert_eq!(
            predict(&single, &scenario(5, 10_000, 0, "/sleep/4000"))
                .unwrap()
                .served,
            Some(2)
        );
        let tpc = info(
            "thread-per-conn",
            serde_json::json!({ "max_threads": 4096, "keep_alive_timeout": 60_000, "backlog": 1024 }),
        );
        assert_eq!(
            predict(&tpc, &scenario(5, 10_000, 0, "/sleep/4000"))
                .unwrap()
                .served,
            Some(5)
        );
    }

    #[test]
    fn unknown_servers_get_no_prediction() {
        assert!(ServerInfo::from_stats(serde_json::json!({ "hello": 1 })).is_none());
        let other = info("nginx", serde_json::json!({}));
        assert!(predict(&other, &scenario(5, 1000, 0, "/")).is_none());
    }
}
