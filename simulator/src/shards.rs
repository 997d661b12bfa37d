//! Merging shards: one run spread over several simulator processes, added up exactly.
//!
//! A load generator that shares a machine with the server measures both at once, and one
//! machine runs out of cores, ports or file descriptors long before a server farm does. So
//! a run can be split into shards (`simulator run --shard I/N`, see
//! [`loadgen::scenario::Shard`]), each a process of its own, perhaps on a machine of its own,
//! each writing its results (`--save DIR`). `simulator merge DIR...` turns them back into
//! the report of one run.
//!
//! What can be added is added, and nothing else is:
//!
//! * **the ledger**: every client ran in exactly one shard, so the clients' records are put
//!   together (their times moved onto the earliest shard's clock) and counted again;
//! * **requests** by what happened to them: sums;
//! * **latency**: never the shards' percentiles. The median of three medians is not the
//!   median of the whole, and an average of three p99s is no percentile of anything: a
//!   shard whose requests all took 1 ms and one whose requests took 1 s average to a p99
//!   that no request had. Each shard keeps its latencies as HdrHistograms, one per second
//!   in its interval log (`latency.hlog`), and histograms of the same bounds add exactly:
//!   the merged histogram is the one a single process would have recorded, to the
//!   histogram's precision (3 significant figures). Its percentiles are then read off it;
//! * **the time series**: the shards' seconds, aligned on their real start times, added up
//!   second by second, with each second's percentiles read off its merged histogram;
//! * **the prediction**: made again for the whole run, from the server's `/stats` that a
//!   shard saved (`server.json`); a single shard does not predict, because the server saw
//!   every shard's clients, not one shard's.
//!
//! A merge never covers fewer clients than the run asked for without saying so: shards
//! that failed (their `failed.json` says why) or never reported are named in the report,
//! and `simulator merge` then exits with status 1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use loadgen::ledger::{self, Latency, Summary};
use loadgen::record::{self, ClientRecord};
use loadgen::scenario::{Load, Shard};
use loadgen::tally::hlog::{self, IntervalLog};
use loadgen::tally::{Requests, Row};
use loadgen::units::new_histogram;
use loadgen::Scenario;

use crate::predict::{predict, Prediction};
use crate::report::{Coverage, MissingShard, Report, ShardFailure, FAILED_FILE, SCHEMA_VERSION};
use crate::target::ServerInfo;
use crate::SimError;

/// The part of a shard's `report.json` a merge reads. The rest (latency summaries,
/// throughput, the prediction) is recomputed from what adds up.
#[derive(serde::Deserialize)]
struct Saved {
    schema_version: u32,
    target: String,
    architecture: Option<String>,
    server_config: Option<contract::stats::ConfigSnapshot>,
    scenario: Scenario,
    engine_threads: usize,
    #[serde(default)]
    started_at_unix_us: u64,
    requests: Option<Requests>,
    #[serde(default)]
    series: Vec<Row>,
    clients: Vec<ClientRecord>,
}

/// One shard's results, read from its directory.
struct ShardRun {
    dir: PathBuf,
    shard: Shard,
    saved: Saved,
    log: IntervalLog,
    server: Option<contract::stats::Snapshot>,
    /// How long after the earliest shard this one started, in microseconds.
    offset_us: u64,
}

/// A shard that did not run: its directory, and why (its `failed.json`).
type FailedShard = (PathBuf, ShardFailure);

/// What was found in the directories given to `merge`.
enum Found {
    Ran(Box<ShardRun>),
    Failed(PathBuf, ShardFailure),
}

/// The directories that hold a shard's results: each of `dirs` that holds a `report.json`
/// or a `failed.json` itself, else its subdirectories that do (`shard-1-of-3`, ...).
fn shard_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, SimError> {
    let holds = |d: &Path| d.join("report.json").is_file() || d.join(FAILED_FILE).is_file();
    let mut found = Vec::new();
    for dir in dirs {
        if holds(dir) {
            found.push(dir.clone());
            continue;
        }
        let entries = std::fs::read_dir(dir).map_err(|e| {
            SimError::Usage(format!("cannot read the directory {}: {e}", dir.display()))
        })?;
        let mut inside: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && holds(p))
            .collect();
        if inside.is_empty() {
            return Err(SimError::Usage(format!(
                "{} holds no shard results: neither report.json nor failed.json, in it or in a directory inside it",
                dir.display()
            )));
        }
        inside.sort();
        found.extend(inside);
    }
    Ok(found)
}

