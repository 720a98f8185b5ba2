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
//! This file owns the flags, the single event and the loop joining reader and
//! sender; [`input`] parses and rewrites the input events, [`batch`] groups them
//! into requests and reports the server's answers. The HTTP helpers
//! (`http_client`, `api_url`, `problem_error`) live in [`super::client`], shared
//! with `bench`.

mod batch;
mod input;

use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use self::batch::{BatchSender, Batcher, Totals};
use self::input::{Overrides, read_events};
use super::client::{DEFAULT_URL, MAX_BATCH, api_url, http_client, problem_error};

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
    /// With a file: drop each event's `id` and `offset` so the server assigns
    /// new ones (to copy events a server already stored, e.g. from `tail --json`).
    #[arg(long)]
    pub new_ids: bool,
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
        new_ids: args.new_ids,
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
