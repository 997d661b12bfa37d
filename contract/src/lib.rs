//! What servelab's servers and clients agree on, beyond the bytes of a request.
//!
//! The `protocol` crate fixes the bytes: how a request and a response look on the wire. A
//! few more things must mean the same on both sides of a connection, and they live here so
//! that neither side depends on the other: a load generator reads a server's `/stats`
//! without linking the server runtime, and a server fills it in without knowing who reads
//! it.
//!
//! * [`stats`]: the `/stats` document as types ([`Snapshot`] and its parts). Servers
//!   serialize it; the simulator, the labs, the benchmarks and the tests read it back into
//!   the same types, so a field cannot be misspelt on one side.
//! * [`units`]: how durations are written (`250ms` on a command line, whole milliseconds in
//!   JSON) and how a `HOST:PORT` is resolved, so `localhost:7777` names the same socket to
//!   a server and to the client that measures it.
//!
//! `docs/protocol.md` documents every field of `/stats`.

pub mod stats;
pub mod units;

pub use stats::{
    Capacity, ConfigSnapshot, ProcessSnapshot, RingSnapshot, RuntimeSnapshot, Snapshot,
};
