//! Tracked requests (SPEC §6; seed 003's `domain:action:v1:state` lifecycle),
//! as a fold over the log.
//!
//! An event whose type ends in `:requested` opens a request; its id is the
//! request id. The handler reports on it with events of the same prefix
//! (everything before the last `:`), in the same stream, naming the request
//! by `data.request_id` or `metadata.correlation_id`:
//!
//! ```text
//! requested ─→ started ─→ progress | heartbeat … ─→ success | failed
//!     └────────────(progress, heartbeat, success, failed)──┘
//! ```
//!
//! `success` and `failed` are terminal: the first terminal report in log
//! order wins and later reports are ignored. A report other than `started`
//! on a request nobody started starts it implicitly. Every report (and the
//! request itself) restarts the heartbeat clock: the request's deadline is
//! the time of its last report plus its heartbeat timeout
//! (`heartbeat_timeout_ms` in `metadata` or `data` of the request or of a
//! later report, else the configured default). Times are the events' own
//! `time` (`scheduled_at` when later), never later than the folding node's
//! clock, so a replay after a restart finds the same deadlines.
//!
//! Nothing here reads the clock or does I/O: [`Table::fold`] takes `now`,
//! and [`Request::timeout_event`] builds the `failed` event a node publishes
//! under a deterministic id ([`timeout_id`]), so that several nodes timing
//! out the same request store one event.

use serde_json::{Map, Value, json};

use crate::event::{Event, EventClass, Metadata};
use crate::time::{parse_rfc3339_ms, rfc3339_ms};
use crate::validate::ValidationError;

/// Longest heartbeat timeout a request may ask for (one day); larger values
/// are cut to it.
pub const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// The field naming a request in a report's `data`.
pub const REQUEST_ID_FIELD: &str = "request_id";

/// The field carrying a per-request heartbeat timeout.
pub const TIMEOUT_FIELD: &str = "heartbeat_timeout_ms";

/// One step of the lifecycle, named by the last segment of an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// `…:requested`: opens a request.
    Requested,
    /// `…:started`: a handler took it.
    Started,
    /// `…:progress`: `data.percent` and `data.message`.
    Progress,
    /// `…:heartbeat`: the handler is alive.
    Heartbeat,
    /// `…:success`: done; `data` is the result.
    Success,
    /// `…:failed`: given up; `data` is the error.
    Failed,
}

impl Step {
    /// Every step a handler reports (all but `requested`).
    pub const REPORTS: [Step; 5] = [
        Self::Started,
        Self::Progress,
        Self::Heartbeat,
        Self::Success,
        Self::Failed,
    ];

    /// The type suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Started => "started",
            Self::Progress => "progress",
            Self::Heartbeat => "heartbeat",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }

    /// Parses a type suffix.
    pub fn parse(s: &str) -> Option<Self> {
        std::iter::once(Self::Requested)
            .chain(Self::REPORTS)
            .find(|step| step.as_str() == s)
    }

    /// Parses the name of a report (`requested` is not one).
    pub fn parse_report(s: &str) -> Option<Self> {
        Self::parse(s).filter(|step| *step != Self::Requested)
    }

    /// True for `success` and `failed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failed)
    }
}

/// Splits an event type into its prefix and lifecycle step:
/// `campaign:update:v1:started` → (`campaign:update:v1`, [`Step::Started`]).
/// `None` for types outside the lifecycle.
pub fn parse_type(event_type: &str) -> Option<(&str, Step)> {
    let (prefix, step) = event_type.rsplit_once(':')?;
    if prefix.is_empty() {
        return None;
    }
    Some((prefix, Step::parse(step)?))
}

/// The type of `step` for requests of `prefix`.
pub fn step_type(prefix: &str, step: Step) -> String {
    format!("{prefix}:{}", step.as_str())
}

/// The deterministic id of the timeout failure of request `request_id`:
/// `req_timeout:<request id>`, or, when that would be longer than an event
/// id may be, `req_timeout:` and the FNV-1a hash of the request id.
pub fn timeout_id(request_id: &str) -> String {
    let id = format!("req_timeout:{request_id}");
    if id.len() <= crate::name::MAX_ID_LEN {
        id
    } else {
        format!(
            "req_timeout:{:016x}",
            crate::name::fnv1a(request_id.as_bytes())
        )
    }
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Published; no handler has reported yet.
    Requested,
    /// A handler reported `started`, `progress` or a heartbeat.
    Running,
    /// The handler reported `success`.
    Succeeded,
    /// The handler reported `failed`, or its heartbeats stopped.
    Failed,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 4] = [
        Self::Requested,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// True once nothing changes it any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// The last progress a handler reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The last `data.percent` that was a number from 0 to 100.
    pub percent: Option<f64>,
    /// The last `data.message` that was a string.
    pub message: Option<String>,
    /// When it was reported, ms.
    pub at_ms: i64,
}

