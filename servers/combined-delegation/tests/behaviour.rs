//! The shared behaviour list, run against combined delegation.

testkit::behaviour_tests!(|args| {
    server_core::RunningServer::start(combined_delegation::CombinedDelegation::default(), args)
        .expect("the server starts")
});
