//! Overlay playout queues as a fold over the log (issue 4;
//! `docs/design/overlay-queues.md`).
//!
//! Every input that changes a queue is a record in the log: animated events
//! themselves, and [`Op`]s on the internal stream [`STREAM`] (status reports,
//! operator controls, and the time-based decisions — dispatch, timeout,
//! expiry — which a node publishes with a deterministic id so that the same
//! decision taken by two nodes is stored once). [`Queues::apply`] folds one
//! record into the state and returns [`Effect`]s for the node to carry out
//! (send to overlay connections, write status rows, tell admins). Because
//! every node folds the same records in the same order, every node holds the
//! same queues. [`Queues::decide`] is the only place the clock is read: it
//! proposes the decisions due now, which take effect only once they come back
//! through the log.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::consumer::filter_from_json;
use crate::event::{Event, EventClass, Record, Status};
use crate::filter::{Filter, Glob};
use crate::lifecycle::AnimationStatus;
use crate::time::rfc3339_ms;

/// The internal stream holding every queue input but the animated events.
pub const STREAM: &str = "_overlays";

/// Finished plays kept per overlay for `history`.
pub const HISTORY: usize = 50;

/// Per-overlay playout settings (`[overlays]` in the configuration holds the
/// defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Least time between the end of one animation and the start of the next.
    pub min_gap_ms: u64,
    /// A queued item not started within this time expires; 0 for never.
    pub max_wait_ms: u64,
    /// Added to `duration_ms` before a play without an end report times out.
    pub grace_ms: u64,
    /// Start nothing new while the overlay reports itself hidden.
    pub hold_while_hidden: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            min_gap_ms: 0,
            max_wait_ms: 600_000,
            grace_ms: 2_000,
            hold_while_hidden: false,
        }
    }
}

/// A change to some of an overlay's [`Settings`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// New `min_gap_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_gap_ms: Option<u64>,
    /// New `max_wait_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_ms: Option<u64>,
    /// New `grace_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_ms: Option<u64>,
    /// New `hold_while_hidden`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_while_hidden: Option<bool>,
}

impl Settings {
    fn patch(&mut self, p: &SettingsPatch) {
        self.min_gap_ms = p.min_gap_ms.unwrap_or(self.min_gap_ms);
        self.max_wait_ms = p.max_wait_ms.unwrap_or(self.max_wait_ms);
        self.grace_ms = p.grace_ms.unwrap_or(self.grace_ms);
        self.hold_while_hidden = p.hold_while_hidden.unwrap_or(self.hold_while_hidden);
    }
}

/// What an overlay reports about the item it plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Report {
    /// It appeared.
    Started,
    /// It finished.
    Ended,
    /// It stopped after a cancel.
    Cancelled,
    /// It could not be played.
    Failed,
}

/// The admin frame announcing that an item reached `status` on an overlay.
pub fn status_frame(status: Status) -> &'static str {
    match status {
        Status::Pending => "ANIMATION_QUEUED",
        Status::Active => "ANIMATION_STARTED",
        Status::Completed => "ANIMATION_ENDED",
        Status::Cancelled => "ANIMATION_CANCELLED",
        Status::Failed => "ANIMATION_FAILED",
        Status::Expired => "ANIMATION_EXPIRED",
    }
}

/// An operator action on one overlay's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Cancel what plays now.
    Skip,
    /// Start nothing new.
    Pause,
    /// Undo a pause.
    Resume,
    /// Cancel every queued item (of a type, optionally).
    Clear,
}

impl Action {
    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Skip, Self::Pause, Self::Resume, Self::Clear]
            .into_iter()
            .find(|a| a.as_str() == s)
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Clear => "clear",
        }
    }
}

