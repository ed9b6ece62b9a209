//! Signed URLs (system.md §3.2): Pomerium's services hand each other URLs that carry their own
//! HMAC, so that a redirect through the browser cannot be forged or replayed later.
//!
//! Signing adds `pomerium_issued` (now) and `pomerium_expiry` (now + 5 minutes) in unix seconds,
//! re-encodes the query as Go's `url.Values.Encode` does (keys sorted), and appends
//! `pomerium_signature`: HMAC-SHA-512/256 under the shared key of the URL text followed by the
//! issued time, a space and the expiry (Go's `fmt.Sprint(url, issued, expiry)`), in padded
//! URL-safe base64. Checking allows 5 minutes of clock skew either way.

use crate::mac::{hmac_sha512_256, macs_equal};
use base64::Engine as _;
use url::Url;

pub const ISSUED: &str = "pomerium_issued";
pub const EXPIRY: &str = "pomerium_expiry";
pub const SIGNATURE: &str = "pomerium_signature";

/// How long a signed URL stays valid.
pub const VALIDITY_SECONDS: u64 = 5 * 60;
/// Clock skew tolerated between the signer and the checker.
pub const LEEWAY_SECONDS: u64 = 5 * 60;

/// Why a signed URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the url has no signature")]
    Missing,
    #[error("the url's signature is malformed")]
    Malformed,
    #[error("the url's `{0}` time is not a number of seconds")]
    BadTime(&'static str),
    #[error("the signed url has expired")]
    Expired,
    #[error("the signed url was issued in the future")]
    IssuedInTheFuture,
    #[error("the url's signature does not match")]
    Mismatch,
}

/// `url` signed at `now` (unix seconds) with `key`. Earlier signing parameters are replaced.
pub fn sign(url: &Url, key: &[u8], now: u64) -> Url {
    let mut pairs = query_pairs_without(url, &[ISSUED, EXPIRY, SIGNATURE]);
    let (issued, expiry) = (now.to_string(), now.saturating_add(VALIDITY_SECONDS).to_string());
    pairs.push((ISSUED.to_owned(), issued.clone()));
    pairs.push((EXPIRY.to_owned(), expiry.clone()));
    let unsigned = with_query(url, &pairs);
    let mac = mac_of(&unsigned, &issued, &expiry, key);
    pairs.push((SIGNATURE.to_owned(), base64::engine::general_purpose::URL_SAFE.encode(mac)));
    with_query(url, &pairs)
}

/// Checks `url`'s signature and times at `now` (unix seconds).
pub fn verify(url: &Url, key: &[u8], now: u64) -> Result<(), SignatureError> {
    let value_of = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let signature = value_of(SIGNATURE).ok_or(SignatureError::Missing)?;
    let signature =
        base64::engine::general_purpose::URL_SAFE.decode(signature).map_err(|_| SignatureError::Malformed)?;
    let issued = value_of(ISSUED).ok_or(SignatureError::BadTime(ISSUED))?;
    let expiry = value_of(EXPIRY).ok_or(SignatureError::BadTime(EXPIRY))?;
    let issued_at: u64 = issued.parse().map_err(|_| SignatureError::BadTime(ISSUED))?;
    let expires_at: u64 = expiry.parse().map_err(|_| SignatureError::BadTime(EXPIRY))?;
    if now.saturating_sub(LEEWAY_SECONDS) > expires_at {
        return Err(SignatureError::Expired);
    }
    if now.saturating_add(LEEWAY_SECONDS) < issued_at {
        return Err(SignatureError::IssuedInTheFuture);
    }
    let unsigned = with_query(url, &query_pairs_without(url, &[SIGNATURE]));
    let expected = mac_of(&unsigned, &issued, &expiry, key);
    if macs_equal(&expected, &signature) { Ok(()) } else { Err(SignatureError::Mismatch) }
}

fn mac_of(unsigned: &Url, issued: &str, expiry: &str, key: &[u8]) -> [u8; 32] {
    hmac_sha512_256(key, &[unsigned.as_str().as_bytes(), issued.as_bytes(), b" ", expiry.as_bytes()])
}

