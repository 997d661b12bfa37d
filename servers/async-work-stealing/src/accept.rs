//! The accept loop: a task that takes new connections and spawns a task for each.
//!
//! It is an ordinary task of the runtime, not a thread of its own. On the work-stealing
//! runtime it runs on whichever worker is free, and `tokio::spawn` from a worker puts the
//! new connection's task on *that worker's* queue (in its LIFO slot, to run next): the
//! task that accepted is likely still in the cache, and another worker that is idle steals
//! from the queue. On a core's single-threaded runtime, the core's only thread accepts from
//! the core's own listening socket and runs every task it spawns.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use server_core::listener::accept_failure;

use crate::connection::{self, Shared};

/// Accepts connections from `listener` until shutdown begins, each served by a task of its
/// own spawned on the current runtime. Every task gets a clone of `done`; the loop's own is
/// dropped when it returns.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, done: mpsc::Sender<()>) {
    // Resolves once, when shutdown begins; registered now, so that no wake-up is lost.
    let stop = shared.stopping.notified();
    tokio::pin!(stop);
    stop.as_mut().enable();
    loop {
        if shared.ctx.shutdown.is_triggered() {
            break;
        }
        tokio::select! {
            // Shutdown first, if both are ready: a stopping server accepts no one.
            biased;
            // Waits until shutdown begins.
            () = &mut stop => break,
            // Waits until a client has completed the TCP handshake (it is then taken from
            // the listening socket's backlog).
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Each response goes out in one write; Nagle's algorithm would delay the
                    // second of two pipelined responses until the first is acknowledged.
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!("could not set up a connection from {peer}: {e}");
                        continue;
                    }
                    // Never waits: queues the connection's task on this worker (in its LIFO
                    // slot, to run next: see the module documentation).
                    tokio::spawn(connection::serve(
                        stream,
                        peer,
                        Arc::clone(&shared),
                        done.clone(),
                    ));
                }
                // Shutdown shut the listening socket down under us: nothing more to accept.
                Err(_) if shared.ctx.shutdown.is_triggered() => break,
                // The client gave up between the handshake and our accept: take the next.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionAborted | ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    // Usually "too many open files": try again in 50 ms rather than spin,
                    // as connections close and free descriptors meanwhile. Only this task
                    // waits; the connections go on. One line a second is enough, for all
                    // the accept loops together (one per core in the per-core server).
                    shared.ctx.repeats.warn(accept_failure(&e), || {
                        format!("accept failed: {e}; retrying in 50 ms")
                    });
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}
