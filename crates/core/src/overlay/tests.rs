use super::*;
use crate::testsuite::new_event;
use serde_json::json;

/// Builds records with increasing offsets and times (1 s apart).
struct Log {
    offset: u64,
}

impl Log {
    fn record(&mut self, mut event: Event) -> Arc<Record> {
        self.offset += 1;
        event.offset = self.offset;
        event.time = rfc3339_ms(self.now());
        Arc::new(Record::from_event("default", event))
    }

    fn now(&self) -> i64 {
        i64::try_from(self.offset).unwrap() * 1_000
    }

    fn animated(&mut self, id: &str, priority: &str) -> Arc<Record> {
        let e = new_event(json!({"id": id, "type": "high_score", "class": "animated",
            "duration_ms": 3000, "metadata": {"priority": priority}}))
        .event;
        self.record(e)
    }

    fn op(&mut self, op: &Op) -> Arc<Record> {
        let mut e = new_event(json!({"type": op.event_type(), "class": "system"})).event;
        e.stream_id = STREAM.into();
        e.data = serde_json::to_value(op).unwrap();
        self.record(e)
    }
}

fn attach(o: &str) -> Op {
    Op::Attach {
        overlay: o.into(),
        filter: None,
    }
}

fn local(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// Folds decisions due at the log's clock until none is left; returns the
/// dispatched event ids.
fn settle(q: &mut Queues, log: &mut Log, here: &[&str]) -> Vec<String> {
    let mut started = Vec::new();
    loop {
        let (ops, _) = q.decide(log.now(), &local(here), |_| false);
        if ops.is_empty() {
            return started;
        }
        for op in ops {
            if let Op::Dispatch { event_id, .. } = &op {
                started.push(event_id.clone());
            }
            let r = log.op(&op);
            q.apply(&r);
        }
    }
}

fn end(q: &mut Queues, log: &mut Log, o: &str, id: &str, play: u32) -> Vec<Effect> {
    let r = log.op(&Op::Report {
        overlay: o.into(),
        event_id: id.into(),
        play,
        status: Report::Ended,
        reason: None,
    });
    q.apply(&r)
}

fn playing(q: &Queues, o: &str) -> Option<(String, u32)> {
    q.get(o)?
        .playing
        .as_ref()
        .map(|(i, _)| (i.record.event.id.clone(), i.play))
}

#[test]
fn plays_one_at_a_time_by_priority_then_offset() {
    let mut q = Queues::new(Settings::default());
    let mut log = Log { offset: 0 };
    q.apply(&log.op(&attach("main")));
    // Nothing starts while the overlay has no connection on this node.
    for (id, p) in [
        ("a", "low"),
        ("b", "normal"),
        ("c", "critical"),
        ("d", "normal"),
    ] {
        q.apply(&log.animated(id, p));
    }
    assert!(settle(&mut q, &mut log, &[]).is_empty());
    let mut order = Vec::new();
    for _ in 0..4 {
        order.extend(settle(&mut q, &mut log, &["main"]));
        let (id, play) = playing(&q, "main").expect("something plays");
        // No second dispatch while one plays.
        assert!(settle(&mut q, &mut log, &["main"]).is_empty());
        end(&mut q, &mut log, "main", &id, play);
    }
    assert_eq!(order, ["c", "b", "d", "a"]);
    let o = q.get("main").unwrap();
    assert_eq!(o.counts.completed, 4);
    assert_eq!(o.history.len(), 4);
    assert_eq!(q.event_status("a"), Some(Status::Completed));
}

#[test]
fn a_play_without_an_end_report_times_out_and_the_next_one_goes() {
    let mut q = Queues::new(Settings::default());
    let mut log = Log { offset: 0 };
    q.apply(&log.op(&attach("main")));
    q.apply(&log.animated("a", "normal"));
    q.apply(&log.animated("b", "normal"));
    assert_eq!(settle(&mut q, &mut log, &["main"]), ["a"]);
    // 3 s duration + 2 s grace: at +5 s it is due.
    let (ops, wake) = q.decide(log.now(), &local(&["main"]), |_| false);
    assert!(ops.is_empty());
    assert_eq!(wake, Some(log.now() + 5_000));
    log.offset += 5;
    assert_eq!(settle(&mut q, &mut log, &["main"]), ["b"]);
    let first = &q.get("main").unwrap().history[0];
    assert_eq!(first.status, Status::Completed);
    assert_eq!(first.reason.as_deref(), Some("timeout"));
    assert_eq!(q.get("main").unwrap().counts.timed_out, 1);
}

#[test]
fn cancel_stops_the_playing_item_and_removes_queued_ones() {
    let mut q = Queues::new(Settings::default());
    let mut log = Log { offset: 0 };
    q.apply(&log.op(&attach("main")));
    q.apply(&log.op(&attach("side")));
    q.apply(&log.animated("a", "normal"));
    q.apply(&log.animated("b", "normal"));
    settle(&mut q, &mut log, &["main", "side"]);
    // `a` plays on both; cancel it on `main` only.
    let fx = q.apply(&log.op(&Op::Cancel {
        event_id: "a".into(),
        overlay: Some("main".into()),
    }));
    assert!(
        fx.iter()
            .any(|f| matches!(f, Effect::Stop { overlay, event_id, .. } if overlay == "main" && event_id == "a"))
    );
    assert_eq!(playing(&q, "side"), Some(("a".into(), 0)));
    assert_eq!(settle(&mut q, &mut log, &["main", "side"]), ["b"]);
    assert_eq!(q.event_status("a"), Some(Status::Active));
    // Cancelling `b` everywhere: it plays on main and waits on side.
    q.apply(&log.op(&Op::Cancel {
        event_id: "b".into(),
        overlay: None,
    }));
    assert_eq!(playing(&q, "main"), None);
    assert!(q.get("side").unwrap().queue.is_empty());
    assert_eq!(q.event_status("b"), Some(Status::Cancelled));
    // The overlay's late report changes nothing.
    assert!(end(&mut q, &mut log, "main", "b", 0).is_empty());
}

#[test]
fn replay_queues_again_with_the_next_play_and_old_reports_are_ignored() {
    let mut q = Queues::new(Settings::default());
    let mut log = Log { offset: 0 };
    q.apply(&log.op(&attach("main")));
    let rec = log.animated("a", "normal");
    q.apply(&rec);
    settle(&mut q, &mut log, &["main"]);
    end(&mut q, &mut log, "main", "a", 0);
    q.apply(&log.op(&Op::Replay {
        event: Box::new(rec.event.clone()),
        overlay: None,
    }));
    assert_eq!(
        q.get("main").unwrap().play_of("a"),
        Some((1, Status::Pending))
    );
    // Replaying what is already queued does nothing.
    let fx = q.apply(&log.op(&Op::Replay {
        event: Box::new(rec.event.clone()),
        overlay: None,
    }));
    assert!(fx.is_empty());
    settle(&mut q, &mut log, &["main"]);
    assert_eq!(playing(&q, "main"), Some(("a".into(), 1)));
    assert!(
        end(&mut q, &mut log, "main", "a", 0).is_empty(),
        "play 0 is over"
    );
    assert!(!end(&mut q, &mut log, "main", "a", 1).is_empty());
}

#[test]
fn pause_skip_clear_expiry_gap_and_visibility() {
    let settings = Settings {
        min_gap_ms: 2_000,
        max_wait_ms: 10_000,
        grace_ms: 1_000,
        hold_while_hidden: true,
    };
    let mut q = Queues::new(settings);
    let mut log = Log { offset: 0 };
    let control = |action, event_type: Option<&str>| Op::Control {
        overlay: "main".into(),
        action,
        event_type: event_type.map(str::to_owned),
    };
    q.apply(&log.op(&attach("main")));
    q.apply(&log.op(&control(Action::Pause, None)));
    q.apply(&log.animated("a", "normal"));
    q.apply(&log.animated("b", "normal"));
    assert!(settle(&mut q, &mut log, &["main"]).is_empty(), "paused");
    q.apply(&log.op(&control(Action::Resume, None)));
    assert_eq!(settle(&mut q, &mut log, &["main"]), ["a"]);
    // Skip cancels what plays; the next waits for the minimum gap.
    let fx = q.apply(&log.op(&control(Action::Skip, None)));
    assert!(fx.iter().any(|f| matches!(f, Effect::Stop { .. })));
    let (ops, wake) = q.decide(log.now(), &local(&["main"]), |_| false);
    assert!(ops.is_empty());
    assert_eq!(wake, Some(log.now() + 2_000));
    // Hidden: held.
    q.apply(&log.op(&Op::Visibility {
        overlay: "main".into(),
        visible: false,
    }));
    log.offset += 3;
    assert!(settle(&mut q, &mut log, &["main"]).is_empty());
    assert!(q.get("main").unwrap().held());
    // Clear by type.
    q.apply(&log.animated("c", "normal"));
    let mut other = new_event(json!({"id": "d", "type": "win_streak", "class": "animated"})).event;
    other.metadata.priority = crate::Priority::Low;
    q.apply(&log.record(other));
    q.apply(&log.op(&control(Action::Clear, Some("win_*"))));
    let ids: Vec<_> = q
        .get("main")
        .unwrap()
        .queue
        .iter()
        .map(|i| i.record.event.id.clone())
        .collect();
    assert_eq!(ids, ["b", "c"]);
    // `b` was queued at 4 s; at 14 s it has waited 10 s and expires.
    log.offset = 14;
    settle(&mut q, &mut log, &[]);
    assert_eq!(
        q.get("main").unwrap().play_of("b"),
        Some((0, Status::Expired))
    );
    assert_eq!(q.get("main").unwrap().counts.expired, 1);
    // Shown again: `c` plays.
    q.apply(&log.op(&Op::Visibility {
        overlay: "main".into(),
        visible: true,
    }));
    assert_eq!(settle(&mut q, &mut log, &["main"]), ["c"]);
}

#[test]
fn a_reconnect_gives_the_playing_item_a_fresh_deadline() {
    let mut q = Queues::new(Settings::default());
    let mut log = Log { offset: 0 };
    q.apply(&log.op(&attach("main")));
    q.apply(&log.animated("a", "normal"));
    settle(&mut q, &mut log, &["main"]);
    log.offset += 4;
    let fx = q.apply(&log.op(&attach("main")));
    assert!(
        !fx.iter().any(|f| matches!(f, Effect::Send { .. })),
        "other pages are left alone"
    );
    let (_, deadline) = q.get("main").unwrap().playing.as_ref().unwrap();
    assert_eq!(*deadline, log.now() + 5_000);
}

#[test]
fn filters_and_test_events() {
    let mut q = Queues::new(Settings::default());
    let mut log = Log { offset: 0 };
    q.apply(&log.op(&Op::Attach {
        overlay: "scores".into(),
        filter: Some(json!({"eventTypes": ["high_*"]})),
    }));
    q.apply(&log.op(&attach("all")));
    let e = new_event(json!({"id": "w", "type": "win_streak", "class": "animated",
        "metadata": {"test": true}}))
    .event;
    q.apply(&log.record(e));
    // Data events are never queued.
    q.apply(&log.record(new_event(json!({"type": "high_score"})).event));
    assert!(q.get("scores").unwrap().queue.is_empty());
    assert_eq!(q.get("all").unwrap().queue.len(), 1);
    assert!(q.get("all").unwrap().queue[0].is_test());
    settle(&mut q, &mut log, &["all"]);
    end(&mut q, &mut log, "all", "w", 0);
    assert_eq!(
        q.get("all").unwrap().counts,
        Counts::default(),
        "tests are not counted"
    );
}

#[test]
fn decision_ids_are_deterministic_and_valid() {
    let op = Op::Dispatch {
        overlay: "main".into(),
        event_id: "evt_1".into(),
        play: 2,
        slot: 7,
    };
    assert_eq!(op.decision_id().as_deref(), Some("ov.dispatch:main:7"));
    let long = Op::Timeout {
        overlay: "o".repeat(100),
        event_id: "e".repeat(100),
        play: 0,
    };
    let id = long.decision_id().unwrap();
    assert!(crate::name::is_event_id(&id), "{id}");
    assert_eq!(long.decision_id(), Some(id));
    assert_eq!(attach("x").decision_id(), None);
    let back: Op = serde_json::from_value(serde_json::to_value(&op).unwrap()).unwrap();
    assert_eq!(back, op);
}

#[test]
fn a_slot_whose_choice_lost_or_came_too_late_is_used_up() {
    let mut q = Queues::new(Settings::default());
    let mut log = Log { offset: 0 };
    q.apply(&log.op(&attach("main")));
    q.apply(&log.animated("a", "low"));
    // One node proposes `a` for slot 0; another, which has also seen `b`
    // (critical), proposes `b` for slot 0 too: same id, the log keeps one.
    let (ops, _) = q.decide(log.now(), &local(&["main"]), |_| false);
    let for_a = ops[0].clone();
    q.apply(&log.animated("b", "critical"));
    let (ops, _) = q.decide(log.now(), &local(&["main"]), |_| false);
    let for_b = ops[0].clone();
    assert_eq!(for_a.decision_id(), for_b.decision_id());
    q.apply(&log.op(&for_a));
    assert_eq!(playing(&q, "main"), Some(("a".into(), 0)));
    // Cancelling `a`: the next proposal is for a new slot, so it is stored.
    q.apply(&log.op(&Op::Cancel {
        event_id: "a".into(),
        overlay: None,
    }));
    let (ops, _) = q.decide(log.now(), &local(&["main"]), |_| false);
    assert_ne!(ops[0].decision_id(), for_b.decision_id());
    // A choice that arrives after its item was cancelled still uses its slot.
    q.apply(&log.op(&Op::Cancel {
        event_id: "b".into(),
        overlay: None,
    }));
    q.apply(&log.op(&ops[0]));
    q.apply(&log.animated("c", "normal"));
    let (next, _) = q.decide(log.now(), &local(&["main"]), |_| false);
    assert_ne!(next[0].decision_id(), ops[0].decision_id());
    q.apply(&log.op(&next[0]));
    assert_eq!(playing(&q, "main"), Some(("c".into(), 0)));
}
