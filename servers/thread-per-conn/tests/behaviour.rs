//! The shared behaviour list (protocol::testing::cases), run against thread-per-connection.

protocol::behaviour_tests!(|args| {
    protocol::RunningServer::start(thread_per_conn::ThreadPerConn::default(), args)
        .expect("the server starts")
});
