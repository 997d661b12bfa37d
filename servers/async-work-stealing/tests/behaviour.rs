//! The shared behaviour list (testkit's `cases`), run against the work-stealing server: with
//! its defaults (a worker and a blocking thread per CPU), with one worker, and computing on
//! the workers (`--offload off`), which must change nothing a client can see but the time.

use async_work_stealing::{AsyncWorkStealing, Offload};

mod default {
    use super::*;

    testkit::behaviour_tests!(|args| {
        server_core::RunningServer::start(AsyncWorkStealing::default(), args)
            .expect("the server starts")
    });
}

mod one_worker {
    use super::*;

    testkit::behaviour_tests!(|args| {
        let arch = AsyncWorkStealing {
            workers: Some(1),
            blocking_threads: Some(1),
            ..Default::default()
        };
        server_core::RunningServer::start(arch, args).expect("the server starts")
    });
}

mod offload_off {
    use super::*;

    testkit::behaviour_tests!(|args| {
        let arch = AsyncWorkStealing {
            workers: Some(3),
            offload: Offload::Off,
            ..Default::default()
        };
        server_core::RunningServer::start(arch, args).expect("the server starts")
    });
}
