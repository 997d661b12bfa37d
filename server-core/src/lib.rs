//! What every servelab server shares to run.
//!
//! The `protocol` crate says what to answer and how the bytes look; this crate holds the
//! machinery around it, so that each server crate contains only its threading model:
//!
//! * [`listener`]: the listening socket with its backlog, and the accept step;
//! * [`blocking`]: the blocking driver of `protocol::Connection`: read, poll, handle, write,
//!   on whichever thread holds the connection;
//! * [`work`]: doing a route's work on the calling thread (sleeping, computing);
//! * [`context`], [`stats`], [`shutdown`]: the state all threads of one server share, the
//!   counters and the typed `/stats` document, and graceful shutdown;
//! * [`threads`]: named thread groups that can be counted and joined with a deadline;
//! * [`queue`] and [`permits`]: the bounded queues and the semaphore that join threads;
//! * [`stages`]: the pipeline machinery (receive, handle, send, joined by three queues)
//!   that the pipeline, the process pipeline and combined delegation share;
//! * [`running`]: the [`Architecture`] trait, and starting one in-process;
//! * [`config`], [`cli`] and [`logging`]: the flags every server shares, and `main`;
//! * [`rlimit`]: raising the limit on open files, which bounds how many connections fit.
//!
//! Read `docs/architectures.md` for how the servers use these pieces.

pub mod blocking;
pub mod cli;
pub mod config;
pub mod context;
pub mod listener;
pub mod logging;
pub mod offload;
pub mod permits;
pub mod queue;
pub mod rlimit;
pub mod running;
pub mod shutdown;
pub mod stages;
pub mod stats;
pub mod threads;
pub mod work;

pub use blocking::{serve_connection, BlockingConn, Exchange, Next};
pub use config::ServerArgs;
pub use context::Context;
pub use listener::{Acceptor, ServerError};
pub use running::{Architecture, RunningServer, Unavailable};
pub use stats::{Capacity, Snapshot};
pub use threads::ThreadGroup;
