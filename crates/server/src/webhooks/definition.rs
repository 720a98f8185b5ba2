//! A webhook definition: what `POST|PUT /webhooks` take, what the
//! automation catalog keeps (`Catalog::Webhooks`), and what `GET` shows.
//!
//! Stored body: `{"id", "url", "secret", "filter", "max_attempts",
//! "created_offset", "created_at", "updated_at"}`, the filter in its
//! canonical form ([`consumer::filter_to_json`]). Only events with an
//! offset above `created_offset` (the log's head when it was created) are
//! delivered. The secret is never shown again: responses say
//! `"secret_set": true`.

use serde_json::{Map, Value, json};
use streambus_core::filter::Filter;
use streambus_core::{ValidationError, consumer, name};

use super::MAX_ATTEMPTS;
use crate::ingest::config::MIN_SECRET_BYTES;

/// Longest webhook id.
pub const MAX_ID_LEN: usize = 64;
/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Longest secret accepted, bytes.
pub const MAX_SECRET_BYTES: usize = 1024;

/// Fields a client may echo back from `GET`; they are ignored on input.
const READ_ONLY: [&str; 4] = ["secret_set", "created_offset", "created_at", "updated_at"];

/// Is `s` a valid webhook id, `[a-z0-9][a-z0-9._-]{0,63}`?
pub fn is_webhook_id(s: &str) -> bool {
    s.len() <= MAX_ID_LEN && name::is_stream_name(s)
}

/// Why a stored definition cannot be used (a bug or a hand-edited row).
#[derive(Debug, thiserror::Error)]
#[error("stored webhook definition is unusable: {0}")]
pub struct CorruptDefinition(String);

/// What a request asks for: the fields a client sets.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookInput {
    /// `[a-z0-9][a-z0-9._-]{0,63}`.
    pub id: String,
    /// `http://` URL the events are POSTed to.
    pub url: String,
    /// The HMAC key, at least [`MIN_SECRET_BYTES`].
    pub secret: String,
    /// Which events; empty passes every event of the tenant (but internal
    /// streams).
    pub filter: Filter,
    /// Attempts before a delivery is dead; `None` for the server's default.
    pub max_attempts: Option<u32>,
}

/// A stored webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// Its id.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The HMAC key.
    pub secret: String,
    /// Which events.
    pub filter: Filter,
    /// Attempts before a delivery is dead.
    pub max_attempts: u32,
    /// The log's head when it was created: later events only.
    pub created_offset: u64,
    /// When it was created, RFC 3339.
    pub created_at: String,
    /// When it was last replaced, RFC 3339.
    pub updated_at: String,
}

