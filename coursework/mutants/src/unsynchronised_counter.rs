//! Mutant `unsynchronised-counter`: a thread per connection whose `/stats` counts the
//! requests it served with a counter that loses updates.
//!
//! **Defect.** The lecture's shared-state bug, in safe Rust: the counter is an atomic,
//! but it is updated in two steps, a `load` and a `store` of the value plus one, with the
//! request's work in between. Two threads that load the same value both store value + 1:
//! one request is lost from the count. Each step is atomic; the update is not. (The fix is
//! one call, `fetch_add`, which is what `server-core` counts with.) No `unsafe`, no data
//! race in the language's sense, and still a wrong number.
//!
//! **Caught by `C.counter`**: `/stats` `requests.served` must grow by exactly the number
//! of requests the grader sent concurrently. (The correct variant:
//! `mutant per-connection`.)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use protocol::{Response, Status};
use server_core::blocking::Next;
use server_core::{work, Acceptor, BlockingConn, Context, ServerError, ThreadGroup};

use crate::correct::spawn_per_connection;

pub fn serve(acceptor: Acceptor, ctx: &Arc<Context>) -> Result<(), ServerError> {
    // Shared by every connection's thread: the count `/stats` reports as served.
    let served = Arc::new(AtomicU64::new(0));
    spawn_per_connection(acceptor, ctx, move |conn, threads| {
        serve_counting(conn, threads, &served)
    })
}

/// Serves one connection to its end, counting each answer.
fn serve_counting(mut conn: BlockingConn, threads: &ThreadGroup, served: &AtomicU64) {
    let ctx = Arc::clone(conn.context());
    loop {
        // Blocks until a request has arrived, the client leaves, or a timeout passes.
        let next = conn.next_request();
        // DEFECT, step 1: read the count before the work...
        let seen = served.load(Relaxed);
        let (response, exchange) = match next {
            Next::Request(request, exchange) => {
                let _busy = threads.busy();
                let response = if request.path == "/stats" {
                    stats_with(&ctx, seen)
                } else {
                    work::answer(&request, &ctx)
                };
                (response, exchange)
            }
            Next::Reject(response, exchange) => (response, exchange),
            Next::Closed(_) => return,
        };
        // ...step 2: let other threads run (the work, the yield and the write all do)...
        std::thread::yield_now();
        let keep_going = conn.send(exchange, &response);
        // ...step 3: write back what was read plus one, overwriting whatever the other
        // threads counted meanwhile. The starter's counter is `fetch_add`: one
        // indivisible step.
        served.store(seen + 1, Relaxed);
        if !keep_going {
            return;
        }
    }
}

/// `/stats` as `server-core` makes it, with this server's own count of requests served.
fn stats_with(ctx: &Context, served: u64) -> Response {
    let mut snapshot = ctx.snapshot();
    snapshot.requests.served = served;
    match serde_json::to_vec_pretty(&snapshot) {
        Ok(mut body) => {
            body.push(b'\n');
            Response::new(Status::Ok, protocol::response::JSON, body)
        }
        Err(e) => Response::error(Status::InternalError, &e.to_string()),
    }
}
