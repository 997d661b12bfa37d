//! End-to-end benchmarks: every architecture against every workload.
//!
//! One criterion group per workload (`hello`, `io`, `cpu`, `mixed`), and in each group one
//! benchmark per architecture and number of concurrent clients (1, 16, 64), so criterion's
//! report and `bench-report` set the architectures side by side. An iteration is one
//! request, and the throughput is declared as one element per iteration, so criterion
//! prints requests per second.
//!
//! The servers run in this process on ephemeral loopback ports, every registered
//! architecture started once at
//! the beginning of a group and stopped at its end; the clients are real TCP clients on
//! their own threads (see `benches::drive`). Everything shares the machine's cores, so the
//! numbers are what one machine does playing both client and server.
//!
//! Full run: `cargo bench -p benches --bench end_to_end` (about 4 minutes on 2 cores).
//! Quick run: add `-- --quick` (about 40 seconds; fewer, shorter samples).

use std::time::Duration;

use benches::{drive, timings, Workload, CONCURRENCY};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};

fn end_to_end(c: &mut Criterion) {
    // The run's note (quick or full, which commit) is written when the first benchmark
    // really runs, so that a filter matching nothing leaves the last run's note alone.
    let note = std::sync::Once::new();
    for workload in Workload::ALL {
        let servers: Vec<_> = architectures::ALL
            .iter()
            // An architecture this machine cannot run (io-uring where io_uring is
            // forbidden) is left out, with its reason.
            .filter(|arch| match arch.available() {
                Ok(()) => true,
                Err(why) => {
                    eprintln!("{}: skipped: {why}", arch.name);
                    false
                }
            })
            .map(|arch| {
                let args = server_core::ServerArgs {
                    shutdown_timeout: Duration::from_secs(2),
                    ..server_core::ServerArgs::default()
                };
                let server = arch
                    .start(&[], args)
                    .unwrap_or_else(|e| panic!("could not start {}: {e}", arch.name));
                (arch.name, server)
            })
            .collect();

        let mut group = c.benchmark_group(workload.name());
        // Each iteration is one request over the network; flat sampling gives every sample
        // the same number of requests, which suits benchmarks this slow.
        group.sampling_mode(SamplingMode::Flat);
        group.throughput(Throughput::Elements(1));
        for (arch, server) in &servers {
            for clients in CONCURRENCY {
                group.bench_with_input(
                    BenchmarkId::new(*arch, clients),
                    &clients,
                    |b, &clients| {
                        note.call_once(benches::record_mode);
                        b.iter_custom(|requests| drive(server.addr(), clients, requests, workload))
                    },
                );
            }
        }
        group.finish();
        for (arch, server) in servers {
            if let Err(e) = server.stop() {
                eprintln!("{arch} did not stop cleanly: {e}");
            }
        }
    }
}

fn config() -> Criterion {
    let (warm_up, measurement) = timings();
    Criterion::default()
        .sample_size(10)
        .warm_up_time(warm_up)
        .measurement_time(measurement)
}

criterion_group! {
    name = benches;
    config = config();
    targets = end_to_end
}
criterion_main!(benches);
