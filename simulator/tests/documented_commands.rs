//! Every `simulator` command written in `README.md`, `docs/` and `labs/` is run here, as
//! written, and must exit 0 with every prediction and lab check agreeing. So a documented
//! command can never again print `DISAGREES`, and a new command in the docs cannot be
//! forgotten: the test fails until it is listed in [`setup`].
//!
//! Commands are found in code spans and code blocks: `simulator …` or
//! `cargo run --release -p simulator -- …`. A command that needs a running server gets one,
//! started in this process on an ephemeral port, and its `127.0.0.1:7777` is replaced by
//! that server's address. Syntax descriptions with placeholders (`simulator lab <id>`,
//! `simulator probe HOST:PORT`) are not commands and are left out.
//!
//! The commands run one after another, in one test, because several of them measure time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use simulator::Servers;

/// What a documented command needs before it can run.
enum Setup {
    /// Nothing: it starts its own servers, or needs none.
    Alone,
    /// A server of this kind listening where the command says (`127.0.0.1:7777`, the
    /// default target).
    Server(fn() -> server_core::RunningServer),
    /// Not run here; the reason is given where it is listed.
    Elsewhere,
}

fn start(servers: Servers, args: server_core::ServerArgs) -> server_core::RunningServer {
    let arch = servers.archs[0];
    servers.start(arch, args).expect("the server starts")
}

fn server_args() -> server_core::ServerArgs {
    server_core::ServerArgs {
        shutdown_timeout: Duration::from_secs(2),
        ..server_core::ServerArgs::default()
    }
}