impl WebhookInput {
    /// Parses a request body. `path_id` is the id of `PUT /webhooks/{id}`:
    /// the body may then omit `id`, or must repeat it.
    ///
    /// # Errors
    /// The first offending field (422).
    pub fn from_json(body: Value, path_id: Option<&str>) -> Result<Self, ValidationError> {
        let Value::Object(mut obj) = body else {
            return Err(ValidationError::new("", "the body must be a JSON object"));
        };
        for key in READ_ONLY {
            obj.remove(key);
        }
        let id = match (obj.remove("id"), path_id) {
            (None, Some(p)) => p.to_owned(),
            (Some(Value::String(id)), Some(p)) if id != p => {
                return Err(ValidationError::new(
                    "id",
                    "must be the webhook id of the path",
                ));
            }
            (Some(Value::String(id)), _) => id,
            (None, None) => return Err(ValidationError::new("id", "is required")),
            (Some(_), _) => return Err(ValidationError::new("id", "must be a string")),
        };
        if !is_webhook_id(&id) {
            return Err(ValidationError::new(
                "id",
                "must match [a-z0-9][a-z0-9._-]{0,63}",
            ));
        }
        let url = match obj.remove("url") {
            Some(Value::String(u)) => check_url(u)?,
            None => return Err(ValidationError::new("url", "is required")),
            Some(_) => return Err(ValidationError::new("url", "must be a string")),
        };
        let secret = match obj.remove("secret") {
            Some(Value::String(s)) if s.len() < MIN_SECRET_BYTES => {
                return Err(ValidationError::new(
                    "secret",
                    format!("must be at least {MIN_SECRET_BYTES} bytes"),
                ));
            }
            Some(Value::String(s)) if s.len() > MAX_SECRET_BYTES => {
                return Err(ValidationError::new(
                    "secret",
                    format!("must be at most {MAX_SECRET_BYTES} bytes"),
                ));
            }
            Some(Value::String(s)) => s,
            None => return Err(ValidationError::new("secret", "is required")),
            Some(_) => return Err(ValidationError::new("secret", "must be a string")),
        };
        let filter = match obj.remove("filter") {
            None | Some(Value::Null) => Filter::default(),
            Some(f) => consumer::filter_from_json(f).map_err(|e| match e.field {
                Some(f) => {
                    let prefix = format!("{f}: ");
                    let reason = e.message.strip_prefix(&prefix).unwrap_or(&e.message);
                    ValidationError::new(format!("filter.{f}"), reason)
                }
                None => ValidationError::new("filter", e.message),
            })?,
        };
        let max_attempts = match obj.remove("max_attempts") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| (1..=MAX_ATTEMPTS).contains(n))
                    .ok_or_else(|| {
                        ValidationError::new(
                            "max_attempts",
                            format!("must be an integer from 1 to {MAX_ATTEMPTS}"),
                        )
                    })?,
            ),
        };
        if let Some(key) = obj.keys().next() {
            return Err(ValidationError::new(key.as_str(), "unknown field"));
        }
        Ok(Self {
            id,
            url,
            secret,
            filter,
            max_attempts,
        })
    }
}

/// An `http://` URL with a host; `https://` is refused with the reason.
fn check_url(url: String) -> Result<String, ValidationError> {
    if url.len() > MAX_URL_LEN {
        return Err(ValidationError::new(
            "url",
            format!("must be at most {MAX_URL_LEN} bytes"),
        ));
    }
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| ValidationError::new("url", format!("is not a valid URL: {e}")))?;
    match parsed.scheme() {
        "http" if parsed.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        "http" => Err(ValidationError::new("url", "must name a host")),
        "https" => Err(ValidationError::new(
            "url",
            "https needs a TLS-enabled build of streambus; use an http:// URL (for example \
             a local TLS-terminating proxy)",
        )),
        _ => Err(ValidationError::new("url", "must be an http:// URL")),
    }
}

impl Webhook {
    /// A new webhook from `input`, created when the log's head was
    /// `created_offset`, at `now` (RFC 3339).
    pub fn create(
        input: WebhookInput,
        default_attempts: u32,
        created_offset: u64,
        now: &str,
    ) -> Self {
        Self {
            id: input.id,
            url: input.url,
            secret: input.secret,
            filter: input.filter,
            max_attempts: input.max_attempts.unwrap_or(default_attempts),
            created_offset,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        }
    }

    /// `self` replaced by `input` at `now`; which events it delivers from
    /// (and its creation time) stay.
    pub fn replace(&self, input: WebhookInput, default_attempts: u32, now: &str) -> Self {
        let mut next = Self::create(input, default_attempts, self.created_offset, now);
        next.created_at.clone_from(&self.created_at);
        next
    }

    /// The body the catalog keeps.
    pub fn to_stored(&self) -> Value {
        let mut v = self.to_public();
        if let Value::Object(m) = &mut v {
            m.remove("secret_set");
            m.insert("secret".into(), self.secret.clone().into());
        }
        v
    }

