//! Finding the target: resolving its name, and asking it for servelab's `/stats`.
//!
//! A target is any HTTP/1.1 server. If it answers `GET /stats` with servelab's document,
//! the simulator knows its architecture and settings ([`ServerInfo`]), which makes the
//! prediction possible. Nothing listening there is an error in one sentence, before any
//! client starts.

use std::net::SocketAddr;
use std::time::Duration;

use contract::stats::Snapshot;
use loadgen::http::{Connection, Response};

use crate::SimError;

/// What a servelab target said about itself in `/stats`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub architecture: String,
    pub snapshot: Snapshot,
}

impl ServerInfo {
    /// Reads the answer to `GET /stats`; `None` if it is not servelab's document.
    pub fn from_stats_response(response: &Response) -> Option<ServerInfo> {
        if response.status != 200 {
            return None;
        }
        serde_json::from_slice::<Snapshot>(&response.body)
            .ok()
            .map(ServerInfo::from)
    }
}

impl From<Snapshot> for ServerInfo {
    fn from(snapshot: Snapshot) -> ServerInfo {
        ServerInfo {
            architecture: snapshot.architecture.clone(),
            snapshot,
        }
    }
}

/// Resolves `target` (`host:port`) the way the servers resolve `--addr`: the first IPv4
/// address, else the first address.
pub fn resolve(target: &str) -> Result<SocketAddr, SimError> {
    contract::units::resolve(target).map_err(|source| SimError::Unresolvable {
        target: target.to_owned(),
        source,
    })
}

/// Waits up to `within` for `target` to resolve and answer a health check ([`health`]),
/// trying again every 200 ms: for orchestrators that start the simulator beside the server
/// without waiting for it (Docker Swarm ignores `depends_on`). Returns the last failure if
/// the target never answered.
pub fn wait_for(target: &str, within: Duration) -> Result<(), SimError> {
    let give_up = std::time::Instant::now() + within;
    loop {
        let failure = match resolve(target).and_then(|addr| health(addr, target)) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let now = std::time::Instant::now();
        if now >= give_up {
            return Err(failure);
        }
        // Waits before the next try: the server is still starting, or its name is not
        // yet in the orchestrator's DNS.
        std::thread::sleep((give_up - now).min(Duration::from_millis(200)));
    }
}

/// Asks the target for servelab's `/stats`. `Ok(None)` means something listens there but
/// it is not a servelab server (or did not answer in time); an error means nothing
/// listens there at all.
pub fn probe(addr: SocketAddr, target: &str) -> Result<Option<ServerInfo>, SimError> {
    Ok(fetch_stats(addr, target)?.and_then(|r| ServerInfo::from_stats_response(&r)))
}

/// A health check: like [`probe`], but a server that accepts the connection and then says
/// nothing within the probe's time is unhealthy too (an error), because it would not
/// serve a client either.
pub fn health(addr: SocketAddr, target: &str) -> Result<Option<ServerInfo>, SimError> {
    let response = fetch_stats(addr, target)?.ok_or_else(|| SimError::Silent {
        target: target.to_owned(),
    })?;
    Ok(ServerInfo::from_stats_response(&response))
}

/// Sends `GET /stats` and returns the whole response, or `None` if the server said
/// nothing complete within 3 s. An error means nothing listens there.
fn fetch_stats(addr: SocketAddr, target: &str) -> Result<Option<Response>, SimError> {
    let nothing = |source| SimError::NothingListening {
        target: target.to_owned(),
        source,
    };
    let mut conn = Connection::connect(addr, Duration::from_secs(3)).map_err(nothing)?;
    let request = format!("GET /stats HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    conn.send(request.as_bytes()).map_err(nothing)?;
    // A server that accepts and never answers is still "listening": not an error here.
    Ok(conn.read_whole(false).ok())
}
