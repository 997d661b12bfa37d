//! Mutant `answers-held-until-close`: the starter, but answers wait until the client
//! closes.
//!
//! **Defect.** A server that collects its output and writes it when the connection ends
//! (a buffered writer flushed on drop, a response body "streamed" to a buffer) works with
//! clients that send one request and close their sending side, such as `curl` with HTTP/1.0
//! or a test that shuts down after writing. A keep-alive client that waits for its answer
//! before its next request waits for ever.
//!
//! **Caught by `A.keep-alive`**: two requests on one connection, each answer must arrive
//! while the connection stays open; the first never does. (The correct variant:
//! `mutant none`.)

use std::sync::Arc;

use server_core::blocking::Next;
use server_core::{work, Acceptor, BlockingConn, Context, ServerError};

pub fn serve(acceptor: Acceptor, ctx: &Arc<Context>) -> Result<(), ServerError> {
    // Blocks in accept until the next client; `None` once shutdown begins.
    while let Some(conn) = acceptor.accept() {
        serve_holding(conn, ctx);
    }
    Ok(())
}

/// Reads every request of a connection, then answers them all.
fn serve_holding(mut conn: BlockingConn, ctx: &Context) {
    // DEFECT: the answers are kept here until the client has closed its side (the protocol
    // machine reads at most 16 unanswered requests, then this loop ends too). The starter
    // sends each answer as soon as it is made.
    let mut held = Vec::new();
    loop {
        // Blocks until a request has arrived, the client leaves, or a timeout passes.
        match conn.next_request() {
            Next::Request(request, exchange) => {
                held.push((exchange, work::answer(&request, ctx)));
            }
            Next::Reject(response, exchange) => {
                held.push((exchange, response));
                break;
            }
            Next::Closed(_) => break,
        }
    }
    // The client has closed its side (or 16 requests wait): only now does anything go out,
    // in order, each answer where its request was.
    for (exchange, response) in held {
        // Blocks until the kernel has taken the answer (a client that has left fails it).
        if !conn.send(exchange, &response) {
            return;
        }
    }
}
