//! Mutant `keep-alive-ignored`: the starter, but every connection is closed after its first
//! answer.
//!
//! **Defect.** HTTP/1.1 keeps a connection open unless someone says `Connection: close`.
//! This server answers one request and drops the connection without saying so: a client
//! that sends its second request on the same connection finds it closed (or reset).
//! Browsers and load generators survive by reconnecting, at the price of a handshake per
//! request, which is why the defect goes unnoticed by hand.
//!
//! **Caught by `A.keep-alive`**: two requests on one connection, each answer while the
//! connection stays open; the second gets no answer. (The correct variant: `mutant none`.)

use std::sync::Arc;

use server_core::blocking::Next;
use server_core::{work, Acceptor, Context, ServerError};

pub fn serve(acceptor: Acceptor, ctx: &Arc<Context>) -> Result<(), ServerError> {
    // Blocks in accept until the next client; `None` once shutdown begins.
    while let Some(mut conn) = acceptor.accept() {
        // Blocks until the first request has arrived (or the client leaves).
        match conn.next_request() {
            Next::Request(request, exchange) => {
                let response = work::answer(&request, ctx);
                conn.send(exchange, &response);
            }
            Next::Reject(response, exchange) => {
                conn.send(exchange, &response);
            }
            Next::Closed(_) => {}
        }
        // DEFECT: `conn` is dropped here, after one answer whose headers promised nothing
        // of the sort. The starter loops over `next_request` until the client leaves.
    }
    Ok(())
}
