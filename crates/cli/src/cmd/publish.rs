//! `streambus publish`: one event built from flags, or many read from NDJSON or a
//! JSON array (a file, or `-` for stdin) and posted in batches (SPEC §3.2,
//! `POST /api/v1/events`).
//!
//! A single event is posted as one JSON object and the stored event is printed.
//! Input is streamed: a reader thread parses values as they arrive, so
//! `streambus tail --json | streambus publish -` forwards events live, and the
//! sender posts a batch when it is full (`--batch`), when the next event would
//! push the body past `--max-body-bytes`, or when input pauses. Items the server
//! refuses are reported with their problem and make the exit status non-zero,
//! but never stop their valid neighbours (SPEC §3). A whole request refused
//! (401, 413, 503, ...) stops the command with the problem's detail.
//!
//! The HTTP helpers here (`http_client`, `api_url`, `problem_error`) are shared
//! with `bench`.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// Where the server listens unless told otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// Most events the server accepts in one batch (SPEC: 1000).
pub const MAX_BATCH: u64 = 1000;
/// Default limit on one request body (the server's default, 1 MiB).
const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
/// How long a partly filled batch waits for more input before it is sent.
const LINGER: Duration = Duration::from_millis(50);
/// Events parsed ahead of the sender; bounds memory on large inputs.
const READ_AHEAD: usize = 2048;

/// Publish events to a streambus server.
#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    /// Server base URL.
    #[arg(long, env = "STREAMBUS_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// Bearer token (sent as `Authorization: Bearer <token>`).
    #[arg(long, env = "STREAMBUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Stream to publish to (default: the server's `default`); with an input
    /// file it replaces the stream of every event.
    #[arg(long, short = 's')]
    pub stream: Option<String>,
    /// Event type, e.g. `goal` (required unless events come from a file).
    #[arg(long = "type", short = 't', required_unless_present_any = ["file", "input"])]
    pub event_type: Option<String>,
    /// Human-readable message.
    #[arg(long, short = 'm')]
    pub message: Option<String>,
    /// Payload as JSON, e.g. '{"team":"a"}'.
    #[arg(long, short = 'd')]
    pub data: Option<String>,
    /// Event class: animated, data, alert or system.
    #[arg(long, short = 'c')]
    pub class: Option<String>,
    /// Priority: low, normal, high or critical.
    #[arg(long, short = 'p')]
    pub priority: Option<String>,
    /// Idempotency key: publishing the same id again stores nothing new.
    #[arg(long)]
    pub id: Option<String>,
    /// Tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Who produced the event; with an input file it replaces every event's source.
    #[arg(long)]
    pub source: Option<String>,
    /// Read events from this file (`-` for stdin): NDJSON or one JSON array.
    #[arg(long, short = 'f', conflicts_with_all = [
        "input", "event_type", "message", "data", "class", "priority", "id", "tags",
    ])]
    pub file: Option<PathBuf>,
    /// Same as `--file`, as a positional argument (`streambus publish -`).
    #[arg(value_name = "FILE", conflicts_with_all = [
        "event_type", "message", "data", "class", "priority", "id", "tags",
    ])]
    pub input: Option<PathBuf>,
    /// Events per request when reading a file (at most 1000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH))]
    pub batch: u64,
    /// Largest request body to build, in bytes (the server's limit).
    #[arg(long, env = "STREAMBUS_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY)]
    pub max_body_bytes: u64,
    /// With a file: print every stored event (NDJSON) instead of one line per batch.
    #[arg(long)]
    pub print_events: bool,
}

/// Runs `streambus publish`.
///
/// # Errors
/// Bad flags or input, an unreachable server, a refused request, or (after all
/// input was sent) any refused event.
pub async fn run(args: PublishArgs) -> Result<()> {
    let client = http_client(args.token.as_deref(), Some(Duration::from_secs(30)))?;
    let url = api_url(&args.url, "/api/v1/events")?;
    match args.file.clone().or_else(|| args.input.clone()) {
        Some(path) => publish_input(&client, &url, &args, path).await,
        None => publish_one(&client, &url, &args).await,
    }
}

