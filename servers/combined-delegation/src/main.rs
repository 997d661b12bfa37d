//! The `combined-delegation` binary: see the library documentation for the architecture.

fn main() -> std::process::ExitCode {
    server_core::cli::main::<combined_delegation::CombinedDelegation>()
}
