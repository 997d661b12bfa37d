//! The `process-pipeline` binary: see the library documentation for the architecture.

fn main() -> std::process::ExitCode {
    server_core::cli::main::<process_pipeline::ProcessPipeline>()
}
