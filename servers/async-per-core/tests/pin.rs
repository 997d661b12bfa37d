//! `--pin on`: each core's thread may run on one CPU only. A test binary of its own, so that
//! the only threads called `core-N` in this process are those of the server it starts.

use async_per_core::{AsyncPerCore, Pin};
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
fn pinned_cores_run_on_one_cpu_each() {
    let server = RunningServer::start(
        AsyncPerCore {
            cores: Some(2),
            pin: Pin::On,
            ..AsyncPerCore::default()
        },
        ServerArgs::default(),
    )
    .expect("the server starts");
    assert_eq!(testkit::get(server.addr(), "/").status, 200);
    for core in ["core-1", "core-2"] {
        let cpus = allowed_cpus_of(core).expect("the core's thread");
        assert!(
            cpus.parse::<usize>().is_ok(),
            "{core} may run on {cpus}, not one CPU"
        );
    }
    testkit::stop_cleanly(server);
}
