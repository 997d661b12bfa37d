//! The `prefork-pool` binary: see the library documentation for the architecture.

fn main() -> std::process::ExitCode {
    server_core::cli::main::<prefork_pool::PreforkPool>()
}
