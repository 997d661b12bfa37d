//! The `thread-per-request` binary: see the library documentation for the architecture.

fn main() -> std::process::ExitCode {
    server_core::cli::main::<thread_per_request::ThreadPerRequest>()
}