/// One tracked request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id of the `:requested` event.
    pub id: String,
    /// The `:requested` type.
    pub event_type: String,
    /// The type without its last segment; reports share it.
    pub prefix: String,
    /// The stream of the request and of its reports.
    pub stream: String,
    /// Offset of the `:requested` event.
    pub offset: u64,
    /// Where it stands.
    pub state: State,
    /// When it was requested, ms.
    pub requested_ms: i64,
    /// When a handler first reported, ms.
    pub started_ms: Option<i64>,
    /// When it was requested or last reported on, ms: the heartbeat clock.
    pub updated_ms: i64,
    /// When it succeeded or failed, ms.
    pub finished_ms: Option<i64>,
    /// Its heartbeat timeout, ms.
    pub timeout_ms: u64,
    /// The last progress reported.
    pub progress: Option<Progress>,
    /// `data` of the `success` report.
    pub result: Option<Value>,
    /// `data` of the `failed` report.
    pub error: Option<Value>,
    /// Reports folded into it (heartbeats included).
    pub reports: u64,
    /// The last report's step.
    pub last_report: Option<Step>,
    /// True for a request in the `animated` class (its event status belongs
    /// to the overlay queues).
    pub animated: bool,
}

impl Request {
    /// The request `event` opens, or `None` when it is not a `:requested`
    /// event.
    pub fn from_event(event: &Event, default_timeout_ms: u64, now_ms: i64) -> Option<Self> {
        let (prefix, step) = parse_type(&event.event_type)?;
        if step != Step::Requested {
            return None;
        }
        let at = event_ms(event, now_ms);
        Some(Self {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            prefix: prefix.to_owned(),
            stream: event.stream_id.clone(),
            offset: event.offset,
            state: State::Requested,
            requested_ms: at,
            started_ms: None,
            updated_ms: at,
            finished_ms: None,
            timeout_ms: timeout_of(event).unwrap_or(default_timeout_ms),
            progress: None,
            result: None,
            error: None,
            reports: 0,
            last_report: None,
            animated: event.class == EventClass::Animated,
        })
    }

    /// When its heartbeats run out, ms; `None` once it finished.
    pub fn deadline_ms(&self) -> Option<i64> {
        let timeout = i64::try_from(self.timeout_ms).unwrap_or(i64::MAX);
        (!self.state.is_terminal()).then(|| self.updated_ms.saturating_add(timeout))
    }

    /// Folds one report; returns false when it changed nothing (the
    /// request had already finished).
    pub fn apply(&mut self, step: Step, event: &Event, now_ms: i64) -> bool {
        if self.state.is_terminal() || step == Step::Requested {
            return false;
        }
        let at = event_ms(event, now_ms).max(self.updated_ms);
        self.reports += 1;
        self.last_report = Some(step);
        self.updated_ms = at;
        if let Some(t) = timeout_of(event) {
            self.timeout_ms = t;
        }
        if self.started_ms.is_none() {
            self.started_ms = Some(at);
        }
        match step {
            Step::Requested => {}
            Step::Started | Step::Heartbeat => self.state = State::Running,
            Step::Progress => {
                self.state = State::Running;
                // Each field keeps its last valid value.
                let last = self.progress.take();
                let message = event.data.get("message").and_then(Value::as_str);
                self.progress = Some(Progress {
                    percent: event
                        .data
                        .get("percent")
                        .and_then(percent)
                        .or(last.as_ref().and_then(|p| p.percent)),
                    message: message.map(str::to_owned).or(last.and_then(|p| p.message)),
                    at_ms: at,
                });
            }
            Step::Success => {
                self.state = State::Succeeded;
                self.finished_ms = Some(at);
                self.result = Some(event.data.clone());
            }
            Step::Failed => {
                self.state = State::Failed;
                self.finished_ms = Some(at);
                self.error = Some(event.data.clone());
            }
        }
        true
    }

