//! The Rules panel of `/admin` (SPEC §3.4 "rules"; docs/RULES.md,
//! docs/PAGES.md) in a real browser against the real binary: it lists the
//! rules made over the API, shows a firing's count, flips a rule's
//! `enabled` with its switch, tests a sample event without publishing, and
//! renders a rule's text as text; a rule from the configuration cannot be
//! switched. The browser helpers are pages_browser.rs's and browser.rs's.

use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::pages_browser::{TEXT_OF, XSS, browsers, send, text_of};
use crate::proc::{DEADLINE, Proc, free_port};

/// The panel polls every 5 s: a change shows within one poll, with room
/// for a browser starved of CPU by other tests.
const PANEL: Duration = Duration::from_secs(20);

async fn create_rule(server: &Proc, rule: Value) -> Value {
    send(
        reqwest::Client::new()
            .post(server.url("/api/v1/rules"))
            .json(&rule),
        "create rule",
    )
    .await
}

async fn get_rule(server: &Proc, id: &str) -> Value {
    send(
        reqwest::Client::new().get(server.url(&format!("/api/v1/rules/{id}"))),
        "GET rule",
    )
    .await
}

/// The row of rule `id`, or the part `testid` inside it.
fn row(id: &str) -> String {
    format!(r#"[data-testid="rule-row"][data-id="{id}"]"#)
}

fn part(id: &str, testid: &str) -> String {
    format!(r#"{} [data-testid="{testid}"]"#, row(id))
}

/// Waits until the text of `css` is `want`.
async fn wait_text(browser: &Browser, what: &str, css: &str, want: &str, deadline: Duration) {
    let start = tokio::time::Instant::now();
    loop {
        let got = browser.eval_with(TEXT_OF, json!([css])).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out waiting for {what}: {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens `/admin` and waits until the Rules panel has answered once.
async fn open_admin(browser: &Browser, server: &Proc) {
    browser.open(&server.url("/admin")).await;
    browser
        .wait_for(
            "the rules panel to load",
            DEADLINE,
            "return !!window.__admin && !!window.__admin.sections.rules \
             && document.getElementById('rules-empty').textContent !== 'Loading rules…'",
        )
        .await;
}

/// The ids of the rule rows, in page order.
const ROW_IDS: &str = "return Array.from(document.querySelectorAll('[data-testid=\"rule-row\"]')).map(r => r.dataset.id)";

/// Sets the sample of rule `id`, runs its test and waits for a result
/// other than the "Testing…" placeholder; returns it.
async fn run_test(browser: &Browser, id: &str, sample: &str) -> String {
    browser
        .eval_with(
            "const el = document.querySelector(arguments[0]); el.value = arguments[1]; \
             document.querySelector(arguments[2]).textContent = '';",
            json!([
                part(id, "rule-test-input"),
                sample,
                part(id, "rule-test-result")
            ]),
        )
        .await;
    browser.click(&part(id, "rule-test-run")).await;
    let script = format!(
        "const t = document.querySelector({:?}).textContent; return t !== 'Testing…' && t",
        part(id, "rule-test-result")
    );
    browser
        .wait_for(&format!("the test result of {id}"), DEADLINE, &script)
        .await
        .as_str()
        .expect("text")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_panel_lists_counts_switches_and_tests_rules() {
    let Some([adm]) = browsers::<1>().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let server = Proc::spawn(dir.path(), &[]).await;

    // No rule yet: the empty state.
    open_admin(&adm, &server).await;
    assert_eq!(
        text_of(&adm, "the empty state", r#"[data-testid="rules-empty"]"#).await,
        "No rules yet — see docs/RULES.md"
    );
    assert_eq!(adm.eval(ROW_IDS).await, json!([]));

    // Two rules over the API; the panel's next poll shows them.
    create_rule(
        &server,
        json!({"id": "goal-alert", "description": XSS,
               "when": {"eventTypes": ["goal"]}, "detect": {"kind": "map"},
               "emit": {"type": "alert.goal", "class": "alert",
                        "message": "GOAL {{event.data.player}}!"}}),
    )
    .await;
    create_rule(
        &server,
        json!({"id": "tournament-high-score",
               "description": "a new best score per tournament",
               "when": {"streams": ["match"], "eventTypes": ["score.updated"]},
               "detect": {"kind": "high_score", "field": "data.score",
                          "scope": ["metadata.tournament_id"], "subject": "data.player"},
               "emit": {"type": "high_score", "stream": "overlays",
                        "message": "{{subject}} sets a new record: {{value}}"},
               "state": {"stream": "records",
                         "key": "tournament-{{event.metadata.tournament_id}}"}}),
    )
    .await;
    adm.wait_for(
        "both rows",
        PANEL,
        &format!("{ROW_IDS}.join('|') === 'goal-alert|tournament-high-score'"),
    )
    .await;

    let hs = "tournament-high-score";
    assert_eq!(
        text_of(&adm, "kind", &part(hs, "rule-kind")).await,
        "high_score"
    );
    assert_eq!(
        text_of(&adm, "summary", &part(hs, "rule-summary")).await,
        "high score of data.score per metadata.tournament_id, by data.player"
    );
    assert_eq!(
        text_of(&adm, "description", &part(hs, "rule-description")).await,
        "a new best score per tournament"
    );
    assert_eq!(
        text_of(&adm, "when", &part(hs, "rule-when")).await,
        "when types score.updated · streams match"
    );
    assert_eq!(
        text_of(
            &adm,
            "kind of the map rule",
            &part("goal-alert", "rule-kind")
        )
        .await,
        "map"
    );
    for id in ["goal-alert", hs] {
        assert_eq!(
            text_of(&adm, "origin", &part(id, "rule-origin")).await,
            "api"
        );
        assert_eq!(text_of(&adm, "fired", &part(id, "rule-fired")).await, "0");
        assert_eq!(
            text_of(&adm, "last fired", &part(id, "rule-last-fired")).await,
            "never"
        );
        assert_eq!(
            text_of(&adm, "last error", &part(id, "rule-error")).await,
            "—"
        );
        let switch = adm
            .eval_with(
                "const s = document.querySelector(arguments[0]); \
                 return [s.checked, s.disabled, s.getAttribute('role'), s.title]",
                json!([part(id, "rule-enabled")]),
            )
            .await;
        assert_eq!(switch, json!([true, false, "switch", ""]), "{id}");
    }

    // The description with markup is shown as its characters; nothing ran.
    assert_eq!(
        text_of(
            &adm,
            "the xss description",
            &part("goal-alert", "rule-description")
        )
        .await,
        XSS
    );
    assert_eq!(
        adm.eval(
            "return Array.from(document.images).filter(i => i.getAttribute('src') !== '/assets/favicon.svg').length"
        )
        .await,
        0,
        "no element was made from the text"
    );
    assert_eq!(adm.alert_text().await, Err("no such alert".to_owned()));

    // An event that fires the map rule: its count goes to 1 in the panel.
    send(
        reqwest::Client::new()
            .post(server.url("/api/v1/events"))
            .json(&json!({"stream_id": "match", "type": "goal", "data": {"player": "ana"}})),
        "publish",
    )
    .await;
    wait_text(
        &adm,
        "the map rule's count",
        &part("goal-alert", "rule-fired"),
        "1",
        PANEL,
    )
    .await;
    let last = text_of(&adm, "last fired", &part("goal-alert", "rule-last-fired")).await;
    assert!(last.ends_with(" s ago"), "{last}");
    assert_eq!(
        text_of(&adm, "the other count", &part(hs, "rule-fired")).await,
        "0"
    );

    // The switch: a click disables the rule over the API.
    adm.click(&part("goal-alert", "rule-enabled")).await;
    let start = tokio::time::Instant::now();
    loop {
        let rule = get_rule(&server, "goal-alert").await;
        if rule["enabled"] == false {
            // The PUT kept the rest of the definition.
            assert_eq!(rule["description"], XSS, "{rule}");
            assert_eq!(rule["emit"]["type"], "alert.goal", "{rule}");
            break;
        }
        assert!(start.elapsed() < DEADLINE, "still enabled: {rule}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    adm.wait_for(
        "the switch to show off",
        DEADLINE,
        &format!(
            "const s = document.querySelector({:?}); return !s.checked && !s.disabled \
             && document.querySelector({:?}).classList.contains('is-disabled')",
            part("goal-alert", "rule-enabled"),
            row("goal-alert")
        ),
    )
    .await;
    assert_eq!(
        get_rule(&server, hs).await["enabled"],
        true,
        "the other rule is untouched"
    );

    // Test: the panel opens on the button, prefilled with a sample the
    // rule looks at.
    let toggle = part(hs, "rule-test-toggle");
    assert_eq!(
        adm.eval_with(
            "return document.querySelector(arguments[0]).hidden",
            json!([part(hs, "rule-test")])
        )
        .await,
        true
    );
    adm.click(&toggle).await;
    assert_eq!(
        adm.eval_with(
            "return [document.querySelector(arguments[0]).getAttribute('aria-expanded'), \
             document.activeElement === document.querySelector(arguments[1])]",
            json!([toggle, part(hs, "rule-test-input")])
        )
        .await,
        json!(["true", true]),
        "expanded, and the sample has the focus"
    );
    let prefilled = adm
        .eval_with(
            "return JSON.parse(document.querySelector(arguments[0]).value)",
            json!([part(hs, "rule-test-input")]),
        )
        .await;
    assert_eq!(prefilled["type"], "score.updated", "{prefilled}");
    assert_eq!(prefilled["stream_id"], "match", "{prefilled}");
    assert!(prefilled["data"]["score"].is_number(), "{prefilled}");
    assert!(
        prefilled["metadata"]["tournament_id"].is_string(),
        "{prefilled}"
    );
    assert!(prefilled["data"]["player"].is_string(), "{prefilled}");
    // Counting the page's requests to /test from here on.
    adm.eval(
        "window.__tests = 0; const f = window.fetch; \
         window.fetch = (u, i) => { if (String(u).endsWith('/test')) window.__tests++; return f(u, i); };",
    )
    .await;
    let prefilled_text = serde_json::to_string(&prefilled).expect("json");
    let out = run_test(&adm, hs, &prefilled_text).await;
    assert!(
        out.starts_with("matched: yes · 1 derived event") && out.contains("sets a new record"),
        "{out}"
    );

    let sample = json!({"stream_id": "match", "type": "score.updated",
                        "data": {"score": 9100, "player": "Ana"},
                        "metadata": {"tournament_id": "spring"}});
    let out = run_test(&adm, hs, &sample.to_string()).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "matched: yes · 1 derived event");
    assert_eq!(
        lines[1],
        "→ high_score (overlays): Ana sets a new record: 9100"
    );
    assert!(
        lines[2].starts_with("state records/tournament-spring ← {")
            && lines[2].contains("\"value\":9100"),
        "the state write: {out}"
    );
    assert_eq!(
        adm.eval_with(
            "return document.querySelector(arguments[0]).className",
            json!([part(hs, "rule-test-result")])
        )
        .await,
        "result rule-result is-ok"
    );
    // An event it does not look at.
    let out = run_test(
        &adm,
        hs,
        r#"{"stream_id": "chat", "type": "score.updated", "data": {"score": 1}}"#,
    )
    .await;
    assert!(out.starts_with("matched: no"), "{out}");
    assert_eq!(adm.eval("return window.__tests").await, 3);

    // Bad JSON: a message, and no request.
    let out = run_test(&adm, hs, "{\"type\": ").await;
    assert!(out.starts_with("Not valid JSON: "), "{out}");
    assert_eq!(adm.eval("return window.__tests").await, 3, "no request");
    assert_eq!(
        adm.eval_with(
            "return document.querySelector(arguments[0]).className",
            json!([part(hs, "rule-test-result")])
        )
        .await,
        "result rule-result is-error"
    );

    // A refusal shows the problem's detail.
    let bad = json!({"stream_id": "match", "type": "bad type!"});
    let r = reqwest::Client::new()
        .post(server.url(&format!("/api/v1/rules/{hs}/test")))
        .json(&bad)
        .send()
        .await
        .expect("test");
    assert_eq!(r.status(), 422);
    let problem: Value = r.json().await.expect("problem");
    let detail = problem["detail"].as_str().expect("detail");
    let out = run_test(&adm, hs, &bad.to_string()).await;
    assert_eq!(out, format!("Refused: {detail}"));
    assert_eq!(adm.eval("return window.__tests").await, 4);

    // Testing published nothing: the map rule's single firing is all.
    let derived = send(
        reqwest::Client::new().get(server.url("/api/v1/events?type=high_score&limit=100")),
        "history",
    )
    .await;
    assert_eq!(derived["data"], json!([]), "{derived}");
    assert_eq!(
        text_of(&adm, "the high score count", &part(hs, "rule-fired")).await,
        "0"
    );
    assert_eq!(adm.alert_text().await, Err("no such alert".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_panel_cannot_switch_a_configured_rule() {
    let Some([adm]) = browsers::<1>().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("streambus.toml");
    std::fs::write(
        &config,
        r#"
[[rules]]
id = "chat-links"
description = "stream links posted in chat"
when = { streams = ["chat"] }
detect = { kind = "links", field = "data.text", author = "data.user" }
state = { stream = "streams", key = "{{link.key}}" }
"#,
    )
    .expect("write config");
    let data = dir.path().join("data");
    let server = Proc::spawn_with(
        free_port(),
        &data,
        &[],
        &[("STREAMBUS_CONFIG".to_owned(), config.display().to_string())],
    )
    .await;
    assert_eq!(get_rule(&server, "chat-links").await["origin"], "config");

    open_admin(&adm, &server).await;
    let id = "chat-links";
    text_of(&adm, "the configured rule", &row(id)).await;
    assert_eq!(
        text_of(&adm, "origin", &part(id, "rule-origin")).await,
        "config"
    );
    assert_eq!(
        text_of(&adm, "summary", &part(id, "rule-summary")).await,
        "stream links in data.text by data.user"
    );
    let switch = adm
        .eval_with(
            "const s = document.querySelector(arguments[0]); \
             return [s.checked, s.disabled, s.title, s.closest('label').title]",
            json!([part(id, "rule-enabled")]),
        )
        .await;
    assert_eq!(switch[0], true, "{switch}");
    assert_eq!(switch[1], true, "disabled: {switch}");
    for tip in [&switch[2], &switch[3]] {
        let tip = tip.as_str().expect("title");
        assert!(tip.contains("configuration"), "the tooltip says why: {tip}");
    }
    // A click on it (or on its label) changes nothing.
    adm.eval_with(
        "const s = document.querySelector(arguments[0]); s.click(); s.closest('label').click()",
        json!([part(id, "rule-enabled")]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get_rule(&server, id).await["enabled"], true);
    assert_eq!(
        adm.eval_with(
            "return document.querySelector(arguments[0]).checked",
            json!([part(id, "rule-enabled")])
        )
        .await,
        true
    );

    // Its Test panel works as for any rule: the sample is a chat message
    // with a link, and the test shows the registry write.
    adm.click(&part(id, "rule-test-toggle")).await;
    adm.click(&part(id, "rule-test-run")).await;
    let out = adm
        .wait_for(
            "the test result",
            DEADLINE,
            &format!(
                "const t = document.querySelector({:?}).textContent; return t !== 'Testing…' && t",
                part(id, "rule-test-result")
            ),
        )
        .await;
    let out = out.as_str().expect("text");
    assert!(
        out.starts_with("matched: yes · 1 derived event")
            && out.contains("link.detected")
            && out.contains("state streams/twitch:sample_channel ← "),
        "{out}"
    );
}
