//! `streambus bench`: load generators for the goals of SPEC §9.
//!
//! - [`ingest`]: durable publish throughput over HTTP, batched or one by one.
//! - [`fanout`]: many subscribers on one stream, paced publishing, publish →
//!   deliver latency, loss, duplicates and order ([`subscriber`] holds the
//!   WebSocket and SSE receivers).
//! - [`connections`]: idle subscribed WebSockets and the server's memory per
//!   connection.
//!
//! Every run is bounded in count and time and stops by itself; it draws progress
//! on stderr ([`progress`]) and prints one JSON line of figures on stdout.
//! Targets must resolve to loopback addresses: a benchmark is a denial of service
//! to anyone else. Latencies go into the fixed-bucket histogram of [`stats`], so
//! memory stays flat however long a run lasts.

mod connections;
mod fanout;
mod ingest;
mod progress;
mod stats;
mod subscriber;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::client::{DEFAULT_URL, api_url, ws_url};

/// Measure the server with generated load (loopback targets only).
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Server base URL(s); repeat or comma-separate to spread connections over
    /// nodes round-robin. Must resolve to loopback addresses.
    #[arg(long, global = true, env = "STREAMBUS_URL", default_value = DEFAULT_URL, value_delimiter = ',')]
    pub url: Vec<String>,
    /// Bearer token (sent as `Authorization: Bearer <token>`).
    #[arg(long, global = true, env = "STREAMBUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Which benchmark to run.
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Durable publish throughput over HTTP (events/s, request latency).
    Ingest(ingest::IngestArgs),
    /// Fan-out to many subscribers: deliveries/s, publish→deliver latency, loss.
    Fanout(fanout::FanoutArgs),
    /// Idle subscribed WebSocket connections and server memory per connection.
    Connections(connections::ConnectionsArgs),
}

/// Runs one benchmark and prints its JSON result line.
///
/// # Errors
/// Non-loopback targets, an unreachable server, or a run that could not measure
/// anything (e.g. subscribers that failed to connect).
pub async fn run(args: BenchArgs) -> Result<()> {
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread
    {
        eprintln!("bench: warning: running on a single-threaded runtime; figures will be low");
    }
    let targets = Target::resolve_all(&args.url).await?;
    let token = args.token.as_deref();
    let result = match args.command {
        BenchCommand::Ingest(a) => ingest::run(&targets, token, a).await?,
        BenchCommand::Fanout(a) => fanout::run(&targets, token, a).await?,
        BenchCommand::Connections(a) => connections::run(&targets, token, a).await?,
    };
    println!("{result}");
    Ok(())
}

/// One server node: its base URL and the loopback address it resolves to.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The base URL as given, without a trailing slash.
    pub base: String,
    /// `{base}/api/v1/events`.
    pub events_url: String,
    /// Where to open TCP connections.
    pub addr: SocketAddr,
}

impl Target {
    /// Resolves every URL, refusing any that is not plain HTTP on loopback.
    async fn resolve_all(urls: &[String]) -> Result<Vec<Target>> {
        let mut out = Vec::with_capacity(urls.len());
        for url in urls.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
            out.push(Self::resolve(url).await?);
        }
        if out.is_empty() {
            bail!("no server URL given");
        }
        Ok(out)
    }

    /// Resolves one URL (see [`Target::resolve_all`]).
    pub(crate) async fn resolve(url: &str) -> Result<Target> {
        let base = url.trim().trim_end_matches('/').to_owned();
        let (host, port) = host_port(&base)?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .collect();
        let Some(addr) = addrs.first().copied() else {
            bail!("{host} resolves to no address")
        };
        if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            bail!(
                "bench targets loopback only; {host} resolves to {}",
                bad.ip()
            );
        }
        ws_url(&base)?; // checked here, built per connection by `ws_request`
        Ok(Target {
            events_url: api_url(&base, "/api/v1/events")?,
            addr,
            base,
        })
    }
}

