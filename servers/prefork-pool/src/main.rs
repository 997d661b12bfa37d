//! The `prefork-pool` binary: see the library documentation for the architecture.

fn main() -> std::process::ExitCode {
    protocol::cli::main::<prefork_pool::PreforkPool>(
        "servelab's pre-fork pool (producer-consumer): a fixed pool of worker threads fed by a bounded queue of connections.",
    )
}