async fn publish_one(client: &reqwest::Client, url: &str, args: &PublishArgs) -> Result<()> {
    let event = event_from_flags(args)?;
    let resp = client
        .post(url)
        .json(&event)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(problem_error(resp, "the server refused the event").await);
    }
    let stored: Value = resp
        .json()
        .await
        .context("the server's answer is not JSON")?;
    println!("{stored}");
    if status == StatusCode::OK {
        eprintln!("note: an event with this id was already stored; nothing new was delivered");
    }
    Ok(())
}

/// The JSON object for the event described by the flags.
fn event_from_flags(args: &PublishArgs) -> Result<Value> {
    let mut obj = Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            obj.insert(k.to_owned(), Value::String(v.clone()));
        }
    };
    put("id", &args.id);
    put("stream_id", &args.stream);
    put("type", &args.event_type);
    put("class", &args.class);
    put("source", &args.source);
    put("message", &args.message);
    put("priority", &args.priority);
    if let Some(data) = &args.data {
        let data: Value = serde_json::from_str(data).context("--data is not valid JSON")?;
        obj.insert("data".into(), data);
    }
    if !args.tags.is_empty() {
        obj.insert(
            "tags".into(),
            args.tags.iter().cloned().map(Value::String).collect(),
        );
    }
    Ok(Value::Object(obj))
}

/// One parsed input item, or why reading stopped.
enum Input {
    Event(String),
    Failed(anyhow::Error),
}

async fn publish_input(
    client: &reqwest::Client,
    url: &str,
    args: &PublishArgs,
    path: PathBuf,
) -> Result<()> {
    let reader: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        )
    };
    let (tx, mut rx) = mpsc::channel(READ_AHEAD);
    let overrides = Overrides {
        stream: args.stream.clone(),
        source: args.source.clone(),
    };
    // A plain thread, not spawn_blocking: a read blocked on stdin must not keep
    // the runtime from shutting down when the sender gives up.
    std::thread::spawn(move || {
        let result = read_events(BufReader::new(reader), |mut event| {
            overrides.apply(&mut event);
            tx.blocking_send(Input::Event(event.to_string())).is_ok()
        });
        if let Err(e) = result {
            // The receiver may be gone already; then nobody needs the error.
            let _ = tx.blocking_send(Input::Failed(e));
        }
    });

    let max_body = usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX);
    let mut batcher = Batcher::new(args.batch as usize, max_body);
    let mut sender = BatchSender {
        client,
        url,
        print_events: args.print_events,
        totals: Totals::default(),
    };
    let mut read_error = None;
    loop {
        let next = if batcher.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(LINGER, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    sender.send(batcher.take()).await?;
                    continue;
                }
            }
        };
        match next {
            None => break,
            Some(Input::Event(json)) => {
                if let Some(full) = batcher.push(json) {
                    sender.send(full).await?;
                }
            }
            Some(Input::Failed(e)) => {
                read_error = Some(e);
                break;
            }
        }
    }
    if !batcher.is_empty() {
        sender.send(batcher.take()).await?;
    }
    let t = &sender.totals;
    if t.batches > 1 {
        eprintln!(
            "published {} events in {} requests: {} stored, {} duplicates, {} rejected",
            t.events, t.batches, t.stored, t.duplicates, t.rejected
        );
    }
    if let Some(e) = read_error {
        return Err(e.context(format!("reading stopped after {} events", t.events)));
    }
    if t.rejected > 0 {
        bail!("{} of {} events were rejected", t.rejected, t.events);
    }
    Ok(())
}

/// Stream and source forced onto every event read from a file.
struct Overrides {
    stream: Option<String>,
    source: Option<String>,
}

