//! servelab's shared library.
//!
//! Everything the four server architectures have in common lives here, so that each server
//! crate holds only its threading model:
//!
//! * [`request`] and [`response`]: the wire protocol, a strict subset of HTTP/1.1;
//! * [`conn`]: one client connection, reading requests and writing responses;
//! * [`handler`]: the routes (`/`, `/echo`, `/sleep/{ms}`, `/factor/{n}`, `/time`, `/stats`);
//! * [`config`]: the command-line flags every server shares;
//! * [`listener`]: the listening socket with its backlog, and the accept step;
//! * [`context`], [`stats`], [`shutdown`]: the state all threads of one server share;
//! * [`threads`]: named thread groups that can be counted and joined with a deadline;
//! * [`queue`] and [`permits`]: the bounded queues and the semaphore that join threads;
//! * [`server`] and [`cli`]: starting an architecture in-process or as a binary.
//!
//! Read `docs/protocol.md` for the protocol and `docs/architectures.md` for the servers.

pub mod cli;
pub mod config;
pub mod conn;
pub mod context;
pub mod handler;
pub mod listener;
pub mod logging;
pub mod permits;
pub mod queue;
pub mod request;
pub mod response;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod threads;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::ServerArgs;
pub use conn::{serve_connection, Closed, Conn, Next, Request};
pub use context::Context;
pub use listener::{Acceptor, ServerError};
pub use response::{Response, Status};
pub use server::{Architecture, RunningServer};
pub use threads::ThreadGroup;
