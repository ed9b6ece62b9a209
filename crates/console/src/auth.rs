//! Tokens. API users exchange a refresh token (`api_tokens`) for an id token; clusters exchange
//! their cluster token likewise. An id token is `<kind>.<base64url(JSON claims)>.<base64url(HMAC-SHA256)>`,
//! signed with the console's secret (kept in the store, so it survives restarts on PostgreSQL).
//! Every comparison of secret material is constant-time (`aws_lc_rs::hmac::verify`,
//! `aws_lc_rs::constant_time`).

use aws_lc_rs::{constant_time, digest, hmac, rand};
use base64::Engine as _;
use serde_json::{Value, json};

/// How long an id token lives (the cluster side wants at least 55 minutes left for Connect).
pub const ID_TOKEN_LIFETIME_SECONDS: i64 = 2 * 60 * 60;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The console's signing key.
#[derive(Clone)]
pub struct Keys {
    key: hmac::Key,
    raw: Vec<u8>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

/// Who an id token was issued to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// An API user, by its `api_tokens` name.
    User(String),
    /// A cluster, and the generation of its token when the id token was issued.
    Cluster { id: String, generation: u64 },
}

impl Keys {
    pub fn new(secret: &[u8]) -> Keys {
        Keys { key: hmac::Key::new(hmac::HMAC_SHA256, secret), raw: secret.to_vec() }
    }

    /// The secret bytes (for keys derived from it).
    pub fn derive(&self, purpose: &str) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &self.raw), purpose.as_bytes()).as_ref().to_vec()
    }

    pub fn sign(&self, data: &[u8]) -> String {
        B64.encode(hmac::sign(&self.key, data).as_ref())
    }

    /// Constant-time check of a signature made by [`Keys::sign`].
    pub fn verify(&self, data: &[u8], signature: &str) -> bool {
        match B64.decode(signature) {
            Ok(tag) => hmac::verify(&self.key, data, &tag).is_ok(),
            Err(_) => false,
        }
    }

    /// An id token for `subject`, valid for [`ID_TOKEN_LIFETIME_SECONDS`].
    pub fn issue(&self, subject: &Subject, now: i64) -> String {
        let (kind, claims) = match subject {
            Subject::User(name) => ("u", json!({"sub": name, "exp": now + ID_TOKEN_LIFETIME_SECONDS})),
            Subject::Cluster { id, generation } => {
                ("c", json!({"sub": id, "gen": generation, "exp": now + ID_TOKEN_LIFETIME_SECONDS}))
            }
        };
        let body = format!("{kind}.{}", B64.encode(claims.to_string()));
        let signature = self.sign(body.as_bytes());
        format!("{body}.{signature}")
    }

    /// The subject of a valid, unexpired id token.
    pub fn check(&self, token: &str, now: i64) -> Option<Subject> {
        let (body, signature) = token.rsplit_once('.')?;
        if !self.verify(body.as_bytes(), signature) {
            return None;
        }
        let (kind, claims) = body.split_once('.')?;
        let claims: Value = serde_json::from_slice(&B64.decode(claims).ok()?).ok()?;
        if claims.get("exp").and_then(Value::as_i64)? <= now {
            return None;
        }
        let sub = claims.get("sub").and_then(Value::as_str)?.to_owned();
        match kind {
            "u" => Some(Subject::User(sub)),
            "c" => Some(Subject::Cluster { id: sub, generation: claims.get("gen").and_then(Value::as_u64)? }),
            _ => None,
        }
    }
}

/// The name of the API token `given` matches, compared in constant time against each.
pub fn match_api_token<'a>(tokens: &'a [crate::settings::ApiToken], given: &str) -> Option<&'a str> {
    let given_digest = digest::digest(&digest::SHA256, given.as_bytes());
    let mut found = None;
    for token in tokens {
        let digest = digest::digest(&digest::SHA256, token.token.as_bytes());
        if constant_time::verify_slices_are_equal(digest.as_ref(), given_digest.as_ref()).is_ok() {
            found = Some(token.name.as_str());
        }
    }
    found
}

/// The name of the API token made in the web console that `given` matches (its `tokenDigest`
/// compared in constant time against each).
pub fn match_stored_api_token(stored: &[serde_json::Map<String, Value>], given: &str) -> Option<String> {
    let given_digest = token_id(given);
    let mut found = None;
    for token in stored {
        let digest = token.get("tokenDigest").and_then(Value::as_str).unwrap_or_default();
        if constant_time::verify_slices_are_equal(digest.as_bytes(), given_digest.as_bytes()).is_ok() {
            found = token.get("name").and_then(Value::as_str).map(str::to_owned);
        }
    }
    found
}

/// A new cluster token: 32 random bytes, base64url.
pub fn new_refresh_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).map_err(|_| "the system random generator failed".to_owned())?;
    Ok(B64.encode(bytes))
}

/// New random secret bytes.
pub fn new_secret() -> Result<Vec<u8>, String> {
    let mut bytes = vec![0u8; 32];
    rand::fill(&mut bytes).map_err(|_| "the system random generator failed".to_owned())?;
    Ok(bytes)
}

/// The id a token is stored under: the hex SHA-256 of the token.
pub fn token_id(token: &str) -> String {
    digest_hex(token.as_bytes())
}

/// The hex SHA-256 of `bytes`.
pub fn digest_hex(bytes: &[u8]) -> String {
    digest::digest(&digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The bearer token of an `Authorization` value: `Bearer <t>` or `Pomerium <t>` (the Go SDK's).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("pomerium"))
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn id_tokens_round_trip_and_refuse_tampering_and_expiry() {
        let keys = Keys::new(b"0123456789abcdef0123456789abcdef");
        let subject = Subject::Cluster { id: "c1".to_owned(), generation: 3 };
        let token = keys.issue(&subject, 1000);
        assert_eq!(keys.check(&token, 1001), Some(subject));
        assert_eq!(keys.check(&token, 1000 + ID_TOKEN_LIFETIME_SECONDS), None);
        let mut tampered = token.clone();
        tampered.insert(3, 'x');
        assert_eq!(keys.check(&tampered, 1001), None);
        let other = Keys::new(b"another secret, another console!");
        assert_eq!(other.check(&token, 1001), None);
        assert_eq!(keys.check("", 0), None);
        assert_eq!(keys.check("u..", 0), None);
    }

    #[test]
    fn bearer_accepts_both_schemes() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("Pomerium abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
