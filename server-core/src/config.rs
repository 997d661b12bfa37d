//! The command-line flags every server binary shares.
//!
//! They are defined once here, with clap's derive API, and each architecture flattens them
//! into its own flags (`--workers`, `--handlers`, ...). A student who learns `--backlog` on
//! the sequential server can use it unchanged on the pipeline.
//!
//! Durations are written the humantime way: `250ms`, `5s`, `1m 30s`.

use std::net::SocketAddr;
use std::time::Duration;

pub use contract::units::{as_millis, from_millis, parse_addr, parse_duration, resolve};
use protocol::request::Limits;

/// How much the server tells about itself on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only warnings and errors.
    Quiet,
    /// Start, shutdown and unusual events.
    Info,
    /// Every exchange: time, thread, peer address, request line and status.
    Debug,
}

/// Flags shared by every servelab server.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct ServerArgs {
    /// Address to listen on, as IP:PORT or HOST:PORT (a name is resolved; IPv4 preferred).
    /// Use 0.0.0.0:7777 to accept clients from other machines or containers.
    #[arg(long, default_value = "127.0.0.1:7777", value_parser = parse_addr, value_name = "HOST:PORT")]
    pub addr: SocketAddr,

    /// Length of the kernel's queue of connections that completed the TCP handshake but
    /// were not accepted yet (listen(2) backlog). Linux caps it at net.core.somaxconn.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub backlog: u32,

    /// How long an idle keep-alive connection may wait for its next request before the
    /// server closes it (like Apache's KeepAliveTimeout). 0 disables keep-alive: every
    /// response then carries `Connection: close`.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    #[serde(serialize_with = "as_millis")]
    pub keep_alive_timeout: Duration,

    /// How long a client may take to send a complete request once it has started (and to
    /// send the first one on a new connection). Past it the client gets 408 and is closed.
    /// It also bounds how long writing a response may block.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    #[serde(serialize_with = "as_millis")]
    pub read_timeout: Duration,

    /// A request's pace, against slow clients (slowloris): once its first byte has arrived,
    /// the rest must follow within this time plus a second for every --min-rate bytes
    /// received (never later than --read-timeout). Past it: 408 and a close.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    #[serde(serialize_with = "as_millis")]
    pub header_timeout: Duration,

    /// The slowest a request may arrive once --header-timeout has passed, in bytes per
    /// second; 0 turns the pace off (only --read-timeout bounds a request).
    #[arg(long, default_value_t = 500, value_name = "BYTES")]
    pub min_rate: u32,

    /// On SIGINT or SIGTERM, how long queued and in-flight requests may take to finish
    /// before the server exits anyway.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    #[serde(serialize_with = "as_millis")]
    pub shutdown_timeout: Duration,

    /// Largest request line plus headers accepted, from 64 bytes to 1 MiB; a larger head gets
    /// 431.
    #[arg(long, default_value_t = 8 * 1024, value_parser = clap::value_parser!(u32).range(64..=1024 * 1024), value_name = "BYTES")]
    pub max_header_bytes: u32,

    /// Largest request body accepted, up to 1 GiB; a larger one gets 413. Memory follows
    /// the bytes a client really sends, never what it announces.
    #[arg(long, default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u32).range(0..=1024 * 1024 * 1024), value_name = "BYTES")]
    pub max_body_bytes: u32,

    /// Longest delay /sleep/{ms} accepts; a longer one gets 400.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    #[serde(serialize_with = "as_millis")]
    pub max_sleep: Duration,

    /// The most CPU time one request may use (/factor): work that would take longer is
    /// stopped and answered 503, so that a few costly requests cannot take every thread.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    #[serde(serialize_with = "as_millis")]
    pub max_cpu: Duration,

    /// quiet: warnings only; info: start and stop; debug: every exchange.
    #[arg(long, value_enum, default_value_t = LogLevel::Info, value_name = "LEVEL")]
    pub log: LogLevel,

    /// Serve GET /crash, whose handler panics: for the lab on crashing handlers. Off by
    /// default; never turn it on for a server others can reach.
    #[arg(long)]
    pub allow_crash: bool,
}

impl Default for ServerArgs {
    /// The command line's defaults (see [`crate::cli::defaults`]), except two: an ephemeral
    /// port on loopback, which is what tests and in-process comparisons want, and quiet
    /// logging, so that a test's output is not full of servers starting and stopping.
    fn default() -> Self {
        ServerArgs {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: LogLevel::Quiet,
            ..crate::cli::defaults()
        }
    }
}

impl ServerArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
            max_body_bytes: usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX),
        }
    }

    /// The settings of one connection of an architecture called `architecture`.
    pub fn connection_config(&self, architecture: &str) -> protocol::Config {
        protocol::Config {
            limits: self.limits(),
            read_timeout: self.read_timeout,
            keep_alive_timeout: self.keep_alive_timeout,
            server_header: format!("servelab-{architecture}"),
            pace_grace: self.header_timeout,
            min_rate: u64::from(self.min_rate),
        }
    }

    /// Keep-alive is off when its timeout is zero.
    pub fn keep_alive(&self) -> bool {
        !self.keep_alive_timeout.is_zero()
    }
}
