//! The CSRF cookie (`<cookie_name>_csrf`) and the PKCE verifier cookie of the sign-in flow,
//! sealed under the cookie secret with a purpose and an expiry. Pomerium uses gorilla's
//! securecookie for these; they are read only by the deployment that wrote them, so they need
//! not be byte-compatible.

use crate::aead::Aead;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const CSRF_LIFETIME: i64 = 12 * 3600;
const PKCE_LIFETIME: i64 = 10 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("the cookie was not made here or was changed")]
    Invalid,
    #[error("the cookie has expired")]
    Expired,
}

/// 32 random bytes, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn seal(aead: &Aead, purpose: &str, value: &str, expires: i64) -> String {
    URL_SAFE_NO_PAD.encode(aead.seal(format!("{expires}|{value}").as_bytes(), purpose.as_bytes()))
}

fn open(aead: &Aead, purpose: &str, sealed: &str, now: i64) -> Result<String, CsrfError> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed.trim_end_matches('=')).map_err(|_| CsrfError::Invalid)?;
    let opened = aead.open(&bytes, purpose.as_bytes()).map_err(|_| CsrfError::Invalid)?;
    let text = String::from_utf8(opened).map_err(|_| CsrfError::Invalid)?;
    let (expires, value) = text.split_once('|').ok_or(CsrfError::Invalid)?;
    let expires: i64 = expires.parse().map_err(|_| CsrfError::Invalid)?;
    if now > expires {
        return Err(CsrfError::Expired);
    }
    Ok(value.to_owned())
}

pub fn seal_csrf(aead: &Aead, token: &str, now: i64) -> String {
    seal(aead, "pomerium csrf", token, now.saturating_add(CSRF_LIFETIME))
}

pub fn open_csrf(aead: &Aead, value: &str, now: i64) -> Result<String, CsrfError> {
    open(aead, "pomerium csrf", value, now)
}

/// The PKCE verifier, bound to the exact state it was made for.
pub fn seal_pkce(aead: &Aead, state: &str, verifier: &str, now: i64) -> String {
    seal(aead, &format!("pomerium pkce {state}"), verifier, now.saturating_add(PKCE_LIFETIME))
}

pub fn open_pkce(aead: &Aead, state: &str, value: &str, now: i64) -> Result<String, CsrfError> {
    open(aead, &format!("pomerium pkce {state}"), value, now)
}

/// Constant-time equality of two tokens.
pub fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn csrf_and_pkce_cookies_open_only_for_their_purpose_and_in_time() {
        let aead = Aead::new(&[8; 32]).unwrap();
        let token = new_token();
        let sealed = seal_csrf(&aead, &token, 100);
        assert_eq!(open_csrf(&aead, &sealed, 200).unwrap(), token);
        assert_eq!(open_csrf(&aead, &sealed, 100 + CSRF_LIFETIME + 1), Err(CsrfError::Expired));
        assert_eq!(open_pkce(&aead, "s", &sealed, 200), Err(CsrfError::Invalid), "not a PKCE cookie");
        let pkce = seal_pkce(&aead, "state-1", "verifier", 100);
        assert_eq!(open_pkce(&aead, "state-1", &pkce, 200).unwrap(), "verifier");
        assert_eq!(open_pkce(&aead, "state-2", &pkce, 200), Err(CsrfError::Invalid), "bound to its state");
        assert!(tokens_match("abc", "abc") && !tokens_match("abc", "abd") && !tokens_match("abc", "ab"));
    }
}
