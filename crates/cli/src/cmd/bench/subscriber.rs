//! Bench receivers: subscribing WebSockets and SSE responses, and the per-receiver
//! [`Tally`] of what arrived.
//!
//! The receive path is the load generator's hot loop, so it parses as little as
//! possible: an `EVENT_BROADCAST` frame is recognised by its fixed prefix and
//! only `data.s` (the publisher's sequence number) and `data.t` (its send time,
//! µs since the epoch) are scanned out of the bytes. Counters written only by
//! their own task, a bitset of sequence numbers, and latency samples merged into
//! the shared histogram in blocks keep shared-memory traffic low.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use streambus_core::wire::ServerMessage;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::stats::Histogram;
use super::{Target, now_us};
use crate::cmd::client::{EVENT_FRAME_PREFIX, problem_error, ws_request};

/// A bench WebSocket (plain TCP: bench targets loopback only).
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Latency samples a receiver buffers before merging them into the histogram.
const SAMPLE_BLOCK: usize = 256;

/// A client WebSocket configuration with a small read buffer: thousands of
/// connections with tungstenite's default 128 KiB each would dwarf the server.
pub(crate) fn ws_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(read_buffer)
}

/// Opens a WebSocket to `target`, subscribes to `stream`, and returns once the
/// server answered `SUBSCRIBED`.
///
/// # Errors
/// Connection, handshake (with the HTTP status) or subscription failures.
pub(crate) async fn open_ws(
    target: &Target,
    token: Option<&str>,
    stream: &str,
    config: WebSocketConfig,
) -> Result<Ws> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("cannot connect to {}", target.addr))?;
    tcp.set_nodelay(true).context("cannot set TCP_NODELAY")?;
    let request = ws_request(&target.base, token)?;
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(resp) => anyhow!("WebSocket refused: {}", resp.status()),
            e => anyhow!("WebSocket handshake failed: {e}"),
        })?;
    let frame = serde_json::json!({"type": "SUBSCRIBE", "streams": [stream]}).to_string();
    ws.send(Message::text(frame))
        .await
        .map_err(|e| anyhow!("cannot send SUBSCRIBE: {e}"))?;
    loop {
        let text = match ws.next().await {
            None => bail!("the server closed the connection before SUBSCRIBED"),
            Some(Err(e)) => return Err(anyhow!("connection lost before SUBSCRIBED: {e}")),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(f))) => bail!("closed before SUBSCRIBED: {f:?}"),
            Some(Ok(_)) => continue,
        };
        match serde_json::from_str::<ServerMessage>(text.as_str()) {
            Ok(ServerMessage::Subscribed { .. }) => return Ok(ws),
            Ok(ServerMessage::Error { code, message, .. }) => {
                bail!("SUBSCRIBE refused: {code}: {message}")
            }
            _ => {}
        }
    }
}

/// The event JSON inside a WebSocket text frame, if it is an `EVENT_BROADCAST`.
pub(crate) fn ws_event(frame: &[u8]) -> Option<&[u8]> {
    frame.strip_prefix(EVENT_FRAME_PREFIX.as_bytes())
}

/// `(data.s, data.t)` of a bench event, scanned without parsing the JSON.
pub(crate) fn scan_delivery(event: &[u8]) -> Option<(u64, u64)> {
    let data = &event[find(event, b"\"data\":")?..];
    Some((
        number_after(data, b"\"s\":")?,
        number_after(data, b"\"t\":")?,
    ))
}

/// The index just past the first `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + needle.len())
}

