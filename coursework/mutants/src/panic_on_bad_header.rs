//! Mutant `panic-on-bad-header`: a thread per connection that panics on a request it cannot
//! parse.
//!
//! **Defect.** Bad input deserves a precise error (`400`, `431`, `505`, ...: the table in
//! `docs/protocol.md`), never a crash. This server treats the parser's rejection as
//! impossible (the `.unwrap()` on a parse result of hand-written servers): the
//! connection's thread panics, the client gets no answer, only a closed or reset
//! connection. With a thread per connection the server survives; the sequential starter
//! would have died with its only thread.
//!
//! **Caught by `A.hostile`**: every request of `protocol::hostile` answered with its
//! precise status. (The correct variant: `mutant per-connection`.)

use std::sync::Arc;

use server_core::blocking::Next;
use server_core::{work, Acceptor, BlockingConn, Context, ServerError, ThreadGroup};

use crate::correct::spawn_per_connection;

pub fn serve(acceptor: Acceptor, ctx: &Arc<Context>) -> Result<(), ServerError> {
    spawn_per_connection(acceptor, ctx, serve_panicking)
}

/// Serves one connection to its end, and panics at the first bad request.
fn serve_panicking(mut conn: BlockingConn, threads: &ThreadGroup) {
    let ctx = Arc::clone(conn.context());
    loop {
        // Blocks until a request has arrived, the client leaves, or a timeout passes.
        match conn.next_request() {
            Next::Request(request, exchange) => {
                let _busy = threads.busy();
                let response = work::answer(&request, &ctx);
                if !conn.send(exchange, &response) {
                    return;
                }
            }
            // DEFECT: the rejection (with its precise status, ready to send) is taken for
            // a bug. The starter sends it: `conn.send(exchange, &response)`.
            Next::Reject(response, _exchange) => panic!(
                "request could not be parsed: {}",
                String::from_utf8_lossy(&response.body).trim_end()
            ),
            Next::Closed(_) => return,
        }
    }
}
