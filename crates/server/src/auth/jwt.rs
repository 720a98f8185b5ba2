//! JSON Web Tokens: HS256 (a shared secret) and EdDSA (Ed25519 key pair).
//!
//! A token's claims name the tenant, the role and the stream globs it may
//! publish to and read, separately. `exp` is required and enforced, `nbf` is
//! checked when present, both with a configurable leeway. Only algorithms a
//! key is configured for are accepted, so `alg: none` and algorithm
//! substitution (an HS256 token signed with a public key) fail.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use streambus_core::auth::{Principal, Role};
use streambus_core::filter::Glob;
use streambus_core::{name, wire};

/// Default clock-skew allowance for `exp` and `nbf`, seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token is for (shown in the audit log).
    pub sub: String,
    /// The tenant every request is scoped to.
    pub tenant: String,
    /// The role.
    pub role: Role,
    /// Stream globs it may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Stream globs it may read.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not valid before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Why a token was refused (always answered with 401).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Expired (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is still in the future.
    #[error("token not valid yet")]
    NotYetValid,
    /// Signed with an algorithm no key is configured for (including `none`).
    #[error("token algorithm is not accepted")]
    Algorithm,
    /// Bad signature, malformed token or claims.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A key could not be loaded.
    #[error("invalid key: {0}")]
    Key(String),
}

impl From<jsonwebtoken::errors::Error> for TokenError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Self::Algorithm,
            _ => Self::Invalid(e.to_string()),
        }
    }
}

/// Verifies tokens with every configured key.
pub struct Verifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    leeway: u64,
}

impl Verifier {
    /// A verifier with no key (every token refused) and the default leeway.
    pub fn new() -> Self {
        Self {
            keys: Vec::new(),
            leeway: DEFAULT_LEEWAY_SECS,
        }
    }

    /// Sets the clock-skew allowance.
    pub fn leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    /// Accepts HS256 tokens signed with `secret`.
    pub fn hs256(mut self, secret: &[u8]) -> Self {
        self.keys
            .push((Algorithm::HS256, DecodingKey::from_secret(secret)));
        self
    }

    /// Accepts EdDSA tokens verified with an Ed25519 public key (PEM).
    ///
    /// # Errors
    /// The PEM is not an Ed25519 public key.
    pub fn ed25519_pem(mut self, pem: &[u8]) -> Result<Self, TokenError> {
        let key = DecodingKey::from_ed_pem(pem).map_err(|e| TokenError::Key(e.to_string()))?;
        self.keys.push((Algorithm::EdDSA, key));
        Ok(self)
    }

    /// True when at least one key is configured.
    pub fn is_configured(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Verifies `token` and returns who it stands for.
    ///
    /// # Errors
    /// [`TokenError`] for every refusal.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        self.verify_until(token).map(|(p, _)| p)
    }

    /// Verifies `token`; returns who it stands for and its `exp` (Unix
    /// seconds), after which a connection it opened is closed.
    ///
    /// # Errors
    /// [`TokenError`] for every refusal.
    pub fn verify_until(&self, token: &str) -> Result<(Principal, u64), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(TokenError::from)?;
        let Some((alg, key)) = self.keys.iter().find(|(alg, _)| *alg == header.alg) else {
            return Err(TokenError::Algorithm);
        };
        let mut validation = Validation::new(*alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)?;
        // A token issued in the future (beyond the leeway) is not valid yet.
        let now = u64::try_from(streambus_core::time::now_ms() / 1000).unwrap_or(0);
        if data.claims.iat.is_some_and(|iat| iat > now + self.leeway) {
            return Err(TokenError::NotYetValid);
        }
        let exp = data.claims.exp;
        Ok((principal(data.claims)?, exp))
    }
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

/// Mints tokens with one key.
pub struct Minter {
    alg: Algorithm,
    key: EncodingKey,
}

impl Minter {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            alg: Algorithm::HS256,
            key: EncodingKey::from_secret(secret),
        }
    }

    /// EdDSA with an Ed25519 private key (PEM).
    ///
    /// # Errors
    /// The PEM is not an Ed25519 private key.
    pub fn ed25519_pem(pem: &[u8]) -> Result<Self, TokenError> {
        let key = EncodingKey::from_ed_pem(pem).map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(Self {
            alg: Algorithm::EdDSA,
            key,
        })
    }

    /// Signs `claims` after checking they describe a valid principal.
    ///
    /// # Errors
    /// Invalid claims (bad tenant or stream glob) or a signing failure.
    pub fn mint(&self, claims: &Claims) -> Result<String, TokenError> {
        principal(claims.clone())?;
        Ok(jsonwebtoken::encode(
            &Header::new(self.alg),
            claims,
            &self.key,
        )?)
    }
}

/// An unsigned (`alg: none`) token carrying `claims`: what an attacker
/// would send; every verifier refuses it. For tests.
#[doc(hidden)]
pub fn unsigned_token(claims: &Claims) -> String {
    let json = serde_json::to_string(claims).unwrap_or_default();
    format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(json.as_bytes())
    )
}

