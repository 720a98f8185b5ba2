//! `JetStreamLog::append`: publish, settle duplicates, wait for the indexer.
//!
//! Fails fast when NATS is disconnected or the store does not answer: a
//! publish this node's history cannot serve must not be acknowledged. Ids the
//! producer supplied are looked up in the store first; what is left is
//! published pipelined in windows on the one connection (so in order), each
//! with `Nats-Msg-Id: <tenant>:<id>`. A PubAck marked duplicate means another
//! publish of the id won the race (maybe on another node): the original is
//! fetched from the stream by its sequence and returned with `duplicate: true`.
//! Finally the call waits, bounded, until this node's indexer has stored the
//! highest sequence, so the publisher's own history read sees its events.

use std::sync::Arc;

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use streambus_core::Record;
use streambus_core::log::LogError;
use streambus_core::store::Appended;
use streambus_core::validate::NewEvent;
use tracing::{debug, warn};

use super::indexer::parse_message;
use super::subject::event_subject;
use super::{JetStreamError, JetStreamLog, PUBLISH_WINDOW, unavailable};

/// An event published and waiting for its PubAck.
struct Pending {
    slot: usize,
    event: streambus_core::Event,
    body: String,
    ack: async_nats::jetstream::context::PublishAckFuture,
}

impl JetStreamLog {
    /// See the module docs.
    pub(super) async fn append_events(
        &self,
        tenant: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, LogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_connected()?;
        let timeout = self.opts.publish_timeout;
        match tokio::time::timeout(timeout, self.shared.store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(LogError::Unavailable(Box::new(e))),
            Err(_) => {
                return Err(LogError::Unavailable(Box::new(JetStreamError::Timeout(
                    "store ping",
                ))));
            }
        }

        let mut out: Vec<Option<Appended>> = Vec::with_capacity(events.len());
        let mut to_publish = Vec::with_capacity(events.len());
        for new in events {
            if new.supplied_id
                && let Some(record) = self.shared.store.get(tenant, &new.event.id).await?
            {
                out.push(Some(Appended {
                    record,
                    duplicate: true,
                }));
                continue;
            }
            to_publish.push((out.len(), new.event));
            out.push(None);
        }

        let mut highest = 0;
        let mut to_publish = to_publish.into_iter().peekable();
        while to_publish.peek().is_some() {
            let window: Vec<_> = to_publish.by_ref().take(PUBLISH_WINDOW).collect();
            let n = u32::try_from(window.len()).unwrap_or(u32::MAX);
            let _permits = self
                .publish_slots
                .acquire_many(n)
                .await
                .map_err(|_| LogError::Closed)?;
            let mut pending = Vec::with_capacity(window.len());
            for (slot, event) in window {
                let body = event.to_body();
                let subject = event_subject(
                    &self.opts.subject_prefix,
                    tenant,
                    &event.stream_id,
                    &event.event_type,
                );
                let publish = PublishMessage::build()
                    .payload(Bytes::from(body.clone()))
                    .message_id(format!("{tenant}:{}", event.id));
                let ack = self
                    .js
                    .send_publish(subject, publish)
                    .await
                    .map_err(|e| unavailable("publishing to JetStream")(e.into()))?;
                pending.push(Pending {
                    slot,
                    event,
                    body,
                    ack,
                });
            }
            for p in pending {
                let ack = p
                    .ack
                    .await
                    .map_err(|e| unavailable("awaiting the JetStream ack")(e.into()))?;
                highest = highest.max(ack.sequence);
                let appended = if ack.duplicate {
                    debug!(id = %p.event.id, seq = ack.sequence, "publish was a duplicate");
                    Appended {
                        record: self.original(ack.sequence).await?,
                        duplicate: true,
                    }
                } else {
                    let mut event = p.event;
                    event.offset = ack.sequence;
                    Appended {
                        record: Arc::new(Record::with_body(tenant, event, &p.body)),
                        duplicate: false,
                    }
                };
                out[p.slot] = Some(appended);
            }
        }

        if highest > 0 {
            self.wait_indexed(highest).await;
        }
        out.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
            LogError::Unavailable("an append result is missing; this is a bug".into())
        })
    }

    /// The record stored at `seq` in the stream (the winner of a duplicate).
    async fn original(&self, seq: u64) -> Result<Arc<Record>, LogError> {
        let msg = self
            .stream
            .get_raw_message(seq)
            .await
            .map_err(|e| unavailable("fetching the original of a duplicate")(e.into()))?;
        parse_message(&self.opts.subject_prefix, &msg.subject, seq, &msg.payload)
            .map(Arc::new)
            .map_err(|e| LogError::Unavailable(format!("stored message {seq}: {e}").into()))
    }

    /// Waits, at most the publish timeout, until the indexer passed `seq`.
    async fn wait_indexed(&self, seq: u64) {
        let mut rx = self.shared.watermark.subscribe();
        let waited =
            tokio::time::timeout(self.opts.publish_timeout, rx.wait_for(|w| *w >= seq)).await;
        if !matches!(waited, Ok(Ok(_))) {
            warn!(
                seq,
                watermark = self.shared.watermark(),
                "appended events are durable in JetStream but not yet indexed on this node"
            );
        }
    }
}