/// One queue input, the `data` of a record on [`STREAM`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A connection of the overlay opened: the overlay exists from now on,
    /// with this filter when given; what plays starts its deadline again.
    Attach {
        /// The overlay.
        overlay: String,
        /// Its subscription, in the canonical filter JSON.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Value>,
    },
    /// The overlay's stored subscription changed.
    Subscription {
        /// The overlay.
        overlay: String,
        /// The canonical filter JSON.
        filter: Value,
    },
    /// A status report from the overlay.
    Report {
        /// The overlay.
        overlay: String,
        /// The event reported on.
        event_id: String,
        /// Which play.
        play: u32,
        /// What happened.
        status: Report,
        /// Why, for `failed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Start this item now (a node's decision) in the overlay's next play
    /// slot. The slot, not the item, makes the id: two nodes choosing
    /// differently for one slot store one choice, and a slot whose choice
    /// came too late (the item was cancelled meanwhile) is used up, so the
    /// next proposal gets a fresh id.
    Dispatch {
        /// The overlay.
        overlay: String,
        /// The item's event.
        event_id: String,
        /// Which play.
        play: u32,
        /// The overlay's slot count when proposed ([`Overlay::slot`]).
        #[serde(default)]
        slot: u64,
    },
    /// The play ran past its duration and grace with no end report.
    Timeout {
        /// The overlay.
        overlay: String,
        /// The event.
        event_id: String,
        /// Which play.
        play: u32,
    },
    /// The item waited longer than `max_wait_ms`.
    Expire {
        /// The overlay.
        overlay: String,
        /// The event.
        event_id: String,
        /// Which play.
        play: u32,
    },
    /// Cancel an event on one overlay or all.
    Cancel {
        /// The event.
        event_id: String,
        /// Only here, when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overlay: Option<String>,
    },
    /// Queue a finished event again on one overlay or on every overlay that
    /// played it. Carries the event so every node folds the same item.
    Replay {
        /// The event, with its offset.
        event: Box<Event>,
        /// Only here, when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overlay: Option<String>,
    },
    /// An operator action on a queue.
    Control {
        /// The overlay.
        overlay: String,
        /// What to do.
        action: Action,
        /// For `clear`: only types matching this glob.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_type: Option<String>,
    },
    /// Change some settings of an overlay.
    Settings {
        /// The overlay.
        overlay: String,
        /// The change.
        settings: SettingsPatch,
    },
    /// The overlay's page was shown or hidden (OBS source visibility).
    Visibility {
        /// The overlay.
        overlay: String,
        /// Visible now?
        visible: bool,
    },
}

impl Op {
    /// The event type of the record carrying this op (`overlay.dispatch`, …).
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Attach { .. } => "overlay.attach",
            Self::Subscription { .. } => "overlay.subscription",
            Self::Report { .. } => "overlay.report",
            Self::Dispatch { .. } => "overlay.dispatch",
            Self::Timeout { .. } => "overlay.timeout",
            Self::Expire { .. } => "overlay.expire",
            Self::Cancel { .. } => "overlay.cancel",
            Self::Replay { .. } => "overlay.replay",
            Self::Control { .. } => "overlay.control",
            Self::Settings { .. } => "overlay.settings",
            Self::Visibility { .. } => "overlay.visibility",
        }
    }

    /// The deterministic id of a decision (dispatch, timeout, expiry): the
    /// same decision proposed by two nodes is stored once. `None` for inputs
    /// that must each be stored.
    pub fn decision_id(&self) -> Option<String> {
        let (kind, overlay, event_id, play) = match self {
            Self::Dispatch { overlay, slot, .. } => {
                return Some(short_id(format!("ov.dispatch:{overlay}:{slot}")));
            }
            Self::Timeout {
                overlay,
                event_id,
                play,
            } => ("timeout", overlay, event_id, play),
            Self::Expire {
                overlay,
                event_id,
                play,
            } => ("expire", overlay, event_id, play),
            _ => return None,
        };
        Some(short_id(format!("ov.{kind}:{overlay}:{event_id}:{play}")))
    }
}

/// `id`, or when it is longer than an event id may be, its kind and a hash.
fn short_id(id: String) -> String {
    if id.len() <= crate::name::MAX_ID_LEN {
        return id;
    }
    let kind = id.split(':').next().unwrap_or("ov");
    format!("{kind}:{:016x}", crate::name::fnv1a(id.as_bytes()))
}

