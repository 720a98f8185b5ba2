//! Client plumbing shared by `publish`, `tail` and `bench`: the default server
//! URL and batch limit, the HTTP client and API URLs, JSON array bodies, RFC 9457
//! problems turned into errors, the WebSocket endpoint and handshake, slicing the
//! event out of an `EVENT_BROADCAST` frame, and making text safe for a terminal.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http;

/// Where the server listens unless told otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// Most events the server accepts in one batch (SPEC: 1000).
pub const MAX_BATCH: u64 = 1000;
/// The fixed start of every `EVENT_BROADCAST` frame the server writes
/// ([`wire::event_broadcast_frame`](streambus_core::wire::event_broadcast_frame),
/// and serde's tag-first order).
pub(crate) const EVENT_FRAME_PREFIX: &str = "{\"type\":\"EVENT_BROADCAST\",\"event\":";

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
    pub(crate) fn with_status(mut self, status: u16) -> Self {
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
        let mut value = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token contains characters not allowed in a header")?;
        value.set_sensitive(true);
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    Ok(request)
}

/// The event JSON inside an `EVENT_BROADCAST` frame, without parsing it.
pub(crate) fn event_slice(frame: &str) -> Option<&str> {
    frame.strip_prefix(EVENT_FRAME_PREFIX)?.strip_suffix('}')
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
    use streambus_core::wire;

    use super::*;

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

    #[test]
    fn ws_urls_and_requests() {
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
        assert_eq!(req.headers()[http::header::AUTHORIZATION], "Bearer t0k");
    }

    #[test]
    fn event_frames_are_sliced_without_parsing() {
        let frame = wire::event_broadcast_frame(br#"{"offset":1,"id":"x"}"#);
        let frame = String::from_utf8(frame).unwrap();
        assert_eq!(event_slice(&frame), Some(r#"{"offset":1,"id":"x"}"#));
        assert_eq!(event_slice(r#"{"type":"PONG","timestamp":1}"#), None);
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert_eq!(sanitize("plain ünïcödé"), Cow::Borrowed("plain ünïcödé"));
    }
}
