//! The shared behaviour list (protocol::testing::cases), run against the sequential server.

protocol::behaviour_tests!(|args| {
    protocol::RunningServer::start(single::Single::default(), args).expect("the server starts")
});