/// One item of a queue: an event in one of its plays on one overlay.
#[derive(Debug, Clone)]
pub struct Item {
    /// The event.
    pub record: Arc<Record>,
    /// Which play (0, then one more per replay).
    pub play: u32,
    /// Where it stands.
    pub status: Status,
    /// Position among items of equal priority: the offset that queued it.
    pub order: u64,
    /// When it was queued, ms.
    pub queued_ms: i64,
    /// When it started, ms.
    pub started_ms: Option<i64>,
    /// When it ended, ms.
    pub ended_ms: Option<i64>,
    /// Why it ended, when not by a report (`timeout`).
    pub reason: Option<String>,
}

impl Item {
    fn event_id(&self) -> &str {
        &self.record.event.id
    }

    fn is(&self, event_id: &str, play: u32) -> bool {
        self.play == play && self.event_id() == event_id
    }

    /// Is this a test event (`metadata.test: true`)?
    pub fn is_test(&self) -> bool {
        is_test(&self.record.event)
    }

    fn sort_key(&self) -> (std::cmp::Reverse<crate::Priority>, u64, u32) {
        (
            std::cmp::Reverse(self.record.event.metadata.priority),
            self.order,
            self.play,
        )
    }

    /// The JSON an API shows for the item.
    pub fn view(&self) -> Value {
        let e = &self.record.event;
        let mut v = json!({
            "event_id": e.id, "offset": e.offset, "stream_id": e.stream_id,
            "type": e.event_type, "message": e.message,
            "priority": e.metadata.priority.as_str(),
            "duration_ms": e.duration_ms, "cancelable": e.cancelable != Some(false),
            "replayable": e.replayable != Some(false), "test": self.is_test(),
            "play": self.play, "status": self.status.as_str(),
            "queued_at": rfc3339_ms(self.queued_ms),
        });
        let mut put = |k: &str, x: Value| {
            v[k] = x;
        };
        if let Some(t) = self.started_ms {
            put("started_at", rfc3339_ms(t).into());
        }
        if let Some(t) = self.ended_ms {
            put("ended_at", rfc3339_ms(t).into());
        }
        if let Some(r) = &self.reason {
            put("reason", r.clone().into());
        }
        v
    }

    fn row(&self, overlay: &str) -> AnimationStatus {
        AnimationStatus {
            event_id: self.event_id().to_owned(),
            overlay_id: overlay.to_owned(),
            status: self.status,
            play: self.play,
            started_ms: self.started_ms,
            ended_ms: self.ended_ms,
            updated_ms: self.ended_ms.or(self.started_ms).unwrap_or(self.queued_ms),
        }
    }
}

/// Is `e` a test event (`metadata.test: true`)?
pub fn is_test(e: &Event) -> bool {
    e.metadata.extra.get("test") == Some(&Value::Bool(true))
}

/// Finished plays per outcome, test events left out (`GET /analytics/overlays`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Played to the end (by report or timeout).
    pub completed: u64,
    /// Of those, ended by timeout.
    pub timed_out: u64,
    /// Cancelled, queued or playing.
    pub cancelled: u64,
    /// Reported failed.
    pub failed: u64,
    /// Waited too long.
    pub expired: u64,
}

/// One overlay's queue and what it knows of its page.
#[derive(Debug, Clone)]
pub struct Overlay {
    /// The overlay id.
    pub id: String,
    /// Which animated events it gets.
    pub filter: Filter,
    /// Its settings.
    pub settings: Settings,
    /// Holding (operator pause)?
    pub paused: bool,
    /// Last reported visibility.
    pub visible: bool,
    /// The item playing now, with its deadline (ms).
    pub playing: Option<(Item, i64)>,
    /// Waiting items, in play order.
    pub queue: Vec<Item>,
    /// Finished items, newest first.
    pub history: VecDeque<Item>,
    /// When the last play ended, ms.
    pub last_end_ms: i64,
    /// Dispatch slots used so far (see [`Op::Dispatch`]).
    pub slot: u64,
    /// Latest play and status of every event it has had.
    plays: HashMap<String, (u32, Status)>,
    /// Outcomes so far.
    pub counts: Counts,
}

