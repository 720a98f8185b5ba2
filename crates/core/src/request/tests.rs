use serde_json::{Value, json};

use super::*;
use crate::validate::{PublishContext, event_from_json};

const T0: i64 = 1_700_000_000_000;
const NOW: i64 = T0 + 1_000_000;
const DEFAULT: u64 = 30_000;

/// An event from producer JSON at `T0 + at` ms, with offset `offset`.
fn event(offset: u64, at: i64, mut v: Value) -> Event {
    v["time"] = json!(rfc3339_ms(T0 + at));
    let mut e = event_from_json(v, &PublishContext::default())
        .expect("valid event")
        .event;
    e.offset = offset;
    e
}

fn requested(offset: u64, id: &str) -> Event {
    event(
        offset,
        0,
        json!({"id": id, "type": "campaign:update:v1:requested", "stream_id": "ops"}),
    )
}

fn report(offset: u64, at: i64, step: &str, id: &str, data: Value) -> Event {
    event(
        offset,
        at,
        json!({"type": format!("campaign:update:v1:{step}"), "stream_id": "ops",
               "data": data, "metadata": {"correlation_id": id}}),
    )
}

#[test]
fn types_split_into_prefix_and_step() {
    let cases: &[(&str, Option<(&str, Step)>)] = &[
        (
            "campaign:update:v1:requested",
            Some(("campaign:update:v1", Step::Requested)),
        ),
        (
            "media:stream_rooms:v1:heartbeat",
            Some(("media:stream_rooms:v1", Step::Heartbeat)),
        ),
        ("a:success", Some(("a", Step::Success))),
        ("a:b:failed", Some(("a:b", Step::Failed))),
        (":requested", None),
        ("requested", None),
        ("campaign:update:v1:stream", None),
        ("campaign:update:v1:Requested", None),
        ("high_score", None),
    ];
    for (t, want) in cases {
        assert_eq!(parse_type(t), *want, "{t}");
    }
    assert_eq!(Step::parse_report("requested"), None);
    assert_eq!(Step::parse_report("progress"), Some(Step::Progress));
    assert_eq!(step_type("a:b:v1", Step::Started), "a:b:v1:started");
}

#[test]
fn the_happy_path_keeps_progress_and_result() {
    let mut t = Table::new(10);
    let c = t.fold(&requested(1, "r1"), DEFAULT, NOW).expect("opened");
    assert_eq!((c.before, c.after), (None, State::Requested));
    assert_eq!(c.deadline_ms, Some(T0 + 30_000));

    let c = t
        .fold(&report(2, 100, "started", "r1", json!({})), DEFAULT, NOW)
        .expect("started");
    assert_eq!(
        (c.before, c.after),
        (Some(State::Requested), State::Running)
    );
    assert_eq!(c.deadline_ms, Some(T0 + 30_100));
    let progress = json!({"percent": 40, "message": "halfway"});
    t.fold(&report(3, 200, "progress", "r1", progress), DEFAULT, NOW)
        .expect("progress");
    // A progress with only a message, or a bad percent, keeps the percent.
    let more = json!({"percent": "lots", "message": "still going"});
    t.fold(&report(3, 200, "progress", "r1", more), DEFAULT, NOW);
    let r = t.get("r1").expect("kept");
    assert_eq!(r.state, State::Running);
    let p = r.progress.as_ref().expect("progress");
    assert_eq!(
        (p.percent, p.message.as_deref()),
        (Some(40.0), Some("still going"))
    );
    assert_eq!((r.started_ms, r.updated_ms), (Some(T0 + 100), T0 + 200));

    let c = t
        .fold(
            &report(4, 300, "success", "r1", json!({"rows": 3})),
            DEFAULT,
            NOW,
        )
        .expect("success");
    assert_eq!((c.after, c.deadline_ms), (State::Succeeded, None));
    let r = t.get("r1").expect("kept");
    assert_eq!(r.result, Some(json!({"rows": 3})));
    assert_eq!((r.finished_ms, r.reports), (Some(T0 + 300), 4));
    let v = r.view();
    assert_eq!(v["state"], "succeeded");
    assert_eq!(v["deadline"], Value::Null);
    assert_eq!(v["progress"]["percent"], 40.0);
    assert_eq!(v["last_report"], "success");

    // Terminal: later reports change nothing.
    for step in ["heartbeat", "failed", "progress", "started"] {
        assert_eq!(
            t.fold(&report(5, 400, step, "r1", json!({})), DEFAULT, NOW),
            None
        );
    }
    assert_eq!(t.get("r1").expect("kept").state, State::Succeeded);
}

