//! The `thread-per-conn` binary: see the library documentation for the architecture.

fn main() -> std::process::ExitCode {
    protocol::cli::main::<thread_per_conn::ThreadPerConn>(
        "servelab's thread-per-connection server (delegation): the main thread accepts and starts a new thread for every connection.",
    )
}