fn number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    let rest = &hay[find(hay, key)?..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
    let digits = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    if digits == 0 || digits > 19 {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Splits an SSE body into lines across chunk boundaries and hands over the
/// payload of each `data:` line (comments, `id:` and blank lines are skipped).
#[derive(Debug, Default)]
pub(crate) struct SseLines {
    pending: Vec<u8>,
}

impl SseLines {
    /// Feeds one chunk of the body.
    pub(crate) fn feed(&mut self, chunk: &[u8], mut on_data: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(len) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[start..start + len];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(data) = line.strip_prefix(b"data:") {
                on_data(data.strip_prefix(b" ").unwrap_or(data));
            }
            start += len + 1;
        }
        self.pending.drain(..start);
    }
}

/// What one receiver counted, returned when it stops.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TallyResult {
    /// Distinct events received.
    pub unique: u64,
    /// Events received again.
    pub duplicates: u64,
    /// Events received after one with a higher sequence number.
    pub out_of_order: u64,
    /// Deliveries without a readable `data.s`/`data.t`, or out of range.
    pub malformed: u64,
    /// `ERROR` frames received.
    pub errors: u64,
    /// The connection ended before the run did.
    pub disconnected: bool,
    /// When the last delivery arrived, µs since the epoch (0: none).
    pub last_rx_us: u64,
}

/// One receiver's running count of deliveries.
pub(crate) struct Tally {
    /// Distinct events so far; written only by this receiver, summed by the
    /// progress line and the drain check.
    pub unique: Arc<AtomicU64>,
    /// Sequence numbers seen, one bit each.
    seen: Vec<u64>,
    /// Sequence numbers at or above this are not ours.
    max_seq: u64,
    highest: Option<u64>,
    samples: Vec<u64>,
    hist: Arc<Mutex<Histogram>>,
    result: TallyResult,
}

impl Tally {
    /// A tally for events with sequence numbers below `max_seq`.
    pub(crate) fn new(max_seq: u64, unique: Arc<AtomicU64>, hist: Arc<Mutex<Histogram>>) -> Self {
        Self {
            unique,
            seen: Vec::new(),
            max_seq,
            highest: None,
            samples: Vec::with_capacity(SAMPLE_BLOCK),
            hist,
            result: TallyResult::default(),
        }
    }

