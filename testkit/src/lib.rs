//! servelab's test kit, used by the server crates, the simulator and the benchmarks as a
//! dev-dependency only.
//!
//! * [`harness`]: a raw HTTP test client with timeouts on every socket, and helpers that
//!   start, load and inspect a server;
//! * [`cases`]: the behaviour list every architecture must pass, declared for one
//!   architecture with [`behaviour_tests!`] (see `src/behaviour.rs`).

mod behaviour;
pub mod harness;

pub use behaviour::{cases, shutdown_gives_up_after_its_timeout};
pub use harness::*;
