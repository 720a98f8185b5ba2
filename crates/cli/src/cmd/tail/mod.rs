//! `streambus tail`: follow events over the WebSocket (SPEC §3.3), pretty or as
//! NDJSON, reconnecting and resuming without gap or duplicate (SPEC §4).
//!
//! The resume point is the offset of the last event printed; before any event is
//! printed it is `--since`, or the log head the server reported in `SUBSCRIBED`.
//! A reconnect subscribes with `since` = that point and drops any event at or
//! below it, so a server that repeats the seam cannot double a line. `--rewind`
//! applies to the first subscription only.
//!
//! Pretty output ([`pretty`]) is one line per event; every field is printed
//! through [`sanitize`], so an event cannot move the cursor, recolour the
//! terminal or forge extra lines. `--json` prints each event's JSON as the server
//! sent it, one per line, ready for `streambus publish -`.
//!
//! This file owns the flags, the connection loop and the `SUBSCRIBE` frames. The
//! WebSocket helpers (`ws_url`, `ws_request`, `event_slice`) and [`sanitize`] live
//! in [`super::client`], shared with `bench`.

mod pretty;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use streambus_core::wire::{self, ServerMessage};
use streambus_core::{Event, EventClass};
use tokio_tungstenite::tungstenite::{self, Message};

use self::pretty::format_pretty;
use super::client::{DEFAULT_URL, event_slice, sanitize, ws_request};

