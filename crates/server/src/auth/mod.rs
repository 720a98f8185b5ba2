//! Authentication (SPEC §5): turning a bearer credential into a
//! [`Principal`], and the route-level permission every request passes.
//!
//! - [`jwt`]: HS256 and EdDSA tokens with enforced expiry, minted by
//!   `streambus token` and verified on every request.
//! - API keys (`sbk_…`) for services, stored by hash
//!   (`api::keys` creates, lists and revokes them), usable wherever a token is.
//! - [`middleware`]: reads the token (`Authorization: Bearer`, or `?token=`
//!   for OBS overlay URLs and browser `EventSource`/WebSocket clients),
//!   answers `401` without a valid one, checks what the route needs
//!   ([`requirement`]) and hands the [`Principal`] to the handler. Checks
//!   that depend on the body (the stream of each published event) are made
//!   where the body is read. WebSocket frames are checked one by one in
//!   `api::ws`, which also accepts the token as a first `AUTH` frame.
//!
//! With no key configured (`AppState::verifier` is `None`) every request
//! is the local admin of the default tenant; the server then listens only on
//! loopback unless told otherwise (`config::AuthConfig`).
//!
//! Every identity names its tenant; handlers act in it ([`Tenant`]). The
//! tenant `default` always exists and its admins manage the others
//! (`api::tenants`); a token for a tenant that does not exist is `403`.

pub mod jwt;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use streambus_core::DEFAULT_TENANT;
use streambus_core::auth::{Action, Principal, Role};
use streambus_core::filter::Glob;
use streambus_core::keys;

use crate::api::error::ApiError;
use crate::config::{AuthConfig, ConfigError};
use crate::state::AppState;
use jwt::Verifier;

/// Who a request or connection is, and until when (Unix seconds).
#[derive(Debug, Clone)]
pub struct Identity {
    /// The principal.
    pub principal: Principal,
    /// When the server stops honouring its token (`exp` plus the leeway),
    /// Unix seconds; `None` without authentication.
    pub expires: Option<u64>,
    /// The client's address, when known (for per-address limits).
    pub address: Option<std::net::IpAddr>,
}

/// The tenant a request acts in: its identity's (the default tenant for the
/// public routes, which have none).
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Tenant {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<Identity>().map_or_else(
            || DEFAULT_TENANT.to_owned(),
            |i| i.principal.tenant.clone(),
        )))
    }
}

/// The verifier `config` describes; `None` when no key is configured.
///
/// # Errors
/// An unreadable or malformed public key file.
pub fn verifier(config: &AuthConfig) -> Result<Option<Verifier>, ConfigError> {
    if !config.enabled() {
        return Ok(None);
    }
    let mut v = Verifier::new().leeway(config.leeway_secs);
    if !config.hs256_secret.is_empty() {
        v = v.hs256(config.hs256_secret.as_bytes());
    }
    let path = &config.ed25519_public_key_file;
    if !path.as_os_str().is_empty() {
        let invalid = |message: String| ConfigError::Invalid {
            origin: path.display().to_string(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| invalid(format!("cannot read: {e}")))?;
        v = v
            .ed25519_pem(&pem)
            .map_err(|e| invalid(format!("not an Ed25519 public key: {e}")))?;
    }
    Ok(Some(v))
}

/// Resolves a bearer token (or its absence) to an identity: an API key
/// (`sbk_…`, looked up by its hash) or a JWT.
///
/// # Errors
/// `401` without a token or with one that does not verify (a revoked key
/// included); `403` for a tenant this server does not serve; `503` when the
/// store cannot be asked about a key.
pub async fn identify(state: &AppState, token: Option<&str>) -> Result<Identity, ApiError> {
    let Some(verifier) = &state.verifier else {
        return Ok(Identity {
            principal: Principal::open(DEFAULT_TENANT),
            expires: None,
            address: None,
        });
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::Unauthorized(
            "credentials required: send `Authorization: Bearer <token>`, `?token=`, or an \
             AUTH frame on WebSocket"
                .into(),
        ));
    };
    let (principal, expires) = if token.starts_with(keys::KEY_PREFIX) {
        (api_key(state, token).await?, None)
    } else {
        let (p, exp) = verifier
            .verify_until(token)
            .map_err(|e| ApiError::Unauthorized(format!("invalid token: {e}")))?;
        (p, Some(exp.saturating_add(state.config.auth.leeway_secs)))
    };
    if principal.tenant != DEFAULT_TENANT
        && state.store.get_tenant(&principal.tenant).await?.is_none()
    {
        return Err(ApiError::Forbidden(format!(
            "tenant `{}` does not exist",
            principal.tenant
        )));
    }
    Ok(Identity {
        principal,
        expires,
        address: None,
    })
}