impl Overrides {
    fn apply(&self, event: &mut Value) {
        let Value::Object(obj) = event else { return };
        if let Some(stream) = &self.stream {
            obj.remove("stream");
            obj.insert("stream_id".into(), Value::String(stream.clone()));
        }
        if let Some(source) = &self.source {
            obj.insert("source".into(), Value::String(source.clone()));
        }
    }
}

/// Reads events from `reader`: one JSON array, or NDJSON (any whitespace-separated
/// sequence of JSON objects). Calls `sink` for each event as soon as it is parsed;
/// `sink` returns false to stop reading.
///
/// # Errors
/// Invalid JSON (with line and column), or an item that is not an object.
fn read_events<R: BufRead>(mut reader: R, mut sink: impl FnMut(Value) -> bool) -> Result<()> {
    // Peek at the first non-blank byte to tell an array from NDJSON.
    let first = loop {
        let buf = reader.fill_buf().context("cannot read input")?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let b = buf[i];
                reader.consume(i);
                break b;
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    if first == b'[' {
        let items: Vec<Value> =
            serde_json::from_reader(reader).context("input is not a valid JSON array")?;
        for (i, item) in items.into_iter().enumerate() {
            if !item.is_object() {
                bail!("array item {} is not a JSON object", i + 1);
            }
            if !sink(item) {
                break;
            }
        }
        return Ok(());
    }
    let stream = serde_json::Deserializer::from_reader(reader).into_iter::<Value>();
    for (i, item) in stream.enumerate() {
        let item = item.with_context(|| format!("input item {} is not valid JSON", i + 1))?;
        if !item.is_object() {
            bail!("input item {} is not a JSON object", i + 1);
        }
        if !sink(item) {
            break;
        }
    }
    Ok(())
}

/// Groups serialised events into request bodies bounded by count and size.
struct Batcher {
    max_events: usize,
    max_bytes: usize,
    items: Vec<String>,
    /// Size of the body `[a,b,...]` the current items make.
    bytes: usize,
}

impl Batcher {
    fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            max_events: max_events.max(1),
            max_bytes,
            items: Vec::new(),
            bytes: 2,
        }
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds an event; returns the batch to send first when the event does not fit
    /// (an event larger than a body on its own is still sent, alone, and the
    /// server's answer says why it is refused).
    fn push(&mut self, item: String) -> Option<Vec<String>> {
        let extra = item.len() + usize::from(!self.items.is_empty());
        let full = !self.items.is_empty() && self.bytes + extra > self.max_bytes;
        let out = if full { Some(self.take()) } else { None };
        self.bytes += item.len() + usize::from(!self.items.is_empty());
        self.items.push(item);
        if out.is_none() && self.items.len() >= self.max_events {
            return Some(self.take());
        }
        out
    }

    fn take(&mut self) -> Vec<String> {
        self.bytes = 2;
        std::mem::take(&mut self.items)
    }
}

/// The JSON array body for serialised events.
pub(crate) fn array_body(items: &[String]) -> String {
    let mut body = String::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 2);
    body.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push(']');
    body
}

#[derive(Debug, Default)]
struct Totals {
    batches: u64,
    events: u64,
    stored: u64,
    duplicates: u64,
    rejected: u64,
}

struct BatchSender<'a> {
    client: &'a reqwest::Client,
    url: &'a str,
    print_events: bool,
    totals: Totals,
}

