//! The shared behaviour list (protocol::testing::cases), run against the pre-fork pool with
//! each queue implementation.

mod crossbeam {
    testkit::behaviour_tests!(|args| {
        server_core::RunningServer::start(prefork_pool::PreforkPool::default(), args)
            .expect("the server starts")
    });
}

mod condvar {
    testkit::behaviour_tests!(|args| {
        let pool = prefork_pool::PreforkPool {
            queue_impl: server_core::queue::QueueKind::Condvar,
            ..Default::default()
        };
        server_core::RunningServer::start(pool, args).expect("the server starts")
    });
}