fn read_to_string(path: &Path) -> Result<String, SimError> {
    std::fs::read_to_string(path)
        .map_err(|e| SimError::Usage(format!("cannot read {}: {e}", path.display())))
}

/// Reads one shard's directory.
fn read_shard(dir: &Path) -> Result<Found, SimError> {
    let report = dir.join("report.json");
    if !report.is_file() {
        let path = dir.join(FAILED_FILE);
        let failure: ShardFailure = serde_json::from_str(&read_to_string(&path)?).map_err(|e| {
            SimError::Usage(format!("{} is not a shard's failure: {e}", path.display()))
        })?;
        return Ok(Found::Failed(dir.to_owned(), failure));
    }
    let saved: Saved = serde_json::from_str(&read_to_string(&report)?).map_err(|e| {
        SimError::Usage(format!(
            "{} is not a simulator report: {e}",
            report.display()
        ))
    })?;
    if saved.schema_version != SCHEMA_VERSION {
        return Err(SimError::Usage(format!(
            "{} has schema version {}; this simulator reads version {SCHEMA_VERSION}",
            report.display(),
            saved.schema_version
        )));
    }
    let log_path = dir.join("latency.hlog");
    let log = hlog::read_interval_log(&read_to_string(&log_path)?)
        .map_err(|e| SimError::Usage(format!("{}: {e}", log_path.display())))?;
    let server_path = dir.join("server.json");
    let server = if server_path.is_file() {
        serde_json::from_str(&read_to_string(&server_path)?).ok()
    } else {
        None
    };
    let shard = saved.scenario.shard.unwrap_or(Shard { index: 1, count: 1 });
    Ok(Found::Ran(Box::new(ShardRun {
        dir: dir.to_owned(),
        shard,
        saved,
        log,
        server,
        offset_us: 0,
    })))
}

/// The scenario without its shard, as JSON, to check that shards ran the same one.
fn whole_scenario(scenario: &Scenario) -> serde_json::Value {
    serde_json::to_value(Scenario {
        shard: None,
        ..scenario.clone()
    })
    .unwrap_or_default()
}

/// Merges the shards' results found in `dirs` into the report of the whole run. Fails
/// with one sentence when they cannot belong to one run (different scenarios or shard
/// counts, a shard twice, a client in the wrong shard) or cannot be read.
///
/// The steps: read every shard's directory; check that they are parts of one run; name the
/// shards that are missing; move every shard onto the earliest one's clock; then add up
/// what adds up (clients, requests, histograms, the series) and predict the whole run
/// again.
pub fn merge(dirs: &[PathBuf]) -> Result<Report, SimError> {
    let (mut runs, failures) = read_shards(dirs)?;
    let count = check_one_run(&runs, &failures)?;
    let first = &runs[0];
    let whole = Scenario {
        shard: None,
        ..first.saved.scenario.clone()
    };
    let architecture = first.saved.architecture.clone();
    let server_config = first.saved.server_config.clone();
    let missing = missing_shards(count, &runs, &failures);
    let base_us = align_clocks(&mut runs);

    let clients = merged_clients(&mut runs)?;
    let elapsed = record::span(&clients);
    let summary: Summary = ledger::summarize(&clients, elapsed);
    let started_at = SystemTime::UNIX_EPOCH + Duration::from_micros(base_us);
    let histograms = merged_histograms(&runs, started_at)?;

    let load = whole.load.is_load();
    let open = matches!(whole.load, Load::Rate(_));
    let requests = load.then(|| summed_requests(&runs));
    let over = requests.as_ref().map_or(0, Requests::over_deadline);
    let (latency, throughput) =
        latency_and_throughput(&whole, requests.as_ref(), &histograms, &clients, elapsed);
    let series = if load {
        merged_series(&runs, &histograms.percentiles)
    } else {
        Vec::new()
    };

    let server = runs.iter().find_map(|r| r.server.clone());
    let (prediction, agrees) = predicted(
        server.clone(),
        &whole,
        summary.served,
        throughput.as_ref().map(|t| t.per_second),
        missing.len(),
        count,
    );
    let coverage = Coverage {
        count,
        merged: runs.iter().map(|r| r.shard.index).collect(),
        missing,
        clients: whole.clients,
        covered: clients.len(),
    };
    Ok(Report {
        schema_version: SCHEMA_VERSION,
        target: merged_target(&runs),
        architecture,
        server_config,
        engine_threads: runs.iter().map(|r| r.saved.engine_threads).sum(),
        started_at_unix_us: base_us,
        shards: Some(coverage),
        summary,
        latency_us: latency,
        latency_uncorrected_us: open.then(|| Latency::of(&histograms.whole[1], over)),
        schedule_lag_us: open.then(|| Latency::of(&histograms.whole[2], 0)),
        throughput,
        requests,
        series,
        prediction,
        agrees,
        clients,
        // Shards run no background populations (`run` refuses the two together).
        background: Vec::new(),
        interval_log: histograms.log,
        histograms: Some((histograms.whole[0].clone(), histograms.whole[1].clone())),
        server,
        server_series: Vec::new(),
        gates: Vec::new(),
        scenario: whole,
    })
}

