//! Service-to-service authentication (system.md §5.1): every call carries gRPC metadata
//! `jwt: <HS256 JWT>` signed with the shared secret, whose only claim is `exp`.
//!
//! Invariant: a request is served only after its token's signature is verified in constant time
//! and its claims are exactly `{"exp": <future time>}`; anything else is `Unauthenticated` before
//! any storage call.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The metadata key the token travels in.
pub const METADATA_KEY: &str = "jwt";
/// How long a token this side signs is valid (Pomerium: one hour).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Signs and verifies service tokens with the shared secret.
#[derive(Clone)]
pub struct ServiceAuth {
    key: hmac::Key,
}

impl std::fmt::Debug for ServiceAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceAuth")
    }
}

/// Why a token was refused; the message is sent back, so it names no secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no `jwt` metadata: every call must carry a token signed with the shared secret")]
    Missing,
    #[error("the token is not a JWT (three base64url parts)")]
    Malformed,
    #[error("the token's algorithm must be HS256")]
    Algorithm,
    #[error("the token's signature does not match: is the shared_secret the same on every service?")]
    Signature,
    #[error("the token's only claim must be `exp`")]
    Claims,
    #[error("the token has expired")]
    Expired,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl ServiceAuth {
    pub fn new(shared_secret: &[u8]) -> ServiceAuth {
        ServiceAuth { key: hmac::Key::new(hmac::HMAC_SHA256, shared_secret) }
    }

    /// A token valid for [`TOKEN_LIFETIME`] from now.
    pub fn sign(&self) -> String {
        self.sign_with_expiry(unix_now() + TOKEN_LIFETIME.as_secs())
    }

    /// A token that expires at `exp` (seconds since the epoch).
    pub fn sign_with_expiry(&self, exp: u64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp}}}"#));
        let signing_input = format!("{header}.{claims}");
        let signature = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, signing_input.as_bytes()));
        format!("{signing_input}.{signature}")
    }

    /// Checks a token: signature first (constant time), then the header and the claims.
    pub fn verify(&self, token: Option<&str>) -> Result<(), TokenError> {
        let token = token.ok_or(TokenError::Missing)?;
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        let signing_input_len = header.len() + 1 + claims.len();
        let signing_input = token.get(..signing_input_len).ok_or(TokenError::Malformed)?;
        hmac::verify(&self.key, signing_input.as_bytes(), &signature).map_err(|_| TokenError::Signature)?;
        let header = decode_json(header)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(TokenError::Algorithm);
        }
        let claims = decode_json(claims)?;
        let Some(claims) = claims.as_object().filter(|c| c.len() == 1) else {
            return Err(TokenError::Claims);
        };
        let exp = claims.get("exp").and_then(Value::as_f64).ok_or(TokenError::Claims)?;
        #[expect(clippy::cast_precision_loss, reason = "seconds since the epoch fit an f64 exactly")]
        if exp <= unix_now() as f64 {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

fn decode_json(part: &str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_and_every_alteration_is_refused() {
        let auth = ServiceAuth::new(b"0123456789abcdef0123456789abcdef");
        let token = auth.sign();
        assert_eq!(auth.verify(Some(&token)), Ok(()));
        assert_eq!(auth.verify(None), Err(TokenError::Missing));
        assert_eq!(auth.verify(Some("a.b")), Err(TokenError::Malformed));
        assert_eq!(ServiceAuth::new(b"another secret").verify(Some(&token)), Err(TokenError::Signature));
        let expired = auth.sign_with_expiry(unix_now() - 1);
        assert_eq!(auth.verify(Some(&expired)), Err(TokenError::Expired));
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(auth.verify(Some(&tampered)).is_err());
    }

    #[test]
    fn extra_claims_and_other_algorithms_are_refused() {
        let auth = ServiceAuth::new(b"k");
        let forge = |header: &str, claims: &str| {
            let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
            let signature = URL_SAFE_NO_PAD.encode(hmac::sign(&auth.key, input.as_bytes()));
            format!("{input}.{signature}")
        };
        let later = unix_now() + 60;
        assert_eq!(
            auth.verify(Some(&forge(r#"{"alg":"HS256"}"#, &format!(r#"{{"exp":{later},"sub":"x"}}"#)))),
            Err(TokenError::Claims)
        );
        assert_eq!(
            auth.verify(Some(&forge(r#"{"alg":"none"}"#, &format!(r#"{{"exp":{later}}}"#)))),
            Err(TokenError::Algorithm)
        );
        assert_eq!(auth.verify(Some(&forge(r#"{"alg":"HS256"}"#, r#"{"exp":"soon"}"#))), Err(TokenError::Claims));
    }
}
