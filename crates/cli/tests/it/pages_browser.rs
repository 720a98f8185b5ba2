//! The embedded pages in a real browser (issue 4 point 7): `/overlay` and
//! `/admin` served by the real binary and driven in headless Chromium
//! through chromedriver (see browser.rs). The overlay plays its queue in
//! priority order one at a time, an operator's cancel and replay clicked in
//! `/admin` reach the overlay, event text stays text, the overlay page
//! reconnects after a restart and plays what was queued meanwhile; and, with `STREAMBUS_SCREENSHOTS=1`, the screenshots in docs/screenshots/
//! are made. The stream wall has its own file, wall_browser.rs.
//!
//! Every wait polls the page or the API against a deadline.

use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::{Browser, png_size};
use crate::proc::{DEADLINE, Proc, free_port};

/// `<img src=x onerror=alert(1)>`: shown as these characters, run never.
pub(crate) const XSS: &str = "<img src=x onerror=alert(1)>";

// ---- the API, as a producer or an operator script uses it ----

pub(crate) async fn send(req: reqwest::RequestBuilder, what: &str) -> Value {
    let r = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert!(status.is_success(), "{what}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn publish(server: &Proc, event: Value) -> Value {
    send(
        reqwest::Client::new()
            .post(server.url("/api/v1/events"))
            .json(&event),
        "publish",
    )
    .await
}

async fn post(server: &Proc, path: &str) -> Value {
    send(
        reqwest::Client::new()
            .post(server.url(path))
            .json(&json!({})),
        path,
    )
    .await
}

async fn get(server: &Proc, path: &str) -> Value {
    send(reqwest::Client::new().get(server.url(path)), path).await
}

/// Polls `GET /api/v1/overlays/{id}` until `check` passes.
async fn overlay_until(
    server: &Proc,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let start = tokio::time::Instant::now();
    loop {
        let r = reqwest::Client::new()
            .get(server.url(&format!("/api/v1/overlays/{id}")))
            .send()
            .await
            .expect("GET overlay");
        let v = if r.status().is_success() {
            r.json::<Value>().await.expect("overlay json")
        } else {
            Value::Null
        };
        if check(&v) {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A generous `grace_ms` for `overlay`: a page starved of CPU by the browsers
/// of other tests may report an end late, and the server must not time the
/// play out first (the tests check that the page's reports end the plays).
async fn patient(server: &Proc, overlay: &str) {
    send(
        reqwest::Client::new()
            .put(server.url(&format!("/api/v1/overlays/{overlay}/settings")))
            .json(&json!({"grace_ms": 10_000})),
        "overlay settings",
    )
    .await;
}

fn animated(id: &str, ty: &str, message: &str, priority: &str, duration_ms: u64) -> Value {
    json!({"id": id, "stream_id": "match-7", "type": ty, "class": "animated",
           "message": message, "priority": priority, "duration_ms": duration_ms})
}

fn alert(id: &str, ty: &str, message: &str, level: &str) -> Value {
    json!({"id": id, "stream_id": "match-7", "type": ty, "class": "alert",
           "message": message, "level": level})
}

// ---- the pages ----

/// Opens `/overlay?overlay=ID…` and waits until the page is connected and
/// the server counts it.
async fn open_overlay(browser: &Browser, server: &Proc, id: &str, extra: &str) {
    browser
        .open(&server.url(&format!("/overlay?overlay={id}{extra}")))
        .await;
    browser
        .wait_for(
            "the overlay page to connect",
            DEADLINE,
            "return window.__overlay && window.__overlay.connected",
        )
        .await;
    overlay_until(server, id, "the overlay to be connected", |v| {
        v["connected"] == true
    })
    .await;
}

/// Opens `/admin` and waits until its socket is live and its overlay list
/// has loaded.
async fn open_admin(browser: &Browser, server: &Proc) {
    browser.open(&server.url("/admin")).await;
    browser
        .wait_for(
            "the admin page to go live",
            DEADLINE,
            "return !!window.__admin && document.getElementById('conn-text').textContent === 'live' \
             && !!document.querySelector('[data-testid^=\"overlay-\"][data-overlay-card]')",
        )
        .await;
}

/// The overlay page's `__overlay.log` as `(kind, eventId, play)`.
async fn overlay_log(browser: &Browser) -> Vec<(String, String, u64)> {
    let log = browser.eval("return window.__overlay.log").await;
    log.as_array()
        .expect("log")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().expect("kind").to_owned(),
                e["eventId"].as_str().expect("eventId").to_owned(),
                e["play"].as_u64().expect("play"),
            )
        })
        .collect()
}

fn entry(kind: &str, id: &str, play: u64) -> (String, String, u64) {
    (kind.to_owned(), id.to_owned(), play)
}

/// Waits until the overlay page's log holds `kind` for `id` at `play`.
async fn wait_log(browser: &Browser, kind: &str, id: &str, play: u64, deadline: Duration) {
    let script = format!(
        "return window.__overlay.log.some(e => e.kind === '{kind}' && e.eventId === '{id}' && e.play === {play})"
    );
    browser
        .wait_for(&format!("{kind} {id} play {play}"), deadline, &script)
        .await;
}

/// Text of the first element matching `css` (null while there is none).
pub(crate) const TEXT_OF: &str =
    "const el = document.querySelector(arguments[0]); return el && el.textContent";

pub(crate) async fn text_of(browser: &Browser, what: &str, css: &str) -> String {
    let start = tokio::time::Instant::now();
    loop {
        if let Value::String(s) = browser.eval_with(TEXT_OF, json!([css])).await {
            return s;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `N` browsers side by side, or `None` when chromium/chromedriver
/// are missing.
pub(crate) async fn browsers<const N: usize>() -> Option<[Browser; N]> {
    let all: Option<Vec<Browser>> =
        futures_util::future::join_all((0..N).map(|_| Browser::start()))
            .await
            .into_iter()
            .collect();
    Some(all?.try_into().ok().expect("N browsers"))
}

// ---- the tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_plays_queued_animations_one_at_a_time_in_priority_order() {
    let Some([ov]) = browsers::<1>().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let server = Proc::spawn(dir.path(), &[]).await;
    open_overlay(&ov, &server, "main", "").await;
    patient(&server, "main").await;

    post(&server, "/api/v1/overlays/main/pause").await;
    for (id, prio) in [
        ("anim-low", "low"),
        ("anim-critical", "critical"),
        ("anim-normal", "normal"),
    ] {
        publish(&server, animated(id, "highlight", id, prio, 600)).await;
    }
    overlay_until(&server, "main", "three queued while paused", |v| {
        v["paused"] == true && v["queue"].as_array().is_some_and(|q| q.len() == 3)
    })
    .await;
    assert!(
        overlay_log(&ov).await.is_empty(),
        "nothing plays while the queue is paused"
    );
    post(&server, "/api/v1/overlays/main/resume").await;

    ov.wait_for(
        "three ended",
        DEADLINE,
        "return window.__overlay.log.filter(e => e.kind === 'ended').length >= 3",
    )
    .await;
    // One at a time: each starts only after the one before has ended.
    assert_eq!(
        overlay_log(&ov).await,
        [
            entry("started", "anim-critical", 0),
            entry("ended", "anim-critical", 0),
            entry("started", "anim-normal", 0),
            entry("ended", "anim-normal", 0),
            entry("started", "anim-low", 0),
            entry("ended", "anim-low", 0),
        ]
    );
    let log = ov.eval("return window.__overlay.log").await;
    let at: Vec<i64> = log
        .as_array()
        .expect("log")
        .iter()
        .map(|e| e["at"].as_i64().expect("at"))
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] <= w[1]),
        "times in order: {at:?}"
    );
    // Each card was on screen for about its duration (enter, hold, leave).
    for pair in at.chunks(2) {
        assert!(pair[1] - pair[0] >= 500, "played its duration: {at:?}");
    }
    assert_eq!(
        ov.eval("return window.__overlay.playing").await,
        Value::Null
    );

    // The server heard the page's reports: completed, not timed out.
    let v = overlay_until(&server, "main", "three in history", |v| {
        v["history"].as_array().is_some_and(|h| h.len() == 3) && v["now_playing"].is_null()
    })
    .await;
    for item in v["history"].as_array().expect("history") {
        assert_eq!(item["status"], "completed", "{item}");
        assert!(
            item["reason"].is_null(),
            "reported, not timed out: {item}\nhistory: {}\npage log: {log}",
            v["history"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cancel_stops_the_overlay_and_replay_plays_it_again() {
    let Some([ov, adm]) = browsers::<2>().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let server = Proc::spawn(dir.path(), &[]).await;
    open_overlay(&ov, &server, "main", "").await;
    open_admin(&adm, &server).await;

    let id = "long-1";
    let message = "Ana set a new high score: 9,100";
    publish(&server, animated(id, "high_score", message, "high", 60_000)).await;
    ov.wait_for(
        "the overlay to play it",
        DEADLINE,
        &format!(
            "const p = window.__overlay.playing; return p && p.eventId === '{id}' && p.play === 0"
        ),
    )
    .await;

    // The operator clicks Cancel on what plays now.
    let cancel = format!(
        r#"[data-testid="overlay-main"] [data-testid="now-playing"] button[data-action="cancel"][data-overlay="main"][data-event-id="{id}"]"#
    );
    text_of(&adm, "the Cancel button in admin", &cancel).await;
    adm.click(&cancel).await;

    wait_log(&ov, "cancelled", id, 0, DEADLINE).await;
    ov.wait_for(
        "nothing playing and the card gone",
        DEADLINE,
        "return window.__overlay.playing === null && !document.querySelector('[data-testid=overlay-card]')",
    )
    .await;
    assert_eq!(
        overlay_log(&ov).await,
        [entry("started", id, 0), entry("cancelled", id, 0)]
    );

    // Admin shows it cancelled in the card's history, and idle.
    let item = format!(
        r#"[data-testid="overlay-main"] [data-testid="overlay-history"] li[data-event-id="{id}"][data-status="cancelled"]"#
    );
    let text = text_of(&adm, "the cancelled item in admin's history", &item).await;
    assert!(
        text.contains("cancelled") && text.contains(message),
        "history item: {text}"
    );
    let now = text_of(
        &adm,
        "admin idle",
        r#"[data-testid="overlay-main"] [data-testid="now-playing"].is-idle"#,
    )
    .await;
    assert!(now.contains("Idle"), "{now}");
    // The API agrees.
    let v = overlay_until(&server, "main", "cancelled in history", |v| {
        v["now_playing"].is_null() && v["history"][0]["event_id"] == id
    })
    .await;
    assert_eq!(v["history"][0]["status"], "cancelled", "{v}");
    assert_eq!(v["history"][0]["play"], 0, "{v}");
    let event = get(&server, &format!("/api/v1/events/{id}")).await;
    assert_eq!(event["status"], "cancelled", "{event}");

    // Replay from the history: the overlay plays it again, as play 1.
    let replay = format!(
        r#"[data-testid="overlay-main"] [data-testid="overlay-history"] button[data-action="replay"][data-overlay="main"][data-event-id="{id}"]"#
    );
    adm.click(&replay).await;
    wait_log(&ov, "started", id, 1, DEADLINE).await;
    let playing = ov.eval("return window.__overlay.playing").await;
    assert_eq!(playing["eventId"], id, "{playing}");
    assert_eq!(playing["play"], 1, "{playing}");
    assert_eq!(playing["message"], message, "{playing}");
    assert_eq!(
        overlay_log(&ov).await,
        [
            entry("started", id, 0),
            entry("cancelled", id, 0),
            entry("started", id, 1)
        ]
    );
    let now = text_of(
        &adm,
        "admin playing the replay",
        &format!(r#"[data-testid="overlay-main"] [data-testid="now-playing"][data-event-id="{id}"][data-play="1"]"#),
    )
    .await;
    assert!(
        now.contains("replay 1") && now.contains(message),
        "now playing: {now}"
    );
    let v = overlay_until(&server, "main", "the replay playing", |v| {
        v["now_playing"]["event_id"] == id && v["now_playing"]["play"] == 1
    })
    .await;
    assert_eq!(v["now_playing"]["status"], "active", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_text_renders_as_text_on_the_overlay_and_in_admin() {
    let Some([ov, adm]) = browsers::<2>().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let server = Proc::spawn(dir.path(), &[]).await;
    open_overlay(&ov, &server, "main", "").await;
    open_admin(&adm, &server).await;

    publish(
        &server,
        animated("xss-anim", "chat_highlight", XSS, "normal", 60_000),
    )
    .await;
    publish(&server, alert("xss-alert", "moderation", XSS, "warning")).await;

    // The overlay: the card and the toast show the characters.
    let card = text_of(
        &ov,
        "the overlay card",
        r#"[data-testid="overlay-card"][data-event-id="xss-anim"] .card-message"#,
    )
    .await;
    assert_eq!(card, XSS);
    let toast = text_of(
        &ov,
        "the overlay toast",
        r#"[data-testid="overlay-alert"][data-event-id="xss-alert"] .toast-message"#,
    )
    .await;
    assert_eq!(toast, XSS);
    assert_eq!(
        ov.eval("return document.querySelectorAll('img').length")
            .await,
        0,
        "no element was made from the text"
    );
    assert_eq!(
        ov.eval("return window.__overlay.playing.message").await,
        XSS
    );

    // Admin: the monitor rows and the now-playing panel.
    for id in ["xss-anim", "xss-alert"] {
        let row = text_of(
            &adm,
            "the monitor row",
            &format!(r#"[data-testid="monitor-table"] tr[data-event-id="{id}"] .msg"#),
        )
        .await;
        assert_eq!(row, XSS, "monitor row of {id}");
    }
    let now = text_of(
        &adm,
        "admin now playing",
        r#"[data-testid="overlay-main"] [data-testid="now-playing"][data-event-id="xss-anim"] .ov-now-message"#,
    )
    .await;
    assert_eq!(now, XSS);
    assert_eq!(
        adm.eval(
            "return Array.from(document.images).filter(i => i.getAttribute('src') !== '/assets/favicon.svg').length"
        )
        .await,
        0,
        "no element was made from the text"
    );

    // And nothing ran: neither page has an alert open.
    for page in [&ov, &adm] {
        assert_eq!(page.alert_text().await, Err("no such alert".to_owned()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_reconnects_after_a_restart_and_plays_what_was_queued() {
    let Some([ov]) = browsers::<1>().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let mut server = Proc::spawn_on(port, dir.path(), &[]).await;
    open_overlay(&ov, &server, "main", "&debug=1").await;
    assert_eq!(
        ov.eval("return window.__overlay.playing").await,
        Value::Null
    );
    // A mark that only this document carries: a reload would lose it.
    ov.eval("window.__sameDocument = true").await;

    // SIGTERM: the server closes the page's socket and exits.
    server.sigterm();
    let status = tokio::time::timeout(DEADLINE, server.child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
    ov.wait_for(
        "the page to notice",
        DEADLINE,
        "return window.__overlay.connected === false",
    )
    .await;

    // While the page is away, the same data dir serves on another port (one
    // the page does not know): an alert and an animated event go in there,
    // so they are certainly published while the page is disconnected.
    let mut interim = Proc::spawn(dir.path(), &[]).await;
    publish(
        &interim,
        alert(
            "while-down-alert",
            "stream_delay",
            "Stream delay raised to 30 s",
            "info",
        ),
    )
    .await;
    publish(
        &interim,
        animated(
            "while-down",
            "win_streak",
            "Red Rockets: 5 wins in a row",
            "normal",
            600,
        ),
    )
    .await;
    interim.sigterm();
    tokio::time::timeout(DEADLINE, interim.child.wait())
        .await
        .expect("interim exits in time")
        .expect("wait");
    assert!(overlay_log(&ov).await.is_empty());

    // Back on the page's port: it reconnects by itself (not reloaded).
    let server = Proc::spawn_on(port, dir.path(), &[]).await;
    publish(
        &server,
        animated(
            "after-restart",
            "high_score",
            "Ana set a new high score: 9,100",
            "normal",
            600,
        ),
    )
    .await;
    // The SDK's backoff may wait up to 10 s between tries.
    wait_log(&ov, "ended", "after-restart", 0, DEADLINE * 2).await;
    assert_eq!(
        overlay_log(&ov).await,
        [
            entry("started", "while-down", 0),
            entry("ended", "while-down", 0),
            entry("started", "after-restart", 0),
            entry("ended", "after-restart", 0),
        ]
    );
    assert_eq!(ov.eval("return window.__overlay.connected").await, true);
    assert_eq!(
        ov.eval("return window.__sameDocument === true").await,
        true,
        "the page was not reloaded"
    );
    let alerts = ov
        .eval("return window.__overlay.alerts.map(a => a.eventId)")
        .await;
    assert_eq!(alerts, json!(["while-down-alert"]), "the alert, once");
    let debug = ov
        .eval("return document.querySelector('[data-testid=overlay-debug]').textContent")
        .await;
    assert!(
        debug.as_str().is_some_and(|d| d.contains("connected")),
        "{debug}"
    );
}

/// Screenshots for the docs: only written with `STREAMBUS_SCREENSHOTS=1`;
/// without it they are still taken and checked to be PNGs of the size asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_of_admin_and_overlay() {
    let Some([ov, adm]) = browsers::<2>().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let server = Proc::spawn(dir.path(), &[]).await;
    ov.set_viewport(1920, 1080).await;
    open_overlay(&ov, &server, "main", "").await;
    patient(&server, "main").await;
    // A second overlay, known from its stored subscription, not connected.
    send(
        reqwest::Client::new()
            .put(server.url("/api/v1/subscriptions/lower-third"))
            .json(&json!({"eventTypes": ["win_*", "sponsor_*"]})),
        "store a subscription",
    )
    .await;

    // Some history: two plays that finished and one cancelled.
    for (id, ty, msg, prio) in [
        (
            "e-goal",
            "goal",
            "Goal! Blue Sharks 2 – 1 Red Rockets",
            "normal",
        ),
        ("e-first", "first_blood", "Kai draws first blood", "low"),
    ] {
        publish(&server, animated(id, ty, msg, prio, 700)).await;
    }
    wait_log(&ov, "ended", "e-first", 0, DEADLINE).await;
    let mut cut = animated(
        "e-mvp",
        "mvp",
        "Match MVP: Lena (31 kills)",
        "normal",
        60_000,
    );
    cut["metadata"] = json!({"test": true});
    publish(&server, cut).await;
    wait_log(&ov, "started", "e-mvp", 0, DEADLINE).await;
    send(
        reqwest::Client::new()
            .put(server.url("/api/v1/events/e-mvp/cancel"))
            .json(&json!({"target_overlay": "main"})),
        "cancel",
    )
    .await;
    wait_log(&ov, "cancelled", "e-mvp", 0, DEADLINE).await;

    // Now playing, with data, and an alert.
    let mut hs = animated(
        "e-high-score",
        "high_score",
        "Ana set a new high score: 9,100",
        "high",
        60_000,
    );
    hs["data"] = json!({"player": "Ana", "score": 9100, "level": 12});
    publish(&server, hs).await;
    publish(
        &server,
        alert(
            "e-delay",
            "stream_delay",
            "Stream delay raised to 30 s",
            "warning",
        ),
    )
    .await;
    // Mid-animation: the card and the toast have finished coming in.
    ov.wait_for(
        "the card and the toast in place",
        DEADLINE,
        "const c = document.querySelector('[data-testid=overlay-card][data-event-id=\"e-high-score\"]'); \
         const t = document.querySelector('[data-testid=overlay-alert][data-event-id=\"e-delay\"]'); \
         const settled = (el) => el && el.getAnimations().every(a => a.playState === 'finished'); \
         return settled(c) && settled(t)",
    )
    .await;
    let overlay_png = ov.screenshot().await;
    assert_eq!(png_size(&overlay_png), (1920, 1080));

    // A queue behind it, and other traffic for the monitor.
    for (id, ty, msg, prio) in [
        (
            "e-streak",
            "win_streak",
            "Red Rockets: 5 wins in a row",
            "normal",
        ),
        (
            "e-sponsor",
            "sponsor_break",
            "Brought to you by Nordlicht Energy",
            "low",
        ),
        (
            "e-final",
            "round_start",
            "Grand final: round 3 starts now",
            "critical",
        ),
    ] {
        publish(&server, animated(id, ty, msg, prio, 8000)).await;
    }
    for (ty, msg, data) in [
        (
            "score_update",
            "Blue Sharks 2 – 1 Red Rockets",
            json!({"home": 2, "away": 1}),
        ),
        ("viewer_count", "12,480 watching", json!({"viewers": 12480})),
        (
            "kill_feed",
            "Lena eliminated Kai",
            json!({"by": "Lena", "victim": "Kai"}),
        ),
    ] {
        publish(
            &server,
            json!({"stream_id": "match-7", "type": ty, "message": msg, "data": data}),
        )
        .await;
    }
    publish(
        &server,
        alert("e-mod", "moderation", "Chat slow mode on (10 s)", "info"),
    )
    .await;
    overlay_until(&server, "main", "three queued", |v| {
        v["queue"].as_array().is_some_and(|q| q.len() == 3)
    })
    .await;

    adm.set_viewport(1600, 1000).await;
    open_admin(&adm, &server).await;
    adm.wait_for(
        "admin to show the playing item, the queue, history and the monitor",
        DEADLINE,
        r#"const card = document.querySelector('[data-testid="overlay-main"]');
           return !!card
             && !!card.querySelector('[data-testid="now-playing"][data-event-id="e-high-score"]')
             && card.querySelectorAll('[data-testid="overlay-queue"] li').length === 3
             && card.querySelectorAll('[data-testid="overlay-history"] li').length === 3
             && !!document.querySelector('[data-testid="overlay-lower-third"]')
             && document.querySelectorAll('#monitor-rows tr').length >= 10"#,
    )
    .await;
    let admin_png = adm.screenshot().await;
    assert_eq!(png_size(&admin_png), (1600, 1000));

    write_screenshots(&[("admin.png", &admin_png), ("overlay.png", &overlay_png)]);
}

/// Writes `shots` (file name, PNG) to docs/screenshots/, only with
/// `STREAMBUS_SCREENSHOTS=1`.
pub(crate) fn write_screenshots(shots: &[(&str, &[u8])]) {
    if std::env::var("STREAMBUS_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&out).expect("docs/screenshots");
    for (name, png) in shots {
        std::fs::write(out.join(name), png).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("wrote {}", out.join(name).display());
    }
}
