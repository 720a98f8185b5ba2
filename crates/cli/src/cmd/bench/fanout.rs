//! `bench fanout`: many subscribers on one fresh stream, paced publishing, and
//! publish → deliver latency, loss, duplicates and order (SPEC §9: 2,000
//! subscribers; ≥ 2,000,000 deliveries/s; p99 ≤ 20 ms at 2,000 × 20/s).
//!
//! Phases: (1) open `--subscribers` connections, at most `--connect-concurrency`
//! at a time so the server's listen backlog never overflows, and wait until every
//! one is `SUBSCRIBED` (SSE: until its response headers arrive); (2) publish
//! `--rate` events/s for `--duration` s over HTTP from one paced publisher, each
//! event carrying its sequence number in `data.s` and its send time (µs since the
//! epoch) in `data.t`; (3) wait until every acknowledged event reached every
//! subscriber, or `--grace` s; then stop and count.
//!
//! One publisher posting sequentially keeps the stream's offsets in publish
//! order, so a receiver seeing a lower sequence number after a higher one is an
//! ordering fault. Latency is the receiver's clock minus `data.t`: publisher and
//! receivers share the machine and its clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::progress::{Progress, human};
use super::stats::Histogram;
use super::subscriber::{
    Tally, TallyResult, open_sse, open_ws, receive_sse, receive_ws, ws_config,
};
use super::{Target, fresh_stream, now_us, raise_nofile_limit, round3, secs};
use crate::cmd::client::{MAX_BATCH, array_body, http_client, problem_error};

/// Most events one run may publish; bounds the receivers' sequence bitsets.
const MAX_EVENTS: u64 = 20_000_000;
/// Most memory all receivers' bitsets together may need.
const MAX_BITSET_BYTES: u64 = 2 << 30;
/// The publisher's tick: small batches, low added latency.
const TICK: Duration = Duration::from_millis(10);

/// How subscribers receive.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket `/api/v1/ws`.
    Ws,
    /// Server-Sent Events `/api/v1/events/stream/{stream}`.
    Sse,
}

/// Fan one stream out to many subscribers.
#[derive(clap::Args, Debug)]
pub struct FanoutArgs {
    /// Subscribers (connections) on the stream.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    pub subscribers: u64,
    /// Events published per second (each is delivered to every subscriber).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rate: u64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration: u64,
    /// Approximate size of each event's `data`, in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub event_bytes: u64,
    /// How subscribers receive.
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    pub transport: Transport,
    /// Node the publisher posts to (default: the first `--url`).
    #[arg(long, env = "STREAMBUS_PUBLISH_URL")]
    pub publish_url: Option<String>,
    /// Stream to use (default: a fresh `bench-fanout-<ms>`).
    #[arg(long)]
    pub stream: Option<String>,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub connect_concurrency: u64,
    /// Seconds allowed for all subscribers to connect.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: u64,
    /// Seconds to wait after publishing for deliveries still in flight.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=120))]
    pub grace: u64,
}

