//! `bench ingest`: durable publish throughput over HTTP (SPEC §9, "durable ingest
//! into SQLite, batched ≥ 200,000 events/s").
//!
//! `--concurrency` workers take the next block of event numbers from a shared
//! counter and post it as one JSON array (or, with `--single`, one event per
//! request), so the run ends after exactly `--events` events or at `--timeout`,
//! whichever comes first. An event counts as acknowledged when the server
//! answered 201 (or 200, already stored) for it; the server acknowledges only
//! after the event is durable.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use serde_json::{Value, json};

use super::progress::Progress;
use super::stats::Histogram;
use super::{Target, fresh_stream, round3, secs};
use crate::cmd::client::{MAX_BATCH, Problem, http_client, problem_error};

/// Publish many events as fast as the server acknowledges them.
#[derive(clap::Args, Debug)]
pub struct IngestArgs {
    /// Events to publish in total.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub events: u64,
    /// Events per request (at most 1000); ignored with `--single`.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH))]
    pub batch: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: u64,
    /// One event per request, posted as a JSON object.
    #[arg(long)]
    pub single: bool,
    /// Approximate size of each event's `data`, in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub event_bytes: u64,
    /// Stream to publish to (default: a fresh `bench-ingest-<ms>`).
    #[arg(long)]
    pub stream: Option<String>,
    /// Stop after this many seconds even if not all events were sent.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

/// Counters shared by the workers.
#[derive(Default)]
struct Shared {
    /// Next event number to hand out.
    next: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    requests: AtomicU64,
    timed_out: AtomicBool,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, events: u64, why: impl FnOnce() -> String) {
        self.errors.fetch_add(events, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(why());
        }
    }
}

/// Runs the ingest benchmark and returns its result.
///
/// # Errors
/// A bad stream name, or a run in which no event was acknowledged.
pub(crate) async fn run(
    targets: &[Target],
    token: Option<&str>,
    args: IngestArgs,
) -> Result<Value> {
    let stream = args
        .stream
        .clone()
        .unwrap_or_else(|| fresh_stream("ingest"));
    if !streambus_core::name::is_stream_name(&stream) {
        bail!("`{stream}` is not a valid stream name");
    }
    let client = http_client(token, Some(Duration::from_secs(60)))?;
    let per_request = if args.single { 1 } else { args.batch };
    let padding = "x".repeat(args.event_bytes.saturating_sub(24) as usize);
    let shared = Arc::new(Shared::default());
    let deadline = Instant::now() + Duration::from_secs(args.timeout);

    let progress = {
        let s = shared.clone();
        let e = shared.clone();
        Progress::start(
            "ingest",
            args.events,
            "events",
            Arc::new(move || s.acked.load(Ordering::Relaxed) + s.errors.load(Ordering::Relaxed)),
            Some(Arc::new(move || {
                format!("errors {}", e.errors.load(Ordering::Relaxed))
            })),
        )
    };
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.concurrency as usize {
        let job = Worker {
            client: client.clone(),
            url: targets[w % targets.len()].events_url.clone(),
            stream: stream.clone(),
            padding: padding.clone(),
            single: args.single,
            per_request,
            total: args.events,
            deadline,
            shared: shared.clone(),
        };
        workers.push(tokio::spawn(job.run()));
    }
    let mut latency = Histogram::default();
    for w in workers {
        latency.merge(&w.await.context("an ingest worker panicked")?);
    }
    let elapsed = started.elapsed();
    progress.finish().await;

    let acked = shared.acked.load(Ordering::Relaxed);
    let errors = shared.errors.load(Ordering::Relaxed);
    let requests = shared.requests.load(Ordering::Relaxed);
    let first_error = shared
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if acked == 0 {
        bail!(
            "no event was acknowledged: {}",
            first_error.as_deref().unwrap_or("no request completed")
        );
    }
    let per_s = |n: u64| round3(n as f64 / elapsed.as_secs_f64());
    Ok(json!({
        "bench": "ingest",
        "urls": targets.iter().map(|t| t.base.as_str()).collect::<Vec<_>>(),
        "stream": stream,
        "mode": if args.single { "single" } else { "batch" },
        "events": args.events,
        "batch": per_request,
        "concurrency": args.concurrency,
        "event_bytes": args.event_bytes,
        "acked": acked,
        "errors": errors,
        "requests": requests,
        "elapsed_s": secs(elapsed),
        "events_per_s": per_s(acked),
        "requests_per_s": per_s(requests),
        "request_latency_ms": latency.summary_ms(),
        "timed_out": shared.timed_out.load(Ordering::Relaxed),
        "first_error": first_error,
    }))
}