/// The whole run's latency and throughput. A load run's latency is read off the merged
/// histogram of every request (never the shards' percentiles), its throughput from the
/// summed requests over the merged span; a scenario run's latency is each client's wait.
fn latency_and_throughput(
    whole: &Scenario,
    requests: Option<&Requests>,
    histograms: &Merged,
    clients: &[ClientRecord],
    elapsed: Duration,
) -> (Latency, Option<loadgen::ledger::Throughput>) {
    let over = requests.map_or(0, Requests::over_deadline);
    match requests {
        Some(r) => (
            Latency::of(&histograms.whole[0], over),
            Some(ledger::throughput(whole, r, elapsed)),
        ),
        None => (ledger::wait_latency(whole, clients), None),
    }
}

/// The targets the shards measured, in shard order with repeats in a row removed: one
/// name when every shard ran against the same address, as they should.
fn merged_target(runs: &[ShardRun]) -> String {
    let mut targets: Vec<String> = runs.iter().map(|r| r.saved.target.clone()).collect();
    targets.dedup();
    targets.join(", ")
}

/// Reads every shard directory under `dirs`: the shards that ran, and those that left a
/// `failed.json` instead. Fails when no shard ran, naming why each one failed.
fn read_shards(dirs: &[PathBuf]) -> Result<(Vec<ShardRun>, Vec<FailedShard>), SimError> {
    let mut runs: Vec<ShardRun> = Vec::new();
    let mut failures: Vec<FailedShard> = Vec::new();
    for dir in shard_dirs(dirs)? {
        match read_shard(&dir)? {
            Found::Ran(run) => runs.push(*run),
            Found::Failed(dir, failure) => failures.push((dir, failure)),
        }
    }
    if runs.is_empty() {
        let reasons: Vec<String> = failures
            .iter()
            .map(|(_, f)| format!("shard {}: {}", f.shard, f.error))
            .collect();
        return Err(SimError::Usage(format!(
            "no shard ran, so there is nothing to merge ({})",
            reasons.join("; ")
        )));
    }
    Ok((runs, failures))
}

