//! The `thread-per-conn` binary as its users run it: the shutdown promise (see testkit::binary).

testkit::binary_tests!("thread-per-conn");
