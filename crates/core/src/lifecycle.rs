//! The on-air lifecycle of animated and tracked events (SPEC §2, §4; issue 4
//! point 1): which status changes are allowed, what a change does to the
//! event's own timestamps, and the per-(event, overlay) status row of seed
//! 000's `animation_status` table.
//!
//! ```text
//! pending ─→ active ─→ completed | cancelled | failed | expired
//!    └─────→ cancelled | expired
//! completed | cancelled | failed | expired ─→ pending      (replay)
//! ```
//!
//! Everything here is pure: the stores call [`can_transition`] inside their
//! write transaction, so a transition is checked against the stored state
//! (compare-and-set), and [`apply_status`] rewrites the stored body.
//! Seed 000 names the per-overlay states `queued` and `playing`; streambus
//! uses one vocabulary for both levels, `pending` and `active`.

use serde::{Deserialize, Serialize};

use crate::event::{Event, Status};
use crate::time::rfc3339_ms;

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 6] = [
        Self::Pending,
        Self::Active,
        Self::Completed,
        Self::Cancelled,
        Self::Failed,
        Self::Expired,
    ];

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    /// Parses the lowercase wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// True for the states a play ends in (only a replay leaves them).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Cancelled | Self::Failed | Self::Expired
        )
    }
}

/// May a status move from `from` to `to`?
///
/// Staying in the same state is not a transition and answers `false`; the
/// stores treat such a repeat as an idempotent no-op instead (status reports
/// arrive at least once).
pub fn can_transition(from: Status, to: Status) -> bool {
    use Status::*;
    match (from, to) {
        (Pending, Active | Cancelled | Expired) => true,
        (Active, Completed | Cancelled | Failed | Expired) => true,
        // Replay queues a finished event again.
        (f, Pending) => f.is_terminal(),
        _ => false,
    }
}

/// Why a status change was refused; the stores report it as a conflict.
pub fn transition_error(from: Status, to: Status) -> String {
    format!(
        "status cannot change from {} to {}",
        from.as_str(),
        to.as_str()
    )
}

/// Sets `event`'s status to `to` at `at_ms` and keeps its timestamps in step:
/// `active` sets `started_at` (and clears `completed_at`), a terminal state
/// sets `completed_at`, `pending` (a replay) clears both. Does not check the
/// transition; see [`can_transition`].
pub fn apply_status(event: &mut Event, to: Status, at_ms: i64) {
    event.status = Some(to);
    match to {
        Status::Pending => {
            event.started_at = None;
            event.completed_at = None;
        }
        Status::Active => {
            event.started_at = Some(rfc3339_ms(at_ms));
            event.completed_at = None;
        }
        _ => event.completed_at = Some(rfc3339_ms(at_ms)),
    }
}

/// One row of `animation_status`: where one event stands on one overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnimationStatus {
    /// The event.
    pub event_id: String,
    /// The overlay (a consumer's `overlayId`).
    pub overlay_id: String,
    /// Its state on that overlay.
    pub status: Status,
    /// Which play this row describes: 0 for the first, one more for each
    /// replay. A write for an older play than the stored one is ignored, so a
    /// late report of a previous play cannot undo a replay.
    #[serde(default)]
    pub play: u32,
    /// When it started playing there, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<i64>,
    /// When it stopped playing there, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<i64>,
    /// When the row last changed, ms since the epoch.
    pub updated_ms: i64,
}

/// What a store does with a status row write, given the stored row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowWrite {
    /// Store the new row.
    Write,
    /// Keep the stored row: the write is a repeat or belongs to an older play.
    Keep,
    /// Refuse: the stored status cannot move to the new one.
    Refuse,
}

/// Decides a status row write (the stores' compare-and-set rule): a newer
/// play replaces, an older play is ignored, within one play a repeat is kept
/// and anything else must be an allowed transition.
pub fn decide_row_write(stored: Option<(Status, u32)>, new: &AnimationStatus) -> RowWrite {
    match stored {
        None => RowWrite::Write,
        Some((_, play)) if new.play > play => RowWrite::Write,
        Some((_, play)) if new.play < play => RowWrite::Keep,
        Some((status, _)) if status == new.status => RowWrite::Keep,
        Some((status, _)) if can_transition(status, new.status) => RowWrite::Write,
        Some(_) => RowWrite::Refuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn transition_table() {
        let allowed = [
            (Pending, Active),
            (Pending, Cancelled),
            (Pending, Expired),
            (Active, Completed),
            (Active, Cancelled),
            (Active, Failed),
            (Active, Expired),
            (Completed, Pending),
            (Cancelled, Pending),
            (Failed, Pending),
            (Expired, Pending),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(
                    can_transition(from, to),
                    allowed.contains(&(from, to)),
                    "{} -> {}",
                    from.as_str(),
                    to.as_str()
                );
            }
        }
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(Status::parse("queued"), None);
        assert!(Completed.is_terminal() && !Active.is_terminal() && !Pending.is_terminal());
    }

    #[test]
    fn applying_a_status_keeps_timestamps_in_step() {
        let mut e = crate::testsuite::new_event(
            serde_json::json!({"type": "high_score", "class": "animated"}),
        )
        .event;
        apply_status(&mut e, Active, 1_000);
        assert_eq!(e.status, Some(Active));
        assert_eq!(e.started_at.as_deref(), Some("1970-01-01T00:00:01.000Z"));
        assert_eq!(e.completed_at, None);
        apply_status(&mut e, Completed, 6_000);
        assert_eq!(e.started_at.as_deref(), Some("1970-01-01T00:00:01.000Z"));
        assert_eq!(e.completed_at.as_deref(), Some("1970-01-01T00:00:06.000Z"));
        apply_status(&mut e, Pending, 7_000);
        assert_eq!((e.started_at, e.completed_at), (None, None));
    }

    #[test]
    fn row_writes() {
        let row = |status, play| AnimationStatus {
            event_id: "e".into(),
            overlay_id: "o".into(),
            status,
            play,
            started_ms: None,
            ended_ms: None,
            updated_ms: 1,
        };
        let cases = [
            (None, row(Active, 0), RowWrite::Write),
            (Some((Pending, 0)), row(Active, 0), RowWrite::Write),
            (Some((Active, 0)), row(Active, 0), RowWrite::Keep),
            (Some((Completed, 0)), row(Active, 0), RowWrite::Refuse),
            (Some((Completed, 0)), row(Pending, 0), RowWrite::Write),
            (Some((Completed, 0)), row(Pending, 1), RowWrite::Write),
            (Some((Pending, 1)), row(Completed, 0), RowWrite::Keep),
        ];
        for (stored, new, want) in cases {
            assert_eq!(decide_row_write(stored, &new), want, "{stored:?} {new:?}");
        }
    }
}
