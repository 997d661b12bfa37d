//! The `io-uring` binary as its users run it: the shutdown promise (see testkit::binary).

testkit::binary_tests!("io-uring");
