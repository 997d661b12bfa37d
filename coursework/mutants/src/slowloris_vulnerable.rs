//! Mutant `slowloris-vulnerable`: the starter with no pace on requests and no read timeout.
//!
//! **Defect.** A slowloris client sends a request a few bytes at a time and never finishes
//! it. A server with a thread per request it is reading must bound how long a request may
//! take to arrive, or each such client holds a thread for ever. servelab bounds it twice:
//! the pace (`--header-timeout` 2 s, plus a second per `--min-rate` 500 bytes) and the read
//! timeout (10 s). This server has neither, as a hand-written server that only sets no
//! timeout at all: one slow client stops the sequential server for everyone.
//!
//! **Caught by `B.slowloris`**: a slowloris probe, then the next client must be served.
//! (The correct variant: `mutant none`, whose pace ends the slow request after about 2 s.)

use std::time::Duration;

use server_core::ServerArgs;

/// Takes the request deadlines out of the shared flags.
pub fn weaken(args: &mut ServerArgs) {
    // DEFECT: no pace (a rate of 0 turns it off) and a read timeout of a day.
    args.min_rate = 0;
    args.header_timeout = Duration::from_secs(24 * 60 * 60);
    args.read_timeout = Duration::from_secs(24 * 60 * 60);
}