#[test]
fn heartbeats_move_the_deadline_and_timeouts_can_be_chosen() {
    let mut t = Table::new(10);
    let mut e = requested(1, "r1");
    e.metadata.extra.insert(TIMEOUT_FIELD.into(), json!(500));
    t.fold(&e, DEFAULT, NOW);
    assert_eq!(t.get("r1").expect("r1").deadline_ms(), Some(T0 + 500));
    let c = t
        .fold(&report(2, 400, "heartbeat", "r1", json!({})), DEFAULT, NOW)
        .expect("heartbeat");
    assert_eq!(c.deadline_ms, Some(T0 + 900));
    // A report may change the timeout from then on (`data`, or metadata).
    let c = t
        .fold(
            &report(3, 500, "heartbeat", "r1", json!({TIMEOUT_FIELD: 2000})),
            DEFAULT,
            NOW,
        )
        .expect("heartbeat");
    assert_eq!(c.deadline_ms, Some(T0 + 2500));
    // Out-of-range values are ignored or cut.
    let c = t
        .fold(
            &report(4, 600, "heartbeat", "r1", json!({TIMEOUT_FIELD: 0})),
            DEFAULT,
            NOW,
        )
        .expect("heartbeat");
    assert_eq!(c.deadline_ms, Some(T0 + 2600));
    let c = t
        .fold(
            &report(5, 600, "heartbeat", "r1", json!({TIMEOUT_FIELD: u64::MAX})),
            DEFAULT,
            NOW,
        )
        .expect("heartbeat");
    assert_eq!(c.deadline_ms, Some(T0 + 600 + MAX_TIMEOUT_MS as i64));
    // A report dated earlier than the last does not move the clock back,
    // one dated ahead of the clock counts as now.
    t.fold(
        &report(6, 100, "heartbeat", "r1", json!({TIMEOUT_FIELD: 1000})),
        DEFAULT,
        NOW,
    );
    assert_eq!(t.get("r1").expect("r1").updated_ms, T0 + 600);
    t.fold(
        &report(7, 5_000_000, "heartbeat", "r1", json!({})),
        DEFAULT,
        NOW,
    );
    assert_eq!(t.get("r1").expect("r1").deadline_ms(), Some(NOW + 1000));
}

#[test]
fn a_request_held_until_later_starts_its_clock_when_due() {
    let mut e = requested(1, "r1");
    e.scheduled_at = Some(rfc3339_ms(T0 + 10_000));
    let r = Request::from_event(&e, DEFAULT, NOW).expect("request");
    assert_eq!(r.requested_ms, T0 + 10_000);
}

#[test]
fn reports_name_their_request_by_data_or_correlation_id() {
    let mut t = Table::new(10);
    t.fold(&requested(1, "r1"), DEFAULT, NOW);
    t.fold(&requested(2, "r2"), DEFAULT, NOW);
    // `data.request_id` wins over a correlation id used for tracing.
    let mut e = report(3, 10, "started", "trace-7", json!({"request_id": "r2"}));
    assert_eq!(t.fold(&e, DEFAULT, NOW).expect("r2").id, "r2");
    e.data = json!({"request_id": "nobody"});
    e.metadata.correlation_id = Some("r1".into());
    assert_eq!(t.fold(&e, DEFAULT, NOW).expect("r1").id, "r1");
    // Another prefix, another stream, an unknown id: not a report on it.
    let other = event(
        4,
        20,
        json!({"type": "campaign:list:v1:success", "stream_id": "ops",
               "metadata": {"correlation_id": "r1"}}),
    );
    assert_eq!(t.fold(&other, DEFAULT, NOW), None);
    let mut elsewhere = report(5, 20, "success", "r1", json!({}));
    elsewhere.stream_id = "other".into();
    assert_eq!(t.fold(&elsewhere, DEFAULT, NOW), None);
    assert_eq!(
        t.fold(&report(6, 20, "success", "r9", json!({})), DEFAULT, NOW),
        None
    );
    assert_eq!(t.get("r1").expect("r1").state, State::Running);
    // A repeated `:requested` id does not reopen anything.
    assert_eq!(t.fold(&requested(7, "r1"), DEFAULT, NOW), None);
}

#[test]
fn any_report_starts_a_request_and_a_failure_keeps_its_error() {
    let mut t = Table::new(10);
    t.fold(&requested(1, "r1"), DEFAULT, NOW);
    let c = t
        .fold(
            &report(2, 50, "failed", "r1", json!({"reason": "boom"})),
            DEFAULT,
            NOW,
        )
        .expect("failed");
    assert_eq!((c.before, c.after), (Some(State::Requested), State::Failed));
    let r = t.get("r1").expect("r1");
    assert_eq!(
        (r.started_ms, r.finished_ms),
        (Some(T0 + 50), Some(T0 + 50))
    );
    assert_eq!(r.error, Some(json!({"reason": "boom"})));
}