impl BatchSender<'_> {
    async fn send(&mut self, items: Vec<String>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let first_item = self.totals.events + 1;
        let resp = self
            .client
            .post(self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(array_body(&items))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.url))?;
        if !resp.status().is_success() {
            let what = format!("the server refused the batch of events {first_item}..");
            return Err(problem_error(resp, &what).await);
        }
        let answer: BatchAnswer = resp
            .json()
            .await
            .context("the server's batch answer is not valid")?;
        if answer.results.len() != items.len() {
            bail!(
                "sent {} events but the server answered for {}",
                items.len(),
                answer.results.len()
            );
        }
        self.totals.batches += 1;
        self.totals.events += items.len() as u64;
        let (mut stored, mut duplicates, mut rejected) = (0, 0, 0);
        let (mut low, mut high) = (u64::MAX, 0);
        for (i, item) in answer.results.into_iter().enumerate() {
            match item.status {
                201 | 200 => {
                    if item.status == 201 {
                        stored += 1
                    } else {
                        duplicates += 1
                    }
                    if let Some(offset) = item.event.as_ref().and_then(|e| e["offset"].as_u64()) {
                        low = low.min(offset);
                        high = high.max(offset);
                    }
                    if self.print_events
                        && let Some(event) = item.event
                    {
                        println!("{event}");
                    }
                }
                status => {
                    rejected += 1;
                    let problem = item.problem.unwrap_or_default();
                    eprintln!(
                        "event {}: rejected: {}",
                        first_item + i as u64,
                        problem.with_status(status)
                    );
                }
            }
        }
        self.totals.stored += stored;
        self.totals.duplicates += duplicates;
        self.totals.rejected += rejected;
        if !self.print_events {
            let offsets = if low <= high {
                format!(" (offsets {low}..={high})")
            } else {
                String::new()
            };
            println!(
                "batch {}: {} events: {stored} stored, {duplicates} duplicates, {rejected} rejected{offsets}",
                self.totals.batches,
                items.len()
            );
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct BatchAnswer {
    results: Vec<BatchItem>,
}

#[derive(Debug, Deserialize)]
struct BatchItem {
    status: u16,
    #[serde(default)]
    event: Option<Value>,
    #[serde(default)]
    problem: Option<Problem>,
}

/// An RFC 9457 problem as the server sends it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    field: Option<String>,
}

impl Problem {
    fn with_status(mut self, status: u16) -> Self {
        self.status.get_or_insert(status);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "{s}")?,
            None => f.write_str("error")?,
        }
        if let Some(title) = &self.title {
            write!(f, " {title}")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if let Some(field) = &self.field {
            write!(f, " (field `{field}`)")?;
        }
        Ok(())
    }
}

/// Turns a non-success response into an error carrying the problem's detail
/// (or the start of the body when it is not a problem document).
pub(crate) async fn problem_error(resp: reqwest::Response, what: &str) -> anyhow::Error {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(" (retry after {v} s)"))
        .unwrap_or_default();
    let body = resp.text().await.unwrap_or_default();
    let reason = match serde_json::from_str::<Problem>(&body) {
        Ok(p) if p.title.is_some() || p.detail.is_some() => {
            p.with_status(status.as_u16()).to_string()
        }
        _ => {
            let text: String = body.chars().take(300).collect();
            let text = text.trim();
            if text.is_empty() {
                status.to_string()
            } else {
                format!("{status}: {text}")
            }
        }
    };
    anyhow!("{what}: {reason}{retry_after}")
}

/// An HTTP client sending the bearer token, if any, with every request.
///
/// # Errors
/// A token that is not a valid header value, or a client that cannot be built.
pub(crate) fn http_client(
    token: Option<&str>,
    timeout: Option<Duration>,
) -> Result<reqwest::Client> {
    let mut headers = HeaderMap::new();
    if let Some(token) = token {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token contains characters not allowed in a header")?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .user_agent(concat!("streambus-cli/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10));
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder.build().context("cannot build the HTTP client")
}

