//! The shared behaviour list (protocol::testing::cases), run against the pre-fork pool with
//! each queue implementation.

mod crossbeam {
    protocol::behaviour_tests!(|args| {
        protocol::RunningServer::start(prefork_pool::PreforkPool::default(), args)
            .expect("the server starts")
    });
}

mod condvar {
    protocol::behaviour_tests!(|args| {
        let pool = prefork_pool::PreforkPool {
            queue_impl: protocol::queue::QueueKind::Condvar,
            ..Default::default()
        };
        protocol::RunningServer::start(pool, args).expect("the server starts")
    });
}
