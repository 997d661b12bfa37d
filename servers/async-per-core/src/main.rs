//! The `async-per-core` binary: see the library documentation for the architecture.

fn main() -> std::process::ExitCode {
    server_core::cli::main::<async_per_core::AsyncPerCore>()
}
