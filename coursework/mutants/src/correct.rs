//! The correct designs the mutants are compared with: the controls of `tests/caught.rs`.
//!
//! `mutant none` is the starter itself (sequential). The two here hand the starter's
//! connections to other threads, as a student who finished lab 20 or 21 would: a thread
//! per connection, and a pool of 4 workers behind a bounded queue that answers 503 when
//! full. The mutants that need concurrency to show their defect are built from these.

use std::sync::Arc;

use protocol::{Response, Status};
use server_core::permits::Permits;
use server_core::stats::{Capacity, Figures};
use server_core::{serve_connection, Acceptor, BlockingConn, Context, ServerError, ThreadGroup};

/// The pool's workers.
pub const WORKERS: usize = 4;
/// The connections that may wait for a worker; one more is answered 503. Two rounds of the
/// 4 workers: with requests of 200 ms and a deadline of 700 ms (the grader's D.burst), a
/// connection that finds 8 ahead of it is served at 600 ms; a ninth would be late.
pub const QUEUE: usize = 8;

/// A thread per connection, each serving its connection with `serve_one`; at shutdown, waits
/// for them within the shutdown timeout. `per_connection` is this with the starter's
/// `serve_connection`; the mutants pass their own.
pub fn spawn_per_connection(
    acceptor: Acceptor,
    ctx: &Arc<Context>,
    serve_one: impl Fn(BlockingConn, &ThreadGroup) + Clone + Send + 'static,
) -> Result<(), ServerError> {
    let threads = ThreadGroup::new("conn");
    // What the design promises: a worker for every client (as many as threads allow).
    ctx.set_capacity(Capacity {
        per_client: true,
        ..Capacity::workers(4096, "thread")
    });
    ctx.set_arch_figures({
        let threads = threads.clone();
        move || Figures {
            threads: vec![threads.snapshot()],
            ..Figures::default()
        }
    });
    // Blocks in accept until the next client; `None` once shutdown begins.
    while let Some(conn) = acceptor.accept() {
        let group = threads.clone();
        let serve_one = serve_one.clone();
        let name = format!("conn-{}", conn.id);
        if let Err(e) = threads.spawn(name, None, move || serve_one(conn, &group)) {
            // No thread: the connection (moved into the closure that never ran) is closed.
            tracing::warn!("could not start a connection thread: {e}");
        }
    }
    // Blocks until every connection thread has finished, or the shutdown timeout passes.
    threads.join(ctx.shutdown.deadline(ctx.args.shutdown_timeout));
    Ok(())
}

/// A correct thread per connection.
pub fn per_connection(acceptor: Acceptor, ctx: &Arc<Context>) -> Result<(), ServerError> {
    spawn_per_connection(acceptor, ctx, serve_connection)
}

/// A correct pool: 4 workers take connections from a bounded queue; a connection that finds
/// the 4 workers busy and the 8 places of the queue taken is told `503` at once.
pub fn pool(acceptor: Acceptor, ctx: &Arc<Context>) -> Result<(), ServerError> {
    // Admission: a permit for each connection being served or waiting, 12 in all. The queue
    // below has room for all 8, so sending to it never blocks.
    let admission = Permits::new(WORKERS + QUEUE);
    // The queue between the accept loop and the workers. Each item carries its permit,
    // which the worker holds until the connection ends: only then may another be admitted.
    let (tx, rx) =
        crossbeam_channel::bounded::<(BlockingConn, server_core::permits::Permit)>(WORKERS + QUEUE);
    let workers = ThreadGroup::new("worker");
    for i in 1..=WORKERS {
        let rx = rx.clone();
        let group = workers.clone();
        // Each worker blocks in `recv` until a connection is queued, or the queue's sending
        // side is dropped at shutdown and the queue is empty.
        let started = workers.spawn(format!("worker-{i}"), None, move || {
            while let Ok((conn, _permit)) = rx.recv() {
                serve_connection(conn, &group);
            }
        });
        started.map_err(|source| ServerError::Start {
            what: format!("worker {i}"),
            source,
        })?;
    }
    ctx.set_capacity(Capacity {
        admitted: Some((WORKERS + QUEUE) as u64),
        rejects_beyond: true,
        ..Capacity::workers(WORKERS as u64, "worker")
    });
    ctx.set_arch_figures({
        let workers = workers.clone();
        let admission = Arc::clone(&admission);
        move || Figures {
            threads: vec![workers.snapshot()],
            limits: vec![admission.snapshot("admission")],
            ..Figures::default()
        }
    });
    // Blocks in accept until the next client; `None` once shutdown begins. Nothing else in
    // this loop waits: a full pool is answered at once, so the loop is always back in
    // accept for the next client.
    while let Some(conn) = acceptor.accept() {
        match admission.try_acquire() {
            // Never blocks: the queue has a place for every admitted connection.
            Some(permit) => {
                let _ = tx.send((conn, permit));
            }
            // Every permit is held: 4 connections being served and 8 waiting. The 503 is
            // written into the socket's empty buffer, so this never blocks either.
            None => conn.refuse(&Response::error(
                Status::ServiceUnavailable,
                "all 4 workers are busy and the 8 places of the queue are taken; try again",
            )),
        }
    }
    // No more connections: the workers finish what is queued, then their `recv` ends.
    drop(tx);
    workers.join(ctx.shutdown.deadline(ctx.args.shutdown_timeout));
    Ok(())
}
