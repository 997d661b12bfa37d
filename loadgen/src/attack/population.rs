//! The background populations as data: what each hostile client does ([`Behaviour`]), how
//! many of them and how often ([`Population`], parsed from `N:BEHAVIOUR[:EVERY]`), and what
//! happened to them ([`PopulationLedger`]). The attacker thread that plays them is the
//! parent module.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Error;

/// What a hostile client does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// Sends a request line and then one more header line every tick, never the blank
    /// line that ends the head (slowloris).
    SlowHeaders,
    /// Sends a complete head announcing a body of [`SLOW_BODY_BYTES`], then ten bytes of
    /// it every tick (R.U.D.Y., "are you dead yet").
    SlowBody,
    /// Sends `POST /echo` with a body of [`SLOW_READ_BYTES`] at full speed, then reads the
    /// echo [`SLOW_READ_CHUNK`] bytes a tick through a receive buffer of a few KiB, so the
    /// server's writes block.
    SlowRead,
    /// Connects and sends nothing.
    Idle,
}

/// The body a slow-body client announces: within every server's default body limit.
pub const SLOW_BODY_BYTES: usize = 64 * 1024;

/// The body a slow-read client sends to be echoed: more than the kernel buffers on both
/// sides of a loopback connection with a small receive window, so the server's write
/// cannot complete.
pub const SLOW_READ_BYTES: usize = 256 * 1024;

/// What a slow-read client reads each tick.
pub const SLOW_READ_CHUNK: usize = 16;

/// The receive buffer a slow-read client asks for (the kernel doubles it and keeps a
/// minimum of its own).
pub(super) const SLOW_READ_WINDOW: usize = 2048;

/// How long [`start`](super::start) waits for every hostile connection to be established (or to fail)
/// before the foreground starts anyway.
pub const SETTLE: Duration = Duration::from_secs(3);

/// The shortest tick: ticks are scheduled no finer than this, which bounds the attacker's
/// wake-ups whatever the populations.
pub(super) const MIN_TICK: Duration = Duration::from_millis(10);

impl Behaviour {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::SlowHeaders => "slow-headers",
            Behaviour::SlowBody => "slow-body",
            Behaviour::SlowRead => "slow-read",
            Behaviour::Idle => "idle",
        }
    }

    const ALL: [Behaviour; 4] = [
        Behaviour::SlowHeaders,
        Behaviour::SlowBody,
        Behaviour::SlowRead,
        Behaviour::Idle,
    ];

    /// What it sends as soon as it is connected.
    pub(super) fn opening(self) -> Vec<u8> {
        match self {
            Behaviour::SlowHeaders => b"GET / HTTP/1.1\r\nHost: servelab\r\n".to_vec(),
            Behaviour::SlowBody => format!(
                "POST /echo HTTP/1.1\r\nHost: servelab\r\nContent-Length: {SLOW_BODY_BYTES}\r\n\r\n"
            )
            .into_bytes(),
            Behaviour::SlowRead => {
                let mut bytes = format!(
                    "POST /echo HTTP/1.1\r\nHost: servelab\r\nContent-Length: {SLOW_READ_BYTES}\r\n\r\n"
                )
                .into_bytes();
                bytes.resize(bytes.len() + SLOW_READ_BYTES, b'r');
                bytes
            }
            Behaviour::Idle => Vec::new(),
        }
    }

    /// What it sends every tick after the opening.
    pub(super) fn drip(self) -> &'static [u8] {
        match self {
            Behaviour::SlowHeaders => b"X-Slow: 1\r\n",
            Behaviour::SlowBody => b"bbbbbbbbbb",
            Behaviour::SlowRead | Behaviour::Idle => b"",
        }
    }
}

/// One background population: how many connections it keeps open, doing what, how often.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Population {
    /// The connections it keeps open (a connection the server closes is opened again).
    pub clients: usize,
    pub behaviour: Behaviour,
    /// How often each connection sends (or reads) its next few bytes.
    #[serde(
        serialize_with = "contract::units::as_millis",
        deserialize_with = "contract::units::from_millis"
    )]
    pub every: Duration,
}

