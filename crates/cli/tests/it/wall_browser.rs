//! The stream wall (`/wall`, seed 002) in a real browser: it follows the
//! `streams` registry tile by tile, renders text as text, takes a fresh
//! snapshot after a restart, and (with `STREAMBUS_SCREENSHOTS=1`) makes
//! docs/screenshots/wall.png. Every wait polls the page or the API against a
//! deadline.

use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::{Browser, png_size};
use crate::pages_browser::{XSS, browsers, send, text_of, write_screenshots};
use crate::proc::{DEADLINE, Proc, free_port};

// ---- the stream wall (`/wall`, seed 002) ----

/// RFC 3339 for `secs_ago` seconds before now.
fn seen_ago(secs_ago: i64) -> String {
    streambus_core::time::rfc3339_ms(streambus_core::time::now_ms() - secs_ago * 1000)
}

/// `doc` with a `title`.
fn titled(mut doc: Value, title: &str) -> Value {
    doc["title"] = json!(title);
    doc
}

/// A registry document as the chat rule engine writes it.
fn stream_doc(platform: &str, channel: &str, url: &str, mentions: u64, secs_ago: i64) -> Value {
    json!({"platform": platform, "channel": channel, "url": url, "video_id": null,
           "seen_by": "mod_anna", "first_seen": seen_ago(secs_ago + 600),
           "last_seen": seen_ago(secs_ago), "mentions": mentions, "live": true})
}

async fn state_put(server: &Proc, key: &str, doc: &Value) -> Value {
    send(
        reqwest::Client::new()
            .put(server.url(&format!("/api/v1/state/streams/{key}")))
            .json(doc),
        "PUT state",
    )
    .await
}

async fn state_patch(server: &Proc, key: &str, patch: &Value) -> Value {
    send(
        reqwest::Client::new()
            .patch(server.url(&format!("/api/v1/state/streams/{key}")))
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string()),
        "PATCH state",
    )
    .await
}

async fn state_delete(server: &Proc, key: &str) {
    send(
        reqwest::Client::new().delete(server.url(&format!("/api/v1/state/streams/{key}"))),
        "DELETE state",
    )
    .await;
}

/// Opens `/wall…` and waits until its snapshot has arrived.
async fn open_wall(browser: &Browser, server: &Proc, query: &str) {
    browser.open(&server.url(&format!("/wall{query}"))).await;
    browser
        .wait_for(
            "the wall to load the registry",
            DEADLINE,
            "return !!window.__wall && window.__wall.live \
             && document.getElementById('conn-text').textContent === 'live'",
        )
        .await;
}

/// The keys of the tiles shown, in grid order, read from the DOM.
const TILE_KEYS: &str = "return Array.from(document.querySelectorAll('[data-testid=\"wall-tile\"]')).map(t => t.dataset.key)";

