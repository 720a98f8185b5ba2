//! One attempt's HTTP request (docs/WEBHOOKS.md): a POST of the event's
//! canonical JSON, signed like inbound webhooks (`crate::ingest::signature`),
//! with the delivery id that receivers use to drop repeats. 2xx is
//! success; any other answer, a timeout or no connection is a failure,
//! described for the delivery log. Redirects are not followed: they are
//! the endpoint's answer.

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use streambus_core::store::Delivery;

use super::definition::Webhook;
use crate::ingest::signature::sign;

/// How much of a failed answer's body is kept in `last_error`, bytes.
const ERROR_BODY_BYTES: usize = 200;

/// The signature header: `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "x-streambus-signature";
/// The signed Unix-seconds timestamp.
pub const TIMESTAMP_HEADER: &str = "x-streambus-timestamp";
/// The delivery id, the same on every attempt (receivers drop repeats).
pub const DELIVERY_HEADER: &str = "x-streambus-delivery";
/// The event id.
pub const EVENT_HEADER: &str = "x-streambus-event";
/// The webhook id.
pub const WEBHOOK_HEADER: &str = "x-streambus-webhook";

/// Why an attempt failed; its text becomes `last_error`.
#[derive(Debug, thiserror::Error)]
pub(super) enum AttemptError {
    /// The endpoint answered, but not 2xx.
    #[error("HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// Its status.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// No answer within `timeout_ms`.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The request could not be made (connection refused, reset, DNS).
    #[error("request failed: {0}")]
    Request(String),
    /// The event was removed by retention before it could be delivered.
    #[error("the event is no longer stored (removed by retention)")]
    EventGone,
    /// The webhook was deleted and made again since this delivery was made.
    #[error("the webhook was re-created after this event")]
    Superseded,
}

impl AttemptError {
    /// True when trying again cannot help.
    pub(super) fn is_final(&self) -> bool {
        matches!(self, Self::EventGone | Self::Superseded)
    }

    /// The HTTP status, when the endpoint answered.
    pub(super) fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// POSTs the event, signed; `Ok` with a 2xx status.
pub(super) async fn send(
    client: &reqwest::Client,
    hook: &Webhook,
    d: &Delivery,
    body: Bytes,
    timeout_ms: u64,
) -> Result<u16, AttemptError> {
    let timestamp = (streambus_core::time::now_ms() / 1000).to_string();
    let signature = format!("sha256={}", sign(hook.secret.as_bytes(), &timestamp, &body));
    let res = client
        .post(&hook.url)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(
            USER_AGENT,
            HeaderValue::from_static(concat!("streambus/", env!("CARGO_PKG_VERSION"))),
        )
        .header(SIGNATURE_HEADER, signature)
        .header(TIMESTAMP_HEADER, timestamp)
        .header(DELIVERY_HEADER, &d.id)
        .header(EVENT_HEADER, &d.event_id)
        .header(WEBHOOK_HEADER, &hook.id)
        .body(body)
        .send()
        .await
        .map_err(|e| request_error(&e, timeout_ms))?;
    let status = res.status();
    if status.is_success() {
        return Ok(status.as_u16());
    }
    Err(AttemptError::Status {
        status: status.as_u16(),
        body: body_start(res).await,
    })
}

fn request_error(e: &reqwest::Error, timeout_ms: u64) -> AttemptError {
    if e.is_timeout() {
        return AttemptError::Timeout(timeout_ms);
    }
    AttemptError::Request(crate::error_chain(e))
}

/// The first [`ERROR_BODY_BYTES`] of a failed answer's body, as text.
async fn body_start(mut res: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_BYTES {
        match res.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(ERROR_BODY_BYTES);
    String::from_utf8_lossy(&buf)
        .trim()
        .replace('\0', "\u{FFFD}")
}