/// The default tick: a second, a gentle trickle that no timeout between two reads
/// (nginx's style) would ever catch.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(1);

/// The most background connections one run may ask for.
pub const MAX_BACKGROUND: usize = 100_000;

impl Population {
    /// Parses `N:BEHAVIOUR[:EVERY]`, for example `1000:slow-headers` or `50:slow-read:200ms`.
    pub fn parse(text: &str) -> Result<Population, Error> {
        let usage = |why: String| {
            Error::Invalid(format!(
                "--background takes N:BEHAVIOUR[:EVERY] with BEHAVIOUR one of {} (for example 1000:slow-headers or 50:slow-read:200ms); {why}",
                Behaviour::ALL.map(Behaviour::name).join(", ")
            ))
        };
        let mut parts = text.splitn(3, ':');
        let clients = parts.next().unwrap_or_default();
        let clients: usize = clients
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=MAX_BACKGROUND).contains(n))
            .ok_or_else(|| {
                usage(format!(
                    "{clients:?} is not a number of clients from 1 to {MAX_BACKGROUND}"
                ))
            })?;
        let name = parts.next().unwrap_or_default().trim();
        let behaviour = Behaviour::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| usage(format!("{name:?} is not a behaviour")))?;
        let every = match parts.next() {
            None => DEFAULT_EVERY,
            Some(every) => contract::units::parse_duration(every.trim())
                .ok()
                .filter(|d| *d >= MIN_TICK)
                .ok_or_else(|| usage(format!("{every:?} is not a duration of at least 10ms")))?,
        };
        Ok(Population {
            clients,
            behaviour,
            every,
        })
    }
}

impl std::fmt::Display for Population {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.clients,
            self.behaviour.name(),
            humantime::format_duration(self.every)
        )
    }
}

/// What happened to one background population during the run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PopulationLedger {
    /// The population, as it was given (`1000:slow-headers:1s`).
    pub population: String,
    /// Connections established, reopened ones included.
    pub connected: u64,
    /// Connection attempts that failed (refused, reset during the handshake, or not
    /// established within a tick).
    pub failed_connects: u64,
    /// Connections the server closed while the attack ran.
    pub cut_off: u64,
    /// Of those, the ones that ended with a reset rather than a close.
    pub reset: u64,
    /// The status of the answer the server sent before closing, by code (a slowloris
    /// client typically gets `408`); a close without an answer counts nowhere here.
    pub statuses: BTreeMap<u16, u64>,
    /// The median time the server held a connection it then cut off, in milliseconds.
    pub held_ms_p50: Option<u64>,
    /// The longest such time.
    pub held_ms_max: Option<u64>,
    /// Connections still open when the foreground finished: the server was still holding
    /// them. (A slow reader cannot see that the server gave up while unread bytes are
    /// still queued for it, so it counts here too.)
    pub open_at_end: u64,
    /// Bytes the population sent, openings included.
    pub bytes_sent: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populations_parse_with_and_without_a_tick() {
        let p = Population::parse("1000:slow-headers").expect("parses");
        assert_eq!(
            (p.clients, p.behaviour, p.every),
            (1000, Behaviour::SlowHeaders, DEFAULT_EVERY)
        );
        let p = Population::parse("50:slow-read:200ms").expect("parses");
        assert_eq!(
            (p.clients, p.behaviour, p.every),
            (50, Behaviour::SlowRead, Duration::from_millis(200))
        );
        assert_eq!(p.to_string(), "50:slow-read:200ms");
        for bad in [
            "",
            "0:idle",
            "x:idle",
            "5:rude",
            "5:idle:1ms",
            "5:idle:soon",
        ] {
            let err = Population::parse(bad).expect_err(bad).to_string();
            assert!(
                err.starts_with("--background takes N:BEHAVIOUR"),
                "{bad}: {err}"
            );
        }
    }
}