/// Checks that the shards found (`runs`, at least one, and `failures`) are parts of one
/// run: the same shard count, no shard twice, the same scenario. Returns the shard count.
fn check_one_run(runs: &[ShardRun], failures: &[FailedShard]) -> Result<usize, SimError> {
    let first = &runs[0];
    let count = first.shard.count;
    let scenario = whole_scenario(&first.saved.scenario);
    let mut seen: BTreeMap<usize, PathBuf> = BTreeMap::new();
    let shards = runs
        .iter()
        .map(|r| (r.shard, &r.dir))
        .chain(failures.iter().map(|(d, f)| (f.shard, d)));
    for (shard, dir) in shards {
        if shard.count != count {
            return Err(SimError::Usage(format!(
                "{} holds shard {shard} but {} holds shard {}/{count}: they are not parts of one run",
                dir.display(),
                first.dir.display(),
                first.shard.index
            )));
        }
        if let Some(other) = seen.insert(shard.index, dir.clone()) {
            return Err(SimError::Usage(format!(
                "shard {shard} appears twice, in {} and in {}",
                other.display(),
                dir.display()
            )));
        }
    }
    for run in runs {
        if whole_scenario(&run.saved.scenario) != scenario {
            return Err(SimError::Usage(format!(
                "{} and {} ran different scenarios: they are not parts of one run",
                first.dir.display(),
                run.dir.display()
            )));
        }
    }
    Ok(count)
}

/// The shards of `count` that did not run, each with the reason: its `failed.json`, or
/// that nothing was found for it.
fn missing_shards(count: usize, runs: &[ShardRun], failures: &[FailedShard]) -> Vec<MissingShard> {
    (1..=count)
        .filter(|i| !runs.iter().any(|r| r.shard.index == *i))
        .map(|index| MissingShard {
            index,
            reason: failures
                .iter()
                .find(|(_, f)| f.shard.index == index)
                .map_or_else(
                    || "it never reported: no report.json was found for it".to_owned(),
                    |(_, f)| format!("it failed: {}", f.error),
                ),
        })
        .collect()
}

/// Every shard's times count from its own start; the merge counts from the earliest. Sets
/// each shard's offset from that start, puts the shards in order, and returns the earliest
/// start (microseconds since the Unix epoch).
fn align_clocks(runs: &mut [ShardRun]) -> u64 {
    let base_us = runs
        .iter()
        .map(|r| r.saved.started_at_unix_us)
        .min()
        .unwrap_or(0);
    for run in runs.iter_mut() {
        run.offset_us = run.saved.started_at_unix_us - base_us;
    }
    runs.sort_by_key(|r| r.shard.index);
    base_us
}

/// The shards' requests by what happened to them, added up.
fn summed_requests(runs: &[ShardRun]) -> Requests {
    let mut sum = Requests::default();
    for run in runs {
        if let Some(r) = &run.saved.requests {
            sum.add(r);
        }
    }
    sum
}

/// The prediction for the whole run, from the `/stats` a shard saved, and whether the
/// merged measurement (`served` clients, `per_second` served requests) agrees with it. With
/// `missing` of the `count` shards absent, part of a run cannot agree or disagree with a
/// prediction for the whole: the prediction says so and no verdict is given.
fn predicted(
    server: Option<contract::stats::Snapshot>,
    whole: &Scenario,
    served: usize,
    per_second: Option<f64>,
    missing: usize,
    count: usize,
) -> (Option<Prediction>, Option<bool>) {
    let info = server.map(ServerInfo::from);
    let mut prediction = info.as_ref().and_then(|i| predict(i, whole));
    let mut agrees = prediction
        .as_ref()
        .and_then(|p| p.agrees(served, per_second));
    if missing > 0 {
        agrees = None;
        if let Some(p) = &mut prediction {
            p.caveats.push(format!(
                "{missing} of {count} shards are missing, so the measurement covers only part of the run"
            ));
        }
    }
    (prediction, agrees)
}

/// Every shard's clients, their times moved onto the earliest shard's clock, in order of
/// id. Fails if a client is not its shard's, or appears twice.
fn merged_clients(runs: &mut [ShardRun]) -> Result<Vec<ClientRecord>, SimError> {
    let mut clients = Vec::new();
    for run in runs.iter_mut() {
        let offset = run.offset_us;
        for mut c in std::mem::take(&mut run.saved.clients) {
            if !run.shard.owns(c.id) {
                return Err(SimError::Usage(format!(
                    "{} (shard {}) holds client {}, which is not that shard's",
                    run.dir.display(),
                    run.shard,
                    c.id
                )));
            }
            for t in [
                &mut c.started_us,
                &mut c.connect_us,
                &mut c.first_byte_us,
                &mut c.complete_us,
                &mut c.ended_us,
            ] {
                *t = t.map(|t| t + offset);
            }
            clients.push(c);
        }
    }
    clients.sort_by_key(|c| c.id);
    if let Some(pair) = clients.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(SimError::Usage(format!(
            "client {} appears twice among the shards",
            pair[0].id
        )));
    }
    Ok(clients)
}