/// The principal of an API key secret.
async fn api_key(state: &AppState, secret: &str) -> Result<Principal, ApiError> {
    let key = state
        .store
        .api_key_by_hash(&keys::key_hash(secret))
        .await?
        .ok_or_else(|| ApiError::Unauthorized("unknown API key".into()))?;
    if key.is_revoked() {
        return Err(ApiError::Unauthorized(format!(
            "API key `{}` was revoked",
            key.id
        )));
    }
    let now = streambus_core::time::now_ms();
    // Recorded at most once a minute per key: each record is a write.
    if key.last_used_ms.is_none_or(|t| now - t > 60_000)
        && let Err(e) = state.store.touch_api_key(&key.id, now).await
    {
        tracing::debug!(error = %e, key = %key.id, "key use not recorded");
    }
    Ok(key.principal())
}

/// The bearer token of a request: the `Authorization` header, else the
/// `token` query parameter.
pub fn token_of(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned());
    bearer.or_else(|| query_param(query?, "token"))
}

/// One query parameter, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a route needs beyond a valid identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing: public pages and health checks.
    Public,
    /// Any authenticated principal (the checks that depend on the body or
    /// the frames are made by the handler).
    Identified,
    /// Reading these streams (none: every stream).
    Read(Vec<String>),
    /// Publishing somewhere (each event's stream is checked by the handler).
    Publish,
    /// Operator controls: cancel, replay, queue and stream control.
    Control,
    /// Changing the catalog (types, templates, subscriptions) and keys.
    Administer,
}

/// What `method` on `path` (with `query`) needs. Paths are matched after
/// the `/api/v1` or `/api` prefix.
pub fn requirement(method: &Method, path: &str, query: Option<&str>) -> Need {
    let Some(api) = path
        .strip_prefix("/api/v1")
        .or_else(|| path.strip_prefix("/api"))
    else {
        return Need::Public;
    };
    let parts: Vec<&str> = api.trim_matches('/').split('/').collect();
    let read = *method == Method::GET || *method == Method::HEAD;
    // The seed 004 routes are served under `/events` and `/broadcast-demo`.
    let seed004 = match parts.as_slice() {
        ["events" | "broadcast-demo", rest @ ..] => rest,
        _ => &[][..],
    };
    match (read, seed004) {
        (true, ["stream", stream]) => return Need::Read(vec![(*stream).to_owned()]),
        (false, ["stream", _, _]) => return Need::Control,
        (false, ["broadcast"]) => return Need::Publish,
        (true, ["streams"]) => return Need::Identified,
        _ => {}
    }
    match (read, parts.as_slice()) {
        // Authenticated by its HMAC signature instead (docs/INGEST.md).
        (false, ["ingest", "webhook", _]) => Need::Public,
        // Automation (issue 6): operators read and test; administrators
        // change what runs unattended.
        (true, ["pollers" | "rules" | "webhooks", ..]) => Need::Control,
        (false, ["rules", _, "test"]) => Need::Control,
        (false, ["webhooks", _, "deliveries", _, "redeliver"]) => Need::Control,
        (false, ["pollers" | "rules" | "webhooks", ..]) => Need::Administer,
        // Tracked requests (SPEC §6): a handler's report is a publish.
        (true, ["requests", ..]) => Need::Control,
        (false, ["requests", _, _]) => Need::Publish,
        (_, ["ws"]) => Need::Identified,
        (true, ["events"] | ["events", "history"]) => {
            let stream = query
                .and_then(|q| query_param(q, "stream_id").or_else(|| query_param(q, "stream")));
            Need::Read(stream.into_iter().collect())
        }
        (true, ["events", "scheduled", ..]) => Need::Control,
        (true, ["events", _]) => Need::Read(Vec::new()),
        (true, ["events", _, "overlays"]) => Need::Control,
        (false, ["events"]) => Need::Publish,
        (false, ["events", _, "cancel" | "replay"] | ["events", "scheduled", _]) => Need::Control,
        (_, ["overlays", ..] | ["analytics", ..]) => Need::Control,
        (false, ["event-templates", _, "fire"]) => Need::Publish,
        // Live state (issue 6): reading needs the stream; a write is a
        // publish (its `state.changed` event), checked per stream by the
        // handler.
        (true, ["state", stream, ..]) => Need::Read(vec![(*stream).to_owned()]),
        (false, ["state", _, _]) => Need::Publish,
        (_, ["keys", ..] | ["audit"] | ["tenants", ..]) => Need::Administer,
        (true, ["event-types" | "event-templates" | "subscriptions", ..]) => Need::Identified,
        (false, ["event-types" | "event-templates" | "subscriptions", ..]) => Need::Administer,
        _ => Need::Identified,
    }
}

