//! The demo tournament of `serve --demo` (issue 6 point 6): simulated
//! matches whose score updates and results drive the high-score and
//! win-streak rules into animated events on the overlays, and a simulated
//! chat whose stream links feed the live-streams registry (state stream
//! `streams`, shown by `/wall`) through link detection.
//!
//! Nothing here is special-cased downstream: the simulator publishes plain
//! events through the normal path, and the three rules ([`rules`]) are
//! ordinary rules, installed like configured ones.

use std::time::Duration;

use serde_json::{Value, json};
use streambus_core::DEFAULT_TENANT;

use crate::generator::emit;
use crate::random::Random;
use crate::state::AppState;

/// The stream of match events.
pub const TOURNAMENT: &str = "tournament";
/// The stream of chat messages.
pub const CHAT: &str = "chat";
/// Score updates per match before its result.
const UPDATES_PER_MATCH: u64 = 6;

const DIVISIONS: [(&str, [&str; 4]); 2] = [
    ("north", ["ana", "bob", "cy", "dee"]),
    ("south", ["eli", "fay", "gus", "hal"]),
];

const CHANNELS: [&str; 10] = [
    "https://www.twitch.tv/ana_plays",
    "https://twitch.tv/bobcasts",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
    "https://youtu.be/9bZkp7q19f0",
    "https://kick.com/cy_live",
    "https://www.tiktok.com/@dee.streams/live",
    "https://www.facebook.com/esportsnorth/videos/1029384756",
    "https://www.instagram.com/south_finals/live/",
    "https://x.com/i/broadcasts/1YqKDoAbCdEfG",
    "https://example.org/watch/finals",
];

const CHATTER: [&str; 6] = [
    "what a play!",
    "gg",
    "who is casting the finals?",
    "north division is stacked this year",
    "that comeback though",
    "is there a vod?",
];

/// The demo's rules, in the configuration's JSON form.
pub fn rules() -> Vec<Value> {
    vec![
        json!({"id": "demo-high-score",
               "description": "a new high score within a division",
               "when": {"streams": [TOURNAMENT], "eventTypes": ["match.score"]},
               "detect": {"kind": "high_score", "field": "data.score",
                          "scope": ["data.division"], "subject": "data.player"},
               "emit": {"message": "New {{event.data.division}} high score: {{subject}} with {{value}}",
                        "fields": {"duration_ms": 5000, "priority": "high"}}}),
        json!({"id": "demo-win-streak",
               "description": "three wins in a row, and every three after",
               "when": {"streams": [TOURNAMENT], "eventTypes": ["match.ended"]},
               "detect": {"kind": "win_streak", "length": 3, "repeat": true,
                          "winner": "data.winner", "loser": "data.loser",
                          "scope": ["data.division"]},
               "emit": {"message": "{{subject}} is on a {{streak}}-match win streak!",
                        "fields": {"duration_ms": 5000}}}),
        json!({"id": "demo-chat-links",
               "description": "stream links posted in chat feed the registry",
               "when": {"streams": [CHAT], "eventTypes": ["chat.message"]},
               "detect": {"kind": "links", "field": "data.text", "author": "data.user"},
               "state": {"stream": "streams", "key": "{{link.key}}"}}),
    ]
}

/// One match in play.
struct Match {
    id: u64,
    division: &'static str,
    players: [&'static str; 2],
    scores: [u64; 2],
    updates: u64,
}

/// Runs the tournament and the chat until shutdown.
pub async fn run(state: AppState) {
    let rng = Random::seeded("tournament");
    let mut next_id = streambus_core::time::now_ms().unsigned_abs() % 100_000;
    let mut matches: Vec<Match> = Vec::new();
    let every = Duration::from_millis(state.config.server.demo_interval_ms.max(10));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        while matches.len() < DIVISIONS.len() {
            let (division, roster) = DIVISIONS[matches.len() % DIVISIONS.len()];
            let a = rng.below(4) as usize;
            let b = (a + 1 + rng.below(3) as usize) % 4;
            next_id += 1;
            matches.push(Match {
                id: next_id,
                division,
                players: [roster[a], roster[b]],
                scores: [0, 0],
                updates: 0,
            });
        }
        for m in &mut matches {
            step(&state, m, &rng).await;
        }
        matches.retain(|m| m.updates <= UPDATES_PER_MATCH);
        if rng.below(2) == 0 {
            chat(&state, &rng).await;
        }
    }
}

/// One score update, or the result once the match is over.
async fn step(state: &AppState, m: &mut Match, rng: &Random) {
    m.updates += 1;
    if m.updates > UPDATES_PER_MATCH {
        let w = usize::from(m.scores[1] > m.scores[0]);
        let body = json!({"type": "match.ended", "message": format!("{} beats {}", m.players[w], m.players[1 - w]),
            "data": {"match_id": m.id, "division": m.division, "winner": m.players[w],
                     "loser": m.players[1 - w], "score": [m.scores[w], m.scores[1 - w]]}});
        emit(state, DEFAULT_TENANT, TOURNAMENT, body).await;
        return;
    }
    // The first-named player of each division is a little stronger, so
    // streaks happen.
    let skill = |p: &str| if p == "ana" || p == "eli" { 140 } else { 100 };
    let i = rng.below(2) as usize;
    m.scores[i] += rng.below(skill(m.players[i]) * 10);
    let body = json!({"type": "match.score",
        "data": {"match_id": m.id, "division": m.division, "player": m.players[i],
                 "score": m.scores[i], "opponent": m.players[1 - i]}});
    emit(state, DEFAULT_TENANT, TOURNAMENT, body).await;
}

/// One chat message, sometimes with a stream link.
async fn chat(state: &AppState, rng: &Random) {
    let user = format!("viewer{}", rng.below(50));
    let text = if rng.below(3) == 0 {
        let url = CHANNELS[rng.below(CHANNELS.len() as u64) as usize];
        format!("streaming now: {url}")
    } else {
        CHATTER[rng.below(CHATTER.len() as u64) as usize].to_owned()
    };
    let body = json!({"type": "chat.message", "data": {"user": user, "text": text}});
    emit(state, DEFAULT_TENANT, CHAT, body).await;
}

#[cfg(test)]
mod tests {
    use streambus_core::rule::Rule;

    #[test]
    fn demo_rules_are_valid() {
        for r in super::rules() {
            Rule::from_json(r.clone()).unwrap_or_else(|e| panic!("{r}: {e:?}"));
        }
    }
}