/// The shard's seconds moved onto the merged clock: the whole seconds its start came
/// after the earliest shard's, rounded to the nearest (shards started together by
/// `--start-at` are a few milliseconds apart).
fn second_offset(run: &ShardRun) -> u64 {
    (run.offset_us + 500_000) / 1_000_000
}

/// The merged histograms: the whole run's, per tag of [`hlog::TAGS`]; each second's
/// corrected percentiles; and the merged interval log.
struct Merged {
    whole: [Histogram<u64>; 3],
    /// Second → (p50, p99, max) of the corrected latency.
    percentiles: BTreeMap<u64, (u64, u64, u64)>,
    log: String,
}

/// Adds the shards' interval logs, second by second and tag by tag. Only one decoded
/// histogram per tag is held at a time, however long the run.
fn merged_histograms(runs: &[ShardRun], started_at: SystemTime) -> Result<Merged, SimError> {
    let mut groups: BTreeMap<(u64, usize), Vec<(&str, &Path)>> = BTreeMap::new();
    for run in runs {
        let shift = second_offset(run);
        for interval in &run.log.intervals {
            groups
                .entry((interval.second + shift, interval.tag))
                .or_default()
                .push((interval.encoded.as_str(), run.dir.as_path()));
        }
    }
    let mut whole = [new_histogram(), new_histogram(), new_histogram()];
    let mut percentiles = BTreeMap::new();
    let mut failure: Option<SimError> = None;
    let intervals = groups.into_iter().filter_map(|((second, tag), parts)| {
        let mut sum = new_histogram();
        for (encoded, dir) in parts {
            match hlog::decode_histogram(encoded) {
                Ok(h) => {
                    // Same bounds on every side, so adding cannot fail; a histogram
                    // beyond them saturates rather than being lost.
                    if sum.add(&h).is_err() {
                        for v in h.iter_recorded() {
                            sum.saturating_record_n(v.value_iterated_to(), v.count_at_value());
                        }
                    }
                }
                Err(e) => {
                    failure.get_or_insert_with(|| {
                        SimError::Usage(format!("{}/latency.hlog: {e}", dir.display()))
                    });
                    return None;
                }
            }
        }
        if let Some(w) = whole.get_mut(tag) {
            let _ = w.add(&sum);
        }
        if tag == 0 && !sum.is_empty() {
            percentiles.insert(
                second,
                (
                    sum.value_at_quantile(0.5),
                    sum.value_at_quantile(0.99),
                    sum.max(),
                ),
            );
        }
        Some((second, tag, sum))
    });
    let log = hlog::write_interval_log(intervals, started_at);
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Merged {
        whole,
        percentiles,
        log,
    })
}

/// The shards' time series added up second by second, with each second's percentiles
/// from its merged histogram; seconds nobody reported get empty rows.
fn merged_series(runs: &[ShardRun], percentiles: &BTreeMap<u64, (u64, u64, u64)>) -> Vec<Row> {
    let mut sums: BTreeMap<u64, Row> = BTreeMap::new();
    for run in runs {
        let shift = second_offset(run);
        for row in &run.saved.series {
            let second = row.second + shift;
            let sum = sums.entry(second).or_insert_with(|| Row::empty(second));
            sum.sent += row.sent;
            sum.completed += row.completed;
            sum.served += row.served;
            sum.errors += row.errors;
            sum.dropped += row.dropped;
        }
    }
    let Some(last) = sums.keys().next_back().copied() else {
        return Vec::new();
    };
    (0..=last)
        .map(|second| {
            let mut row = sums.remove(&second).unwrap_or_else(|| Row::empty(second));
            if let Some(&(p50, p99, max)) = percentiles.get(&second) {
                row.p50_us = p50;
                row.p99_us = p99;
                row.max_us = max;
            }
            row
        })
        .collect()
}