impl Need {
    /// Checks `p` against this need.
    ///
    /// # Errors
    /// `403` naming what was refused.
    pub fn check(&self, p: &Principal) -> Result<(), ApiError> {
        match self {
            Self::Public | Self::Identified => Ok(()),
            Self::Read(streams) => {
                let patterns: Vec<Glob> = streams.iter().map(Glob::new).collect();
                Ok(p.check_read_patterns(&patterns)?)
            }
            Self::Publish if matches!(p.role, Role::Admin | Role::Producer) => Ok(()),
            Self::Publish => Err(ApiError::Forbidden(format!(
                "{} `{}` may not publish",
                p.role.as_str(),
                p.subject
            ))),
            Self::Control => Ok(p.check(Action::Control)?),
            Self::Administer => Ok(p.check(Action::Administer)?),
        }
    }
}

/// The request layer: identifies the caller, checks the route's need, puts
/// the [`Identity`] in the request's extensions, and records changes in the
/// audit log ([`crate::audit`]) with their outcome, refusals included.
pub async fn middleware(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let need = requirement(req.method(), req.uri().path(), req.uri().query());
    let audited = crate::audit::action_of(req.method(), req.uri().path(), &need);
    let address = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    if need == Need::Public {
        return next.run(req).await;
    }
    let token = token_of(req.headers(), req.uri().query());
    // A WebSocket may send its token as a first AUTH frame instead.
    let is_ws = matches!(req.uri().path(), "/api/v1/ws" | "/api/ws");
    let identity = match identify(&state, token.as_deref()).await {
        Ok(identity) => Identity {
            address: address.map(|a| a.ip()),
            ..identity
        },
        Err(ApiError::Unauthorized(_)) if is_ws && token.is_none() => {
            return next.run(req).await;
        }
        Err(e) => return e.into_response(),
    };
    if let Err(e) = need.check(&identity.principal) {
        let detail = serde_json::json!({"refused": e.to_string()});
        let res = e.into_response();
        if let Some((action, target)) = audited {
            crate::audit::record(
                &state,
                &identity,
                action,
                target,
                address,
                res.status().as_u16(),
                detail,
            )
            .await;
        }
        return res;
    }
    req.extensions_mut().insert(identity.clone());
    let res = next.run(req).await;
    if let Some((action, mut target)) = audited {
        // A creation in a collection names what it made in `Location`.
        if target.is_empty()
            && let Some(made) = res
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| l.rsplit('/').next())
        {
            target = made.to_owned();
        }
        let outcome = res.status().as_u16();
        crate::audit::record(
            &state,
            &identity,
            action,
            target,
            address,
            outcome,
            serde_json::Value::Null,
        )
        .await;
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_routes_need_read_or_publish() {
        let need = |m: Method, p: &str| requirement(&m, p, None);
        let read = Need::Read(vec!["board".to_owned()]);
        assert_eq!(need(Method::GET, "/api/v1/state/board"), read);
        assert_eq!(need(Method::GET, "/api/state/board/team:red"), read);
        assert_eq!(need(Method::HEAD, "/api/v1/state/board/k"), read);
        for m in [Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(need(m, "/api/v1/state/board/k"), Need::Publish);
        }
        // Writes are publishes (not audited); deletions are audited.
        let audited =
            |m: Method| crate::audit::action_of(&m, "/api/v1/state/board/k", &Need::Publish);
        assert_eq!(audited(Method::PUT), None);
        assert_eq!(audited(Method::PATCH), None);
        assert_eq!(
            audited(Method::DELETE),
            Some(("state.delete".to_owned(), "board/k".to_owned()))
        );
    }
}