impl Overlay {
    fn new(id: &str, settings: Settings) -> Self {
        Self {
            id: id.to_owned(),
            filter: overlay_filter(None),
            settings,
            paused: false,
            visible: true,
            playing: None,
            queue: Vec::new(),
            history: VecDeque::new(),
            last_end_ms: 0,
            slot: 0,
            plays: HashMap::new(),
            counts: Counts::default(),
        }
    }

    /// The latest play and status of `event_id` here.
    pub fn play_of(&self, event_id: &str) -> Option<(u32, Status)> {
        self.plays.get(event_id).copied()
    }

    /// Is the queue held (paused, or hidden while so configured)?
    pub fn held(&self) -> bool {
        self.paused || (!self.visible && self.settings.hold_while_hidden)
    }

    fn enqueue(&mut self, record: Arc<Record>, play: u32, order: u64, at_ms: i64) -> Effect {
        let item = Item {
            record,
            play,
            status: Status::Pending,
            order,
            queued_ms: at_ms,
            started_ms: None,
            ended_ms: None,
            reason: None,
        };
        self.plays
            .insert(item.event_id().to_owned(), (play, Status::Pending));
        let pos = self
            .queue
            .partition_point(|q| q.sort_key() <= item.sort_key());
        let effect = Effect::Status {
            row: item.row(&self.id),
        };
        self.queue.insert(pos, item);
        effect
    }

    /// Moves `item` to history with `status`, recording the outcome.
    fn finish(&mut self, mut item: Item, status: Status, at_ms: i64) -> Effect {
        item.status = status;
        item.ended_ms = Some(at_ms);
        self.plays
            .insert(item.event_id().to_owned(), (item.play, status));
        if !item.is_test() {
            let c = &mut self.counts;
            match status {
                Status::Completed => {
                    c.completed += 1;
                    c.timed_out += u64::from(item.reason.is_some());
                }
                Status::Cancelled => c.cancelled += 1,
                Status::Failed => c.failed += 1,
                Status::Expired => c.expired += 1,
                Status::Pending | Status::Active => {}
            }
        }
        let row = item.row(&self.id);
        self.history.push_front(item);
        self.history.truncate(HISTORY);
        Effect::Status { row }
    }

    /// Ends what plays now, if it is `(event_id, play)`.
    fn end_playing(
        &mut self,
        event_id: &str,
        play: u32,
        status: Status,
        reason: Option<String>,
        at_ms: i64,
        out: &mut Vec<Effect>,
    ) -> bool {
        if !matches!(&self.playing, Some((item, _)) if item.is(event_id, play)) {
            return false;
        }
        let Some((mut item, _)) = self.playing.take() else {
            return false;
        };
        item.reason = reason;
        self.last_end_ms = at_ms;
        if status == Status::Cancelled {
            out.push(Effect::Stop {
                overlay: self.id.clone(),
                event_id: event_id.to_owned(),
                play,
            });
        }
        out.push(self.finish(item, status, at_ms));
        true
    }

    /// Removes queued items passing `pick`, finishing each with `status`.
    fn drop_queued(
        &mut self,
        pick: impl Fn(&Item) -> bool,
        status: Status,
        at_ms: i64,
        out: &mut Vec<Effect>,
    ) -> usize {
        let (gone, kept): (Vec<Item>, Vec<Item>) =
            std::mem::take(&mut self.queue).into_iter().partition(pick);
        self.queue = kept;
        let n = gone.len();
        for item in gone {
            out.push(self.finish(item, status, at_ms));
        }
        n
    }