/// Runs the fan-out benchmark and returns its result.
///
/// # Errors
/// Bad arguments, a subscriber that cannot subscribe, or a publisher that gets
/// no event acknowledged.
pub(crate) async fn run(
    targets: &[Target],
    token: Option<&str>,
    args: FanoutArgs,
) -> Result<Value> {
    let total_events = args.rate * args.duration;
    if total_events > MAX_EVENTS {
        bail!("rate × duration is {total_events} events; at most {MAX_EVENTS} per run");
    }
    if args.subscribers.saturating_mul(total_events) / 8 > MAX_BITSET_BYTES {
        bail!(
            "subscribers × events is too large to track; lower --subscribers, --rate or --duration"
        );
    }
    let stream = args
        .stream
        .clone()
        .unwrap_or_else(|| fresh_stream("fanout"));
    if !streambus_core::name::is_stream_name(&stream) {
        bail!("`{stream}` is not a valid stream name");
    }
    let publish_target = match &args.publish_url {
        Some(url) => Target::resolve(url).await?,
        None => targets[0].clone(),
    };
    let nofile = raise_nofile_limit(args.subscribers + 256)?;

    let n = args.subscribers as usize;
    let stop = CancellationToken::new();
    let hist = Arc::new(Mutex::new(Histogram::default()));
    let ready = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let connect_timeout = Duration::from_secs(args.connect_timeout);
    let sse_client = http_client(token, None)?;
    let mut counters = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);

    // Phase 1: subscribe.
    let connecting = {
        let (r, f) = (ready.clone(), failed.clone());
        Progress::start(
            "connect",
            args.subscribers,
            "subscribers",
            Arc::new(move || r.load(Ordering::Relaxed)),
            Some(Arc::new(move || {
                format!("failed {}", f.load(Ordering::Relaxed))
            })),
        )
    };
    let connect_started = Instant::now();
    for i in 0..n {
        let unique = Arc::new(AtomicU64::new(0));
        counters.push(unique.clone());
        let mut tally = Tally::new(total_events, unique, hist.clone());
        let target = targets[i % targets.len()].clone();
        let (token, stream, stop) = (token.map(str::to_owned), stream.clone(), stop.clone());
        let (permits, ready, failed, first_error) = (
            permits.clone(),
            ready.clone(),
            failed.clone(),
            first_error.clone(),
        );
        let transport = args.transport;
        let client = sse_client.clone();
        handles.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await;
            let opened = tokio::time::timeout(connect_timeout, async {
                match transport {
                    Transport::Ws => {
                        open_ws(&target, token.as_deref(), &stream, ws_config(16 * 1024))
                            .await
                            .map(Conn::Ws)
                    }
                    Transport::Sse => open_sse(&client, &target, &stream).await.map(Conn::Sse),
                }
            })
            .await;
            drop(permit);
            let conn = match opened {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return note_failure(&failed, &first_error, format!("{e:#}")),
                Err(_) => {
                    return note_failure(&failed, &first_error, "timed out subscribing".into());
                }
            };
            ready.fetch_add(1, Ordering::Relaxed);
            match conn {
                Conn::Ws(ws) => receive_ws(ws, &mut tally, &stop).await,
                Conn::Sse(resp) => receive_sse(resp, &mut tally, &stop).await,
            }
            Some(tally.finish())
        }));
    }
    let all_settled =
        || ready.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) >= args.subscribers;
    while !all_settled() && connect_started.elapsed() < connect_timeout + Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_time = connect_started.elapsed();
    connecting.finish().await;
    let subscribed = ready.load(Ordering::Relaxed);
    if subscribed < args.subscribers {
        stop.cancel();
        for h in &handles {
            h.abort();
        }
        let why = first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        bail!(
            "only {subscribed} of {} subscribers subscribed; first error: {}",
            args.subscribers,
            why.as_deref().unwrap_or("timed out")
        );
    }

    // Phase 2: publish.
    let published = Arc::new(AtomicU64::new(0));
    let publishing = {
        let p = published.clone();
        let c = counters.clone();
        Progress::start(
            "publish",
            total_events,
            "events",
            Arc::new(move || p.load(Ordering::Relaxed)),
            Some(Arc::new(move || {
                let rx: u64 = c.iter().map(|u| u.load(Ordering::Relaxed)).sum();
                format!("deliveries {}", human(rx as f64))
            })),
        )
    };
    let publisher = Publisher {
        client: http_client(token, Some(Duration::from_secs(30)))?,
        url: publish_target.events_url.clone(),
        stream: stream.clone(),
        padding: "x".repeat(args.event_bytes.saturating_sub(40) as usize),
        rate: args.rate,
        total: total_events,
        duration: Duration::from_secs(args.duration),
        published,
    };
    let publish_start_us = now_us();
    let pub_result = tokio::spawn(publisher.run())
        .await
        .context("the publisher panicked")?;
    publishing.finish().await;
    if pub_result.acked == 0 {
        stop.cancel();
        bail!(
            "no event was acknowledged: {}",
            pub_result.first_error.as_deref().unwrap_or("unknown error")
        );
    }

    // Phase 3: drain.
    let expected = pub_result.acked * subscribed;
    let received_now = || {
        counters
            .iter()
            .map(|u| u.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let drain_started = Instant::now();
    while received_now() < expected && drain_started.elapsed() < Duration::from_secs(args.grace) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let mut total = TallyResult::default();
    let mut disconnected = 0u64;
    for h in handles {
        if let Some(r) = h.await.context("a subscriber task panicked")? {
            total.unique += r.unique;
            total.duplicates += r.duplicates;
            total.out_of_order += r.out_of_order;
            total.malformed += r.malformed;
            total.errors += r.errors;
            total.last_rx_us = total.last_rx_us.max(r.last_rx_us);
            disconnected += u64::from(r.disconnected);
        }
    }
    let latency = hist.lock().unwrap_or_else(|e| e.into_inner()).summary_ms();
    let window_s = total.last_rx_us.saturating_sub(publish_start_us) as f64 / 1e6;
    let deliveries_per_s = if window_s > 0.0 {
        round3(total.unique as f64 / window_s)
    } else {
        Value::Null
    };
    Ok(json!({
        "bench": "fanout",
        "transport": match args.transport { Transport::Ws => "ws", Transport::Sse => "sse" },
        "urls": targets.iter().map(|t| t.base.as_str()).collect::<Vec<_>>(),
        "publish_url": publish_target.base,
        "stream": stream,
        "subscribers": subscribed,
        "rate": args.rate,
        "duration_s": args.duration,
        "event_bytes": args.event_bytes,
        "connect_s": secs(connect_time),
        "published": pub_result.acked,
        "publish_errors": pub_result.errors,
        "publish_requests": pub_result.requests,
        "publish_rate": round3(pub_result.acked as f64 / pub_result.elapsed.as_secs_f64().max(1e-9)),
        "publisher_fell_behind": pub_result.fell_behind,
        "publish_latency_ms": pub_result.latency.summary_ms(),
        "expected": expected,
        "received": total.unique,
        "lost": expected.saturating_sub(total.unique),
        "duplicates": total.duplicates,
        "out_of_order": total.out_of_order,
        "malformed": total.malformed,
        "error_frames": total.errors,
        "disconnected": disconnected,
        "deliveries_per_s": deliveries_per_s,
        "latency_ms": latency,
        "client_nofile_limit": nofile,
        "first_error": pub_result.first_error,
    }))
}

enum Conn {
    Ws(super::subscriber::Ws),
    Sse(reqwest::Response),
}

fn note_failure(
    failed: &AtomicU64,
    first: &Mutex<Option<String>>,
    why: String,
) -> Option<TallyResult> {
    failed.fetch_add(1, Ordering::Relaxed);
    first
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert(why);
    None
}

struct Publisher {
    client: reqwest::Client,
    url: String,
    stream: String,
    padding: String,
    rate: u64,
    total: u64,
    duration: Duration,
    published: Arc<AtomicU64>,
}

struct PublishResult {
    acked: u64,
    errors: u64,
    requests: u64,
    elapsed: Duration,
    fell_behind: bool,
    latency: Histogram,
    first_error: Option<String>,
}

impl Publisher {
    /// Publishes `total` events at `rate`/s: every tick, everything due so far, in
    /// batches of at most 1000. Gives up at `duration` + 10 s if the server is
    /// too slow to keep up, so the run stays bounded.
    async fn run(self) -> PublishResult {
        let mut r = PublishResult {
            acked: 0,
            errors: 0,
            requests: 0,
            elapsed: Duration::ZERO,
            fell_behind: false,
            latency: Histogram::default(),
            first_error: None,
        };
        let period = TICK.max(Duration::from_secs_f64(1.0 / self.rate as f64));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let hard_stop = self.duration + Duration::from_secs(10);
        let started = Instant::now();
        let mut sent = 0;
        while sent < self.total {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * self.rate as f64) as u64 + 1;
            let due = due.min(self.total);
            while sent < due {
                let n = (due - sent).min(MAX_BATCH);
                self.post(sent, n, &mut r).await;
                sent += n;
                self.published.store(sent, Ordering::Relaxed);
            }
            if started.elapsed() > hard_stop {
                r.fell_behind = true;
                break;
            }
        }
        r.elapsed = started.elapsed();
        r.fell_behind |= r.elapsed > self.duration + period * 2;
        r
    }

    async fn post(&self, first: u64, n: u64, r: &mut PublishResult) {
        let t = now_us();
        let items: Vec<String> = (first..first + n)
            .map(|s| {
                format!(
                    r#"{{"stream_id":"{}","type":"bench.fanout","source":"bench","data":{{"s":{s},"t":{t},"p":"{}"}}}}"#,
                    self.stream, self.padding
                )
            })
            .collect();
        let started = Instant::now();
        let sent = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(array_body(&items))
            .send()
            .await;
        r.requests += 1;
        let fail = |r: &mut PublishResult, k: u64, why: String| {
            r.errors += k;
            r.first_error.get_or_insert(why);
        };
        let resp = match sent {
            Ok(resp) if resp.status().is_success() => resp,
            Ok(resp) => {
                return fail(
                    r,
                    n,
                    format!("{:#}", problem_error(resp, "publish refused").await),
                );
            }
            Err(e) => return fail(r, n, format!("publish failed: {e}")),
        };
        let answer: Value = match resp.json().await {
            Ok(v) => v,
            Err(e) => return fail(r, n, format!("unreadable batch answer: {e}")),
        };
        r.latency.record(started.elapsed().as_micros() as u64);
        let results = answer["results"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let acked = results
            .iter()
            .filter(|i| matches!(i["status"].as_u64(), Some(200 | 201)))
            .count() as u64;
        r.acked += acked.min(n);
        if acked < n {
            let why = results
                .iter()
                .find_map(|i| i["problem"]["detail"].as_str())
                .unwrap_or("the batch answer lists fewer stored events than sent");
            fail(r, n - acked.min(n), why.to_owned());
        }
    }
}
