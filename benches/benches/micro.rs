//! Micro-benchmarks: the pieces the architectures are made of, measured alone.
//!
//! * `parse_and_answer`: what every architecture does per request, without the network:
//!   parse the head with httparse, route it, and encode the response. This is the floor
//!   under every end-to-end number.
//! * `hand_off`: what the prefork pool and the pipeline add per connection or request: one
//!   item passed from a producer thread to a consumer thread through a bounded queue of 64,
//!   with a crossbeam channel, the lecture-style `Mutex<VecDeque>` + `Condvar` queue (both
//!   as the servers use them, from `server_core::queue`), and `std::sync::mpsc::sync_channel`.
//! * `spawn_vs_pool`: what thread-per-conn pays instead: a new thread for each task, against
//!   handing each task to a pool of two waiting threads.
//!
//! Run: `cargo bench -p benches --bench micro` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use benches::timings;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use protocol::request::parse_head;
use protocol::Request;
use server_core::queue::{bounded, QueueKind};
use server_core::{Context, ServerArgs};

/// A request as curl sends it.
const CURL_GET: &[u8] =
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:7777\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

/// Parses `bytes`, answers the request and encodes the answer into `out`.
fn parse_and_answer(bytes: &[u8], ctx: &Context, out: &mut Vec<u8>) {
    let head = match parse_head(bytes, &ctx.connection.limits) {
        Ok(Some(head)) => head,
        other => panic!("the benchmark request does not parse: {other:?}"),
    };
    let request = Request {
        method: head.method,
        path: head.path,
        version: head.version,
        body: Vec::new(),
    };
    let response = server_core::work::answer(&request, ctx);
    response.encode(out, &ctx.connection.server_header, false, false, true);
}

fn bench_parse_and_answer(c: &mut Criterion) {
    let ctx = Context::new("bench", ServerArgs::default());
    let mut group = c.benchmark_group("parse_and_answer");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(512);
    for (name, bytes) in [
        ("hello", CURL_GET),
        (
            "not_found",
            &b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        ),
        (
            "factor_small",
            &b"GET /factor/1234567 HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                parse_and_answer(black_box(bytes), &ctx, &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// What a server hands over: a socket descriptor and when it was accepted.
type Item = (u64, Instant);

/// The capacity of every queue below, as in the servers' default `--queue 64`.
const CAPACITY: usize = 64;

fn bench_hand_off(c: &mut Criterion) {
    let mut group = c.benchmark_group("hand_off");
    group.throughput(Throughput::Elements(1));
    for (name, kind) in [
        ("crossbeam", QueueKind::Crossbeam),
        ("condvar", QueueKind::Condvar),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|items| {
                let (tx, rx) = bounded::<Item>("bench", CAPACITY, kind);
                std::thread::scope(|scope| {
                    // The consumer blocks in pop() until an item arrives; it ends when the
                    // producer drops its sender and the queue is empty.
                    let consumer = scope.spawn(move || {
                        let mut sum = 0;
                        while let Some((n, _)) = rx.pop() {
                            sum += n;
                        }
                        sum
                    });
                    let began = Instant::now();
                    for n in 0..items {
                        // Blocks while the queue holds CAPACITY items.
                        if tx.push((n, Instant::now())).is_err() {
                            panic!("the consumer is gone");
                        }
                    }
                    drop(tx);
                    black_box(consumer.join().expect("the consumer panicked"));
                    began.elapsed()
                })
            })
        });
    }
    group.bench_function("std_mpsc", |b| {
        b.iter_custom(|items| {
            let (tx, rx) = mpsc::sync_channel::<Item>(CAPACITY);
            std::thread::scope(|scope| {
                let consumer = scope.spawn(move || rx.iter().map(|(n, _)| n).sum::<u64>());
                let began = Instant::now();
                for n in 0..items {
                    // Blocks while the channel holds CAPACITY items.
                    tx.send((n, Instant::now())).expect("the consumer is gone");
                }
                drop(tx);
                black_box(consumer.join().expect("the consumer panicked"));
                began.elapsed()
            })
        })
    });
    group.finish();
}

/// The task: a little work, so the thread is not optimised away.
fn task(n: u64) -> u64 {
    (0..64).fold(n, |acc, i| acc.wrapping_mul(31).wrapping_add(i))
}

fn bench_spawn_vs_pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("spawn_vs_pool");
    group.throughput(Throughput::Elements(1));
    group.bench_function("thread_per_task", |b| {
        b.iter_custom(|tasks| {
            let done = AtomicU64::new(0);
            let began = Instant::now();
            std::thread::scope(|scope| {
                for n in 0..tasks {
                    let done = &done;
                    std::thread::Builder::new()
                        .stack_size(256 * 1024)
                        .spawn_scoped(scope, move || {
                            black_box(task(n));
                            done.fetch_add(1, Ordering::Relaxed);
                        })
                        .expect("the OS refused a thread");
                }
                // The scope joins every thread here.
            });
            assert_eq!(done.load(Ordering::Relaxed), tasks, "a task was lost");
            began.elapsed()
        })
    });
    group.bench_function("pool_of_2", |b| {
        b.iter_custom(|tasks| {
            let (tx, rx) = crossbeam_channel::bounded::<u64>(CAPACITY);
            let done = AtomicU64::new(0);
            let began = std::thread::scope(|scope| {
                for _ in 0..2 {
                    let (rx, done) = (rx.clone(), &done);
                    // Each worker blocks in recv() until a task arrives or the channel closes.
                    scope.spawn(move || {
                        for n in rx {
                            black_box(task(n));
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
                let began = Instant::now();
                for n in 0..tasks {
                    // Blocks while CAPACITY tasks wait.
                    tx.send(n).expect("the workers are gone");
                }
                drop(tx);
                began
                // The scope joins the workers here, after they have finished the last
                // tasks and seen the channel close.
            });
            let elapsed = began.elapsed();
            assert_eq!(done.load(Ordering::Relaxed), tasks, "a task was lost");
            elapsed
        })
    });
    group.finish();
}

fn config() -> Criterion {
    let (warm_up, measurement) = timings();
    Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measurement)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_parse_and_answer, bench_hand_off, bench_spawn_vs_pool
}
criterion_main!(benches);
