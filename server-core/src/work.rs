//! Doing a route's work on the calling thread.
//!
//! `protocol::route` says what a request needs ([`Work`]); a thread of a blocking server
//! simply does it: it sleeps through a wait and computes a computation itself. While it
//! does, the thread can do nothing else, which is exactly what makes `/sleep` and `/factor`
//! show the difference between the architectures. (An event loop, which must never block,
//! does the same work differently: see `servers/event-loop`.)

use std::panic::{catch_unwind, AssertUnwindSafe};

use protocol::{route, Request, Response, Status, Work};

use crate::context::Context;

/// Computes the response to `request` on this thread. A panic inside a route (a bug)
/// becomes a 500 that closes the connection, instead of a lost response and a dead thread.
pub fn answer(request: &Request, ctx: &Context) -> Response {
    answer_while(request, ctx, &|| true)
}

/// [`answer`], stopping a computation as soon as `wanted` says its client has gone (a
/// thread that holds the connection can tell), and a sleep too once shutdown has begun (see
/// [`crate::shutdown::Shutdown::sleep`]).
pub fn answer_while(request: &Request, ctx: &Context, wanted: &dyn Fn() -> bool) -> Response {
    // The route's work is caught as a unit: a panic anywhere in it (only `/crash` panics on
    // purpose) costs this one request, never the thread or the connection's state.
    catch_unwind(AssertUnwindSafe(|| match route(request, &ctx.routes) {
        Work::Respond(response) => response,
        Work::Sleep { delay, then } => {
            // Blocks this thread for the whole delay, like a handler waiting for a slow
            // disk or database; at shutdown, only while the client is still there.
            if ctx.shutdown.sleep(delay, wanted) {
                then
            } else {
                Response::error(
                    Status::ServiceUnavailable,
                    "the client left while the server was stopping; the wait was cut short",
                )
            }
        }
        // Runs as long as the computation takes (at most `--max-cpu`), on this thread.
        Work::Compute(job) => job.run_while(wanted),
        Work::Stats => ctx.stats_response(),
    }))
    .unwrap_or_else(|_| {
        Response::error(
            Status::InternalError,
            "the handler failed; see the server log",
        )
        .closing()
    })
}
