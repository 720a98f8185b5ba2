//! The embedded pages (SPEC §3.4, issue 4 point 6): `/admin`, `/overlay`,
//! `/wall`, `/sdk.js` and `/assets/…` answer with the right content type and the
//! security headers; `/` redirects; an unknown asset is a 404 problem; and no
//! asset builds markup from strings (`innerHTML`) or carries inline script.

use crate::util::*;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; frame-ancestors *";

/// Every asset by name with its expected content type.
const ASSETS: &[(&str, &str)] = &[
    ("admin.html", "text/html"),
    ("overlay.html", "text/html"),
    ("wall.html", "text/html"),
    ("sdk.js", "text/javascript"),
    ("dom.js", "text/javascript"),
    ("admin.js", "text/javascript"),
    ("admin-overlays.js", "text/javascript"),
    ("admin-monitor.js", "text/javascript"),
    ("admin-compose.js", "text/javascript"),
    ("admin-streams.js", "text/javascript"),
    ("admin-rules.js", "text/javascript"),
    ("overlay.js", "text/javascript"),
    ("wall.js", "text/javascript"),
    ("admin.css", "text/css"),
    ("overlay.css", "text/css"),
    ("wall.css", "text/css"),
    ("favicon.svg", "image/svg+xml"),
];

fn assert_page_headers(r: &Resp, path: &str) {
    assert_eq!(r.header("content-security-policy"), CSP, "{path}");
    assert_eq!(r.header("x-content-type-options"), "nosniff", "{path}");
    assert_eq!(r.header("referrer-policy"), "no-referrer", "{path}");
    assert_eq!(r.header("cache-control"), "no-cache", "{path}");
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(DEADLINE)
        .build()
        .expect("client")
}

#[tokio::test]
async fn pages_answer_with_content_type_and_security_headers() {
    let server = TestServer::start().await;
    for (path, ty, marker) in [
        ("/admin", "text/html; charset=utf-8", "/assets/admin.js"),
        ("/overlay", "text/html; charset=utf-8", "/assets/overlay.js"),
        (
            "/overlay?overlay=main&token=t",
            "text/html; charset=utf-8",
            "/assets/overlay.js",
        ),
        ("/wall", "text/html; charset=utf-8", "/assets/wall.js"),
        (
            "/sdk.js",
            "text/javascript; charset=utf-8",
            "export class StreambusClient",
        ),
    ] {
        let r = server.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.header("content-type"), ty, "{path}");
        assert_page_headers(&r, path);
        assert!(r.text.contains(marker), "{path} lacks {marker}");
    }
}

