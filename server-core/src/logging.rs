//! Log output on stderr with `tracing`.
//!
//! Each line carries a timestamp and the name of the thread that wrote it, like the
//! lecture's `%(asctime)s (%(threadName)s)` format, because in a concurrent server "which
//! thread did this?" is the first question when reading a log.

use std::io::IsTerminal;

use crate::config::LogLevel;

/// Installs the global log subscriber. Calling it twice (as tests do) is harmless.
pub fn init(level: LogLevel) {
    let max = match level {
        LogLevel::Quiet => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(max)
        .with_thread_names(true)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
