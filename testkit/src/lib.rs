//! servelab's test kit, used by the server crates, the simulator and the benchmarks as a
//! dev-dependency only.
//!
//! * [`harness`]: a raw HTTP test client with timeouts on every socket, and helpers that
//!   start, load and inspect a server;
//! * [`cases`]: the behaviour list every architecture must pass, declared for one
//!   architecture with [`behaviour_tests!`] (see `src/behaviour.rs`);
//! * [`binary`]: the architecture's binary as a process, stopped by a signal and judged by
//!   its exit status and log, declared with [`binary_tests!`];
//! * [`seccomp`]: a child process with io_uring forbidden, as Docker's default profile does.

mod behaviour;
pub mod binary;
pub mod harness;
pub mod seccomp;

pub use behaviour::{
    a_computation_stops_when_its_client_leaves, cases, shutdown_gives_up_after_its_timeout,
};
pub use harness::*;
