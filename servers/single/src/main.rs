//! The `single` binary: see the library documentation for the architecture.

fn main() -> std::process::ExitCode {
    protocol::cli::main::<single::Single>(
        "servelab's sequential server: one thread accepts a connection and serves it to the end, then accepts the next.",
    )
}