/// Host and port of a plain `http://host[:port][/path]` URL (IPv6 in brackets).
fn host_port(base: &str) -> Result<(String, u16)> {
    let Some(rest) = base.strip_prefix("http://") else {
        bail!("bench needs a plain http:// URL on loopback, not `{base}`");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .with_context(|| format!("bad IPv6 host in `{base}`"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        bail!("no host in `{base}`");
    }
    let port = match port {
        None => 80,
        Some(p) => p.parse().with_context(|| format!("bad port in `{base}`"))?,
    };
    Ok((host.to_owned(), port))
}

/// Microseconds since the Unix epoch: the clock publishers stamp into `data.t`
/// and receivers compare against (same machine, so the same clock).
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A stream name no earlier run used: `bench-<kind>-<ms since epoch>`.
pub(crate) fn fresh_stream(kind: &str) -> String {
    format!("bench-{kind}-{}", now_us() / 1000)
}

/// Seconds as a JSON number with millisecond precision.
pub(crate) fn secs(d: Duration) -> Value {
    round3(d.as_secs_f64())
}

/// A float rounded to three decimals, as a JSON number.
pub(crate) fn round3(x: f64) -> Value {
    if x.is_finite() {
        Value::from((x * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

/// Raises this process's open-file soft limit to its hard limit, so a run can
/// hold as many sockets as the system lets it, and returns the soft limit now in
/// force. std has no `setrlimit` and this crate forbids `unsafe`, so it asks
/// util-linux's `prlimit` to do it (allowed for one's own process); without it,
/// raise the limit in the shell first: `ulimit -n $(ulimit -Hn)`.
pub(crate) fn raise_nofile_limit(needed: u64) -> Result<u64> {
    let read = || -> Option<(u64, u64)> {
        parse_nofile(&std::fs::read_to_string("/proc/self/limits").ok()?)
    };
    let Some((soft, hard)) = read() else {
        return Ok(u64::MAX);
    };
    if soft < hard && soft < needed {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(1 << 20);
        let target = hard.min(nr_open);
        let status = std::process::Command::new("prlimit")
            .arg("--pid")
            .arg(std::process::id().to_string())
            .arg(format!(
                "--nofile={target}:{hard_s}",
                hard_s = if hard == u64::MAX {
                    "unlimited".into()
                } else {
                    hard.to_string()
                }
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("bench: could not raise the open-file limit (is `prlimit` installed?)");
        }
    }
    let soft = read().map_or(soft, |(s, _)| s);
    if soft < needed {
        bail!(
            "this run needs about {needed} open files but the limit is {soft}; \
             raise it with `ulimit -n {needed}` (hard limit {hard})"
        );
    }
    Ok(soft)
}

/// `(soft, hard)` of "Max open files" in `/proc/<pid>/limits` text.
fn parse_nofile(limits: &str) -> Option<(u64, u64)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let mut parse = || match fields.next()? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    };
    Some((parse()?, parse()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_port() {
        assert_eq!(
            host_port("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(
            host_port("http://localhost/sb").unwrap(),
            ("localhost".into(), 80)
        );
        assert_eq!(host_port("http://[::1]:9/x").unwrap(), ("::1".into(), 9));
        assert!(host_port("https://127.0.0.1").is_err());
        assert!(host_port("http://:80").is_err());
        assert!(host_port("http://h:port").is_err());
    }

    #[tokio::test]
    async fn only_loopback_targets() {
        let t = Target::resolve("http://127.0.0.1:8080/").await.unwrap();
        assert_eq!(t.events_url, "http://127.0.0.1:8080/api/v1/events");
        assert!(Target::resolve("http://192.0.2.1:8080").await.is_err());
        assert!(Target::resolve("http://10.0.0.1").await.is_err());
    }

    #[test]
    fn reads_the_open_file_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63711                63711                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_nofile(text), Some((1024, 524_288)));
        let text = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_nofile(text), Some((u64::MAX, u64::MAX)));
        assert_eq!(parse_nofile("nothing"), None);
    }
}
