//! Mutant `pipelined-out-of-order`: the starter, but two pipelined requests get each
//! other's answers.
//!
//! **Defect.** A client may send several requests without waiting (pipelining); HTTP/1.1
//! has no request ids, so the only way a client can tell which answer is whose is their
//! order. This server, finding a second request already read behind the first, handles
//! both and writes the second one's answer first: the mistake of a server that answers in
//! the order its work finishes, or that hands pipelined requests to two threads.
//!
//! **Caught by `A.pipelining`**: several requests in one write, answers in order. (The
//! correct variant: `mutant none`.)

use std::sync::Arc;

use server_core::blocking::Next;
use server_core::{work, Acceptor, BlockingConn, Context, ServerError};

pub fn serve(acceptor: Acceptor, ctx: &Arc<Context>) -> Result<(), ServerError> {
    // Blocks in accept until the next client; `None` once shutdown begins.
    while let Some(conn) = acceptor.accept() {
        serve_swapping(conn, ctx);
    }
    Ok(())
}

/// Serves one connection to its end, swapping the answers of pipelined pairs.
fn serve_swapping(mut conn: BlockingConn, ctx: &Context) {
    loop {
        // Blocks until a request has arrived, the client leaves, or a timeout passes.
        let (first, first_exchange) = match conn.next_request() {
            Next::Request(request, exchange) => (request, exchange),
            Next::Reject(response, exchange) => {
                conn.send(exchange, &response);
                return;
            }
            Next::Closed(_) => return,
        };
        // The answer is made now, on this thread, as the starter does.
        let first_answer = work::answer(&first, ctx);
        // A second request already read behind the first: a pipelined one. (Without one,
        // `next_request` would block, so the server only looks when it is there.)
        if conn.has_unread_input() {
            match conn.next_request() {
                Next::Request(second, second_exchange) => {
                    let second_answer = work::answer(&second, ctx);
                    // DEFECT: each request's place on the wire gets the other's answer, so
                    // the second answer goes out first. The starter answers each in turn.
                    if !conn.send(first_exchange, &second_answer) {
                        return;
                    }
                    if !conn.send(second_exchange, &first_answer) {
                        return;
                    }
                    continue;
                }
                // Bad input behind the first request: both answered in order, then the end.
                Next::Reject(response, exchange) => {
                    if conn.send(first_exchange, &first_answer) {
                        conn.send(exchange, &response);
                    }
                    return;
                }
                Next::Closed(_) => {
                    conn.send(first_exchange, &first_answer);
                    return;
                }
            }
        }
        if !conn.send(first_exchange, &first_answer) {
            return;
        }
    }
}