/// Unpadded base64url.
fn base64_url(bytes: &[u8]) -> String {
    let mut out = String::new();
    streambus_core::keys::base64url(bytes, &mut out);
    out
}

/// Checks claims and turns them into a principal.
fn principal(c: Claims) -> Result<Principal, TokenError> {
    if !name::is_tenant(&c.tenant) {
        return Err(TokenError::Invalid(format!(
            "tenant `{}` is not a valid name",
            c.tenant
        )));
    }
    if c.sub.is_empty() || c.sub.len() > 200 {
        return Err(TokenError::Invalid("sub must be 1 to 200 bytes".into()));
    }
    let globs = |field: &str, list: Vec<String>| -> Result<Vec<Glob>, TokenError> {
        list.into_iter()
            .map(|g| {
                if wire::is_stream_pattern(&g) {
                    Ok(Glob::new(g))
                } else {
                    Err(TokenError::Invalid(format!(
                        "{field}: `{g}` is not a stream name or glob"
                    )))
                }
            })
            .collect()
    };
    Ok(Principal {
        subject: c.sub,
        tenant: c.tenant,
        role: c.role,
        publish: globs("publish", c.publish)?,
        subscribe: globs("subscribe", c.subscribe)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret-of-reasonable-length";
    const ED_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/ed25519-test.pem");
    const ED_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/ed25519-test.pub.pem");

    fn now() -> u64 {
        (streambus_core::time::now_ms() / 1000) as u64
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "obs-main".into(),
            tenant: "acme".into(),
            role: Role::Overlay,
            publish: vec![],
            subscribe: vec!["match-*".into()],
            exp,
            iat: Some(now()),
            nbf: None,
        }
    }

    #[test]
    fn hs256_round_trip() {
        let token = Minter::hs256(SECRET).mint(&claims(now() + 600)).unwrap();
        let p = Verifier::new().hs256(SECRET).verify(&token).unwrap();
        assert_eq!(
            (p.subject.as_str(), p.tenant.as_str(), p.role),
            ("obs-main", "acme", Role::Overlay)
        );
        assert!(p.subscribe[0].matches("match-7"));
    }

    #[test]
    fn eddsa_round_trip_and_no_algorithm_substitution() {
        let token = Minter::ed25519_pem(ED_PRIVATE)
            .unwrap()
            .mint(&claims(now() + 600))
            .unwrap();
        let both = Verifier::new()
            .hs256(SECRET)
            .ed25519_pem(ED_PUBLIC)
            .unwrap();
        assert!(both.verify(&token).is_ok());
        // Only HS256 configured: an EdDSA token is refused, and vice versa.
        assert!(matches!(
            Verifier::new().hs256(SECRET).verify(&token),
            Err(TokenError::Algorithm)
        ));
        let hs = Minter::hs256(SECRET).mint(&claims(now() + 600)).unwrap();
        let ed_only = Verifier::new().ed25519_pem(ED_PUBLIC).unwrap();
        assert!(matches!(ed_only.verify(&hs), Err(TokenError::Algorithm)));
    }

    #[test]
    fn expired_not_yet_valid_wrong_key_and_none_are_refused() {
        let v = Verifier::new().hs256(SECRET).leeway(5);
        let expired = Minter::hs256(SECRET).mint(&claims(now() - 60)).unwrap();
        assert!(matches!(v.verify(&expired), Err(TokenError::Expired)));
        let within_leeway = Minter::hs256(SECRET).mint(&claims(now() - 2)).unwrap();
        assert!(v.verify(&within_leeway).is_ok());
        let mut later = claims(now() + 600);
        later.nbf = Some(now() + 300);
        let early = Minter::hs256(SECRET).mint(&later).unwrap();
        assert!(matches!(v.verify(&early), Err(TokenError::NotYetValid)));
        let mut issued_later = claims(now() + 600);
        issued_later.iat = Some(now() + 300);
        let future = Minter::hs256(SECRET).mint(&issued_later).unwrap();
        assert!(matches!(v.verify(&future), Err(TokenError::NotYetValid)));
        issued_later.iat = Some(now() + 3);
        let skewed = Minter::hs256(SECRET).mint(&issued_later).unwrap();
        assert!(v.verify(&skewed).is_ok(), "within the leeway");
        let forged = Minter::hs256(b"another-secret-entirely-different")
            .mint(&claims(now() + 600))
            .unwrap();
        assert!(matches!(v.verify(&forged), Err(TokenError::Invalid(_))));
        // alg: none, unsigned.
        assert!(v.verify(&unsigned_token(&claims(now() + 600))).is_err());
        assert!(
            Verifier::new().verify(&expired).is_err(),
            "no key: every token refused"
        );
    }

    #[test]
    fn bad_claims_are_refused_at_mint() {
        let mut c = claims(now() + 600);
        c.tenant = "Not A Tenant".into();
        assert!(Minter::hs256(SECRET).mint(&c).is_err());
        let mut c = claims(now() + 600);
        c.subscribe = vec!["bad stream".into()];
        assert!(Minter::hs256(SECRET).mint(&c).is_err());
    }
}
