//! The `event-loop` binary: see the library documentation for the architecture.

fn main() -> std::process::ExitCode {
    server_core::cli::main::<event_loop::EventLoop>()
}
