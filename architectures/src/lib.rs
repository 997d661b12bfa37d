//! The registry of servelab's server architectures.
//!
//! Every architecture is one crate under `servers/` that implements
//! `server_core::Architecture`, and one entry in [`ALL`] below. Everything that works with
//! "all the architectures" (the simulator's `compare`, the labs, the benchmarks, the tests
//! that run something against each) reads this list, so adding an architecture is writing
//! its crate and adding its line here.
//!
//! An [`Entry`] gives an architecture's name, its one-line description, its own flags (as
//! a `clap::Command`, so that a tool can offer them), and a way to start it in this process
//! from flags given as command-line words, exactly as its binary would parse them. It also
//! says whether this machine can run it at all ([`Entry::available`]): `io-uring` needs a
//! kernel facility that a seccomp filter or a sysctl can take away, and a tool that starts
//! every architecture skips one that is unavailable, saying why in one sentence.

use clap::{Args, Command, FromArgMatches};
use server_core::{Architecture, RunningServer, ServerArgs, ServerError, Unavailable};

/// One architecture.
pub struct Entry {
    /// Its name: the crate, the binary, the `Server` header and `/stats` all use it.
    pub name: &'static str,
    /// One line saying what it is.
    pub about: &'static str,
    command: fn() -> Command,
    start: fn(&[String], ServerArgs) -> Result<RunningServer, StartError>,
    available: fn() -> Result<(), Unavailable>,
    defaults_agree: fn() -> bool,
}

/// Every architecture, in the order of the lecture's story. `scripts/new-server.sh NAME`
/// registers a student's copy of the coursework starter by adding its line at the end.
pub static ALL: &[Entry] = &[
    entry::<single::Single>(),
    entry::<thread_per_conn::ThreadPerConn>(),
    entry::<prefork_pool::PreforkPool>(),
    entry::<thread_per_request::ThreadPerRequest>(),
    entry::<pipeline::Pipeline>(),
    entry::<combined_delegation::CombinedDelegation>(),
    entry::<process_pipeline::ProcessPipeline>(),
    entry::<event_loop::EventLoop>(),
    entry::<async_work_stealing::AsyncWorkStealing>(),
    entry::<async_per_core::AsyncPerCore>(),
    entry::<io_uring_server::IoUring>(),
    // scripts/new-server.sh adds new architectures above this line.
];

/// The architecture called `name`.
pub fn find(name: &str) -> Option<&'static Entry> {
    ALL.iter().find(|e| e.name == name)
}

/// Every architecture's name, in order.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|e| e.name).collect()
}

/// Why an architecture could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{name}: {message}")]
    Flags { name: &'static str, message: String },
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("about", &self.about)
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// The architecture's own flags (not the shared ones such as `--backlog`).
    pub fn flags(&self) -> Command {
        (self.command)()
    }

    /// Whether the architecture has a flag with this long name (`workers`).
    pub fn has_flag(&self, long: &str) -> bool {
        self.flags()
            .get_arguments()
            .any(|a| a.get_long() == Some(long))
    }

    /// Whether this machine can run the architecture: `Err` with one sentence naming the
    /// cause if not (then [`Entry::start`] fails with that sentence too).
    pub fn available(&self) -> Result<(), Unavailable> {
        (self.available)()
    }

    /// Starts the architecture in this process, with its own flags given as command-line
    /// words (`["--workers", "4"]`), on the address in `args` (port 0 for an ephemeral one).
    /// Returns once its threads are up.
    pub fn start(&self, flags: &[String], args: ServerArgs) -> Result<RunningServer, StartError> {
        (self.start)(flags, args)
    }

    /// Whether the architecture's `Default` flags (what tests and in-process starters use)
    /// are exactly what its command line gives without a word: the flags' defaults are
    /// written once, in their `#[arg]` attributes. Checked for every entry by this crate's
    /// tests.
    pub fn defaults_agree(&self) -> bool {
        (self.defaults_agree)()
    }
}

/// The entry of architecture `A`.
const fn entry<A>() -> Entry
where
    A: Architecture + Args + FromArgMatches + Default + PartialEq,
{
    Entry {
        name: A::NAME,
        about: A::ABOUT,
        command: command::<A>,
        start: start::<A>,
        available: A::available,
        defaults_agree: defaults_agree::<A>,
    }
}

/// Parses no words as `A`'s flags, as its binary does when given none, and compares the
/// result with `A::default()`.
fn defaults_agree<A>() -> bool
where
    A: Architecture + Args + FromArgMatches + Default + PartialEq,
{
    command::<A>()
        .try_get_matches_from(std::iter::empty::<String>())
        .and_then(|matches| A::from_arg_matches(&matches))
        .is_ok_and(|parsed| parsed == A::default())
}

fn command<A: Architecture + Args>() -> Command {
    A::augment_args(Command::new(A::NAME).about(A::ABOUT).no_binary_name(true))
}

fn start<A>(flags: &[String], args: ServerArgs) -> Result<RunningServer, StartError>
where
    A: Architecture + Args + FromArgMatches,
{
    // clap's error, as its first line without the "error: " prefix: one sentence.
    let fail = |e: clap::Error| StartError::Flags {
        name: A::NAME,
        message: e
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned(),
    };
    let matches = command::<A>().try_get_matches_from(flags).map_err(fail)?;
    let arch = A::from_arg_matches(&matches).map_err(fail)?;
    Ok(RunningServer::start(arch, args)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_findable() {
        let names = names();
        for name in &names {
            assert_eq!(names.iter().filter(|n| *n == name).count(), 1);
            assert_eq!(find(name).map(|e| e.name), Some(*name));
        }
        assert!(find("nope").is_none());
    }

    #[test]
    fn every_architectures_default_flags_are_its_command_lines() {
        for entry in ALL {
            assert!(
                entry.defaults_agree(),
                "{}: Default differs from the flags parsed from no words",
                entry.name
            );
        }
        // The shared flags too, but for the two that in-process servers change on purpose
        // (an ephemeral port, quiet logs).
        let parsed: ServerArgs = server_core::cli::defaults();
        let default = ServerArgs::default();
        assert_eq!(parsed.addr.to_string(), "127.0.0.1:7777");
        assert_eq!(default.addr.port(), 0);
        assert_eq!(
            format!(
                "{:?}",
                ServerArgs {
                    addr: default.addr,
                    log: default.log,
                    ..parsed
                }
            ),
            format!("{default:?}")
        );
    }

    #[test]
    fn every_architecture_starts_by_name_with_its_own_flags() {
        for entry in ALL {
            if let Err(why) = entry.available() {
                // Only where the kernel forbids it (io_uring in a default Docker container).
                eprintln!("{}: skipped: {why}", entry.name);
                continue;
            }
            let server = entry
                .start(&[], ServerArgs::default())
                .expect("starts with its defaults");
            assert_eq!(server.context().snapshot().architecture, entry.name);
            server.stop().expect("stops");
        }
        let pool = find("prefork-pool").expect("registered");
        let server = pool
            .start(&["--workers".into(), "3".into()], ServerArgs::default())
            .expect("starts");
        assert_eq!(
            server.context().snapshot().config.number("workers"),
            Some(3)
        );
        server.stop().expect("stops");
        let error = pool
            .start(&["--workers".into(), "0".into()], ServerArgs::default())
            .expect_err("zero workers are refused");
        assert_eq!(
            error.to_string(),
            "prefork-pool: invalid value '0' for '--workers <N>': 0 is not in 1..=65536"
        );
    }
}
