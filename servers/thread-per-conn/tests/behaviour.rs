//! The shared behaviour list (protocol::testing::cases), run against thread-per-connection.

testkit::behaviour_tests!(|args| {
    server_core::RunningServer::start(thread_per_conn::ThreadPerConn::default(), args)
        .expect("the server starts")
});
