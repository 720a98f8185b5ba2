//! One tenant's tracked requests, folded record by record (see the parent
//! module for the lifecycle).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::Value;

use super::{REQUEST_ID_FIELD, Request, State, Step, parse_type};
use crate::event::Event;

/// What one event did to a [`Table`].
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The request concerned.
    pub id: String,
    /// Its state before the event (`None`: the event opened it).
    pub before: Option<State>,
    /// Its state after.
    pub after: State,
    /// Its deadline after; `None` once finished.
    pub deadline_ms: Option<i64>,
    /// True for a request in the `animated` class (its event status belongs
    /// to the overlay queues).
    pub animated: bool,
}

/// One tenant's requests: every open one, and the most recent finished ones
/// (at most `keep_finished`; older finished ones are forgotten, and reports
/// naming them are ignored).
#[derive(Debug, Clone)]
pub struct Table {
    keep_finished: usize,
    by_offset: BTreeMap<u64, Request>,
    ids: HashMap<String, u64>,
    /// Offsets of finished requests, oldest finish first.
    finished: VecDeque<u64>,
}

impl Table {
    /// An empty table keeping at most `keep_finished` finished requests.
    pub fn new(keep_finished: usize) -> Self {
        Self {
            keep_finished,
            by_offset: BTreeMap::new(),
            ids: HashMap::new(),
            finished: VecDeque::new(),
        }
    }

    /// Folds one event (in log order); `None` when it concerns no request
    /// this table tracks.
    pub fn fold(&mut self, event: &Event, default_timeout_ms: u64, now_ms: i64) -> Option<Change> {
        let (prefix, step) = parse_type(&event.event_type)?;
        if step == Step::Requested {
            if self.ids.contains_key(&event.id) {
                return None;
            }
            let request = Request::from_event(event, default_timeout_ms, now_ms)?;
            let change = Change {
                id: request.id.clone(),
                before: None,
                after: request.state,
                deadline_ms: request.deadline_ms(),
                animated: request.animated,
            };
            self.ids.insert(request.id.clone(), event.offset);
            self.by_offset.insert(event.offset, request);
            return Some(change);
        }
        let offset = self.target(event, prefix)?;
        let request = self.by_offset.get_mut(&offset)?;
        let before = request.state;
        if !request.apply(step, event, now_ms) {
            return None;
        }
        let change = Change {
            id: request.id.clone(),
            before: Some(before),
            after: request.state,
            deadline_ms: request.deadline_ms(),
            animated: request.animated,
        };
        if request.state.is_terminal() {
            self.finished.push_back(offset);
            self.evict();
        }
        Some(change)
    }

    /// The offset of the request a report of `prefix` names: by
    /// `data.request_id`, else `metadata.correlation_id`; it must share the
    /// report's prefix and stream.
    fn target(&self, event: &Event, prefix: &str) -> Option<u64> {
        let by_data = event.data.get(REQUEST_ID_FIELD).and_then(Value::as_str);
        let by_meta = event.metadata.correlation_id.as_deref();
        [by_data, by_meta].into_iter().flatten().find_map(|id| {
            let offset = *self.ids.get(id)?;
            let r = self.by_offset.get(&offset)?;
            (r.prefix == prefix && r.stream == event.stream_id).then_some(offset)
        })
    }

    fn evict(&mut self) {
        while self.finished.len() > self.keep_finished {
            let Some(offset) = self.finished.pop_front() else {
                break;
            };
            if let Some(r) = self.by_offset.remove(&offset) {
                self.ids.remove(&r.id);
            }
        }
    }

    /// The request with id `id`.
    pub fn get(&self, id: &str) -> Option<&Request> {
        self.by_offset.get(self.ids.get(id)?)
    }

    /// Every request, newest (highest offset) first.
    pub fn newest_first(&self) -> impl Iterator<Item = &Request> {
        self.by_offset.values().rev()
    }

    /// How many requests are kept.
    pub fn len(&self) -> usize {
        self.by_offset.len()
    }

    /// True when no request is kept.
    pub fn is_empty(&self) -> bool {
        self.by_offset.is_empty()
    }
}
