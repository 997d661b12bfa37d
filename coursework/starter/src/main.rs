//! The starter's binary: the shared command line (`--addr`, `--backlog`, the timeouts, ...),
//! logging, signals and exit statuses of every servelab server, around the design in
//! `lib.rs`. Nothing to change here but the crate's name.

fn main() -> std::process::ExitCode {
    server_core::cli::main::<starter::Starter>()
}
