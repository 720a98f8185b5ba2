//! A quick ingest measurement, not an assertion (SPEC §9 goal: ≥ 200,000
//! durable events/s into SQLite, batched). Run in release:
//! `cargo test -p streambus-store --release -- --ignored --nocapture`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use streambus_core::EventStore;
use streambus_core::testsuite::new_event;

const EVENTS: usize = 200_000;
const BATCH: usize = 1000;
const TASKS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn ingest_throughput() {
    let (store, _dir) = crate::temp_store().await;
    let store = Arc::new(store);
    // Validation is not the store's work: build the batches before the clock.
    let batches: Vec<Vec<_>> = (0..EVENTS / BATCH)
        .map(|b| {
            (0..BATCH)
                .map(|i| {
                    new_event(json!({
                        "stream_id": format!("s{}", (b + i) % 8),
                        "type": "score_update",
                        "source": "bench",
                        "message": "score changed",
                        "data": {"team": "red", "score": i, "player": "ana"},
                    }))
                })
                .collect()
        })
        .collect();
    let mut per_task: Vec<Vec<Vec<_>>> = (0..TASKS).map(|_| Vec::new()).collect();
    for (i, b) in batches.into_iter().enumerate() {
        per_task[i % TASKS].push(b);
    }
    let body_len = new_event(
        json!({"stream_id": "s0", "type": "score_update", "source": "bench",
        "message": "score changed", "data": {"team": "red", "score": 1, "player": "ana"}}),
    )
    .event
    .to_body()
    .len();

    let cpu_before = thread_cpu();
    let started = Instant::now();
    let tasks: Vec<_> = per_task
        .into_iter()
        .map(|mine| {
            let store = store.clone();
            tokio::spawn(async move {
                for batch in mine {
                    store.append("default", batch).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = store.stats();
    let cpu_after = thread_cpu();
    println!(
        "ingest: {EVENTS} events (~{body_len} B bodies) in {secs:.2} s = {:.0} events/s; \
         {} commits, {:.0} events/commit",
        EVENTS as f64 / secs,
        stats.commits,
        stats.events as f64 / stats.commits.max(1) as f64
    );
    // CPU per thread kind: wall time on a shared machine is noisy, CPU is not.
    let mut total = 0.0;
    for (name, after) in &cpu_after {
        let used = after - cpu_before.get(name).copied().unwrap_or(0.0);
        total += used;
        println!(
            "  cpu {name:<16} {used:6.2} s = {:5.2} us/event",
            used * 1e6 / EVENTS as f64
        );
    }
    println!(
        "  cpu {:<16} {total:6.2} s = {:5.2} us/event",
        "total",
        total * 1e6 / EVENTS as f64
    );
    assert_eq!(store.head().await.expect("head"), EVENTS as u64);
    store.close().await;
}

/// CPU seconds (user + system) per thread name, from `/proc/self/task` (Linux;
/// empty elsewhere). Threads that ended are not counted.
fn thread_cpu() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // Fields 14 and 15 of stat (utime, stime), counted after the name.
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
            f.iter().filter_map(|x| x.parse::<f64>().ok()).sum()
        });
        *out.entry(name).or_insert(0.0) += ticks / 100.0;
    }
    out
}
