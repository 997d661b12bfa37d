//! The `async-work-stealing` binary: see the library documentation for the architecture.

fn main() -> std::process::ExitCode {
    server_core::cli::main::<async_work_stealing::AsyncWorkStealing>()
}
