//! The shared behaviour list (testkit's `cases`), run against the event loop: with the
//! default two-or-more reactors and helpers, with one reactor, and with SO_REUSEPORT
//! listeners.

mod default {
    testkit::behaviour_tests!(|args| {
        server_core::RunningServer::start(event_loop::EventLoop::default(), args)
            .expect("the server starts")
    });
}

mod one_reactor {
    testkit::behaviour_tests!(|args| {
        let arch = event_loop::EventLoop {
            reactors: Some(1),
            helpers: Some(1),
            ..Default::default()
        };
        server_core::RunningServer::start(arch, args).expect("the server starts")
    });
}

mod reuseport {
    testkit::behaviour_tests!(|args| {
        let arch = event_loop::EventLoop {
            reactors: Some(3),
            accept: event_loop::Accept::Reuseport,
            ..Default::default()
        };
        server_core::RunningServer::start(arch, args).expect("the server starts")
    });
}
