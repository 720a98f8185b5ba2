//! Demo generators (seed 004 `StreamGenerator`): a task per stream that
//! publishes sample events of the seed's types through the normal publish
//! path, started, stopped, paused and resumed over the API.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use streambus_core::validate::PublishContext;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::publish::publish_one;
use crate::random::Random;
use crate::state::AppState;

/// The seed's four default streams, started by `serve --demo`.
pub const DEMO_STREAMS: [&str; 4] = ["default", "system", "user-activity", "notifications"];

/// Mean time between generated events.
const PERIOD_MS: u64 = 2000;

/// A generator's state as the streams list reports it.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct GeneratorState {
    /// A generator exists for the stream.
    pub running: bool,
    /// It is paused.
    pub paused: bool,
}

struct Handle {
    paused: Arc<AtomicBool>,
    cancel: CancellationToken,
}

/// Every generator of the node.
#[derive(Default)]
pub struct Generators {
    running: Mutex<HashMap<(String, String), Handle>>,
}

impl Generators {
    /// Starts (or restarts) the generator of `stream`.
    pub fn start(&self, state: &AppState, tenant: &str, stream: &str) {
        let paused = Arc::new(AtomicBool::new(false));
        let cancel = state.shutdown.child_token();
        let handle = Handle {
            paused: Arc::clone(&paused),
            cancel: cancel.clone(),
        };
        if let Some(old) = self
            .lock()
            .insert((tenant.to_owned(), stream.to_owned()), handle)
        {
            old.cancel.cancel();
        }
        let task = run(
            state.clone(),
            tenant.to_owned(),
            stream.to_owned(),
            paused,
            cancel,
        );
        state.tasks.spawn(task);
    }

    /// Stops and removes the generator; false when there was none.
    pub fn stop(&self, tenant: &str, stream: &str) -> bool {
        match self.lock().remove(&(tenant.to_owned(), stream.to_owned())) {
            Some(h) => {
                h.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Pauses or resumes; false when there is no generator.
    pub fn set_paused(&self, tenant: &str, stream: &str, paused: bool) -> bool {
        match self.lock().get(&(tenant.to_owned(), stream.to_owned())) {
            Some(h) => {
                h.paused.store(paused, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// The state of `stream`'s generator.
    pub fn state(&self, tenant: &str, stream: &str) -> GeneratorState {
        match self.lock().get(&(tenant.to_owned(), stream.to_owned())) {
            Some(h) => GeneratorState {
                running: true,
                paused: h.paused.load(Ordering::Relaxed),
            },
            None => GeneratorState::default(),
        }
    }

    /// Streams of `tenant` that have a generator.
    pub fn streams(&self, tenant: &str) -> Vec<String> {
        self.lock()
            .keys()
            .filter(|(t, _)| t == tenant)
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Handle>> {
        self.running.lock().expect("generator lock poisoned")
    }
}

async fn run(
    state: AppState,
    tenant: String,
    stream: String,
    paused: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let rng = Random::seeded(&stream);
    let started = json!({"type": "stream_started", "message": format!("Stream '{stream}' started"),
        "data": {"stream_id": stream}});
    emit(&state, &tenant, &stream, started).await;
    loop {
        let wait = PERIOD_MS / 2 + rng.below(PERIOD_MS);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
        if !paused.load(Ordering::Relaxed) {
            emit(&state, &tenant, &stream, sample(&stream, &rng)).await;
        }
    }
    debug!(tenant, stream, "generator stopped");
}

/// Publishes a demo event on `stream` through the normal path; a failure is
/// logged.
pub(crate) async fn emit(state: &AppState, tenant: &str, stream: &str, body: Value) {
    let ctx = PublishContext {
        stream: Some(stream),
        source: Some("generator"),
        correlation_id: None,
    };
    match crate::publish::prepare(state, tenant, body, &ctx) {
        Ok(event) => {
            if let Err(e) = publish_one(state, tenant, event).await {
                warn!(error = %e, stream, "generator could not publish");
            }
        }
        Err(e) => warn!(error = %e, stream, "generator made an invalid event"),
    }
}

/// A sample event of the kind the seed lists for each default stream.
fn sample(stream: &str, rng: &Random) -> Value {
    let user = format!("user_{}", 10_000 + rng.below(90_000));
    match stream {
        "system" => match rng.below(3) {
            0 => {
                let cpu = 70.0 + rng.below(300) as f64 / 10.0;
                json!({"type": "system_alert", "message": format!("High CPU usage detected: {cpu:.1}%"),
                    "data": {"cpu_percent": cpu, "threshold": 80}})
            }
            1 => json!({"type": "metric_update", "message": "System metrics",
                "data": {"cpu_percent": rng.below(100), "memory_percent": rng.below(100), "disk_free_gb": rng.below(500)}}),
            _ => json!({"type": "system_alert", "message": "Disk space low on /var",
                "data": {"disk_free_percent": 5 + rng.below(10), "threshold": 15}}),
        },
        "user-activity" => {
            let action = [
                "login",
                "logout",
                "profile_update",
                "permission_change",
                "content_post",
            ][rng.below(5) as usize];
            json!({"type": "user_action", "message": format!("User {action}"),
                "data": {"user_id": user, "action": action}})
        }
        "notifications" => {
            let (msg, kind) = [
                ("New message received", "push"),
                ("Scheduled reminder: stand-up in 10 minutes", "reminder"),
                ("System announcement: maintenance tonight", "announcement"),
            ][rng.below(3) as usize];
            json!({"type": "notification", "message": msg, "data": {"kind": kind, "recipient": user}})
        }
        _ => match rng.below(3) {
            0 => json!({"type": "user_action", "message": "User logged in",
                "data": {"user_id": user, "action": "login"}}),
            1 => {
                json!({"type": "notification", "message": "Welcome back!", "data": {"user_id": user}})
            }
            _ => json!({"type": "data_update", "message": "Record updated",
                "data": {"table": "orders", "row_id": rng.below(100_000)}}),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streambus_core::validate::event_from_json;

    #[test]
    fn samples_are_valid_events() {
        let rng = Random::seeded("t");
        for stream in DEMO_STREAMS.iter().chain(&["custom"]) {
            for _ in 0..20 {
                let ctx = PublishContext {
                    stream: Some(stream),
                    ..Default::default()
                };
                event_from_json(sample(stream, &rng), &ctx).expect("valid sample");
            }
        }
    }
}
