//! Live state on the WebSocket (SPEC §3.3): `STATE_SET`/`STATE_PATCH`
//! frames, answered with `STATE_OK`, and `SUBSCRIBE` with `snapshot: true`.
//!
//! A snapshot is read *after* the subscription went live at log head H, so
//! it holds every change whose event is at or below H (a change's row is
//! written before its event is published). The events after H still come;
//! those announcing a version the connection already holds — in the
//! snapshot, or delivered before — are dropped by [`Versions::admit`]. So
//! the client gets the state, then every later change once, with no gap.
//!
//! Which streams: each literal stream of the filter (a frame even when it
//! has no state), and for stream globs — or no `streams`, i.e. every stream
//! — each known stream of the tenant they match that has state.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, json};
use streambus_core::state::{self, StateChange, StateOutcome, StateWrite};
use streambus_core::wire::ServerMessage;
use streambus_core::{Event, Filter};

use super::write_state;
use crate::api::error::ApiError;
use crate::state::AppState;

/// The highest version of each (stream, key) this connection holds: from
/// its snapshot, then from each `state.changed` event delivered.
#[derive(Debug, Default)]
pub struct Versions(HashMap<String, HashMap<String, u64>>);

impl Versions {
    /// Whether to deliver `event`: false for a `state.changed` event whose
    /// version the connection already holds (it is in the snapshot, or was
    /// delivered); every other event passes. Records what passes.
    pub fn admit(&mut self, event: &Event) -> bool {
        let Some((key, version)) = state::announced_version(event) else {
            return true;
        };
        let keys = self.0.entry(event.stream_id.clone()).or_default();
        match keys.get_mut(key) {
            Some(held) if *held >= version => false,
            Some(held) => {
                *held = version;
                true
            }
            None => {
                keys.insert(key.to_owned(), version);
                true
            }
        }
    }
}

/// The `STATE_SNAPSHOT` frames for a subscription with `filter` that went
/// live at `head`, and the versions they hold.
///
/// # Errors
/// The store's failure.
pub async fn snapshot(
    state: &AppState,
    tenant: &str,
    filter: &Filter,
    head: u64,
) -> Result<(Vec<ServerMessage>, Versions), ApiError> {
    let literal: BTreeSet<String> = filter
        .streams
        .iter()
        .filter(|g| g.is_literal())
        .map(|g| g.as_str().to_owned())
        .collect();
    let mut streams: BTreeSet<(String, bool)> = literal.iter().map(|s| (s.clone(), true)).collect();
    let globs = filter.streams.is_empty() || filter.streams.iter().any(|g| !g.is_literal());
    if globs {
        for info in state.store.list_streams(tenant).await? {
            if !literal.contains(&info.name) && filter.matches_stream(&info.name) {
                streams.insert((info.name, false));
            }
        }
    }
    let mut frames = Vec::new();
    let mut versions = Versions::default();
    for (stream, always) in streams {
        let docs = state.store.state_list(tenant, &stream).await?;
        if docs.is_empty() && !always {
            continue;
        }
        let held = versions.0.entry(stream.clone()).or_default();
        let mut data = Map::new();
        for doc in docs {
            held.insert(doc.key.clone(), doc.version);
            data.insert(doc.key, json!({"value": doc.value, "version": doc.version}));
        }
        frames.push(ServerMessage::StateSnapshot {
            stream,
            offset: head,
            data,
        });
    }
    Ok((frames, versions))
}

/// Applies one `STATE_SET`/`STATE_PATCH` whose permission, rate and size
/// were checked; resolves to its `STATE_OK`, or the error to send.
pub async fn apply_frame(
    state: AppState,
    tenant: String,
    stream: String,
    key: String,
    change: StateChange,
    if_version: Option<u64>,
    reference: Option<String>,
) -> Result<ServerMessage, (ApiError, Option<String>)> {
    let write = StateWrite {
        change,
        expected_version: if_version,
        max_value_bytes: state.limits.max_event_bytes,
    };
    let (version, changed) = match write_state(&state, &tenant, &stream, &key, &write).await {
        Ok(StateOutcome::Changed { doc, .. }) => (doc.version, true),
        Ok(StateOutcome::Unchanged(doc)) => (doc.version, false),
        Ok(other) => {
            let e = ApiError::Internal(format!("unexpected state outcome {other:?}").into());
            return Err((e, reference));
        }
        Err(e) => return Err((e, reference)),
    };
    Ok(ServerMessage::StateOk {
        stream,
        key,
        version,
        changed,
        reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(stream: &str, key: &str, version: u64) -> Event {
        let mut e = state::StateNotice {
            key: key.into(),
            version,
            patch: json!({}),
            value: Some(json!({})),
            at_ms: 0,
        }
        .event(stream);
        e.offset = version;
        e
    }

    #[test]
    fn versions_held_are_not_delivered_again() {
        let mut v = Versions::default();
        v.0.entry("s".into()).or_default().insert("k".into(), 3);
        assert!(!v.admit(&changed("s", "k", 2)));
        assert!(!v.admit(&changed("s", "k", 3)), "in the snapshot");
        assert!(v.admit(&changed("s", "k", 4)));
        assert!(!v.admit(&changed("s", "k", 4)), "delivered once");
        assert!(
            v.admit(&changed("s", "other", 1)),
            "a key not in the snapshot"
        );
        assert!(v.admit(&changed("t", "k", 1)), "another stream");
        let mut plain = changed("s", "k", 1);
        plain.event_type = "goal".into();
        assert!(v.admit(&plain), "other events pass");
    }
}
