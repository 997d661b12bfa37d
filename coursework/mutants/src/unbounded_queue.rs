//! Mutant `unbounded-queue`: a pool of 4 workers (it claims `pool:4`) whose queue has no
//! bound.
//!
//! **Defect.** A pool exists to bound the work in progress; its queue must be bounded too,
//! or a burst just waits in memory for as long as it takes, every client past the first
//! few answered late instead of told at once. Here the accept loop pushes every connection
//! into an unbounded channel: nothing is ever refused, memory grows with the burst, and a
//! client at the back of a queue of 1,000 waits 250 service times.
//!
//! **Caught by `D.burst`** with `--expect pool:4`: a burst beyond the pool and its queue
//! must be turned away quickly (503). (The correct variant: `mutant pool`, whose bounded
//! queue answers 503 when full.)

use std::sync::Arc;

use server_core::stats::{Capacity, Figures};
use server_core::{serve_connection, Acceptor, BlockingConn, Context, ServerError, ThreadGroup};

use crate::correct::WORKERS;

pub fn serve(acceptor: Acceptor, ctx: &Arc<Context>) -> Result<(), ServerError> {
    // DEFECT: `unbounded`. The correct pool has a queue of 8 and says 503 beyond it.
    let (tx, rx) = crossbeam_channel::unbounded::<BlockingConn>();
    let workers = ThreadGroup::new("worker");
    for i in 1..=WORKERS {
        let rx = rx.clone();
        let group = workers.clone();
        // Each worker blocks in `recv` until a connection is queued, or the queue's sending
        // side is dropped at shutdown and the queue is empty.
        let started = workers.spawn(format!("worker-{i}"), None, move || {
            while let Ok(conn) = rx.recv() {
                serve_connection(conn, &group);
            }
        });
        started.map_err(|source| ServerError::Start {
            what: format!("worker {i}"),
            source,
        })?;
    }
    // It claims to be a pool of 4, as the student's README would.
    ctx.set_capacity(Capacity::workers(WORKERS as u64, "worker"));
    ctx.set_arch_figures({
        let workers = workers.clone();
        move || Figures {
            threads: vec![workers.snapshot()],
            ..Figures::default()
        }
    });
    // Blocks in accept until the next client; `None` once shutdown begins.
    while let Some(conn) = acceptor.accept() {
        // Never blocks and never fails while a worker holds the receiving side: the queue
        // grows by one connection (a socket, a buffer, a place in /stats' open count) for
        // every client that finds the 4 workers busy, without limit.
        let _ = tx.send(conn);
    }
    // No more connections: the workers finish what is queued, then their `recv` ends.
    drop(tx);
    workers.join(ctx.shutdown.deadline(ctx.args.shutdown_timeout));
    Ok(())
}