    /// The JSON an API shows for the overlay; `connections` comes from the
    /// node (connections are not part of the fold).
    pub fn view(&self, connections: usize) -> Value {
        json!({
            "overlay_id": self.id,
            "connected": connections > 0,
            "connections": connections,
            "visible": self.visible,
            "paused": self.paused,
            "held": self.held(),
            "settings": self.settings,
            "now_playing": self.playing.as_ref().map(|(i, _)| i.view()),
            "queue": self.queue.iter().map(Item::view).collect::<Vec<_>>(),
            "history": self.history.iter().map(Item::view).collect::<Vec<_>>(),
        })
    }
}

/// An overlay's filter from its canonical JSON: system events hidden, and a
/// filter that does not parse (it was checked when stored) passes everything.
fn overlay_filter(json: Option<&Value>) -> Filter {
    let mut f = json
        .and_then(|v| filter_from_json(v.clone()).ok())
        .unwrap_or_default();
    f.hide_system = true;
    f
}

/// What the node must do after a fold step.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Send this item to the overlay's connections (`EVENT_BROADCAST` with
    /// its `play`).
    Send {
        /// The overlay.
        overlay: String,
        /// The event.
        record: Arc<Record>,
        /// Which play.
        play: u32,
    },
    /// Tell the overlay's connections to stop this item (`ANIMATION_CANCEL`).
    Stop {
        /// The overlay.
        overlay: String,
        /// The event.
        event_id: String,
        /// Which play.
        play: u32,
    },
    /// A status row changed: store it and tell admins ([`status_frame`]).
    Status {
        /// The new row.
        row: AnimationStatus,
    },
    /// The overlay's state changed (admins get `OVERLAY_STATE`).
    Changed {
        /// The overlay.
        overlay: String,
    },
}

/// Every overlay queue of one tenant.
#[derive(Debug, Clone, Default)]
pub struct Queues {
    overlays: BTreeMap<String, Overlay>,
    defaults: Settings,
    /// The offset of the last record folded.
    pub folded: u64,
}

impl Queues {
    /// Empty queues whose overlays start with `defaults`.
    pub fn new(defaults: Settings) -> Self {
        Self {
            defaults,
            ..Self::default()
        }
    }

    /// One overlay.
    pub fn get(&self, overlay: &str) -> Option<&Overlay> {
        self.overlays.get(overlay)
    }

    /// Every overlay, by id.
    pub fn overlays(&self) -> impl Iterator<Item = &Overlay> {
        self.overlays.values()
    }

    /// The event-level status implied by every overlay's latest play of
    /// `event_id`: active while it plays anywhere, pending while queued
    /// anywhere, else the best outcome; `None` when no overlay has it.
    pub fn event_status(&self, event_id: &str) -> Option<Status> {
        const RANK: [Status; 6] = [
            Status::Active,
            Status::Pending,
            Status::Completed,
            Status::Failed,
            Status::Cancelled,
            Status::Expired,
        ];
        let seen: HashSet<Status> = self
            .overlays
            .values()
            .filter_map(|o| o.play_of(event_id).map(|(_, s)| s))
            .collect();
        RANK.into_iter().find(|s| seen.contains(s))
    }

    fn overlay_mut(&mut self, id: &str) -> &mut Overlay {
        let defaults = self.defaults;
        self.overlays
            .entry(id.to_owned())
            .or_insert_with(|| Overlay::new(id, defaults))
    }

    /// Folds one record; returns what the node must do.
    pub fn apply(&mut self, record: &Arc<Record>) -> Vec<Effect> {
        self.folded = self.folded.max(record.offset());
        let e = &record.event;
        let mut out = Vec::new();
        if e.stream_id == STREAM {
            if let Ok(op) = serde_json::from_value::<Op>(e.data.clone()) {
                self.apply_op(op, record, &mut out);
            }
        } else if e.class == EventClass::Animated {
            let at = e.time_ms();
            for o in self.overlays.values_mut() {
                if o.filter.matches(e) {
                    out.push(o.enqueue(Arc::clone(record), 0, record.offset(), at));
                    out.push(Effect::Changed {
                        overlay: o.id.clone(),
                    });
                }
            }
        }
        out
    }