/// `/wall` (SPEC §3.4, seed 002): the page, under the same CSP as the
/// others, loading only its own stylesheet and module, which reads the
/// registry through the public state API and renders it as text.
#[tokio::test]
async fn wall_serves_html_with_the_csp() {
    let server = TestServer::start().await;
    for path in ["/wall", "/wall?token=t&platform=twitch"] {
        let r = server.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
        assert_page_headers(&r, path);
        assert!(r.text.starts_with("<!doctype html>"), "{path}");
        for marker in [
            r#"<link rel="stylesheet" href="/assets/wall.css">"#,
            r#"<script type="module" src="/assets/wall.js"></script>"#,
            r#"data-testid="wall-grid""#,
            r#"data-testid="wall-connection""#,
        ] {
            assert!(r.text.contains(marker), "{path} lacks {marker}");
        }
        assert!(
            !r.text.contains("http://") && !r.text.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
    let js = server.get("/assets/wall.js").await;
    assert_eq!(js.status, 200);
    for marker in ["from '/sdk.js'", "snapshot: true", "state.changed"] {
        assert!(js.text.contains(marker), "wall.js lacks {marker}");
    }
    // The operator panel links to it.
    let admin = server.get("/admin").await;
    assert!(
        admin.text.contains(r#"<a href="/wall""#),
        "admin nav links /wall"
    );
    // HEAD as for the other pages.
    let res = http().head(server.url("/wall")).send().await.expect("HEAD");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-security-policy"], CSP);
}

#[tokio::test]
async fn every_asset_is_served() {
    let server = TestServer::start().await;
    let embedded: Vec<&str> = streambus_server::api::pages::asset_names().collect();
    assert_eq!(
        embedded.len(),
        ASSETS.len(),
        "assets embedded: {embedded:?}"
    );
    for (name, ty) in ASSETS {
        assert!(embedded.contains(name), "{name} is not embedded");
        let path = format!("/assets/{name}");
        let r = server.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert!(
            r.header("content-type").starts_with(ty),
            "{path}: {}",
            r.header("content-type")
        );
        assert_page_headers(&r, &path);
        assert!(!r.text.is_empty(), "{path} is empty");
    }
}

#[tokio::test]
async fn head_requests_are_answered() {
    let server = TestServer::start().await;
    let res = http()
        .head(server.url("/admin"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/html; charset=utf-8",
        "HEAD /admin"
    );
}

#[tokio::test]
async fn root_redirects_to_admin_keeping_the_token() {
    let server = TestServer::start().await;
    let client = no_redirects();
    for (path, to) in [("/", "/admin"), ("/?token=abc", "/admin?token=abc")] {
        let r = Resp::from(client.get(server.url(path)).send().await.expect("GET")).await;
        assert!(
            (301..=308).contains(&r.status),
            "{path}: status {}",
            r.status
        );
        assert_eq!(r.header("location"), to, "{path}");
        assert_page_headers(&r, path);
    }
    // Followed, it lands on the panel.
    let r = server.get("/").await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("/assets/admin.js"));
}

#[tokio::test]
async fn unknown_asset_is_a_404_problem() {
    let server = TestServer::start().await;
    for path in [
        "/assets/nope.js",
        "/assets/admin.html.bak",
        "/assets/..%2FCargo.toml",
        "/assets/",
        "/assets/admin.js/extra",
    ] {
        let r = server.get(path).await;
        assert_problem(&r, 404, None);
    }
}

#[tokio::test]
async fn pages_are_not_under_the_api_prefix() {
    let server = TestServer::start().await;
    for path in ["/api/v1/admin", "/api/admin", "/api/v1/sdk.js"] {
        let r = server.get(path).await;
        assert_problem(&r, 404, None);
    }
}

/// The pages render event text with `textContent` only, and the CSP forbids
/// inline script: neither may be undone by an asset (SPEC §3.4).
#[tokio::test]
async fn no_asset_uses_inner_html_or_inline_script() {
    let server = TestServer::start().await;
    for (name, _) in ASSETS {
        let r = server.get(&format!("/assets/{name}")).await;
        let text = &r.text;
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!text.contains(banned), "{name} contains `{banned}`");
        }
        if name.ends_with(".html") {
            assert_no_inline_script(name, text);
            assert!(!text.contains("style="), "{name} has an inline style");
            assert!(!text.contains("<style"), "{name} has a <style> element");
            assert!(
                !has_inline_handler(text),
                "{name} has an inline on… handler"
            );
        }
    }
}

/// Every `<script …>` must have a `src` and an empty body.
fn assert_no_inline_script(name: &str, html: &str) {
    let lower = html.to_ascii_lowercase();
    let mut rest = lower.as_str();
    let mut scripts = 0;
    while let Some(i) = rest.find("<script") {
        let tag_end = rest[i..].find('>').expect("script tag closed") + i;
        let tag = &rest[i..tag_end];
        assert!(tag.contains("src="), "{name}: inline <script> without src");
        let close = rest[tag_end..]
            .find("</script>")
            .expect("script element closed")
            + tag_end;
        let body = &rest[tag_end + 1..close];
        assert!(body.trim().is_empty(), "{name}: <script> with a body");
        scripts += 1;
        rest = &rest[close..];
    }
    assert!(scripts > 0, "{name}: no script at all");
}

/// An attribute such as `onclick=` inside a tag.
fn has_inline_handler(html: &str) -> bool {
    let lower = html.to_ascii_lowercase();
    lower.split('<').skip(1).any(|tag| {
        let tag = tag.split('>').next().unwrap_or("");
        tag.split_whitespace().skip(1).any(|attr| {
            attr.starts_with("on")
                && attr
                    .split('=')
                    .next()
                    .is_some_and(|n| n.len() > 2 && n.chars().all(|c| c.is_ascii_alphabetic()))
                && attr.contains('=')
        })
    })
}