    /// Counts one delivered event's JSON.
    pub(crate) fn on_event(&mut self, event: &[u8]) {
        let now = now_us();
        let Some((seq, sent_us)) = scan_delivery(event).filter(|(s, _)| *s < self.max_seq) else {
            self.result.malformed += 1;
            return;
        };
        self.result.last_rx_us = now;
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit != 0 {
            self.result.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        self.result.unique += 1;
        self.unique.store(self.result.unique, Ordering::Relaxed);
        match self.highest {
            Some(h) if seq < h => self.result.out_of_order += 1,
            _ => self.highest = Some(seq),
        }
        self.samples.push(now.saturating_sub(sent_us));
        if self.samples.len() >= SAMPLE_BLOCK {
            self.flush();
        }
    }

    /// Counts a WebSocket text frame.
    pub(crate) fn on_ws_frame(&mut self, frame: &[u8]) {
        match ws_event(frame) {
            Some(event) => self.on_event(event),
            None if find(frame, b"\"ERROR\"").is_some() => self.result.errors += 1,
            None => {}
        }
    }

    /// Marks the connection as ended before the run did.
    pub(crate) fn disconnected(&mut self) {
        self.result.disconnected = true;
    }

    fn flush(&mut self) {
        if self.samples.is_empty() {
            return;
        }
        // A poisoned lock only means another receiver panicked mid-merge; the
        // counts are still usable.
        let mut hist = self.hist.lock().unwrap_or_else(|e| e.into_inner());
        for &s in &self.samples {
            hist.record(s);
        }
        drop(hist);
        self.samples.clear();
    }

    /// Merges the remaining samples and returns the counts.
    pub(crate) fn finish(mut self) -> TallyResult {
        self.flush();
        self.result
    }
}

/// Receives WebSocket frames into `tally` until `stop` fires or the connection ends.
pub(crate) async fn receive_ws(
    mut ws: Ws,
    tally: &mut Tally,
    stop: &tokio_util::sync::CancellationToken,
) {
    // Registered once: a fresh `cancelled()` per frame would take the token's
    // lock for every delivery.
    let mut cancelled = std::pin::pin!(stop.cancelled());
    loop {
        tokio::select! {
            biased;
            _ = &mut cancelled => return,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => tally.on_ws_frame(text.as_bytes()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    tally.disconnected();
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Opens an SSE subscription to `stream` on `target`; it is live once the
/// response headers arrive.
///
/// # Errors
/// The request fails or the server answers other than 200.
pub(crate) async fn open_sse(
    client: &reqwest::Client,
    target: &Target,
    stream: &str,
) -> Result<reqwest::Response> {
    let url = format!("{}/api/v1/events/stream/{stream}", target.base);
    let resp = client
        .get(&url)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !resp.status().is_success() {
        return Err(problem_error(resp, "SSE subscription refused").await);
    }
    Ok(resp)
}

/// Receives an SSE body into `tally` until `stop` fires or the body ends.
pub(crate) async fn receive_sse(
    mut resp: reqwest::Response,
    tally: &mut Tally,
    stop: &tokio_util::sync::CancellationToken,
) {
    let mut lines = SseLines::default();
    let mut cancelled = std::pin::pin!(stop.cancelled());
    loop {
        tokio::select! {
            biased;
            _ = &mut cancelled => return,
            chunk = resp.chunk() => match chunk {
                Ok(Some(chunk)) => lines.feed(&chunk, |data| tally.on_event(data)),
                Ok(None) | Err(_) => {
                    tally.disconnected();
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &[u8] = br#"{"offset":7,"id":"evt_1","stream_id":"bench-fanout-1","type":"bench.fanout","class":"data","source":"bench","message":"","data":{"p":"xxxx","s":12,"t":1700000000123456},"metadata":{"priority":"normal"},"timestamp":1700000000,"time":"2023-11-14T22:13:20.123Z"}"#;

    #[test]
    fn scans_sequence_and_send_time() {
        assert_eq!(scan_delivery(EVENT), Some((12, 1_700_000_000_123_456)));
        // The server writes compact JSON; a space before the colon is not expected.
        assert_eq!(scan_delivery(br#"{"data":{"s": 3, "t" : 4}}"#), None);
        assert_eq!(scan_delivery(br#"{"data":{"s": 3,"t": 4}}"#), Some((3, 4)));
        assert_eq!(scan_delivery(br#"{"type":"x","data":{}}"#), None);
        assert_eq!(scan_delivery(br#"{"data":{"s":"3","t":4}}"#), None);
        let mut frame = EVENT_FRAME_PREFIX.as_bytes().to_vec();
        frame.extend_from_slice(EVENT);
        frame.push(b'}');
        assert_eq!(
            ws_event(&frame).and_then(scan_delivery),
            Some((12, 1_700_000_000_123_456))
        );
        assert_eq!(ws_event(br#"{"type":"PONG","timestamp":1}"#), None);
    }

    #[test]
    fn sse_lines_survive_chunk_boundaries() {
        let body = b": heartbeat\n\nid: 7\ndata: {\"a\":1}\n\nid: 8\r\ndata:{\"a\":2}\r\n\r\n";
        for split in 0..body.len() {
            let mut lines = SseLines::default();
            let mut got = Vec::new();
            lines.feed(&body[..split], |d| got.push(d.to_vec()));
            lines.feed(&body[split..], |d| got.push(d.to_vec()));
            assert_eq!(
                got,
                [b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()],
                "split at {split}"
            );
        }
    }

    #[test]
    fn tally_counts_duplicates_order_and_junk() {
        let hist = Arc::new(Mutex::new(Histogram::default()));
        let unique = Arc::new(AtomicU64::new(0));
        let mut t = Tally::new(100, unique.clone(), hist.clone());
        let ev = |s: u64| format!(r#"{{"data":{{"s":{s},"t":1}}}}"#);
        for s in [0, 1, 3, 2, 3, 99, 100] {
            t.on_event(ev(s).as_bytes());
        }
        t.on_ws_frame(br#"{"type":"ERROR","code":"x","message":"y"}"#);
        assert_eq!(unique.load(Ordering::Relaxed), 5);
        let r = t.finish();
        assert_eq!(
            (
                r.unique,
                r.duplicates,
                r.out_of_order,
                r.malformed,
                r.errors
            ),
            (5, 1, 1, 1, 1)
        );
        assert_eq!(hist.lock().unwrap().summary_ms()["count"], 5);
    }
}
