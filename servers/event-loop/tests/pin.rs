//! `--pin on`: each reactor's thread may run on one CPU only, and `/stats` says which. A
//! test binary of its own, so that the only threads called `reactor-N` in this process are
//! those of the server it starts.

use event_loop::{EventLoop, Pin};
use server_core::{RunningServer, ServerArgs};

/// The CPUs the thread called `name` of this process may run on (`Cpus_allowed_list`).
fn allowed_cpus_of(name: &str) -> Option<String> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            return status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned());
        }
    }
    None
}

#[test]
fn pinned_reactors_run_on_one_cpu_each_and_say_which() {
    let server = RunningServer::start(
        EventLoop {
            reactors: Some(2),
            pin: Pin::On,
            ..EventLoop::default()
        },
        ServerArgs::default(),
    )
    .expect("the server starts");
    // An answer means both reactors are past their first instruction, pinning.
    assert_eq!(testkit::get(server.addr(), "/").status, 200);
    let snapshot = server.context().snapshot();
    assert_eq!(snapshot.config.text("pin"), Some("on"));
    for reactor in &snapshot.reactors {
        let cpus = allowed_cpus_of(&reactor.name).expect("the reactor's thread");
        let cpu: u64 = cpus
            .parse()
            .unwrap_or_else(|_| panic!("{} may run on {cpus}, not one CPU", reactor.name));
        assert_eq!(reactor.cpu, Some(cpu), "{}", reactor.name);
    }
    testkit::stop_cleanly(server);
}
