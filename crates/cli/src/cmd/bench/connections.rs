//! `bench connections`: hold many idle, subscribed WebSockets and measure the
//! server's memory per connection (SPEC §9: ≤ 6 KiB per idle subscribed
//! connection; memory flat while held).
//!
//! With `--pid`, the server's `VmRSS` is read from `/proc/<pid>/status` before
//! any connection opens, after all are subscribed (and `--settle` s passed), and
//! every second while they are held; the result reports KiB per connection and
//! the peak while holding. Every connection subscribes to the same fresh stream,
//! so nothing is delivered and the figure is the idle cost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use super::subscriber::{open_ws, ws_config};
use super::{Target, fresh_stream, raise_nofile_limit, round3, secs};

/// Hold many idle subscribed WebSocket connections.
#[derive(clap::Args, Debug)]
pub struct ConnectionsArgs {
    /// Connections to open.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub count: u64,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub hold: u64,
    /// The server's process id, to read its memory from /proc.
    #[arg(long, env = "STREAMBUS_PID")]
    pub pid: Option<u32>,
    /// Stream to subscribe to (default: a fresh `bench-conn-<ms>`).
    #[arg(long)]
    pub stream: Option<String>,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub connect_concurrency: u64,
    /// Seconds allowed for all connections to open.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: u64,
    /// Seconds to wait after the last connection before reading memory.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub settle: u64,
}

/// Runs the connections benchmark and returns its result.
///
/// # Errors
/// An unreadable `/proc/<pid>/status`, an open-file limit too low, or a run in
/// which no connection could subscribe.
pub(crate) async fn run(
    targets: &[Target],
    token: Option<&str>,
    args: ConnectionsArgs,
) -> Result<Value> {
    let stream = args.stream.clone().unwrap_or_else(|| fresh_stream("conn"));
    if !streambus_core::name::is_stream_name(&stream) {
        bail!("`{stream}` is not a valid stream name");
    }
    let rss = |pid: Option<u32>| pid.map(read_rss).transpose();
    let rss_before = rss(args.pid)?;
    let nofile = raise_nofile_limit(args.count + 256)?;

    let stop = CancellationToken::new();
    let open = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let connect_timeout = Duration::from_secs(args.connect_timeout);

    let connecting = {
        let (o, f) = (open.clone(), failed.clone());
        Progress::start(
            "connect",
            args.count,
            "connections",
            Arc::new(move || o.load(Ordering::Relaxed)),
            Some(Arc::new(move || {
                format!("failed {}", f.load(Ordering::Relaxed))
            })),
        )
    };
    let started = Instant::now();
    let mut handles = Vec::with_capacity(args.count as usize);
    for i in 0..args.count as usize {
        let target = targets[i % targets.len()].clone();
        let (token, stream, stop) = (token.map(str::to_owned), stream.clone(), stop.clone());
        let (permits, open, failed, closed, first_error) = (
            permits.clone(),
            open.clone(),
            failed.clone(),
            closed.clone(),
            first_error.clone(),
        );
        handles.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await;
            let opened = tokio::time::timeout(
                connect_timeout,
                open_ws(&target, token.as_deref(), &stream, ws_config(4 * 1024)),
            )
            .await;
            drop(permit);
            let mut ws = match opened {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => return fail(&failed, &first_error, format!("{e:#}")),
                Err(_) => return fail(&failed, &first_error, "timed out subscribing".into()),
            };
            open.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = stop.cancelled() => {}
                // An idle subscription receives nothing; any end is a close.
                _ = async { while let Some(Ok(_)) = ws.next().await {} } => {
                    closed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let settled = || open.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) >= args.count;
    while !settled() && started.elapsed() < connect_timeout + Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_time = started.elapsed();
    connecting.finish().await;
    let connected = open.load(Ordering::Relaxed);
    if connected == 0 {
        stop.cancel();
        let why = first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        bail!(
            "no connection subscribed: {}",
            why.as_deref().unwrap_or("timed out")
        );
    }

    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rss_after = rss(args.pid)?;
    let mut rss_peak = rss_after;
    let held_for = Arc::new(AtomicU64::new(0));
    let holding = {
        let (h, c) = (held_for.clone(), closed.clone());
        Progress::start(
            "hold",
            args.hold,
            "s",
            Arc::new(move || h.load(Ordering::Relaxed)),
            Some(Arc::new(move || {
                format!("closed {}", c.load(Ordering::Relaxed))
            })),
        )
    };
    let hold_started = Instant::now();
    while hold_started.elapsed() < Duration::from_secs(args.hold) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        held_for.store(hold_started.elapsed().as_secs(), Ordering::Relaxed);
        if let Some(now) = rss(args.pid)? {
            rss_peak = rss_peak.max(Some(now));
        }
    }
    let rss_end = rss(args.pid)?;
    holding.finish().await;
    stop.cancel();
    for h in handles {
        h.await.context("a connection task panicked")?;
    }

    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) => round3((a as f64 - b as f64) / connected as f64),
        _ => Value::Null,
    };
    let first_error = first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(json!({
        "bench": "connections",
        "urls": targets.iter().map(|t| t.base.as_str()).collect::<Vec<_>>(),
        "stream": stream,
        "requested": args.count,
        "connected": connected,
        "failed": failed.load(Ordering::Relaxed),
        "closed_while_held": closed.load(Ordering::Relaxed),
        "connect_s": secs(connect_time),
        "connects_per_s": round3(connected as f64 / connect_time.as_secs_f64().max(1e-9)),
        "hold_s": args.hold,
        "server_pid": args.pid,
        "server_rss_kib": {"before": rss_before, "after": rss_after, "end": rss_end, "peak": rss_peak},
        "kib_per_connection": per_conn,
        "client_rss_kib": read_rss_of("self").ok(),
        "client_nofile_limit": nofile,
        "first_error": first_error,
    }))
}

fn fail(failed: &AtomicU64, first: &Mutex<Option<String>>, why: String) {
    failed.fetch_add(1, Ordering::Relaxed);
    first
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert(why);
}

/// The resident set size of process `pid`, in KiB.
fn read_rss(pid: u32) -> Result<u64> {
    read_rss_of(&pid.to_string())
}

fn read_rss_of(pid: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss(&text).with_context(|| format!("no VmRSS line in {path}"))
}

/// `VmRSS:    12345 kB` → 12345.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tstreambus\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12_345));
        assert_eq!(parse_vm_rss("Name:\tkthread\n"), None);
        assert!(read_rss_of("self").unwrap() > 0);
    }
}
