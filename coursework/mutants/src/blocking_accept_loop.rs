//! Mutant `blocking-accept-loop`: a thread per connection (it claims `per-connection`) whose
//! accept loop waits for each thread.
//!
//! **Defect.** The accept loop starts a thread for the connection and then `join`s it
//! before accepting the next client: the threads never overlap, so the server is the
//! sequential one in disguise. Any other blocking call in the accept loop (reading the
//! first request there, a lock held across `accept`) has the same effect.
//!
//! **Caught by `C.overtake`** with `--expect per-connection`: `GET /sleep/800` sent first,
//! then `POST /echo` on another connection, which must finish first on a concurrent
//! design; here it waits for the sleep. (The correct variant: `mutant per-connection`.)

use std::sync::Arc;

use server_core::stats::Capacity;
use server_core::{serve_connection, Acceptor, Context, ServerError, ThreadGroup};

pub fn serve(acceptor: Acceptor, ctx: &Arc<Context>) -> Result<(), ServerError> {
    let threads = ThreadGroup::new("conn");
    // What it claims: a worker for every client.
    ctx.set_capacity(Capacity {
        per_client: true,
        ..Capacity::workers(4096, "thread")
    });
    // Blocks in accept until the next client; `None` once shutdown begins.
    while let Some(conn) = acceptor.accept() {
        // The group, shared with the thread, counts it busy while it handles a request.
        let group = threads.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{}", conn.id))
            .spawn(move || serve_connection(conn, &group));
        match spawned {
            // DEFECT: waits until the connection's thread has served its client to the
            // end. The correct design keeps no handle here and accepts again at once.
            Ok(handle) => {
                let _ = handle.join();
            }
            Err(e) => tracing::warn!("could not start a connection thread: {e}"),
        }
    }
    Ok(())
}