    /// The `failed` event a node publishes when the heartbeats stopped: in
    /// the request's stream, under [`timeout_id`], naming the request in
    /// `data.request_id` and `metadata.correlation_id`.
    pub fn timeout_event(&self, now_ms: i64) -> Event {
        let detail = match self.state {
            State::Requested => format!("not started within {} ms", self.timeout_ms),
            _ => format!("no heartbeat for {} ms", self.timeout_ms),
        };
        let failed = step_type(&self.prefix, Step::Failed);
        Event {
            message: format!("request {} timed out: {detail}", self.id),
            data: json!({
                REQUEST_ID_FIELD: self.id,
                "reason": "timeout",
                "detail": detail,
                TIMEOUT_FIELD: self.timeout_ms,
            }),
            metadata: Metadata {
                correlation_id: Some(self.id.clone()),
                ..Default::default()
            },
            ..Event::made(
                timeout_id(&self.id),
                &self.stream,
                failed,
                EventClass::Data,
                now_ms,
            )
        }
    }

    /// The request as the API shows it.
    pub fn view(&self) -> Value {
        let time = |ms: Option<i64>| ms.map(rfc3339_ms);
        json!({
            "id": self.id,
            "type": self.event_type,
            "prefix": self.prefix,
            "stream": self.stream,
            "offset": self.offset,
            "state": self.state.as_str(),
            "requested_at": rfc3339_ms(self.requested_ms),
            "started_at": time(self.started_ms),
            "updated_at": rfc3339_ms(self.updated_ms),
            "finished_at": time(self.finished_ms),
            "deadline": time(self.deadline_ms()),
            TIMEOUT_FIELD: self.timeout_ms,
            "progress": self.progress.as_ref().map(|p| json!({
                "percent": p.percent,
                "message": p.message,
                "at": rfc3339_ms(p.at_ms),
            })),
            "result": self.result,
            "error": self.error,
            "reports": self.reports,
            "last_report": self.last_report.map(Step::as_str),
        })
    }
}

/// The time of `event` for the heartbeat clock: its `time`, or its
/// `scheduled_at` when later (a held event is appended when due), never
/// later than `now_ms` (a report dated ahead cannot put its deadline off).
fn event_ms(event: &Event, now_ms: i64) -> i64 {
    let scheduled = event.scheduled_at.as_deref().and_then(parse_rfc3339_ms);
    event
        .time_ms()
        .max(scheduled.unwrap_or(i64::MIN))
        .min(now_ms)
}

/// A heartbeat timeout given in `metadata` or `data`: a positive integer,
/// cut to [`MAX_TIMEOUT_MS`].
fn timeout_of(event: &Event) -> Option<u64> {
    [
        event.metadata.extra.get(TIMEOUT_FIELD),
        event.data.get(TIMEOUT_FIELD),
    ]
    .into_iter()
    .flatten()
    .find_map(Value::as_u64)
    .filter(|t| *t > 0)
    .map(|t| t.min(MAX_TIMEOUT_MS))
}

fn percent(v: &Value) -> Option<f64> {
    v.as_f64().filter(|p| (0.0..=100.0).contains(p))
}

/// Checks the `data` of a report sent over REST, where bad input is refused
/// rather than ignored: `percent` a number from 0 to 100, `message` a
/// string, `heartbeat_timeout_ms` a positive integer up to
/// [`MAX_TIMEOUT_MS`], `request_id` (when given) the request's id.
///
/// # Errors
/// The offending field, as `data.<name>`.
pub fn check_report_data(
    request_id: &str,
    data: &Map<String, Value>,
) -> Result<(), ValidationError> {
    let bad =
        |field: &str, reason: &str| Err(ValidationError::new(format!("data.{field}"), reason));
    if data.get("percent").is_some_and(|p| percent(p).is_none()) {
        return bad("percent", "must be a number from 0 to 100");
    }
    if data.get("message").is_some_and(|m| !m.is_string()) {
        return bad("message", "must be a string");
    }
    let timeout = data.get(TIMEOUT_FIELD);
    if timeout.is_some_and(|t| t.as_u64().is_none_or(|t| t == 0 || t > MAX_TIMEOUT_MS)) {
        return bad(TIMEOUT_FIELD, "must be an integer from 1 to 86400000");
    }
    if data
        .get(REQUEST_ID_FIELD)
        .is_some_and(|id| id.as_str() != Some(request_id))
    {
        return bad(
            REQUEST_ID_FIELD,
            "must be the id of the request in the path",
        );
    }
    Ok(())
}

mod table;

pub use table::{Change, Table};

#[cfg(test)]
mod tests;
