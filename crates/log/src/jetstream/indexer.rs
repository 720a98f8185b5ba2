//! The node's indexer: JetStream → this node's store → this node's live tail.
//!
//! One task per node reads the JetStream stream in sequence order from its
//! watermark + 1 with an ordered consumer, inserts each batch into the store
//! (`insert_records` is idempotent: every node inserts the same records), and
//! only then advances the watermark and broadcasts the records to live tails.
//! So everything a tail yields is already readable from the store, the
//! invariant a subscription's catch-up relies on (SPEC §4).
//!
//! Failures never skip records: a store failure retries the same batch with
//! backoff (the tail stalls); a consumer failure recreates the consumer from
//! watermark + 1. Only messages that cannot be parsed are skipped, with a warning.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::{FutureExt, StreamExt};
use streambus_core::Record;
use streambus_core::store::EventStore;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::subject::{all_filter, parse_subject};

/// First retry delay after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// State shared by the log handle, its tails and the indexer task.
pub(super) struct Shared {
    /// This node's history store.
    pub store: Arc<dyn EventStore>,
    /// Indexed records, in offset order, for live tails.
    pub committed: broadcast::Sender<Arc<Record>>,
    /// Highest stream sequence indexed into the store; appends wait on it.
    pub watermark: watch::Sender<u64>,
    /// Held while advancing the watermark and broadcasting, and while a tail
    /// subscribes, so a new tail receives exactly the records above the
    /// watermark it saw.
    pub advance: Mutex<()>,
    /// Failure being retried, for readiness checks.
    pub health: Mutex<Health>,
    /// Cancelled when the log closes; stops the indexer and ends tails.
    pub shutdown: CancellationToken,
}

/// The indexer's current failure, if any.
#[derive(Debug, Default)]
pub(super) struct Health {
    pub error: Option<String>,
    pub failing_since: Option<Instant>,
}

impl Shared {
    /// The highest indexed sequence.
    pub fn watermark(&self) -> u64 {
        *self.watermark.borrow()
    }

    fn fail(&self, error: String) {
        let mut h = self.health.lock().expect("health lock poisoned");
        h.failing_since.get_or_insert_with(Instant::now);
        h.error = Some(error);
    }

    fn recover(&self) {
        let mut h = self.health.lock().expect("health lock poisoned");
        if h.error.take().is_some() {
            h.failing_since = None;
            info!(watermark = self.watermark(), "jetstream indexer recovered");
        }
    }

    /// Publishes an indexed batch: the watermark first, then the records.
    fn advance_to(&self, highest: u64, records: Vec<Arc<Record>>) {
        let _guard = self.advance.lock().expect("advance lock poisoned");
        self.watermark.send_replace(highest);
        for r in records {
            // No receiver just means no tail is open yet.
            let _ = self.committed.send(r);
        }
    }
}

/// Exponential retry delay.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(BACKOFF_MIN)
    }

    fn reset(&mut self) {
        self.0 = BACKOFF_MIN;
    }

    /// Sleeps the current delay and doubles it; false when shut down meanwhile.
    async fn sleep(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// Why consuming stopped.
enum Ended {
    Shutdown,
    Consumer(String),
    /// The client reconnected: the server may have lost the ephemeral
    /// consumer, so start a new one now rather than wait for it to time out.
    Reconnected,
}

/// Runs the indexer until shutdown; `reconnected` changes at each NATS reconnect.
pub(super) async fn run(
    shared: Arc<Shared>,
    stream: jetstream::stream::Stream,
    prefix: String,
    batch_max: usize,
    mut reconnected: watch::Receiver<u64>,
) {
    let batch_max = batch_max.max(1);
    let mut backoff = Backoff::new();
    info!(watermark = shared.watermark(), "jetstream indexer started");
    loop {
        if shared.shutdown.is_cancelled() {
            break;
        }
        let from = shared.watermark() + 1;
        let opened = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            opened = open(&stream, &prefix, from) => opened,
        };
        let mut messages = match opened {
            Ok(m) => m,
            Err(e) => {
                warn!(from, error = %e, "jetstream indexer cannot open its consumer; retrying");
                shared.fail(format!("consumer: {e}"));
                if !backoff.sleep(&shared.shutdown).await {
                    break;
                }
                continue;
            }
        };
        debug!(from, "jetstream indexer consumer open");
        shared.recover();
        let ended = consume(
            &shared,
            &mut messages,
            &prefix,
            batch_max,
            &mut backoff,
            &mut reconnected,
        )
        .await;
        match ended {
            Ended::Shutdown => break,
            Ended::Reconnected => {
                info!(
                    watermark = shared.watermark(),
                    "reconnected to NATS; reopening the indexer consumer"
                );
            }
            Ended::Consumer(e) => {
                warn!(watermark = shared.watermark(), error = %e, "jetstream indexer consumer failed; recreating");
                shared.fail(format!("consumer: {e}"));
                if !backoff.sleep(&shared.shutdown).await {
                    break;
                }
            }
        }
    }
    info!(watermark = shared.watermark(), "jetstream indexer stopped");
}

