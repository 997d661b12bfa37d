//! The shared behaviour list, run against the process pipeline.

testkit::behaviour_tests!(|args| {
    server_core::RunningServer::start(process_pipeline::ProcessPipeline::default(), args)
        .expect("the server starts")
});
