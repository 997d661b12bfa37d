//! `--live`, the full-screen terminal view, driven in a real terminal: tmux's.
//!
//! Each test starts the simulator in a detached tmux session of its own (its own tmux
//! server, on a socket named after the test, so that tests never see each other's panes or
//! the user's), reads the screen back with `tmux capture-pane`, sends keys with
//! `tmux send-keys`, and checks what the room would see: every client's row, the deadline,
//! the counts, and after the run the terminal as it was (the alternate screen left, the
//! cursor shown, the line discipline back in canonical mode with echo and signals).
//!
//! The script in the pane runs the simulator with its report on a file, then prints its
//! exit status, the terminal's modes (`stty -a`) and `DONE`, and waits for a key: so the
//! pane is still alive when the test reads tmux's flags for it.
//!
//! CI installs tmux (`.ci/run`); a machine without it fails these tests with one sentence
//! saying so.
//!
//! Also here, without a terminal: the engine's side of `q` (a stop request ends a run at
//! once, every client finished), and the fallback when stderr is not a terminal.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use loadgen::client::Plan;
use loadgen::engine::{self, Monitor};
use loadgen::tally::live::{ClientState, Live};
use loadgen::{Outcome, Scenario};

/// One tmux server with one session, 120 × 40, killed when dropped.
struct Tmux {
    socket: String,
    dir: PathBuf,
}

/// Numbers the tmux sockets and directories of the tests of this process.
static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Tmux {
    /// A session of `width` × `height` running `args` of the simulator (report on
    /// stdout to a file, the view on the pane), with `env` set.
    fn start(args: &str, env: &str, width: u16, height: u16) -> Tmux {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let socket = format!("servelab-live-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&socket);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let script = format!(
            "cd '{}' && {env} RUST_BACKTRACE=0 '{}' {args} > report.txt; echo EXIT=$?; \
             stty -a | grep -o -- '-\\?icanon\\|-\\?echo \\|-\\?isig' | tr '\\n' ' '; echo; \
             echo DONE; read x",
            dir.display(),
            env!("CARGO_BIN_EXE_simulator"),
        );
        let tmux = Tmux { socket, dir };
        tmux.run(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            &script,
        ]);
        tmux
    }

    /// Runs a tmux command on this server and returns what it printed.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tmux runs: install it (apt-get install tmux); .ci/run does");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p"])
    }

    /// Reads the screen until `done` says it shows what the test waits for, for at most
    /// `within`, and returns it.
    ///
    /// A screen can only be observed by asking tmux for it again, so this polls, every
    /// 50 ms, up to a bounded deadline: the one place these tests wait by the clock, and
    /// only to look, never to order events.
    fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on the screen within {} ms; it shows:\n{screen}",
                within.as_millis()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the script's end (the simulator exited, the modes printed) and checks
    /// that the terminal is as it was: returns the final screen.
    fn wait_restored(&self, within: Duration) -> String {
        let screen = self.wait_for("DONE", within, |s| s.contains("DONE"));
        let flags = self.run(&["display", "-p", "#{alternate_on} #{cursor_flag}"]);
        assert_eq!(
            flags.trim(),
            "0 1",
            "alternate screen left, cursor shown:\n{screen}"
        );
        let modes = screen
            .lines()
            .find(|l| l.contains("icanon"))
            .expect("stty's modes");
        for mode in ["icanon", "echo", "isig"] {
            assert!(
                modes.split_whitespace().any(|m| m == mode),
                "{mode} back on: {modes}"
            );
        }
        screen
    }

    fn report(&self) -> String {
        std::fs::read_to_string(self.dir.join("report.txt")).expect("the report's file")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The exit status the script printed.
fn exit_status(screen: &str) -> &str {
    screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("EXIT="))
        .expect("the exit status")
}