/// How often an idle connection sends `PING`.
const PING_EVERY: Duration = Duration::from_secs(20);
/// A connection silent for this long (no event, no `PONG`) is considered lost.
const IDLE_LIMIT: Duration = Duration::from_secs(50);
/// Time allowed for TCP connect plus the WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// When to colour pretty output.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    /// When stdout is a terminal and `NO_COLOR` is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Follow events as they happen.
#[derive(clap::Args, Debug)]
pub struct TailArgs {
    /// Server base URL.
    #[arg(long, env = "STREAMBUS_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// Bearer token (sent as `Authorization: Bearer <token>`).
    #[arg(long, env = "STREAMBUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Stream name or glob (`match-*`); repeatable or comma-separated. Default: all.
    #[arg(long, short = 's', value_delimiter = ',')]
    pub stream: Vec<String>,
    /// Event type or glob (`high_*`); repeatable or comma-separated.
    #[arg(long = "type", short = 't', value_delimiter = ',')]
    pub event_type: Vec<String>,
    /// Event class: animated, data, alert, system; repeatable or comma-separated.
    #[arg(long, short = 'c', value_delimiter = ',')]
    pub class: Vec<String>,
    /// Field match `data.team=a` or `metadata.tournament_id=7` (repeatable; the
    /// value is read as JSON when it parses, else as a string).
    #[arg(long = "where", short = 'w', value_name = "PATH=VALUE")]
    pub field: Vec<String>,
    /// Start after this offset (replays everything later first).
    #[arg(long)]
    pub since: Option<u64>,
    /// Start with the last N matching events (at most 1000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=wire::MAX_REWIND as u64))]
    pub rewind: Option<u64>,
    /// Print each event as one line of JSON (NDJSON).
    #[arg(long)]
    pub json: bool,
    /// Exit after printing this many events.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Colour pretty output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// Runs `streambus tail` until `--count` events were printed, stdout closes, or
/// the server refuses the connection or subscription.
///
/// # Errors
/// Invalid flags, refused credentials or subscription, or a stdout write error.
pub async fn run(args: TailArgs) -> Result<()> {
    let base_frame = subscribe_base(&args)?;
    let color = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    let mut state = TailState {
        resume: args.since,
        rewind: args.rewind,
        printed: 0,
        count: args.count,
        json: args.json,
        color,
    };
    if state.count == Some(0) {
        return Ok(());
    }
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut subscribed = false;
        match session(&args, &base_frame, &mut state, &mut subscribed).await {
            End::Done => return Ok(()),
            End::Fatal(e) => return Err(e),
            End::Lost(e) => {
                if subscribed {
                    backoff = BACKOFF_MIN;
                }
                let at = state
                    .resume
                    .map(|o| format!(" from offset {o}"))
                    .unwrap_or_default();
                eprintln!(
                    "tail: {e:#}; reconnecting in {} ms{at}",
                    backoff.as_millis()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Where the follower stands; survives reconnects.
struct TailState {
    /// Resume after this offset on the next subscription.
    resume: Option<u64>,
    /// Rewind asked for; cleared once a subscription went live.
    rewind: Option<u64>,
    printed: u64,
    count: Option<u64>,
    json: bool,
    color: bool,
}

enum End {
    /// `--count` reached or stdout closed.
    Done,
    /// Worth reconnecting.
    Lost(anyhow::Error),
    /// Retrying cannot help.
    Fatal(anyhow::Error),
}

async fn session(
    args: &TailArgs,
    base: &Value,
    state: &mut TailState,
    subscribed: &mut bool,
) -> End {
    let request = match ws_request(&args.url, args.token.as_deref()) {
        Ok(r) => r,
        Err(e) => return End::Fatal(e),
    };
    let connect = tokio_tungstenite::connect_async_with_config(request, None, true);
    let mut ws = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Err(_) => return End::Lost(anyhow!("connecting to {} timed out", args.url)),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let status = resp.status();
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let e = anyhow!("the server refused the WebSocket: {status} {}", body.trim());
            // Auth and routing problems do not fix themselves; overload does.
            return if status.is_server_error() || status.as_u16() == 429 {
                End::Lost(e)
            } else {
                End::Fatal(e)
            };
        }
        Ok(Err(e)) => {
            return End::Lost(anyhow!("cannot connect to {}: {e}", args.url));
        }
        Ok(Ok((ws, _))) => ws,
    };
    let since = state.resume;
    let frame = subscribe_frame(
        base,
        since,
        if since.is_none() { state.rewind } else { None },
    );
    if let Err(e) = ws.send(Message::text(frame.to_string())).await {
        return End::Lost(anyhow!("cannot send SUBSCRIBE: {e}"));
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_frame = Instant::now();
    loop {
        let msg = tokio::select! {
            _ = ping.tick() => {
                if last_frame.elapsed() > IDLE_LIMIT {
                    return End::Lost(anyhow!("no answer from the server for {} s", IDLE_LIMIT.as_secs()));
                }
                if let Err(e) = ws.send(Message::text(r#"{"type":"PING"}"#)).await {
                    return End::Lost(anyhow!("connection lost: {e}"));
                }
                continue;
            }
            msg = ws.next() => msg,
        };
        last_frame = Instant::now();
        let text = match msg {
            None => return End::Lost(anyhow!("the server closed the connection")),
            Some(Err(e)) => return End::Lost(anyhow!("connection lost: {e}")),
            Some(Ok(Message::Close(frame))) => {
                let why = match frame {
                    Some(f) if u16::from(f.code) == wire::close::BEHIND_RETENTION => {
                        format!("fell behind retention ({})", f.reason)
                    }
                    Some(f) => format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                    None => "closed by the server".to_owned(),
                };
                return End::Lost(anyhow!(why));
            }
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
        };
        if let Some(event_json) = event_slice(text.as_str()) {
            match print_event(event_json, since, state) {
                Ok(true) => return End::Done,
                Ok(false) => {}
                Err(e) => return End::Fatal(e),
            }
            continue;
        }
        match serde_json::from_str::<ServerMessage>(text.as_str()) {
            Ok(ServerMessage::Subscribed {
                offset,
                recovered,
                earliest_offset,
            }) => {
                *subscribed = true;
                state.rewind = None;
                if state.resume.is_none() {
                    state.resume = Some(offset);
                }
                if !recovered {
                    let from = earliest_offset
                        .map(|o| format!("; continuing from offset {o}"))
                        .unwrap_or_default();
                    eprintln!(
                        "tail: events after offset {} are gone (retention){from}",
                        since.unwrap_or(0)
                    );
                }
            }
            Ok(ServerMessage::EventBroadcast { event }) => {
                let json = serde_json::to_string(&event).unwrap_or_default();
                match print_event(&json, since, state) {
                    Ok(true) => return End::Done,
                    Ok(false) => {}
                    Err(e) => return End::Fatal(e),
                }
            }
            Ok(ServerMessage::Error { code, message, .. }) => {
                let e = anyhow!("server error {code}: {message}");
                if !*subscribed {
                    return End::Fatal(e.context("the subscription was refused"));
                }
                eprintln!("tail: {e}");
            }
            // PONG, ACK and messages of the protocol tail does not use.
            Ok(_) | Err(_) => {}
        }
    }
}

/// Prints one event unless it is at or before the seam; true when done.
fn print_event(json: &str, since: Option<u64>, state: &mut TailState) -> Result<bool> {
    let event: Event = match serde_json::from_str(json) {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "tail: skipping an event that does not parse ({e}): {}",
                sanitize(json)
            );
            return Ok(false);
        }
    };
    if since.is_some_and(|s| event.offset <= s) {
        return Ok(false);
    }
    let line = if state.json {
        json.to_owned()
    } else {
        format_pretty(&event, state.color)
    };
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{line}").and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        // `tail | head`: the reader is gone, which is a normal way to stop.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(true),
        Err(e) => return Err(anyhow!(e).context("cannot write to stdout")),
    }
    state.resume = Some(event.offset);
    state.printed += 1;
    Ok(state.count.is_some_and(|n| state.printed >= n))
}

/// The `SUBSCRIBE` frame without `since`/`rewind`, checked before connecting.
fn subscribe_base(args: &TailArgs) -> Result<Value> {
    let mut frame = json!({"type": "SUBSCRIBE"});
    for s in &args.stream {
        if !wire::is_stream_pattern(s) {
            bail!("`{s}` is not a stream name or glob ([a-z0-9._-], * and ?)");
        }
    }
    for c in &args.class {
        if EventClass::parse(c).is_none() {
            bail!("unknown class `{c}` (animated, data, alert, system)");
        }
    }
    if !args.stream.is_empty() {
        frame["streams"] = json!(args.stream);
    }
    if !args.event_type.is_empty() {
        frame["eventTypes"] = json!(args.event_type);
    }
    if !args.class.is_empty() {
        frame["classes"] = json!(args.class);
    }
    if !args.field.is_empty() {
        let mut filter = serde_json::Map::new();
        for f in &args.field {
            let (path, value) = f
                .split_once('=')
                .with_context(|| format!("--where `{f}` is not PATH=VALUE"))?;
            if !(path.starts_with("data.") || path.starts_with("metadata.")) {
                bail!("--where `{path}` must start with `data.` or `metadata.`");
            }
            let value =
                serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
            if let Value::Array(values) = filter.entry(path.to_owned()).or_insert_with(|| json!([]))
            {
                values.push(value);
            }
        }
        frame["filter"] = Value::Object(filter);
    }
    Ok(frame)
}

fn subscribe_frame(base: &Value, since: Option<u64>, rewind: Option<u64>) -> Value {
    let mut frame = base.clone();
    if let Some(since) = since {
        frame["since"] = json!(since);
    }
    if let Some(rewind) = rewind {
        frame["rewind"] = json!(rewind);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_frames() {
        let args = TailArgs {
            url: DEFAULT_URL.into(),
            token: None,
            stream: vec!["default".into(), "match-*".into()],
            event_type: vec!["high_*".into()],
            class: vec!["animated".into()],
            field: vec![
                "data.team=a".into(),
                "data.team=b".into(),
                "metadata.tournament_id=7".into(),
            ],
            since: None,
            rewind: None,
            json: false,
            count: None,
            color: ColorChoice::Never,
        };
        let base = subscribe_base(&args).unwrap();
        let frame = subscribe_frame(&base, Some(41), None);
        assert_eq!(
            frame,
            json!({"type": "SUBSCRIBE", "streams": ["default", "match-*"], "eventTypes": ["high_*"],
                   "classes": ["animated"], "since": 41,
                   "filter": {"data.team": ["a", "b"], "metadata.tournament_id": [7]}})
        );
        // The frame is one the server's parser accepts.
        assert!(matches!(
            wire::ClientMessage::parse(&frame.to_string()),
            Ok(wire::ClientMessage::Subscribe(_))
        ));
        let bad = TailArgs {
            stream: vec!["Bad Name".into()],
            ..args
        };
        assert!(subscribe_base(&bad).is_err());
    }
}
