//! The audit log's server side (issue 5 point 6): which requests are
//! recorded, how their action and target are named, and the recording.
//!
//! Every change made through the API is recorded — controls (cancel,
//! replay, queue and stream control, scheduled-event withdrawals) and catalog
//! changes (types, templates, subscriptions, keys) — with who, what, when,
//! from which address and the outcome; publishing is not. WebSocket controls
//! are recorded the same way (`api::ws`).

use std::net::SocketAddr;

use axum::http::Method;
use serde_json::Value;
use streambus_core::audit::AuditEntry;
use streambus_core::time;
use tracing::warn;

use crate::auth::{Identity, Need};
use crate::state::AppState;

/// The action and target a request is recorded under, or `None` when it is
/// not recorded (reads and publishes).
pub fn action_of(method: &Method, path: &str, need: &Need) -> Option<(String, String)> {
    let api = path
        .strip_prefix("/api/v1")
        .or_else(|| path.strip_prefix("/api"))?;
    let parts: Vec<&str> = api.trim_matches('/').split('/').collect();
    // State deletions are recorded although writing state is publishing.
    if let (&Method::DELETE, ["state", stream, key]) = (method, parts.as_slice()) {
        return Some(("state.delete".to_owned(), format!("{stream}/{key}")));
    }
    if !matches!(need, Need::Control | Need::Administer)
        || *method == Method::GET
        || *method == Method::HEAD
    {
        return None;
    }
    let verb = |m: &Method| match *m {
        Method::POST => "create",
        Method::PUT => "put",
        Method::DELETE => "delete",
        _ => "change",
    };
    let (action, target) = match parts.as_slice() {
        ["events" | "broadcast-demo", "stream", s, act] => (format!("stream.{act}"), *s),
        ["events", "scheduled", id] => ("scheduled.cancel".to_owned(), *id),
        ["events", id, act] => (format!("event.{act}"), *id),
        ["overlays", o, act] => (format!("overlay.{act}"), *o),
        ["keys", id] if *method == Method::DELETE => ("key.revoke".to_owned(), *id),
        [res] => (format!("{}.{}", singular(res), verb(method)), ""),
        [res, name] => (format!("{}.{}", singular(res), verb(method)), *name),
        _ => (format!("{} {}", method, api), ""),
    };
    Some((action, target.to_owned()))
}

fn singular(resource: &str) -> &str {
    resource.strip_suffix('s').unwrap_or(resource)
}

/// Appends one entry; a failure is logged, never returned (the change
/// itself is done).
pub async fn record(
    state: &AppState,
    who: &Identity,
    action: String,
    target: String,
    address: Option<SocketAddr>,
    outcome: u16,
    detail: Value,
) {
    let entry = AuditEntry {
        seq: 0,
        tenant: who.principal.tenant.clone(),
        at_ms: time::now_ms(),
        actor: who.principal.subject.clone(),
        role: Some(who.principal.role),
        action,
        target,
        address: address.map(|a| a.ip().to_string()),
        outcome,
        detail,
    };
    if let Err(e) = state.store.append_audit(&entry).await {
        warn!(error = %e, action = %entry.action, "audit entry not stored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_by_route() {
        let cases = [
            (
                "PUT",
                "/api/v1/events/e1/cancel",
                Need::Control,
                Some(("event.cancel", "e1")),
            ),
            (
                "POST",
                "/api/events/e1/replay",
                Need::Control,
                Some(("event.replay", "e1")),
            ),
            (
                "POST",
                "/api/v1/events/stream/news/pause",
                Need::Control,
                Some(("stream.pause", "news")),
            ),
            (
                "POST",
                "/api/v1/overlays/main/skip",
                Need::Control,
                Some(("overlay.skip", "main")),
            ),
            (
                "POST",
                "/api/v1/event-types",
                Need::Administer,
                Some(("event-type.create", "")),
            ),
            (
                "DELETE",
                "/api/v1/event-templates/hs",
                Need::Administer,
                Some(("event-template.delete", "hs")),
            ),
            (
                "PUT",
                "/api/v1/subscriptions/main",
                Need::Administer,
                Some(("subscription.put", "main")),
            ),
            (
                "DELETE",
                "/api/v1/keys/k1",
                Need::Administer,
                Some(("key.revoke", "k1")),
            ),
            (
                "DELETE",
                "/api/v1/events/scheduled/s1",
                Need::Control,
                Some(("scheduled.cancel", "s1")),
            ),
            ("POST", "/api/v1/events", Need::Publish, None),
            (
                "DELETE",
                "/api/v1/state/scores/red",
                Need::Publish,
                Some(("state.delete", "scores/red")),
            ),
            ("PUT", "/api/v1/state/scores/red", Need::Publish, None),
            ("GET", "/api/v1/overlays", Need::Control, None),
        ];
        for (m, path, need, want) in cases {
            let got = action_of(&m.parse().unwrap(), path, &need);
            assert_eq!(
                got,
                want.map(|(a, t)| (a.to_owned(), t.to_owned())),
                "{m} {path}"
            );
        }
    }
}
