//! The shared behaviour list (testkit's `cases`), run against the per-core server: with its
//! defaults (a core per CPU), with one core, and with three cores computing on their own
//! threads (`--offload off`), which must change nothing a client can see but the time.

use async_per_core::AsyncPerCore;
use async_work_stealing::Offload;

mod default {
    use super::*;

    testkit::behaviour_tests!(|args| {
        server_core::RunningServer::start(AsyncPerCore::default(), args).expect("the server starts")
    });
}

mod one_core {
    use super::*;

    testkit::behaviour_tests!(|args| {
        let arch = AsyncPerCore {
            cores: Some(1),
            ..Default::default()
        };
        server_core::RunningServer::start(arch, args).expect("the server starts")
    });
}

mod three_cores_offload_off {
    use super::*;

    testkit::behaviour_tests!(|args| {
        let arch = AsyncPerCore {
            cores: Some(3),
            offload: Offload::Off,
            ..Default::default()
        };
        server_core::RunningServer::start(arch, args).expect("the server starts")
    });
}
