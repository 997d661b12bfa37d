//! The shared behaviour list (protocol::testing::cases), run against the sequential server.

testkit::behaviour_tests!(|args| {
    server_core::RunningServer::start(single::Single::default(), args).expect("the server starts")
});
