//! `streambus tail`: follow events over the WebSocket (SPEC §3.3), pretty or as
//! NDJSON, reconnecting and resuming without gap or duplicate (SPEC §4).
//!
//! The resume point is the offset of the last event printed; before any event is
//! printed it is `--since`, or the log head the server reported in `SUBSCRIBED`.
//! A reconnect subscribes with `since` = that point and drops any event at or
//! below it, so a server that repeats the seam cannot double a line. `--rewind`
//! applies to the first subscription only.
//!
//! Pretty output is one line per event; every field is printed through
//! [`sanitize`], so an event cannot move the cursor, recolour the terminal or
//! forge extra lines. `--json` prints each event's JSON as the server sent it,
//! one per line, ready for `streambus publish -`.
//!
//! The WebSocket helpers here (`ws_url`, `ws_request`) are shared with `bench`.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use streambus_core::wire::{self, ServerMessage};
use streambus_core::{Event, EventClass};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header::AUTHORIZATION};
use tokio_tungstenite::tungstenite::{self, Message};

use super::publish::DEFAULT_URL;

/// The fixed start of every `EVENT_BROADCAST` frame the server writes
/// ([`wire::event_broadcast_frame`], and serde's tag-first order).
pub(crate) const EVENT_FRAME_PREFIX: &str = "{\"type\":\"EVENT_BROADCAST\",\"event\":";
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

/// The event JSON inside an `EVENT_BROADCAST` frame, without parsing it.
pub(crate) fn event_slice(frame: &str) -> Option<&str> {
    frame.strip_prefix(EVENT_FRAME_PREFIX)?.strip_suffix('}')
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

/// `base` turned into the WebSocket endpoint: `http://h:p/x` → `ws://h:p/x/api/v1/ws`.
///
/// # Errors
/// A base that is not an `http(s)://` or `ws(s)://` URL.
pub(crate) fn ws_url(base: &str) -> Result<String> {
    let base = base.trim().trim_end_matches('/');
    let rest = if let Some(r) = base.strip_prefix("http://") {
        format!("ws://{r}")
    } else if let Some(r) = base.strip_prefix("https://") {
        format!("wss://{r}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_owned()
    } else {
        bail!("the server URL `{base}` must start with http:// or https://");
    };
    Ok(format!("{rest}/api/v1/ws"))
}

/// The WebSocket handshake request, carrying the bearer token when given.
///
/// # Errors
/// A bad URL or a token that is not a valid header value.
pub(crate) fn ws_request(base: &str, token: Option<&str>) -> Result<Request> {
    let url = ws_url(base)?;
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("bad WebSocket URL {url}"))?;
    if let Some(token) = token {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token contains characters not allowed in a header")?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    Ok(request)
}

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";

/// One readable line: time (UTC), offset, stream, class, type, message, data.
fn format_pretty(e: &Event, color: bool) -> String {
    let paint = |code: &str, text: &str| -> String {
        if color {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    };
    // `2022-01-19T13:20:00.123Z` → `13:20:00.123`.
    let time = match e.time.get(11..23) {
        Some(t) if e.time.as_bytes().get(10) == Some(&b'T') => Cow::Borrowed(t),
        _ => sanitize(&e.time),
    };
    let class_color = match e.class {
        EventClass::Animated => "\x1b[35m",
        EventClass::Data => "\x1b[32m",
        EventClass::Alert => match e.level.as_deref() {
            Some("error") => "\x1b[31m",
            _ => "\x1b[33m",
        },
        EventClass::System => "\x1b[34m",
    };
    let mut line = String::with_capacity(128);
    let _ = write!(
        line,
        "{} {} {} {} {}",
        paint(DIM, &time),
        paint(DIM, &format!("#{}", e.offset)),
        paint("\x1b[36m", &sanitize(&e.stream_id)),
        paint(class_color, &format!("{:<8}", e.class.as_str())),
        paint(BOLD, &sanitize(&e.event_type)),
    );
    if let Some(level) = e.level.as_deref().or(e.severity.as_deref()) {
        let _ = write!(line, " [{}]", sanitize(level));
    }
    if !e.message.is_empty() {
        let _ = write!(line, "  {}", sanitize(&e.message));
    }
    let empty = match &e.data {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        _ => false,
    };
    if !empty {
        let data = e.data.to_string();
        let _ = write!(line, "  {}", paint(DIM, &sanitize(&data)));
    }
    line
}

/// Makes text safe for a terminal: control characters (C0, DEL, C1 — ANSI
/// escapes among them), line and paragraph separators and bidirectional
/// overrides are written as escapes (`\n`, `\t`, `\u{1b}`), so an event prints
/// as exactly one line and cannot restyle the terminal.
pub(crate) fn sanitize(s: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}'
            )
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    }
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(message: &str) -> Event {
        serde_json::from_value(json!({
            "offset": 42, "id": "evt_1", "stream_id": "scores", "type": "goal", "class": "animated",
            "source": "game", "message": message, "data": {"team": "a"},
            "metadata": {"priority": "normal"}, "timestamp": 1642598400,
            "time": "2022-01-19T13:20:00.123Z"
        }))
        .unwrap()
    }

    #[test]
    fn pretty_line_is_readable() {
        let line = format_pretty(&event("Goal!"), false);
        assert_eq!(
            line,
            r#"13:20:00.123 #42 scores animated goal  Goal!  {"team":"a"}"#
        );
        let coloured = format_pretty(&event("Goal!"), true);
        assert!(coloured.contains("\x1b[35manimated"), "{coloured:?}");
    }

    #[test]
    fn hostile_text_prints_as_one_safe_line() {
        let line = format_pretty(
            &event("\x1b[2J\x1b[31mred\nforged line\r\u{9b}31m\u{202e}txt"),
            false,
        );
        assert!(
            !line.contains('\x1b') && !line.contains('\n') && !line.contains('\r'),
            "{line:?}"
        );
        assert!(
            !line.contains('\u{9b}') && !line.contains('\u{202e}'),
            "{line:?}"
        );
        assert!(
            line.contains(r"\u{1b}[2J\u{1b}[31mred\nforged line\r\u{9b}31m\u{202e}txt"),
            "{line}"
        );
        // Data is JSON-escaped already, but DEL and C1 pass through serde_json.
        let mut e = event("");
        e.data = json!({"x": "a\u{7f}\u{85}b"});
        let line = format_pretty(&e, false);
        assert!(line.ends_with(r#"{"x":"a\u{7f}\u{85}b"}"#), "{line}");
        assert_eq!(sanitize("plain ünïcödé"), Cow::Borrowed("plain ünïcödé"));
    }

    #[test]
    fn event_frames_are_sliced_without_parsing() {
        let frame = wire::event_broadcast_frame(br#"{"offset":1,"id":"x"}"#);
        let frame = String::from_utf8(frame).unwrap();
        assert_eq!(event_slice(&frame), Some(r#"{"offset":1,"id":"x"}"#));
        assert_eq!(event_slice(r#"{"type":"PONG","timestamp":1}"#), None);
    }

    #[test]
    fn urls_and_subscribe_frames() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080/").unwrap(),
            "ws://127.0.0.1:8080/api/v1/ws"
        );
        assert_eq!(
            ws_url("https://bus.example/sb").unwrap(),
            "wss://bus.example/sb/api/v1/ws"
        );
        assert!(ws_url("ftp://x").is_err());
        let req = ws_request("http://127.0.0.1:1", Some("t0k")).unwrap();
        assert_eq!(req.headers()[AUTHORIZATION], "Bearer t0k");

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
