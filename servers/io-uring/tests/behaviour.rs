//! The shared behaviour list (testkit's `cases`), run against the io_uring server: with the
//! default ring per CPU, with one ring and one helper, and with a pool of provided buffers
//! so small that receives run out of buffers and must be armed again.

mod default {
    testkit::behaviour_tests!(|args| {
        server_core::RunningServer::start(io_uring_server::IoUring::default(), args)
            .expect("the server starts")
    });
}

mod one_ring {
    testkit::behaviour_tests!(|args| {
        let arch = io_uring_server::IoUring {
            rings: Some(1),
            helpers: Some(1),
            ..Default::default()
        };
        server_core::RunningServer::start(arch, args).expect("the server starts")
    });
}

mod few_small_buffers {
    testkit::behaviour_tests!(|args| {
        let arch = io_uring_server::IoUring {
            rings: Some(1),
            buffers: 2,
            buffer_size: 256,
            ..Default::default()
        };
        server_core::RunningServer::start(arch, args).expect("the server starts")
    });
}