    fn apply_op(&mut self, op: Op, record: &Arc<Record>, out: &mut Vec<Effect>) {
        let at = record.event.time_ms();
        let touched = match op {
            Op::Attach { overlay, filter } => {
                let o = self.overlay_mut(&overlay);
                if let Some(f) = &filter {
                    o.filter = overlay_filter(Some(f));
                }
                o.visible = true;
                if let Some((item, deadline)) = &mut o.playing {
                    // The new page plays it again from the start (the node
                    // sends it what plays when it registers the connection).
                    let duration = item.record.event.duration_ms.unwrap_or(5_000);
                    *deadline = at + ms(duration + o.settings.grace_ms);
                }
                Some(overlay)
            }
            Op::Subscription { overlay, filter } => {
                self.overlay_mut(&overlay).filter = overlay_filter(Some(&filter));
                Some(overlay)
            }
            Op::Report {
                overlay,
                event_id,
                play,
                status,
                reason,
            } => {
                let Some(o) = self.overlays.get_mut(&overlay) else {
                    return;
                };
                let to = match status {
                    // The dispatch already made it active.
                    Report::Started => return,
                    Report::Ended => Status::Completed,
                    Report::Cancelled => Status::Cancelled,
                    Report::Failed => Status::Failed,
                };
                o.end_playing(&event_id, play, to, reason, at, out)
                    .then_some(overlay)
            }
            Op::Dispatch {
                overlay,
                event_id,
                play,
                slot,
            } => {
                let Some(o) = self.overlays.get_mut(&overlay) else {
                    return;
                };
                // Each slot is used once, whatever becomes of its choice.
                if slot < o.slot {
                    return;
                }
                o.slot = slot + 1;
                if o.playing.is_some() {
                    return;
                }
                let Some(pos) = o.queue.iter().position(|i| i.is(&event_id, play)) else {
                    return;
                };
                let mut item = o.queue.remove(pos);
                item.status = Status::Active;
                item.started_ms = Some(at);
                let duration = item.record.event.duration_ms.unwrap_or(5_000);
                let deadline = at + ms(duration + o.settings.grace_ms);
                o.plays.insert(event_id, (play, Status::Active));
                out.push(Effect::Send {
                    overlay: overlay.clone(),
                    record: Arc::clone(&item.record),
                    play,
                });
                out.push(Effect::Status {
                    row: item.row(&overlay),
                });
                o.playing = Some((item, deadline));
                Some(overlay)
            }
            Op::Timeout {
                overlay,
                event_id,
                play,
            } => self.overlays.get_mut(&overlay).and_then(|o| {
                o.end_playing(
                    &event_id,
                    play,
                    Status::Completed,
                    Some("timeout".into()),
                    at,
                    out,
                )
                .then_some(overlay)
            }),
            Op::Expire {
                overlay,
                event_id,
                play,
            } => self.overlays.get_mut(&overlay).and_then(|o| {
                let n = o.drop_queued(|i| i.is(&event_id, play), Status::Expired, at, out);
                (n > 0).then_some(overlay)
            }),
            Op::Cancel { event_id, overlay } => {
                for o in self.overlays.values_mut() {
                    if overlay.as_ref().is_some_and(|t| *t != o.id) {
                        continue;
                    }
                    let Some((play, _)) = o.play_of(&event_id) else {
                        continue;
                    };
                    let stopped = o.end_playing(&event_id, play, Status::Cancelled, None, at, out);
                    let dropped =
                        o.drop_queued(|i| i.event_id() == event_id, Status::Cancelled, at, out);
                    if stopped || dropped > 0 {
                        out.push(Effect::Changed {
                            overlay: o.id.clone(),
                        });
                    }
                }
                None
            }
            Op::Replay { event, overlay } => {
                let event_record = Arc::new(Record::from_event(&record.tenant, *event));
                let id = event_record.event.id.clone();
                for o in self.overlays.values_mut() {
                    let wanted = match &overlay {
                        Some(t) => *t == o.id,
                        None => o.play_of(&id).is_some(),
                    };
                    let last = o.play_of(&id);
                    if !wanted || last.is_some_and(|(_, s)| !s.is_terminal()) {
                        continue;
                    }
                    let play = last.map_or(0, |(p, _)| p + 1);
                    out.push(o.enqueue(Arc::clone(&event_record), play, record.offset(), at));
                    out.push(Effect::Changed {
                        overlay: o.id.clone(),
                    });
                }
                None
            }
            Op::Control {
                overlay,
                action,
                event_type,
            } => {
                let Some(o) = self.overlays.get_mut(&overlay) else {
                    return;
                };
                match action {
                    Action::Skip => {
                        if let Some((item, _)) = &o.playing {
                            let (id, play) = (item.event_id().to_owned(), item.play);
                            o.end_playing(
                                &id,
                                play,
                                Status::Cancelled,
                                Some("skipped".into()),
                                at,
                                out,
                            );
                        }
                    }
                    Action::Pause => o.paused = true,
                    Action::Resume => o.paused = false,
                    Action::Clear => {
                        let glob = event_type.map(Glob::new);
                        o.drop_queued(
                            |i| {
                                glob.as_ref()
                                    .is_none_or(|g| g.matches(&i.record.event.event_type))
                            },
                            Status::Cancelled,
                            at,
                            out,
                        );
                    }
                }
                Some(overlay)
            }
            Op::Settings { overlay, settings } => {
                self.overlay_mut(&overlay).settings.patch(&settings);
                Some(overlay)
            }
            Op::Visibility { overlay, visible } => {
                let Some(o) = self.overlays.get_mut(&overlay) else {
                    return;
                };
                o.visible = visible;
                Some(overlay)
            }
        };
        if let Some(overlay) = touched {
            out.push(Effect::Changed { overlay });
        }
    }