/// An ordered consumer over every subject of the log, from `from`.
async fn open(
    stream: &jetstream::stream::Stream,
    prefix: &str,
    from: u64,
) -> Result<pull::Ordered, async_nats::Error> {
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: all_filter(prefix),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
}

/// Reads batches until the consumer fails or the log shuts down.
async fn consume(
    shared: &Shared,
    messages: &mut pull::Ordered,
    prefix: &str,
    batch_max: usize,
    backoff: &mut Backoff,
    reconnected: &mut watch::Receiver<u64>,
) -> Ended {
    loop {
        let first = tokio::select! {
            _ = shared.shutdown.cancelled() => return Ended::Shutdown,
            Ok(()) = reconnected.changed() => return Ended::Reconnected,
            m = messages.next() => m,
        };
        let mut batch = match first {
            Some(Ok(m)) => vec![m],
            Some(Err(e)) => return Ended::Consumer(e.to_string()),
            None => return Ended::Consumer("consumer stream ended".into()),
        };
        // Take what is already here, so one insert covers a burst.
        let mut broken = None;
        while batch.len() < batch_max {
            match messages.next().now_or_never() {
                Some(Some(Ok(m))) => batch.push(m),
                Some(Some(Err(e))) => {
                    broken = Some(e.to_string());
                    break;
                }
                Some(None) => {
                    broken = Some("consumer stream ended".into());
                    break;
                }
                None => break,
            }
        }
        let (records, highest) = parse_batch(&batch, prefix, shared.watermark());
        if highest > 0 {
            if !insert(shared, &records, backoff).await {
                return Ended::Shutdown;
            }
            debug!(highest, records = records.len(), "jetstream batch indexed");
            shared.advance_to(highest, records);
            shared.recover();
            backoff.reset();
        }
        if let Some(e) = broken {
            return Ended::Consumer(e);
        }
    }
}

/// Inserts a batch, retrying with backoff until it succeeds; false on shutdown.
async fn insert(shared: &Shared, records: &[Arc<Record>], backoff: &mut Backoff) -> bool {
    if records.is_empty() {
        return true;
    }
    loop {
        match shared.store.insert_records(records).await {
            Ok(()) => return true,
            Err(e) => {
                warn!(error = %e, first = records[0].offset(), "indexing into the store failed; retrying the batch");
                shared.fail(format!("store: {e}"));
                if !backoff.sleep(&shared.shutdown).await {
                    return false;
                }
            }
        }
    }
}

/// Parses messages above `watermark` into records; returns them and the
/// highest sequence seen (0 when every message was at or below the watermark).
fn parse_batch(
    batch: &[jetstream::Message],
    prefix: &str,
    watermark: u64,
) -> (Vec<Arc<Record>>, u64) {
    let mut records = Vec::with_capacity(batch.len());
    let mut highest = 0;
    for m in batch {
        let seq = match m.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => {
                warn!(subject = %m.subject, error = %e, "jetstream message without delivery info; skipped");
                continue;
            }
        };
        let expected = watermark.max(highest) + 1;
        if seq < expected {
            // Redelivered after a consumer was recreated: already indexed.
            continue;
        }
        if seq > expected {
            warn!(
                from = expected,
                to = seq - 1,
                "jetstream sequences missing (removed by retention?)"
            );
        }
        highest = seq;
        match parse_message(prefix, &m.subject, seq, &m.payload) {
            Ok(r) => records.push(Arc::new(r)),
            Err(e) => {
                warn!(seq, subject = %m.subject, error = %e, "unparseable jetstream message; skipped")
            }
        }
    }
    (records, highest)
}

/// Builds a record from a stored message: tenant from the subject, event from
/// the payload, offset = stream sequence.
pub(super) fn parse_message(
    prefix: &str,
    subject: &str,
    seq: u64,
    payload: &[u8],
) -> Result<Record, String> {
    let parts = parse_subject(prefix, subject).ok_or("not a streambus subject")?;
    let body = std::str::from_utf8(payload).map_err(|e| e.to_string())?;
    Record::from_body(&parts.tenant, seq, body).map_err(|e| e.to_string())
}