#[test]
fn finished_requests_are_bounded_and_open_ones_kept() {
    let mut t = Table::new(2);
    t.fold(&requested(1, "open"), DEFAULT, NOW);
    for i in 0..5u64 {
        let id = format!("r{i}");
        t.fold(&requested(10 + i * 2, &id), DEFAULT, NOW);
        t.fold(
            &report(11 + i * 2, 1, "success", &id, json!({})),
            DEFAULT,
            NOW,
        );
    }
    let kept: Vec<&str> = t.newest_first().map(|r| r.id.as_str()).collect();
    assert_eq!(kept, ["r4", "r3", "open"]);
    assert_eq!(t.len(), 3);
    // A report on a forgotten request is ignored.
    assert_eq!(
        t.fold(&report(30, 2, "failed", "r0", json!({})), DEFAULT, NOW),
        None
    );
}

#[test]
fn the_timeout_failure_is_deterministic_and_names_its_request() {
    let mut t = Table::new(10);
    t.fold(&requested(1, "r1"), DEFAULT, NOW);
    let r = t.get("r1").expect("r1").clone();
    let a = r.timeout_event(NOW);
    let b = r.timeout_event(NOW + 5);
    assert_eq!(a.id, b.id);
    assert_eq!(a.id, "req_timeout:r1");
    assert_eq!(a.event_type, "campaign:update:v1:failed");
    assert_eq!(a.stream_id, "ops");
    assert_eq!(a.data["request_id"], "r1");
    assert_eq!(a.data["reason"], "timeout");
    assert_eq!(a.data["detail"], "not started within 30000 ms");
    assert_eq!(a.metadata.correlation_id.as_deref(), Some("r1"));
    // It comes back through the log as the request's failure.
    let mut stored = a;
    stored.offset = 2;
    let c = t.fold(&stored, DEFAULT, NOW).expect("failed");
    assert_eq!(c.after, State::Failed);
    assert_eq!(
        t.get("r1").expect("r1").error.as_ref().expect("error")["reason"],
        "timeout"
    );

    let long = "x".repeat(crate::name::MAX_ID_LEN);
    let id = timeout_id(&long);
    assert!(crate::name::is_event_id(&id), "{id}");
    assert_eq!(id, timeout_id(&long));
    assert_ne!(id, timeout_id(&"y".repeat(crate::name::MAX_ID_LEN)));
    assert!(crate::name::is_event_id(&timeout_id("r1")));
}

#[test]
fn running_requests_time_out_for_lack_of_heartbeats() {
    let mut t = Table::new(10);
    t.fold(&requested(1, "r1"), DEFAULT, NOW);
    t.fold(&report(2, 1, "started", "r1", json!({})), DEFAULT, NOW);
    let e = t.get("r1").expect("r1").timeout_event(NOW);
    assert_eq!(e.data["detail"], "no heartbeat for 30000 ms");
}

#[test]
fn report_data_from_rest_is_checked() {
    let ok = [
        json!({}),
        json!({"percent": 0, "message": "x"}),
        json!({"percent": 99.5}),
        json!({TIMEOUT_FIELD: 1000}),
        json!({"request_id": "r1", "anything": [1, 2]}),
    ];
    for d in ok {
        let m = d.as_object().expect("object");
        assert_eq!(check_report_data("r1", m), Ok(()), "{d}");
    }
    let bad = [
        (json!({"percent": 101}), "data.percent"),
        (json!({"percent": "40"}), "data.percent"),
        (json!({"message": 4}), "data.message"),
        (json!({TIMEOUT_FIELD: 0}), "data.heartbeat_timeout_ms"),
        (json!({TIMEOUT_FIELD: -5}), "data.heartbeat_timeout_ms"),
        (json!({TIMEOUT_FIELD: 1.5}), "data.heartbeat_timeout_ms"),
        (json!({"request_id": "r2"}), "data.request_id"),
    ];
    for (d, field) in bad {
        let m = d.as_object().expect("object");
        let e = check_report_data("r1", m).expect_err("refused");
        assert_eq!(e.field, field, "{d}");
    }
}

#[test]
fn states_have_wire_names() {
    for s in State::ALL {
        assert_eq!(State::parse(s.as_str()), Some(s));
    }
    assert_eq!(State::parse("done"), None);
    assert!(State::Failed.is_terminal() && !State::Running.is_terminal());
}