    /// The decisions due at `now_ms`: expiries of items that waited too
    /// long, and — only for overlays with a connection on this node (`local`)
    /// — timeouts of plays past their deadline and the next dispatch.
    /// `blocked` says whether an item may not start yet (its stream is
    /// paused). Also returns the earliest time something becomes due later.
    pub fn decide(
        &self,
        now_ms: i64,
        local: &HashSet<String>,
        blocked: impl Fn(&Item) -> bool,
    ) -> (Vec<Op>, Option<i64>) {
        let mut ops = Vec::new();
        let mut wake: Option<i64> = None;
        let mut at = |t: i64| wake = Some(wake.map_or(t, |w: i64| w.min(t)));
        for o in self.overlays.values() {
            let id = || o.id.clone();
            let max_wait = ms(o.settings.max_wait_ms);
            let mut expired = HashSet::new();
            if max_wait > 0 {
                for i in &o.queue {
                    if i.queued_ms + max_wait <= now_ms {
                        expired.insert((i.event_id(), i.play));
                        ops.push(Op::Expire {
                            overlay: id(),
                            event_id: i.event_id().to_owned(),
                            play: i.play,
                        });
                    } else {
                        at(i.queued_ms + max_wait);
                    }
                }
            }
            if !local.contains(&o.id) {
                continue;
            }
            match &o.playing {
                Some((item, deadline)) if *deadline <= now_ms => ops.push(Op::Timeout {
                    overlay: id(),
                    event_id: item.event_id().to_owned(),
                    play: item.play,
                }),
                Some((_, deadline)) => at(*deadline),
                None if o.held() => {}
                None => {
                    let next = o
                        .queue
                        .iter()
                        .find(|i| !expired.contains(&(i.event_id(), i.play)) && !blocked(i));
                    if let Some(i) = next {
                        let ready = o.last_end_ms + ms(o.settings.min_gap_ms);
                        if ready <= now_ms {
                            ops.push(Op::Dispatch {
                                overlay: id(),
                                event_id: i.event_id().to_owned(),
                                play: i.play,
                                slot: o.slot,
                            });
                        } else {
                            at(ready);
                        }
                    }
                }
            }
        }
        (ops, wake)
    }
}

fn ms(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests;
