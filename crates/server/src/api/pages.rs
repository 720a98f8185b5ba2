//! The embedded browser pages (SPEC §3.4, issue 4 point 6): `/admin`,
//! `/overlay`, `/wall` (the live-streams registry, seed 002), `/sdk.js`,
//! their stylesheets and modules under `/assets/`, and `/` redirecting to
//! `/admin`.
//!
//! Plain HTML, CSS and ES modules from `crates/server/assets/`, compiled into
//! the binary with `include_bytes!`: no build step, nothing fetched from
//! elsewhere, the public API only (STYLE §10). Every response carries a
//! strict Content-Security-Policy — no inline script or style, connections
//! only to this origin — so that event text, which the pages render as text
//! only, could not run even if it slipped into markup. `frame-ancestors *`
//! lets the overlay be framed by any page (an OBS dock, a preview).

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use crate::state::AppState;

/// The Content-Security-Policy of every page response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors *";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// One embedded file.
struct Asset {
    /// Its name under `/assets/`.
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $ty:expr) => {
        Asset {
            name: $name,
            content_type: $ty,
            body: include_bytes!(concat!("../../assets/", $name)),
        }
    };
}

/// Everything under `/assets/` (the pages and the SDK are also served
/// there, so a module may import `./sdk.js` as well as `/sdk.js`).
static ASSETS: &[Asset] = &[
    asset!("admin.html", HTML),
    asset!("overlay.html", HTML),
    asset!("wall.html", HTML),
    asset!("sdk.js", JS),
    asset!("dom.js", JS),
    asset!("admin.js", JS),
    asset!("admin-overlays.js", JS),
    asset!("admin-monitor.js", JS),
    asset!("admin-compose.js", JS),
    asset!("admin-streams.js", JS),
    asset!("admin-rules.js", JS),
    asset!("overlay.js", JS),
    asset!("wall.js", JS),
    asset!("admin.css", CSS),
    asset!("overlay.css", CSS),
    asset!("wall.css", CSS),
    asset!("favicon.svg", SVG),
];

/// The names of every embedded asset (for tests and diagnostics).
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

/// Routes of this module, at the root (not under `/api`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/admin", get(|| async { page("admin.html") }))
        .route("/overlay", get(|| async { page("overlay.html") }))
        .route("/wall", get(|| async { page("wall.html") }))
        .route("/sdk.js", get(|| async { page("sdk.js") }))
        .route("/assets/{name}", get(asset))
}

/// `/` → `/admin`, keeping the query (so `/?token=…` still carries the token).
async fn root(RawQuery(query): RawQuery) -> Response {
    let location = match query {
        Some(q) if !q.is_empty() => format!("/admin?{q}"),
        _ => "/admin".to_owned(),
    };
    let mut headers = security_headers();
    match HeaderValue::from_str(&location) {
        Ok(v) => headers.insert(header::LOCATION, v),
        // A query that is not a valid header value cannot be kept.
        Err(_) => headers.insert(header::LOCATION, HeaderValue::from_static("/admin")),
    };
    (StatusCode::FOUND, headers).into_response()
}

async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    find(&name)
        .map(respond)
        .ok_or_else(|| ApiError::NotFound(format!("no asset named `{name}`")))
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

fn page(name: &str) -> Response {
    respond(find(name).expect("every page is in ASSETS"))
}

fn respond(a: &'static Asset) -> Response {
    let mut headers = security_headers();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    (StatusCode::OK, headers, a.body).into_response()
}

/// The headers every page response carries.
fn security_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_unique_name_and_content() {
        let mut names: Vec<_> = asset_names().collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate asset names");
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.name);
        }
    }

    #[test]
    fn unknown_asset_is_none() {
        assert!(find("nope.js").is_none());
        assert!(find("../Cargo.toml").is_none());
    }
}
