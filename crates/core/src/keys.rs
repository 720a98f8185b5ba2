//! API keys and tenant records (SPEC §5, issue 5): the models the store keeps
//! and the pure helpers around them.
//!
//! A key's secret is shown once, when it is made ([`new_key_secret`]), and
//! never stored: the store keeps only [`key_hash`] of it and finds the key by
//! that hash. So the hash is not a field of [`ApiKey`] — the model is what an
//! admin may see (`GET /keys`), and the hash travels beside it as a separate
//! argument of `EventStore::put_api_key`. A plain SHA-256 suffices because the
//! secret carries 256 random bits: there is nothing to guess, so no slow,
//! salted hash is needed (unlike passwords), and the lookup stays one indexed
//! equality.

use serde::{Deserialize, Serialize};

use crate::auth::{Principal, Role};
use crate::filter::Glob;

/// What every secret made by [`new_key_secret`] starts with, so a leaked key
/// is recognisable (secret scanners, logs) and cannot be mistaken for a JWT.
pub const KEY_PREFIX: &str = "sbk_";

/// Random bytes in a secret (256 bits).
pub const KEY_SECRET_BYTES: usize = 32;

/// A service's API key as stored and listed (SPEC §5); never its secret or
/// hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Unique across the store (e.g. [`new_key_id`]).
    pub id: String,
    /// The tenant the key acts in; every query it makes is scoped to it.
    pub tenant: String,
    /// A human name (shown in lists and as the audit log's actor).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Streams it may publish to (globs).
    pub publish: Vec<String>,
    /// Streams it may read (globs).
    pub subscribe: Vec<String>,
    /// When it was made, ms since the epoch.
    pub created_ms: i64,
    /// When it was revoked, if it was; a revoked key authenticates nobody.
    pub revoked_ms: Option<i64>,
    /// When it last authenticated a request (as often as the caller records
    /// it), if ever.
    pub last_used_ms: Option<i64>,
}

impl ApiKey {
    /// Has it been revoked?
    pub fn is_revoked(&self) -> bool {
        self.revoked_ms.is_some()
    }

    /// The principal a request holding this key acts as: the key's name as
    /// subject, its tenant, role and globs.
    pub fn principal(&self) -> Principal {
        let globs = |v: &[String]| v.iter().map(|g| Glob::new(g.as_str())).collect();
        Principal {
            subject: self.name.clone(),
            tenant: self.tenant.clone(),
            role: self.role,
            publish: globs(&self.publish),
            subscribe: globs(&self.subscribe),
        }
    }
}

/// A tenant's stored record (SPEC §2: the isolation boundary). Single-user
/// installs need none: the `default` tenant works without a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// Its name, valid by [`crate::name::is_tenant`]; the key of the record.
    pub name: String,
    /// A human name.
    pub display_name: String,
    /// When the record was first stored, ms since the epoch.
    pub created_ms: i64,
    /// Per-tenant limits (payload size, rates, connections…) as a JSON
    /// object; the server reads the fields it knows.
    pub limits: serde_json::Value,
}

/// Checks a tenant name before a record is stored.
///
/// # Errors
/// A message naming the rule when [`crate::name::is_tenant`] refuses it.
pub fn check_tenant_name(name: &str) -> Result<(), String> {
    if crate::name::is_tenant(name) {
        Ok(())
    } else {
        Err(format!(
            "tenant name `{name}` must be 1 to 64 of a-z, 0-9, `.`, `_`, `-`, \
             starting with a letter or digit"
        ))
    }
}

/// A new key id: a UUIDv7 in simple form, so ids sort by creation.
pub fn new_key_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A new secret: [`KEY_PREFIX`] and [`KEY_SECRET_BYTES`] random bytes from
/// the operating system, base64url without padding (47 characters, safe in
/// headers, URLs and shells).
///
/// # Panics
/// When the operating system has no random source to give (a broken
/// platform; there is no key worth making then).
pub fn new_key_secret() -> String {
    let mut bytes = [0u8; KEY_SECRET_BYTES];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    let mut out = String::with_capacity(KEY_PREFIX.len() + 43);
    out.push_str(KEY_PREFIX);
    base64url(&bytes, &mut out);
    out
}

/// The stored form of a secret: SHA-256, lowercase hex (64 characters).
pub fn key_hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Appends base64url (RFC 4648 §5) of `bytes` without padding.
pub fn base64url(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        // 1 byte → 2 characters, 2 → 3, 3 → 4.
        for i in 0..=chunk.len() {
            let sextet = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[sextet as usize]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Action;

    fn b64(bytes: &[u8]) -> String {
        let mut s = String::new();
        base64url(bytes, &mut s);
        s
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        // RFC 4648 §10, without padding, plus the two URL-safe characters.
        let cases: [(&[u8], &str); 9] = [
            (b"", ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xfb, 0xff], "-_8"),
            (&[0xff, 0xff, 0xff], "____"),
        ];
        for (input, want) in cases {
            assert_eq!(b64(input), want, "{input:?}");
        }
    }

    #[test]
    fn secrets_are_prefixed_url_safe_and_fresh() {
        let a = new_key_secret();
        let b = new_key_secret();
        assert_ne!(a, b);
        for s in [&a, &b] {
            let rest = s.strip_prefix(KEY_PREFIX).expect("prefix");
            assert_eq!(rest.len(), 43, "{s}");
            assert!(
                rest.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
                "{s}"
            );
        }
    }

    #[test]
    fn hash_is_sha256_lowercase_hex() {
        assert_eq!(
            key_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let s = new_key_secret();
        assert_eq!(key_hash(&s), key_hash(&s), "deterministic");
        assert_ne!(key_hash(&s), key_hash(&new_key_secret()));
    }

    #[test]
    fn key_ids_are_unique() {
        let a = new_key_id();
        let b = new_key_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn key_json_has_no_secret_and_round_trips() {
        let key = ApiKey {
            id: "k1".into(),
            tenant: "acme".into(),
            name: "scoreboard".into(),
            role: Role::Producer,
            publish: vec!["match-*".into()],
            subscribe: vec![],
            created_ms: 1,
            revoked_ms: None,
            last_used_ms: Some(2),
        };
        let v = serde_json::to_value(&key).expect("json");
        assert_eq!(v["role"], "producer");
        assert!(v.get("hash").is_none() && v.get("secret").is_none());
        let back: ApiKey = serde_json::from_value(v).expect("decode");
        assert_eq!(back, key);
    }

    #[test]
    fn key_principal_carries_role_tenant_and_globs() {
        let key = ApiKey {
            id: "k1".into(),
            tenant: "acme".into(),
            name: "scoreboard".into(),
            role: Role::Producer,
            publish: vec!["match-*".into()],
            subscribe: vec!["match-*".into()],
            created_ms: 1,
            revoked_ms: Some(3),
            last_used_ms: None,
        };
        assert!(key.is_revoked());
        let p = key.principal();
        assert_eq!(
            (p.subject.as_str(), p.tenant.as_str()),
            ("scoreboard", "acme")
        );
        assert!(p.check(Action::Publish("match-1")).is_ok());
        assert!(p.check(Action::Publish("other")).is_err());
        assert!(p.check(Action::Administer).is_err());
    }

    #[test]
    fn tenant_names_are_checked() {
        assert!(check_tenant_name("acme").is_ok());
        assert!(check_tenant_name("default").is_ok());
        let long = "a".repeat(65);
        for bad in ["", "Acme", "-x", "a b", long.as_str()] {
            assert!(check_tenant_name(bad).is_err(), "{bad}");
        }
    }
}
