//! The `async-work-stealing` binary as its users run it: the shutdown promise (see
//! testkit::binary).

testkit::binary_tests!("async-work-stealing");
