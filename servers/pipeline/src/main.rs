//! The `pipeline` binary: see the library documentation for the architecture.

fn main() -> std::process::ExitCode {
    protocol::cli::main::<pipeline::Pipeline>(
        "servelab's pipeline: receiver, handler and sender threads joined by three bounded queues (connections, requests, responses).",
    )
}
