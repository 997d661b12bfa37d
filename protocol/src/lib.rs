//! servelab's protocol: a strict subset of HTTP/1.1, with no I/O in it.
//!
//! * [`request`]: parsing a request head (with `httparse`) into a [`request::Head`], or a
//!   [`request::Rejection`] that says which error the client deserves;
//! * [`response`]: a [`Response`] as plain data, and how it is written on the wire;
//! * [`connection`]: one client connection as a state machine: bytes in, requests out;
//!   responses in, bytes out; and the deadlines in between;
//! * [`hostile`]: the malformed and smuggling requests that must be refused, one list for
//!   the tests and the fuzzers;
//! * [`routes`]: what each request needs ([`Work`]): an answer, a wait, a computation.
//!
//! Nothing here reads a socket, starts a thread or looks at the clock (callers pass `now`),
//! so every architecture, blocking or event-driven, drives the same code, and the tests
//! drive it byte by byte. What servers share to *run* (listening, threads, queues,
//! shutdown, counters) is the `server-core` crate.
//!
//! Read `docs/protocol.md` for the protocol itself.

pub mod connection;
pub mod hostile;
pub mod request;
pub mod response;
pub mod routes;

pub use connection::{Closed, Config, Connection, Event, Request, Ticket};
pub use response::{Response, Status};
pub use routes::{route, Job, RouteConfig, Work};