fn query_pairs_without(url: &Url, names: &[&str]) -> Vec<(String, String)> {
    url.query_pairs()
        .filter(|(k, _)| !names.contains(&k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn with_query(url: &Url, pairs: &[(String, String)]) -> Url {
    let mut out = url.clone();
    let encoded = go_encode(pairs);
    out.set_query((!encoded.is_empty()).then_some(encoded.as_str()));
    out
}

/// Go's `url.Values.Encode`: sorted by key (a stable sort, so one key's values keep their
/// order), each part escaped as `url.QueryEscape` does.
pub fn go_encode(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (key, value) in sorted {
        if !out.is_empty() {
            out.push('&');
        }
        query_escape(key, &mut out);
        out.push('=');
        query_escape(value, &mut out);
    }
    out
}

/// Go's `url.QueryEscape`: unreserved bytes stay, a space becomes `+`, the rest `%XX`.
fn query_escape(text: &str, out: &mut String) {
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            _ => {
                use std::fmt::Write as _;
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_767_225_600;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn a_signed_url_verifies_within_its_validity() {
        let signed = sign(&url("https://authenticate.example.com/.pomerium/sign_in?b=2&a=1"), KEY, NOW);
        assert_eq!(verify(&signed, KEY, NOW), Ok(()));
        assert_eq!(verify(&signed, KEY, NOW + VALIDITY_SECONDS + LEEWAY_SECONDS), Ok(()));
        assert_eq!(verify(&signed, KEY, NOW + VALIDITY_SECONDS + LEEWAY_SECONDS + 1), Err(SignatureError::Expired));
        assert_eq!(verify(&signed, KEY, NOW - LEEWAY_SECONDS - 1), Err(SignatureError::IssuedInTheFuture));
    }

    #[test]
    fn the_query_is_sorted_and_escaped_as_go_does() {
        let signed =
            sign(&url("https://a.example.com/p?z=1&pomerium_redirect_uri=https%3A%2F%2Fx.example.com%2Fa+b"), KEY, NOW);
        let query = signed.query().unwrap();
        assert!(
            query.starts_with(&format!(
                "pomerium_expiry={}&pomerium_issued={NOW}&pomerium_redirect_uri=https%3A%2F%2Fx.example.com%2Fa+b&pomerium_signature=",
                NOW + VALIDITY_SECONDS
            )),
            "{query}"
        );
        assert!(query.ends_with("&z=1"), "{query}");
    }

    #[test]
    fn the_mac_covers_the_url_text_then_the_times() {
        // Recomputed by hand from the documented layout: the unsigned URL, issued, space, expiry.
        let signed = sign(&url("https://a.example.com/x"), KEY, NOW);
        let unsigned = format!("https://a.example.com/x?pomerium_expiry={}&pomerium_issued={NOW}", NOW + 300);
        let message = format!("{unsigned}{NOW} {}", NOW + 300);
        let expected = base64::engine::general_purpose::URL_SAFE.encode(hmac_sha512_256(KEY, &[message.as_bytes()]));
        let signature = signed.query_pairs().find(|(k, _)| k == SIGNATURE).unwrap().1.into_owned();
        assert_eq!(signature, expected);
    }

    #[test]
    fn tampering_is_detected() {
        let signed = sign(&url("https://a.example.com/?pomerium_redirect_uri=https://app.example.com/"), KEY, NOW);
        let tampered = url(&signed.as_str().replace("app.example.com", "evil.example.com"));
        assert_eq!(verify(&tampered, KEY, NOW), Err(SignatureError::Mismatch));
        assert_eq!(verify(&signed, b"another key, also thirty-two b!!", NOW), Err(SignatureError::Mismatch));
        let moved = url(&signed.as_str().replace("https://a.example.com/", "https://b.example.com/"));
        assert_eq!(verify(&moved, KEY, NOW), Err(SignatureError::Mismatch));
        let extended =
            url(&signed.as_str().replace(&format!("pomerium_expiry={}", NOW + 300), "pomerium_expiry=9999999999"));
        assert_eq!(verify(&extended, KEY, NOW), Err(SignatureError::Mismatch));
    }

    #[test]
    fn malformed_signatures_are_refused() {
        assert_eq!(verify(&url("https://a.example.com/"), KEY, NOW), Err(SignatureError::Missing));
        let bad =
            url(&format!("https://a.example.com/?pomerium_signature=%%%&pomerium_issued={NOW}&pomerium_expiry={NOW}"));
        assert_eq!(verify(&bad, KEY, NOW), Err(SignatureError::Malformed));
        let bad = url("https://a.example.com/?pomerium_signature=AAAA&pomerium_issued=x&pomerium_expiry=1");
        assert_eq!(verify(&bad, KEY, NOW), Err(SignatureError::BadTime(ISSUED)));
    }
}