/// How to run each documented command. The docs and this list must name the same commands.
fn setup(command: &str) -> Option<Setup> {
    let single = || start(Servers::only("single"), server_args());
    Some(match command {
        // The build-and-grade labs' sheets say there is *no* `simulator lab 20` (nor 21, 22):
        // they are graded with `simulator grade`, which the grader's own tests run.
        "lab 20" | "lab 21" | "lab 22" => Setup::Elsewhere,
        // Lab 1 at the lecture's pace takes 80 s; the same lab with --live at the default
        // scale runs here, and simulator/tests/live.rs drives it in a terminal.
        "lab 1 --live --scale 1" => Setup::Elsewhere,
        // Labs, comparisons and sweeps start their own in-process servers.
        c if c.starts_with("lab ")
            || (c.starts_with("compare") || c.starts_with("sweep")) && !c.contains("--target") =>
        {
            Setup::Alone
        }
        "run --target 127.0.0.1:7777"
        | "run --rate 500 --duration 1s --slo \"p99<100ms,served>=99%,errors<0.1%\""
        | "run --stages \"1s:500,1s:500,1s:0\" --connections 1"
        | "run --closed --stages \"0s:4,500ms:4,500ms:0\" --request \"GET /sleep/10\""
        | "probe 127.0.0.1:7777"
        | "run --clients 5 --hold 500ms --timeout 1400ms --log info" => Setup::Server(single),
        // Lab 9's variation: any server, with --log debug (the log is not checked here).
        "run --clients 5 --hold 1s" => {
            Setup::Server(|| start(Servers::only("thread-per-conn"), server_args()))
        }
        // Lab 19's command line: the background against an event loop, which serves all.
        "run --clients 20 --timeout 1s --background 200:slow-headers --background 100:slow-body --background 50:slow-read --background 100:idle" => {
            Setup::Server(|| start(Servers::only("event-loop"), server_args()))
        }
        // Lab 6's variation: a pipeline with the rayon handler pool.
        "run --clients 8 --request \"GET /sleep/200\"" => Setup::Server(|| {
            start(
                Servers::only("pipeline").with("handler-pool", "rayon"),
                server_args(),
            )
        }),
        // Lab 10's variation: the pool with the condvar queue and keep-alive off.
        "run --clients 32 --duration 5s" => Setup::Server(|| {
            let args = server_core::ServerArgs {
                keep_alive_timeout: Duration::ZERO,
                ..server_args()
            };
            start(
                Servers::only("prefork-pool").with("queue-impl", "condvar"),
                args,
            )
        }),
        // Lab 12's variation: an event loop of two reactors that compute on the loop.
        "run --clients 8 --duration 2s" => Setup::Server(|| {
            start(
                Servers::only("event-loop")
                    .with("reactors", 2)
                    .with("offload", "off"),
                server_args(),
            )
        }),
        // Lab 26's variation: two reactors that compute on the loop, a listening socket each
        // (without the stall the variation adds by hand, every client is served).
        "run --clients 40 --timeout 300ms" => Setup::Server(|| {
            start(
                Servers::only("event-loop")
                    .with("reactors", 2)
                    .with("offload", "off")
                    .with("accept", "reuseport"),
                server_args(),
            )
        }),
        // Lab 13's variation: the pool of 4 request slots, and Poisson arrivals at 88% load.
        "run --rate 176 --arrivals poisson --duration 3s --connections 100 --request \"GET /sleep/20\"" => {
            Setup::Server(|| {
                let args = server_core::ServerArgs {
                    keep_alive_timeout: Duration::ZERO,
                    ..server_args()
                };
                start(Servers::only("prefork-pool").with("workers", 4), args)
            })
        }
        "compare --target single:7777,thread-per-conn:7777,prefork-pool:7777,thread-per-request:7777,pipeline:7777,combined-delegation:7777,process-pipeline:7777,event-loop:7777,async-work-stealing:7777,async-per-core:7777,io-uring:7777" => {
            // Needs the compose network's service names; scripts/container-smoke.sh runs it
            // in CI.
            Setup::Elsewhere
        }
        _ => return None,
    })
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Markdown files whose commands are checked.
fn documents() -> Vec<PathBuf> {
    let root = workspace();
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "labs"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .expect("read the directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// The simulator commands in one Markdown text, as their argument strings
/// (`compare --clients 5 ...`), in order of appearance.
fn commands_in(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            // A shell line, without its trailing comment.
            pieces.push(line.split(" #").next().unwrap_or("").trim().to_owned());
        } else if !line.starts_with('#') {
            // Inline code spans, except in headings, which name a subcommand.
            pieces.extend(
                line.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(|span| span.trim().to_owned()),
            );
        }
    }
    let mut commands = Vec::new();
    for piece in pieces {
        let rest = if let Some(rest) = piece.strip_prefix("cargo run --release -p simulator -- ") {
            rest
        } else if let Some(rest) = piece.strip_prefix("simulator ") {
            rest
        } else {
            continue;
        };
        let rest = rest.trim();
        let is_syntax = rest.contains('<')
            || rest
                .split_whitespace()
                .any(|w| w.len() > 1 && w.chars().all(|c| c.is_ascii_uppercase() || c == ':'));
        let is_subcommand = ["run", "compare", "lab", "probe"]
            .iter()
            .any(|s| rest == *s || rest.starts_with(&format!("{s} ")));
        if is_subcommand && !is_syntax {
            commands.push(rest.to_owned());
        }
    }
    commands
}

/// Splits a command line the way a shell would for these simple commands: on spaces,
/// keeping double-quoted words together.
fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in command.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[test]
fn command_extraction_finds_commands_and_skips_syntax() {
    let text = "Run `cargo run --release -p simulator -- lab 4` or `simulator lab <id>`.\n\
                ```sh\nsimulator probe HOST:PORT\ncargo run --release -p simulator -- compare   # all four\n```\n\
                `simulator run --request \"GET /\"`";
    assert_eq!(
        commands_in(text),
        ["lab 4", "compare", "run --request \"GET /\""]
    );
    assert_eq!(
        words("run --request \"GET /sleep/200\" --clients 8"),
        ["run", "--request", "GET /sleep/200", "--clients", "8"]
    );
}

#[test]
fn every_documented_command_runs_and_agrees() {
    let mut all = BTreeSet::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).expect("read the document");
        for command in commands_in(&text) {
            all.insert(command);
        }
    }
    let unknown: Vec<&String> = all.iter().filter(|c| setup(c).is_none()).collect();
    assert!(
        unknown.is_empty(),
        "documented commands this test does not know how to run; add them to `setup`: {unknown:#?}"
    );
    // Every lab is documented, and so run, by its sheet.
    for lab in simulator::labs::all() {
        assert!(
            all.contains(&format!("lab {}", lab.id)),
            "lab {} has no documented command",
            lab.id
        );
    }

    // Each command runs in an empty directory of its own, so that what it writes
    // (`--frames frames`, say) lands there and not in the checkout.
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("documented-commands");
    let mut failures = Vec::new();
    for (n, command) in all.iter().enumerate() {
        let cwd = scratch.join(n.to_string());
        let _ = std::fs::remove_dir_all(&cwd);
        std::fs::create_dir_all(&cwd).expect("a scratch directory");
        let server = match setup(command) {
            Some(Setup::Alone) => None,
            Some(Setup::Server(start)) => Some(start()),
            Some(Setup::Elsewhere) | None => continue,
        };
        let mut args = words(command);
        if let Some(server) = &server {
            let addr = server.addr().to_string();
            let mut targeted = false;
            for arg in &mut args {
                if arg == "127.0.0.1:7777" {
                    *arg = addr.clone();
                    targeted = true;
                }
            }
            if !targeted {
                args.extend(["--target".to_owned(), addr]);
            }
        }
        let output = Command::new(env!("CARGO_BIN_EXE_simulator"))
            .args(&args)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .output()
            .expect("run the simulator");
        if let Some(server) = server {
            server.stop().expect("the server stops");
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        // Here stderr is a pipe: `--live` must say once that it falls back, and the command
        // must otherwise run as without it.
        let fell_back = String::from_utf8_lossy(&output.stderr)
            .matches("--live cannot draw here (standard error is not a terminal)")
            .count()
            == 1;
        // `--frames DIR` with `--frame-count N`: N frames in DIR, or in each architecture's
        // directory inside it.
        let frames_missing = frame_dirs(command, &cwd).is_some_and(|(dirs, count)| {
            dirs.is_empty()
                || dirs.iter().any(|d| {
                    std::fs::read_dir(d).map_or(0, |e| e.count()) != count
                        || !d.join("frame-001.svg").is_file()
                })
        });
        if !output.status.success()
            || stdout.contains("DISAGREE")
            || stdout.contains("FAIL")
            || (command.contains("--live") && !fell_back)
            || frames_missing
        {
            failures.push(format!(
                "simulator {command}\n  exit: {:?}\n{stdout}{}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// For a command with `--frames DIR`: the directories that should hold the frames (DIR, or
/// its subdirectories when the command writes several runs) and how many frames each should
/// hold (`--frame-count`, 25 by default).
fn frame_dirs(command: &str, cwd: &Path) -> Option<(Vec<PathBuf>, usize)> {
    let words = words(command);
    let at = |flag: &str| {
        words
            .iter()
            .position(|w| w == flag)
            .and_then(|i| words.get(i + 1))
    };
    let dir = cwd.join(at("--frames")?);
    let count = at("--frame-count").map_or(25, |n| n.parse().unwrap_or(0));
    let dirs = if command.starts_with("run") || command.starts_with("merge") {
        vec![dir]
    } else {
        std::fs::read_dir(&dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    Some((dirs, count))
}