    /// What the API shows: everything but the secret.
    pub fn to_public(&self) -> Value {
        json!({
            "id": self.id,
            "url": self.url,
            "secret_set": true,
            "filter": consumer::filter_to_json(&self.filter),
            "max_attempts": self.max_attempts,
            "created_offset": self.created_offset,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }

    /// A stored body, read back.
    ///
    /// # Errors
    /// When a field is missing or malformed.
    pub fn from_stored(v: &Value) -> Result<Self, CorruptDefinition> {
        let obj = v
            .as_object()
            .ok_or_else(|| CorruptDefinition("not an object".into()))?;
        let text = |k: &str| -> Result<String, CorruptDefinition> {
            obj.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| CorruptDefinition(format!("`{k}` is not a string")))
        };
        let number = |k: &str| -> Result<u64, CorruptDefinition> {
            obj.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| CorruptDefinition(format!("`{k}` is not a number")))
        };
        let filter = consumer::filter_from_json(
            obj.get("filter")
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new())),
        )
        .map_err(|e| CorruptDefinition(format!("filter: {}", e.message)))?;
        Ok(Self {
            id: text("id")?,
            url: text("url")?,
            secret: text("secret")?,
            filter,
            max_attempts: u32::try_from(number("max_attempts")?)
                .map_err(|_| CorruptDefinition("`max_attempts` is too large".into()))?,
            created_offset: number("created_offset")?,
            created_at: text("created_at")?,
            updated_at: text("updated_at")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: Value) -> Result<WebhookInput, ValidationError> {
        WebhookInput::from_json(v, None)
    }

    fn field(v: Value) -> String {
        input(v).expect_err("must be refused").field
    }

    #[test]
    fn valid_input_round_trips_through_storage() {
        let got = input(
            json!({"id": "orders.paid", "url": "http://127.0.0.1:9000/hook",
            "secret": "0123456789abcdef", "filter": {"streams": ["orders"]}, "max_attempts": 3}),
        )
        .unwrap();
        assert_eq!(got.max_attempts, Some(3));
        let hook = Webhook::create(got, 8, 41, "2024-01-01T00:00:00.000Z");
        let stored = hook.to_stored();
        assert_eq!(stored["secret"], "0123456789abcdef");
        assert!(stored.get("secret_set").is_none());
        assert_eq!(Webhook::from_stored(&stored).unwrap(), hook);
        let public = hook.to_public();
        assert!(public.get("secret").is_none(), "{public}");
        assert_eq!(public["secret_set"], true);
        assert_eq!(public["filter"], json!({"streams": ["orders"]}));
    }

    #[test]
    fn bad_fields_are_named() {
        let ok = json!({"id": "a", "url": "http://h/", "secret": "0123456789abcdef"});
        let with = |k: &str, v: Value| {
            let mut b = ok.clone();
            b[k] = v;
            b
        };
        assert!(input(ok.clone()).is_ok());
        for (k, v, want) in [
            ("id", json!("Bad"), "id"),
            ("id", json!("-a"), "id"),
            ("id", json!("a".repeat(65)), "id"),
            ("id", json!(7), "id"),
            ("url", json!("https://h/"), "url"),
            ("url", json!("ftp://h/"), "url"),
            ("url", json!("not a url"), "url"),
            ("url", json!("http://"), "url"),
            ("secret", json!("short"), "secret"),
            ("secret", json!(12), "secret"),
            ("max_attempts", json!(0), "max_attempts"),
            ("max_attempts", json!(51), "max_attempts"),
            ("max_attempts", json!("3"), "max_attempts"),
            ("filter", json!({"classes": ["nope"]}), "filter.classes"),
            ("filter", json!("x"), "filter"),
            ("extra", json!(1), "extra"),
        ] {
            assert_eq!(field(with(k, v.clone())), want, "{k} = {v}");
        }
        let https = input(with("url", json!("https://h/"))).unwrap_err();
        assert!(https.reason.contains("TLS"), "{}", https.reason);
        for missing in ["id", "url", "secret"] {
            let mut b = ok.clone();
            b.as_object_mut().unwrap().remove(missing);
            assert_eq!(field(b), missing);
        }
    }

    #[test]
    fn put_takes_the_id_from_the_path() {
        let body = json!({"url": "http://h/", "secret": "0123456789abcdef",
            "secret_set": true, "created_at": "x"});
        assert_eq!(
            WebhookInput::from_json(body.clone(), Some("p")).unwrap().id,
            "p"
        );
        let mut other = body;
        other["id"] = json!("q");
        assert_eq!(
            WebhookInput::from_json(other, Some("p")).unwrap_err().field,
            "id"
        );
    }
}
