//! The `prefork-pool` binary as its users run it: the shutdown promise (see testkit::binary).

testkit::binary_tests!("prefork-pool");
