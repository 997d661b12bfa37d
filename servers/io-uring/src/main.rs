//! The `io-uring` binary: see the library documentation for the architecture. Where this
//! process may not use io_uring, it exits 1 with one sentence naming the cause.

fn main() -> std::process::ExitCode {
    server_core::cli::main::<io_uring_server::IoUring>()
}
