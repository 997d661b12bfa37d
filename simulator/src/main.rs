//! The `simulator` binary: parse the command line, run the command, exit with its status.
//! Everything else is the `simulator` library ([`simulator::commands`] first).

fn main() -> std::process::ExitCode {
    simulator::commands::main()
}
