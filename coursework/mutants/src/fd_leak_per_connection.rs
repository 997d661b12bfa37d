//! Mutant `fd-leak-per-connection`: the starter, but each connection leaves a descriptor
//! behind.
//!
//! **Defect.** Every socket is a file descriptor, and a process has a limited number
//! (`ulimit -n`). This server duplicates each connection's socket (as code that clones a
//! stream "to log from it later" does) and never closes the copy, so every connection ever
//! served costs a descriptor for the life of the process. After enough clients `accept`
//! fails with "too many open files" and the server serves no one. Worse, a socket with a
//! copy open never sends its FIN when the server drops it, so idle clients are not told.
//!
//! **Caught by `E.descriptors`**: the server's open descriptors back to baseline after
//! load. (The correct variant: `mutant none`.)

use std::os::fd::AsFd;
use std::sync::Arc;

use server_core::stats::Capacity;
use server_core::{serve_connection, Acceptor, Context, ServerError, ThreadGroup};

pub fn serve(acceptor: Acceptor, ctx: &Arc<Context>) -> Result<(), ServerError> {
    // The starter's one thread, counted for /stats, and its promise: one at a time.
    let threads = ThreadGroup::new("main");
    let _me = threads.enter();
    ctx.set_capacity(Capacity::workers(1, "thread"));
    // Blocks in accept until the next client; `None` once shutdown begins.
    while let Some(conn) = acceptor.accept() {
        // DEFECT: a second descriptor for the socket (dup(2)), forgotten: never closed.
        if let Ok(copy) = conn.as_fd().try_clone_to_owned() {
            std::mem::forget(copy);
        }
        // Serves the client to its end; dropping `conn` closes the original descriptor,
        // but the socket stays open through the copy.
        serve_connection(conn, &threads);
    }
    Ok(())
}
