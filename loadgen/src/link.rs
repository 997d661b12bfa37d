//! Distant clients: a network path emulated inside the engine (`--rtt`, `--bandwidth`).
//!
//! On loopback every client is a dozen microseconds from the server; real clients are tens
//! of milliseconds away, and that changes which design wins: a thread that serves a
//! connection is held for the round trips between its requests, not only for the work.
//! This kernel has no netem, and netem would need root, so the simulator plays the path
//! itself. Each client's bytes go into the socket when they would have reached the
//! server, and what the server answers is handed to the client when it would have arrived:
//!
//! ```text
//!  client                     emulated path                        server (loopback)
//!  connect ── SYN ──── one way ────▶ ── SYN-ACK ── one way ──▶  connect() made now
//!  request ────────── one way + size / bandwidth ─────────────▶ write() made now
//!  answer  ◀───────── one way + size / bandwidth ────────────── read() as it comes
//! ```
//!
//! So a request's latency includes its round trip, and the server sees its connection open
//! for the handshake's last half trip and idle for a whole round trip between two
//! requests, as it would with a real distant client. What is not emulated: the server's
//! side of a slow link (the answer leaves the server's socket at loopback speed, which a
//! real server notices only for answers larger than its socket buffer), losses, and the
//! slow start of TCP's window, and the client's closing, which reaches the server at once.
//!
//! A spread (`20ms..200ms`) gives each client its own round trip, uniform over the range
//! and fixed by the client's number, so a run is repeatable and every shard of a sharded
//! run agrees on each client's distance.

use std::time::Duration;

/// The emulated path between every client and the server. The default is loopback: no
/// delay and no limit, and the engines then take none of this module's detours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Link {
    /// The round trip: each client's is fixed within this range (`min == max`: the same
    /// for all).
    pub rtt: Rtt,
    /// Each client's bandwidth in each direction, in bits per second (`None`: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_bits_per_s: Option<u64>,
}

/// A round trip, or a range of them (`--rtt 50ms`, `--rtt 20ms..200ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Rtt {
    #[serde(
        rename = "min_ms",
        serialize_with = "contract::units::as_millis",
        deserialize_with = "contract::units::from_millis"
    )]
    pub min: Duration,
    #[serde(
        rename = "max_ms",
        serialize_with = "contract::units::as_millis",
        deserialize_with = "contract::units::from_millis"
    )]
    pub max: Duration,
}

impl Rtt {
    /// Reads `50ms` or `20ms..200ms` (any unit `humantime` knows). The sentence of an error
    /// says what was expected.
    pub fn parse(text: &str) -> Result<Rtt, String> {
        let one = |t: &str| {
            humantime::parse_duration(t.trim()).map_err(|e| {
                format!(
                    "a round trip is a duration like 50ms, or a range like 20ms..200ms; {t:?}: {e}"
                )
            })
        };
        let (min, max) = match text.split_once("..") {
            Some((a, b)) => (one(a)?, one(b)?),
            None => {
                let d = one(text)?;
                (d, d)
            }
        };
        if min > max {
            return Err(format!(
                "a round-trip range goes from the shorter to the longer; got {text:?}"
            ));
        }
        if max > Duration::from_secs(10) {
            return Err(format!(
                "a round trip of at most 10 s is emulated; got {text:?}"
            ));
        }
        Ok(Rtt { min, max })
    }

    /// Whether every client is on loopback (no delay).
    pub fn is_zero(&self) -> bool {
        self.max.is_zero()
    }
}

impl std::fmt::Display for Rtt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        if self.min == self.max {
            write!(f, "{} ms", ms(self.min))
        } else {
            write!(f, "{}..{} ms", ms(self.min), ms(self.max))
        }
    }
}

