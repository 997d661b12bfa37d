//! The shared behaviour list (protocol::testing::cases), run against the pipeline with
//! dedicated handler threads, with the rayon handler pool, and with the condvar queues.

use pipeline::{HandlerPool, Pipeline};
use server_core::queue::QueueKind;
use server_core::stages::{Queues, Stages};

mod threads {
    testkit::behaviour_tests!(|args| {
        server_core::RunningServer::start(super::Pipeline::default(), args)
            .expect("the server starts")
    });
}

mod rayon {
    testkit::behaviour_tests!(|args| {
        let pipeline = super::Pipeline {
            handler_pool: super::HandlerPool::Rayon,
            ..Default::default()
        };
        server_core::RunningServer::start(pipeline, args).expect("the server starts")
    });
}

mod condvar {
    testkit::behaviour_tests!(|args| {
        let pipeline = super::Pipeline {
            handlers: 1,
            stages: super::Stages {
                receivers: 1,
                senders: 1,
                queues: super::Queues {
                    queue_impl: super::QueueKind::Condvar,
                    ..Default::default()
                },
            },
            ..Default::default()
        };
        server_core::RunningServer::start(pipeline, args).expect("the server starts")
    });
}
