//! The process pipeline beside the thread-based designs: a computation whose client has
//! gone is stopped, although it runs in a handler process that cannot see the socket.

#[test]
fn a_computation_stops_when_its_client_leaves() {
    // The relay watches the client while its process computes, and replaces the process.
    testkit::a_computation_stops_when_its_client_leaves(&|args| {
        server_core::RunningServer::start(process_pipeline::ProcessPipeline::default(), args)
            .expect("the server starts")
    });
}
