//! The shared behaviour list, run against thread-per-request.

testkit::behaviour_tests!(|args| {
    server_core::RunningServer::start(thread_per_request::ThreadPerRequest::default(), args)
        .expect("the server starts")
});