/// Waits until the grid shows exactly `keys`, in this order.
async fn wait_tiles(browser: &Browser, what: &str, keys: &[&str]) {
    let script = format!("{TILE_KEYS}.join('|') === {:?}", keys.join("|"));
    let start = tokio::time::Instant::now();
    while browser.eval(&script).await != true {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}: tiles {}",
            browser.eval(TILE_KEYS).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tile(key: &str) -> String {
    format!(r#"[data-testid="wall-tile"][data-key="{key}"]"#)
}

/// The text of `part` (a `data-testid`) inside the tile of `key`.
async fn tile_text(browser: &Browser, key: &str, part: &str) -> String {
    text_of(
        browser,
        &format!("{part} of {key}"),
        &format!(r#"{} [data-testid="{part}"]"#, tile(key)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_follows_the_registry_tile_by_tile_and_renders_text_as_text() {
    let Some([wall]) = browsers::<1>().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let server = Proc::spawn(dir.path(), &[]).await;
    open_wall(&wall, &server, "?token=wall-token").await;
    assert_eq!(
        wall.eval("return window.__wallClient.token").await,
        "wall-token",
        "the token is read from ?token="
    );
    assert_eq!(wall.eval(TILE_KEYS).await, json!([]));
    let empty = text_of(&wall, "the empty notice", r#"[data-testid="wall-empty"]"#).await;
    assert!(empty.contains("No streams"), "{empty}");

    // Two streams spotted in chat: two tiles, the newest activity first.
    let shroud = stream_doc("twitch", "shroud", "https://www.twitch.tv/shroud", 3, 40);
    state_put(&server, "twitch:shroud", &shroud).await;
    // Only the fields the key cannot give: the rest is optional.
    state_put(
        &server,
        "youtube:dQw4w9WgXcQ",
        &json!({"platform": "youtube", "channel": "dQw4w9WgXcQ",
                "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
                "video_id": "dQw4w9WgXcQ", "last_seen": seen_ago(5)}),
    )
    .await;
    wait_tiles(
        &wall,
        "two tiles",
        &["youtube:dQw4w9WgXcQ", "twitch:shroud"],
    )
    .await;
    for (key, platform, badge) in [
        ("twitch:shroud", "twitch", "Twitch"),
        ("youtube:dQw4w9WgXcQ", "youtube", "YouTube"),
    ] {
        let shown = wall
            .eval_with(
                "return document.querySelector(arguments[0]).dataset.platform",
                json!([tile(key)]),
            )
            .await;
        assert_eq!(shown, platform, "{key}");
        assert_eq!(tile_text(&wall, key, "wall-platform").await, badge);
    }
    assert_eq!(
        tile_text(&wall, "twitch:shroud", "wall-channel").await,
        "shroud"
    );
    assert_eq!(
        tile_text(&wall, "twitch:shroud", "wall-mentions").await,
        "3 mentions"
    );
    let seen = tile_text(&wall, "twitch:shroud", "wall-seen").await;
    assert!(
        seen.starts_with("last seen ") && seen.ends_with(" s ago"),
        "{seen}"
    );
    assert_eq!(
        wall.eval_with(
            "return document.querySelector(arguments[0] + ' a[data-testid=wall-link]').href",
            json!([tile("twitch:shroud")]),
        )
        .await,
        "https://www.twitch.tv/shroud"
    );
    assert_eq!(
        text_of(
            &wall,
            "the twitch count",
            r#"[data-testid="wall-count-twitch"]"#
        )
        .await,
        "1"
    );
    assert_eq!(
        text_of(&wall, "the total", r#"[data-testid="wall-count-all"]"#).await,
        "2"
    );

    // A change to one: its tile updates in place and moves to the front.
    state_patch(
        &server,
        "twitch:shroud",
        &json!({"mentions": 4, "title": "ranked grind", "last_seen": seen_ago(0), "live": false}),
    )
    .await;
    wall.wait_for(
        "the twitch tile at version 2",
        DEADLINE,
        &format!(
            "return document.querySelector('{}[data-version=\"2\"]')",
            tile("twitch:shroud").replace('\'', "\\'")
        ),
    )
    .await;
    assert_eq!(
        tile_text(&wall, "twitch:shroud", "wall-mentions").await,
        "4 mentions"
    );
    assert_eq!(
        tile_text(&wall, "twitch:shroud", "wall-title").await,
        "ranked grind"
    );
    wait_tiles(
        &wall,
        "the changed tile first",
        &["twitch:shroud", "youtube:dQw4w9WgXcQ"],
    )
    .await;

    // The platform filter.
    wall.click(r#"[data-testid="wall-filter-youtube"]"#).await;
    wait_tiles(&wall, "only youtube", &["youtube:dQw4w9WgXcQ"]).await;
    wall.click(r#"[data-testid="wall-filter-all"]"#).await;
    wait_tiles(
        &wall,
        "all again",
        &["twitch:shroud", "youtube:dQw4w9WgXcQ"],
    )
    .await;

    // A deleted key: its tile goes.
    state_delete(&server, "youtube:dQw4w9WgXcQ").await;
    wait_tiles(&wall, "the youtube tile gone", &["twitch:shroud"]).await;
    assert_eq!(
        text_of(
            &wall,
            "the youtube count",
            r#"[data-testid="wall-count-youtube"]"#
        )
        .await,
        "0"
    );

    // Markup in a document is shown as characters; a URL that is not
    // http(s) is text, not a link.
    state_put(
        &server,
        "other:xss",
        &json!({"platform": XSS, "channel": XSS, "title": XSS, "seen_by": XSS,
                "url": "javascript:alert(1)", "last_seen": seen_ago(0), "mentions": 1}),
    )
    .await;
    wait_tiles(&wall, "the xss tile", &["other:xss", "twitch:shroud"]).await;
    assert_eq!(tile_text(&wall, "other:xss", "wall-channel").await, XSS);
    assert_eq!(tile_text(&wall, "other:xss", "wall-title").await, XSS);
    assert_eq!(tile_text(&wall, "other:xss", "wall-platform").await, XSS);
    assert_eq!(
        tile_text(&wall, "other:xss", "wall-link").await,
        "javascript:alert(1)"
    );
    assert_eq!(
        wall.eval_with(
            "return document.querySelectorAll(arguments[0] + ' a').length",
            json!([tile("other:xss")]),
        )
        .await,
        0,
        "no link for a javascript: URL"
    );
    assert_eq!(
        wall.eval(
            "return Array.from(document.images).filter(i => i.getAttribute('src') !== '/assets/favicon.svg').length"
        )
        .await,
        0,
        "no element was made from the text"
    );
    assert_eq!(wall.alert_text().await, Err("no such alert".to_owned()));
    assert_eq!(
        text_of(
            &wall,
            "the other count",
            r#"[data-testid="wall-count-other"]"#
        )
        .await,
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_reconnects_after_a_restart_with_a_fresh_snapshot() {
    let Some([wall]) = browsers::<1>().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let mut server = Proc::spawn_on(port, dir.path(), &[]).await;
    state_put(
        &server,
        "twitch:shroud",
        &stream_doc("twitch", "shroud", "https://www.twitch.tv/shroud", 3, 30),
    )
    .await;
    state_put(
        &server,
        "kick:xqc",
        &stream_doc("kick", "xqc", "https://kick.com/xqc", 1, 20),
    )
    .await;
    open_wall(&wall, &server, "").await;
    wait_tiles(&wall, "two tiles", &["kick:xqc", "twitch:shroud"]).await;
    // A mark that only this document carries: a reload would lose it.
    wall.eval("window.__sameDocument = true").await;

    server.sigterm();
    let status = tokio::time::timeout(DEADLINE, server.child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
    wall.wait_for(
        "the page to notice",
        DEADLINE,
        "return window.__wall.connected === false \
         && document.getElementById('conn-text').textContent === 'reconnecting…'",
    )
    .await;
    assert_eq!(
        wall.eval(TILE_KEYS).await,
        json!(["kick:xqc", "twitch:shroud"]),
        "the tiles stay while the page is away"
    );

    // While the page is away, the same data dir serves on a port the page
    // does not know: one change, one delete, one new stream.
    let mut interim = Proc::spawn(dir.path(), &[]).await;
    state_patch(
        &interim,
        "twitch:shroud",
        &json!({"mentions": 9, "last_seen": seen_ago(2)}),
    )
    .await;
    state_delete(&interim, "kick:xqc").await;
    state_put(
        &interim,
        "facebook:nasa",
        &stream_doc(
            "facebook",
            "nasa",
            "https://www.facebook.com/nasa/live",
            2,
            10,
        ),
    )
    .await;
    interim.sigterm();
    tokio::time::timeout(DEADLINE, interim.child.wait())
        .await
        .expect("interim exits in time")
        .expect("wait");

    // Back on the page's port: it reconnects by itself, and the snapshot
    // replaces what it held — nothing else.
    let server = Proc::spawn_on(port, dir.path(), &[]).await;
    // The SDK's backoff may wait up to 10 s between tries.
    wall.wait_for(
        "the page to take a second snapshot",
        DEADLINE * 2,
        "return window.__wall.live && window.__wall.snapshots >= 2",
    )
    .await;
    wait_tiles(
        &wall,
        "the registry as it is now",
        &["twitch:shroud", "facebook:nasa"],
    )
    .await;
    assert_eq!(
        tile_text(&wall, "twitch:shroud", "wall-mentions").await,
        "9 mentions"
    );
    assert_eq!(
        wall.eval_with(
            "return document.querySelector(arguments[0]).dataset.version",
            json!([tile("twitch:shroud")]),
        )
        .await,
        "2"
    );
    assert_eq!(
        wall.eval("return window.__sameDocument === true").await,
        true,
        "the page was not reloaded"
    );

    // Live again: a change after the restart arrives as a change.
    let changes = wall.eval("return window.__wall.changes").await;
    state_put(
        &server,
        "x:spacex",
        &stream_doc("x", "spacex", "https://x.com/SpaceX", 5, 0),
    )
    .await;
    wait_tiles(
        &wall,
        "the new stream",
        &["x:spacex", "twitch:shroud", "facebook:nasa"],
    )
    .await;
    assert_eq!(
        wall.eval("return window.__wall.changes").await,
        json!(changes.as_u64().expect("changes") + 1)
    );
    assert_eq!(text_of(&wall, "the connection", "#conn-text").await, "live");
}

/// The wall's screenshot for the docs (see `write_screenshots`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshot_of_the_wall() {
    let Some([wall]) = browsers::<1>().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let server = Proc::spawn(dir.path(), &[]).await;
    let docs = [
        (
            "twitch:shroud",
            titled(
                stream_doc("twitch", "shroud", "https://www.twitch.tv/shroud", 14, 4),
                "ranked grind, then customs with viewers",
            ),
        ),
        (
            "youtube:dQw4w9WgXcQ",
            json!({"platform": "youtube", "channel": "dQw4w9WgXcQ",
                   "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
                   "video_id": "dQw4w9WgXcQ", "title": "City council live: budget vote",
                   "seen_by": "lena_k", "last_seen": seen_ago(9), "mentions": 6, "live": true}),
        ),
        (
            "kick:xqc",
            stream_doc("kick", "xqc", "https://kick.com/xqc", 3, 21),
        ),
        (
            "facebook:nasa",
            titled(
                stream_doc(
                    "facebook",
                    "nasa",
                    "https://www.facebook.com/nasa/live",
                    2,
                    35,
                ),
                "Spacewalk coverage",
            ),
        ),
        (
            "tiktok:streetcam_ny",
            titled(
                stream_doc(
                    "tiktok",
                    "streetcam_ny",
                    "https://www.tiktok.com/@streetcam_ny/live",
                    8,
                    48,
                ),
                "Times Square right now",
            ),
        ),
        (
            "instagram:natgeo",
            stream_doc(
                "instagram",
                "natgeo",
                "https://www.instagram.com/natgeo/live",
                1,
                70,
            ),
        ),
        (
            "x:spacex",
            titled(
                stream_doc("x", "SpaceX", "https://x.com/SpaceX", 11, 95),
                "Starship flight test",
            ),
        ),
        (
            "twitch:pokimane",
            json!({"platform": "twitch", "channel": "pokimane",
                   "url": "https://www.twitch.tv/pokimane", "seen_by": "chat_bot",
                   "last_seen": seen_ago(300), "mentions": 2, "live": false}),
        ),
        (
            "other:radio-ffm",
            json!({"platform": "other", "channel": "radio-ffm",
                   "url": "https://radio.example/ffm/live", "seen_by": "moritz",
                   "last_seen": seen_ago(140), "mentions": 1}),
        ),
    ];
    for (key, doc) in &docs {
        state_put(&server, key, doc).await;
    }
    wall.set_viewport(1480, 540).await;
    open_wall(&wall, &server, "").await;
    wall.wait_for(
        "every tile",
        DEADLINE,
        &format!(
            "return document.querySelectorAll('[data-testid=\"wall-tile\"]').length === {}",
            docs.len()
        ),
    )
    .await;
    // One change after the snapshot, so a tile flashes as it would live.
    state_patch(&server, "twitch:shroud", &json!({"mentions": 15})).await;
    wall.wait_for("the change", DEADLINE, "return window.__wall.changes === 1")
        .await;
    let png = wall.screenshot().await;
    assert_eq!(png_size(&png), (1480, 540));
    write_screenshots(&[("wall.png", &png)]);
}