/// `base` (an `http://` URL, maybe with a path prefix) joined with an API path.
///
/// # Errors
/// A base that is not an `http://` or `https://` URL.
pub(crate) fn api_url(base: &str, path: &str) -> Result<String> {
    let base = base.trim().trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!("the server URL `{base}` must start with http:// or https://");
    }
    Ok(format!("{base}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        read_events(input.as_bytes(), |v| {
            out.push(v);
            true
        })?;
        Ok(out)
    }

    #[test]
    fn reads_ndjson_arrays_and_blank_input() {
        let nd = "{\"type\":\"a\"}\n\n{\"type\":\"b\"}\r\n{\"type\":\n \"c\"}\n";
        let types: Vec<_> = read_all(nd)
            .unwrap()
            .iter()
            .map(|v| v["type"].clone())
            .collect();
        assert_eq!(types, ["a", "b", "c"]);
        let arr = "  \n[{\"type\":\"a\"}, {\"type\":\"b\"}]\n";
        assert_eq!(read_all(arr).unwrap().len(), 2);
        assert!(read_all("").unwrap().is_empty());
        assert!(read_all(" \n\t ").unwrap().is_empty());
    }

    #[test]
    fn bad_input_names_the_item() {
        let err = read_all("{\"type\":\"a\"}\n{nope}\n").unwrap_err();
        assert!(format!("{err:#}").contains("item 2"), "{err:#}");
        let err = read_all("{\"type\":\"a\"}\n42\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("item 2 is not a JSON object"),
            "{err:#}"
        );
        let err = read_all("[{\"a\":1}, 3]").unwrap_err();
        assert!(format!("{err:#}").contains("array item 2"), "{err:#}");
        assert!(read_all("[{\"a\":1}").is_err());
    }

    #[test]
    fn sink_can_stop_reading() {
        let mut n = 0;
        read_events("{}\n{}\n{}\n".as_bytes(), |_| {
            n += 1;
            n < 2
        })
        .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn batches_respect_count_and_body_size() {
        let mut b = Batcher::new(3, 1000);
        assert!(b.push("a".into()).is_none());
        assert!(b.push("b".into()).is_none());
        assert_eq!(b.push("c".into()).unwrap(), ["a", "b", "c"]);
        assert!(b.is_empty());

        // Body `[xxxx,yyyy]` is 11 bytes: the third item would make it 16 > 12.
        let mut b = Batcher::new(10, 12);
        assert!(b.push("xxxx".into()).is_none());
        assert!(b.push("yyyy".into()).is_none());
        let sent = b.push("zzzz".into()).unwrap();
        assert_eq!(array_body(&sent), "[xxxx,yyyy]");
        assert!(array_body(&sent).len() <= 12);
        assert_eq!(b.take(), ["zzzz"]);

        // An item larger than a body still goes, alone.
        let mut b = Batcher::new(10, 4);
        assert!(b.push("toolarge".into()).is_none());
        assert_eq!(b.push("x".into()).unwrap(), ["toolarge"]);
    }

    #[test]
    fn overrides_replace_stream_and_source() {
        let o = Overrides {
            stream: Some("scores".into()),
            source: None,
        };
        let mut v = serde_json::json!({"stream": "old", "source": "s", "type": "t"});
        o.apply(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"stream_id": "scores", "source": "s", "type": "t"})
        );
    }

    #[test]
    fn problems_read_well() {
        let p: Problem = serde_json::from_str(
            r#"{"type":"about:blank","title":"Unprocessable Entity","status":422,"detail":"data: must be an object","field":"data"}"#,
        )
        .unwrap();
        assert_eq!(
            p.to_string(),
            "422 Unprocessable Entity: data: must be an object (field `data`)"
        );
        assert_eq!(Problem::default().with_status(503).to_string(), "503");
    }

    #[test]
    fn api_urls_join_cleanly() {
        assert_eq!(
            api_url("http://127.0.0.1:8080/", "/api/v1/events").unwrap(),
            "http://127.0.0.1:8080/api/v1/events"
        );
        assert_eq!(
            api_url("http://h/sb", "/api/v1/ws").unwrap(),
            "http://h/sb/api/v1/ws"
        );
        assert!(api_url("127.0.0.1:8080", "/x").is_err());
    }
}
