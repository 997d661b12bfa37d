//! Finding the target: resolving its name, and asking it for servelab's `/stats`.
//!
//! A target is any HTTP/1.1 server. If it answers `GET /stats` with servelab's document,
//! the simulator knows its architecture and settings ([`ServerInfo`]), which makes the
//! prediction possible. Nothing listening there is an error in one sentence, before any
//! client starts.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use server_core::Snapshot;

use crate::SimError;

/// What a servelab target said about itself in `/stats`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub architecture: String,
    pub snapshot: Snapshot,
}

impl ServerInfo {
    /// Reads a whole HTTP response to `GET /stats`; `None` if it is not servelab's.
    pub fn from_stats_response(response: &[u8]) -> Option<ServerInfo> {
        let body = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|at| &response[at + 4..])?;
        serde_json::from_slice::<Snapshot>(body)
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
    server_core::config::resolve(target).map_err(|e| SimError::Unresolvable {
        target: target.to_owned(),
        reason: e.to_string(),
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
    Ok(ServerInfo::from_stats_response(&fetch_stats(addr, target)?))
}

/// A health check: like [`probe`], but a server that accepts the connection and then says
/// nothing within the probe's time is unhealthy too (an error), because it would not
/// serve a client either.
pub fn health(addr: SocketAddr, target: &str) -> Result<Option<ServerInfo>, SimError> {
    let response = fetch_stats(addr, target)?;
    if response.is_empty() {
        return Err(SimError::Silent {
            target: target.to_owned(),
        });
    }
    Ok(ServerInfo::from_stats_response(&response))
}

/// Sends `GET /stats` and returns whatever came back before the server closed or 3 s
/// passed.
fn fetch_stats(addr: SocketAddr, target: &str) -> Result<Vec<u8>, SimError> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(3);
    let nothing = || SimError::NothingListening {
        target: target.to_owned(),
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|_| nothing())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|_| nothing())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|_| nothing())?;
    let request = format!("GET /stats HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|_| nothing())?;
    let mut response = Vec::new();
    // Reads until the server closes (we asked it to); a server that never answers is
    // still "listening", so a timeout here is not an error.
    let _ = stream.take(1 << 20).read_to_end(&mut response);
    Ok(response)
}