/// Reads a bandwidth as `tc` writes one: a number and a unit, `bit`, `kbit`, `mbit`,
/// `gbit` (bits per second) or `bps`, `kbps`, `mbps`, `gbps` (bytes per second), with
/// k = 1000. Returns bits per second.
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: f64 = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => {
            return Err(format!(
                "a bandwidth is a number and a unit (bit, kbit, mbit, gbit, or bps, kbps, mbps, gbps for bytes), like 1mbit; got {text:?}"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("a bandwidth starts with a number, like 1mbit; got {text:?}"))?;
    let bits = value * scale;
    if !(1_000.0..=1e12).contains(&bits) {
        return Err(format!(
            "a bandwidth between 1kbit and 1000gbit is emulated; got {text:?}"
        ));
    }
    Ok(bits as u64)
}

impl Link {
    /// Whether anything is emulated: a delay or a limit.
    pub fn is_active(&self) -> bool {
        !self.rtt.is_zero() || self.bandwidth_bits_per_s.is_some()
    }

    /// Client `id`'s round trip: the range's own for a fixed one; for a spread, a point of
    /// the range fixed by the client's number (a hash of it, so neighbours differ).
    pub fn rtt_of(&self, id: usize) -> Duration {
        let Rtt { min, max } = self.rtt;
        if min == max {
            return min;
        }
        let fraction = (splitmix64(id as u64) >> 11) as f64 / (1u64 << 53) as f64;
        min + (max - min).mul_f64(fraction)
    }

    /// How long `bytes` take to pass through one client's link (zero when unlimited).
    pub fn transfer(&self, bytes: usize) -> Duration {
        match self.bandwidth_bits_per_s {
            Some(bits) if bits > 0 => Duration::from_secs_f64(bytes as f64 * 8.0 / bits as f64),
            _ => Duration::ZERO,
        }
    }

    /// A phrase for the report: `at a 50 ms round trip, 1 Mbit/s each way, emulated by the
    /// simulator`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.rtt.is_zero() {
            let spread = if self.rtt.min == self.rtt.max {
                ""
            } else {
                " (each client its own)"
            };
            parts.push(format!("at a {} round trip{spread}", self.rtt));
        }
        if let Some(bits) = self.bandwidth_bits_per_s {
            let on = if parts.is_empty() { "on " } else { "" };
            parts.push(format!("{on}{} Mbit/s each way", bits as f64 / 1e6));
        }
        format!("{}, emulated by the simulator", parts.join(", "))
    }
}

/// A well-mixed 64-bit hash of `x` (SplitMix64's finaliser), so that clients 1, 2, 3 get
/// unrelated places in a spread.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_round_trip_or_a_range() {
        let ms = Duration::from_millis;
        assert_eq!(
            Rtt::parse("50ms"),
            Ok(Rtt {
                min: ms(50),
                max: ms(50)
            })
        );
        assert_eq!(
            Rtt::parse("20ms..200ms"),
            Ok(Rtt {
                min: ms(20),
                max: ms(200)
            })
        );
        assert!(Rtt::parse("0ms").is_ok_and(|r| r.is_zero()));
        for bad in ["fast", "200ms..20ms", "50", "1h"] {
            let why = Rtt::parse(bad).expect_err(bad);
            assert!(why.contains(bad), "{why}");
        }
    }

    #[test]
    fn reads_bandwidths_as_tc_does() {
        assert_eq!(parse_bandwidth("1mbit"), Ok(1_000_000));
        assert_eq!(parse_bandwidth("512kbit"), Ok(512_000));
        assert_eq!(parse_bandwidth("1.5Mbit"), Ok(1_500_000));
        assert_eq!(parse_bandwidth("100kbps"), Ok(800_000));
        for bad in ["fast", "10", "mbit", "1tbit", "0mbit"] {
            assert!(parse_bandwidth(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_spread_gives_each_client_a_fixed_round_trip_inside_it() {
        let link = Link {
            rtt: Rtt::parse("20ms..200ms").expect("a range"),
            bandwidth_bits_per_s: None,
        };
        let rtts: Vec<Duration> = (0..1000).map(|id| link.rtt_of(id)).collect();
        assert!(rtts
            .iter()
            .all(|r| *r >= Duration::from_millis(20) && *r <= Duration::from_millis(200)));
        assert_eq!(
            rtts[7],
            link.rtt_of(7),
            "the same client, the same distance"
        );
        let mean = rtts.iter().sum::<Duration>() / 1000;
        assert!(
            mean > Duration::from_millis(95) && mean < Duration::from_millis(125),
            "about uniform: mean {mean:?}"
        );
    }

    #[test]
    fn transfer_time_follows_the_bandwidth() {
        let link = Link {
            rtt: Rtt::default(),
            bandwidth_bits_per_s: Some(1_000_000),
        };
        assert!(link.is_active());
        assert_eq!(link.transfer(125_000), Duration::from_secs(1));
        assert_eq!(Link::default().transfer(1 << 20), Duration::ZERO);
        assert!(!Link::default().is_active());
    }
}
