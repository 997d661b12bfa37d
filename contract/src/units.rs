//! Durations and addresses, written and read the same way by servers and clients.
//!
//! On a command line a duration is humantime text (`250ms`, `5s`); in JSON (`/stats`, the
//! simulator's reports) it is a whole number of milliseconds. A `HOST:PORT` resolves to its
//! first IPv4 address when it has one, on both sides, so `localhost:7777` never means IPv4
//! to a server and IPv6 to the client measuring it.

use std::net::SocketAddr;
use std::time::Duration;

/// Resolves `HOST:PORT` (or `IP:PORT`) to one address: the first IPv4 address if the name
/// has one, else the first address. This asks the system's resolver, so for a host name it
/// may block until the name service answers.
pub fn resolve(text: &str) -> std::io::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = text.to_socket_addrs()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address found"))
}

/// A command line's `HOST:PORT`: [`resolve`], with an error that says how to write it.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    resolve(text).map_err(|e| {
        format!("cannot resolve {text}: {e} (write it as HOST:PORT, e.g. localhost:7777)")
    })
}

/// Parses a humantime duration such as `250ms` or `5s`; a bare `0` means zero.
///
/// Durations are bounded to a day, which is longer than any timeout needs and keeps every
/// `Instant + duration` computed from them far from overflow.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("{e} (write durations like 250ms or 5s)"))?;
    if duration > Duration::from_secs(24 * 3600) {
        return Err(format!(
            "{text} is more than a day; durations here are at most 24h"
        ));
    }
    Ok(duration)
}

/// Writes a duration as whole milliseconds (serde's `serialize_with`).
pub fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads a duration written by [`as_millis`] (serde's `deserialize_with`).
pub fn from_millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_may_be_names_and_prefer_ipv4() {
        assert_eq!(
            parse_addr("localhost:7777"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 7777)))
        );
        assert_eq!(
            parse_addr("127.0.0.1:0"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 0)))
        );
        assert!(parse_addr("no-such-host.invalid:7777")
            .is_err_and(|e| e.starts_with("cannot resolve no-such-host.invalid:7777")));
        assert!(parse_addr("localhost").is_err(), "a port is required");
    }

    #[test]
    fn durations_are_humantime_text_and_whole_milliseconds() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("25h").is_err_and(|e| e.contains("at most 24h")));
        assert!(parse_duration("soon").is_err_and(|e| e.contains("250ms or 5s")));

        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Holds {
            #[serde(serialize_with = "as_millis", deserialize_with = "from_millis")]
            d: Duration,
        }
        let json = serde_json::to_string(&Holds {
            d: Duration::from_micros(1_500_900),
        })
        .expect("serializes");
        assert_eq!(json, r#"{"d":1500}"#);
        let back: Holds = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back.d, Duration::from_millis(1500));
    }
}