struct Worker {
    client: reqwest::Client,
    url: String,
    stream: String,
    padding: String,
    single: bool,
    per_request: u64,
    total: u64,
    deadline: Instant,
    shared: Arc<Shared>,
}

impl Worker {
    /// Posts blocks until the events or the time run out; returns request latencies.
    async fn run(self) -> Histogram {
        let mut latency = Histogram::default();
        loop {
            if Instant::now() >= self.deadline {
                self.shared.timed_out.store(true, Ordering::Relaxed);
                break;
            }
            let first = self
                .shared
                .next
                .fetch_add(self.per_request, Ordering::Relaxed);
            if first >= self.total {
                break;
            }
            let n = self.per_request.min(self.total - first);
            let body = self.build_body(first, n);
            let started = Instant::now();
            self.post(body, n).await;
            latency.record(started.elapsed().as_micros() as u64);
            self.shared.requests.fetch_add(1, Ordering::Relaxed);
        }
        latency
    }

    fn build_body(&self, first: u64, n: u64) -> String {
        use std::fmt::Write as _;
        let mut body =
            String::with_capacity(n as usize * (self.padding.len() + self.stream.len() + 90));
        if !self.single {
            body.push('[');
        }
        for i in first..first + n {
            if i > first {
                body.push(',');
            }
            let _ = write!(
                body,
                r#"{{"stream_id":"{}","type":"bench.ingest","source":"bench","data":{{"i":{i},"p":"{}"}}}}"#,
                self.stream, self.padding
            );
        }
        if !self.single {
            body.push(']');
        }
        body
    }

    async fn post(&self, body: String, n: u64) {
        let sent = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return self.shared.fail(n, || format!("request failed: {e}")),
        };
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let err = problem_error(resp, "request refused").await;
            return self.shared.fail(n, || format!("{err:#}"));
        }
        if self.single {
            // 201 stored, 200 already stored: both acknowledged. Read the body so
            // the latency covers the whole answer and the connection is reused.
            let _ = resp.bytes().await;
            if status == 200 || status == 201 {
                self.shared.acked.fetch_add(1, Ordering::Relaxed);
            } else {
                self.shared
                    .fail(1, || format!("unexpected status {status}"));
            }
            return;
        }
        let answer: BatchStatuses = match resp.json().await {
            Ok(a) => a,
            Err(e) => {
                return self
                    .shared
                    .fail(n, || format!("unreadable batch answer: {e}"));
            }
        };
        let mut acked = 0;
        for item in answer.results {
            if item.status == 200 || item.status == 201 {
                acked += 1;
            } else {
                let problem = item.problem.unwrap_or_default();
                self.shared
                    .fail(1, || format!("event refused ({}): {problem}", item.status));
            }
        }
        if acked > n {
            self.shared.fail(0, || {
                format!("the server answered for {acked} events, {n} were sent")
            });
        }
        self.shared.acked.fetch_add(acked.min(n), Ordering::Relaxed);
    }
}

/// The part of a batch answer the bench reads (`event` bodies are skipped).
#[derive(Deserialize)]
struct BatchStatuses {
    results: Vec<ItemStatus>,
}

#[derive(Deserialize)]
struct ItemStatus {
    status: u16,
    #[serde(default)]
    problem: Option<Problem>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(single: bool) -> Worker {
        Worker {
            client: reqwest::Client::new(),
            url: String::new(),
            stream: "s".into(),
            padding: "xx".into(),
            single,
            per_request: 2,
            total: 10,
            deadline: Instant::now(),
            shared: Arc::default(),
        }
    }

    #[test]
    fn bodies_are_valid_events() {
        let body = worker(false).build_body(4, 2);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(
            v[1],
            json!({"stream_id":"s","type":"bench.ingest","source":"bench","data":{"i":5,"p":"xx"}})
        );
        let body = worker(true).build_body(7, 1);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["data"]["i"], 7);
        let ctx = streambus_core::validate::PublishContext::default();
        assert!(streambus_core::validate::event_from_json(v, &ctx).is_ok());
    }
}
