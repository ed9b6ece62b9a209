//! Compact JWS with HS256 under the shared secret: the session handle's format (system.md §3.4).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// The longest token accepted.
const MAX_TOKEN: usize = 16 * 1024;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("the token is longer than 16 KiB")]
    TooLong,
    #[error("the token is not three base64url parts")]
    Malformed,
    #[error("the token's algorithm is not HS256")]
    Algorithm,
    #[error("the token's signature does not match")]
    Signature,
    #[error("the token's claims are not a JSON object")]
    Claims,
}

/// `header.claims.signature`, HS256.
pub fn sign_hs256(claims: &Map<String, Value>, key: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string());
    let input = format!("{header}.{body}");
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// The claims of an HS256 token signed with `key` (the signature compared in constant time).
pub fn verify_hs256(token: &str, key: &[u8]) -> Result<Map<String, Value>, JwsError> {
    let (header, body, signature) = split(token)?;
    let header: Value = serde_json::from_slice(&decode(header)?).map_err(|_| JwsError::Malformed)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(JwsError::Algorithm);
    }
    let signature = decode(signature)?;
    let input_len = token.len() - signature_part_len(token);
    let input = token.get(..input_len).ok_or(JwsError::Malformed)?;
    aws_lc_rs::hmac::verify(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
        input.as_bytes(),
        &signature,
    )
    .map_err(|_| JwsError::Signature)?;
    claims(body)
}

fn claims(body: &str) -> Result<Map<String, Value>, JwsError> {
    match serde_json::from_slice(&decode(body)?) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwsError::Claims),
    }
}

fn signature_part_len(token: &str) -> usize {
    token.rsplit_once('.').map_or(0, |(_, s)| s.len() + 1)
}

pub(crate) fn split(token: &str) -> Result<(&str, &str, &str), JwsError> {
    if token.len() > MAX_TOKEN {
        return Err(JwsError::TooLong);
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(b), Some(s), None) if !h.is_empty() && !b.is_empty() => Ok((h, b, s)),
        _ => Err(JwsError::Malformed),
    }
}

/// base64url without padding, canonical only (as Go's `RawURLEncoding`): one text per token, so
/// that nobody can make many texts of one handle (each would be a new entry in a cache of
/// verified handles).
pub(crate) fn decode(part: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| JwsError::Malformed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::string_slice, reason = "tests")]
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_key_and_untouched() {
        let mut claims = Map::new();
        claims.insert("jti".into(), Value::String("abc".into()));
        let token = sign_hs256(&claims, b"key");
        assert_eq!(verify_hs256(&token, b"key").unwrap(), claims);
        assert_eq!(verify_hs256(&token, b"other"), Err(JwsError::Signature));
        let (h, _, s) = split(&token).unwrap();
        let forged = format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode(r#"{"jti":"evil"}"#));
        assert_eq!(verify_hs256(&forged, b"key"), Err(JwsError::Signature));
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode("{}"));
        assert_eq!(verify_hs256(&none, b"key"), Err(JwsError::Algorithm));
        assert_eq!(verify_hs256("a.b", b"key"), Err(JwsError::Malformed));
        assert_eq!(verify_hs256(&"a".repeat(20_000), b"key"), Err(JwsError::TooLong));
    }

    /// One text per token: padding, or a last character with bits set past the data, is
    /// another text of the same bytes, and is refused (as Go's `RawURLEncoding` refuses it).
    #[test]
    fn only_the_canonical_text_of_a_token_verifies() {
        let mut claims = Map::new();
        claims.insert("jti".into(), Value::String("abcd".into()));
        let token = sign_hs256(&claims, b"key");
        let (h, b, s) = split(&token).unwrap();
        assert!(!token.contains('='));
        for padded in [format!("{token}="), format!("{token}=="), format!("{h}.{b}=.{s}"), format!("{h}==.{b}.{s}")] {
            assert!(verify_hs256(&padded, b"key").is_err(), "{padded}");
        }
        // The signature is 32 bytes: its last character carries 2 unused bits.
        let last = s.chars().last().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let value = alphabet.find(last).unwrap();
        let other = alphabet.chars().nth(value ^ 1).unwrap();
        let noncanonical = format!("{h}.{b}.{}{other}", &s[..s.len() - 1]);
        assert!(verify_hs256(&noncanonical, b"key").is_err(), "{noncanonical}");
    }
}