/// Lab 1 in a terminal: each run's five clients appear as rows with the deadline column
/// and the server's panel, and the counts the view leaves behind are the report's.
#[test]
fn lab_1_shows_every_client_and_its_counts_are_the_reports() {
    let tmux = Tmux::start("lab 1 --live", "", 120, 40);
    let rows = tmux.wait_for("five client rows", Duration::from_secs(20), |s| {
        s.contains("servelab live")
            && (1..=5).all(|id| s.lines().any(|l| l.starts_with(&format!("{id:>5} "))))
    });
    assert!(rows.contains("deadline 1.5 s"), "{rows}");
    assert!(rows.contains('┃'), "the deadline column:\n{rows}");
    assert!(rows.contains("server (/stats)"), "{rows}");
    assert!(rows.contains("served "), "{rows}");
    let end = tmux.wait_restored(Duration::from_secs(60));
    assert_eq!(exit_status(&end), "0", "{end}");
    // The view's last counts, one line per run, against the report's, run by run.
    let shown: Vec<String> = end
        .lines()
        .filter(|l| l.starts_with("simulator --live: single"))
        .filter_map(|l| l.split(": served ").nth(1))
        .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    let report = tmux.report();
    let reported: Vec<String> = report
        .lines()
        .filter_map(|l| l.trim().strip_prefix("measured: "))
        .map(|l| l.split('/').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(shown.len(), 4, "one summary per run:\n{end}");
    assert_eq!(shown, reported, "view:\n{end}\nreport:\n{report}");
}

/// A comparison in a terminal: each architecture's view shows the prediction beside the
/// served count, and under its title the architectures already measured, each as it ended.
#[test]
fn a_comparison_lists_the_architectures_already_measured_and_the_prediction() {
    // The sequential server serves one of four 800 ms requests within 1 s; thread per
    // connection serves all four, in about 800 ms, long enough to be seen.
    let tmux = Tmux::start(
        "compare --archs single,thread-per-conn --clients 4 --request 'GET /sleep/800' --timeout 1s --live",
        "",
        120,
        40,
    );
    let second = tmux.wait_for(
        "the second architecture's view",
        Duration::from_secs(30),
        |s| s.contains("servelab live · thread-per-conn") && s.contains("before: single"),
    );
    // The measured count depends on the machine (one 800 ms answer inside a 1 s deadline);
    // the line's shape and the prediction do not.
    let before = second
        .lines()
        .find(|l| l.contains("before: single · 4 clients: served "))
        .unwrap_or_else(|| panic!("no line for the first architecture:\n{second}"));
    assert!(before.contains(" of 4 (predicted 1 served)"), "{second}");
    assert!(second.contains("(predicted 4 served)"), "{second}");
    let end = tmux.wait_restored(Duration::from_secs(30));
    assert_eq!(exit_status(&end), "0", "{end}");
}

/// `q` in the middle of a long run stops it: the report follows at once (the lab's later
/// runs stop as soon as they start), and the terminal is restored.
#[test]
fn q_stops_the_run_and_restores_the_terminal() {
    stop_with(&["q"]);
}

/// Ctrl+C arrives as a key in raw mode, and does what `q` does.
#[test]
fn ctrl_c_stops_the_run_and_restores_the_terminal() {
    stop_with(&["C-c"]);
}

fn stop_with(keys: &[&str]) {
    // At scale 1 each of the lab's four runs lasts 20 s.
    let tmux = Tmux::start("lab 1 --live --scale 1", "", 120, 40);
    tmux.wait_for("the live view", Duration::from_secs(20), |s| {
        s.contains("servelab live") && s.contains("    5 ")
    });
    let pressed = Instant::now();
    let mut args = vec!["send-keys"];
    args.extend_from_slice(keys);
    tmux.run(&args);
    let end = tmux.wait_restored(Duration::from_secs(15));
    assert!(
        pressed.elapsed() < Duration::from_secs(15),
        "the lab ended {} ms after the key",
        pressed.elapsed().as_millis()
    );
    assert!(end.contains("stopped with q"), "{end}");
    // The stopped runs' checks disagree with the lecture (clients starved): exit 1, after
    // the full report.
    assert_eq!(exit_status(&end), "1", "{end}");
    let report = tmux.report();
    assert!(report.contains("lab 1:"), "{report}");
    assert!(report.contains("measured: "), "{report}");
}

/// A panic while the view is up still restores the terminal (the panic hook), and its
/// message is readable on the normal screen.
#[test]
fn a_panic_restores_the_terminal() {
    let tmux = Tmux::start("lab 1 --live", "SIMULATOR_LIVE_TEST_PANIC=1", 120, 40);
    let end = tmux.wait_restored(Duration::from_secs(20));
    assert_eq!(exit_status(&end), "101", "{end}");
    assert!(end.contains("panicked"), "{end}");
}

/// A terminal smaller than the view needs: the progress line instead, said once.
#[test]
fn a_small_terminal_falls_back_and_says_so_once() {
    let tmux = Tmux::start("lab 1 --live", "", 50, 12);
    let end = tmux.wait_restored(Duration::from_secs(60));
    assert_eq!(exit_status(&end), "0", "{end}");
    assert_eq!(
        end.matches("smaller than the 60×16").count(),
        1,
        "said once for the lab's four runs:\n{end}"
    );
}

/// With stderr not a terminal (a pipe here, as in CI), `--live` says so once and the
/// command runs as without it.
#[test]
fn without_a_terminal_live_falls_back_and_says_so_once() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args(["lab", "1", "--live"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the simulator starts");
    let mut err = String::new();
    // Reads until the simulator exits (its four runs take about 8 s).
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut err)
        .expect("stderr reads");
    let status = child.wait().expect("the simulator exits");
    assert!(status.success(), "{err}");
    assert_eq!(
        err.matches("--live cannot draw here (standard error is not a terminal)")
            .count(),
        1,
        "{err}"
    );
}

/// A monitor that asks the run to stop at its first look, and keeps the states it saw
/// last.
#[derive(Debug, Default)]
struct StopAtOnce {
    last: Vec<ClientState>,
}

impl Monitor for StopAtOnce {
    fn update(&mut self, live: &Live) {
        live.request_stop();
        self.last = (1..=live.clients()).map(|id| live.state(id)).collect();
    }

    fn wants_clients(&self) -> bool {
        true
    }
}

/// The engine's side of `q`: a stop request ends a run whose clients would otherwise wait
/// 30 s for a server that never answers, at once, every client finished and starved, and
/// its states say so.
#[test]
fn a_stop_request_ends_the_run_at_once_with_every_client_finished() {
    // A listener that never accepts: the kernel completes the handshakes into its backlog,
    // and the clients wait for service that never comes.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let addr = listener.local_addr().expect("its address");
    let scenario = Scenario::get(4, "/", Duration::from_secs(30), Duration::from_millis(500));
    let plan = Plan::new(addr, &addr.to_string(), &scenario);
    let began = Instant::now();
    let mut monitor = StopAtOnce::default();
    let finished = engine::run(plan, &mut monitor).expect("the run ends");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "stopped after {} ms",
        began.elapsed().as_millis()
    );
    assert_eq!(finished.records.len(), 4);
    for record in &finished.records {
        assert_eq!(record.outcome, Outcome::Starved, "{record:?}");
        assert!(record.ended_us.is_some(), "{record:?}");
    }
    assert_eq!(
        monitor.last,
        vec![ClientState::Ended(Outcome::Starved); 4],
        "the last look, after every client finished"
    );
    drop(listener);
}
