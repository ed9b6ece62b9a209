//! The OAuth `state` (system.md §3.3 step 2), as Pomerium builds it:
//! `base64url_padded("csrf|unix_ts|trace|" ‖ seal(redirect URL, aad = "csrf|unix_ts|trace|"))`,
//! sealed under the cookie secret. The callback splits it into at most four parts on `|`, so a
//! `|` inside the ciphertext is harmless.

use crate::aead::Aead;
use base64::Engine as _;

/// How far the state's time may be from now.
const WINDOW: i64 = 5 * 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedState {
    pub csrf_token: String,
    pub issued_at: i64,
    pub redirect_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the state is malformed or was not made here")]
    Invalid,
    #[error("the state has expired")]
    Expired,
    #[error("the state was issued in the future")]
    FromTheFuture,
}

pub fn encode_state(aead: &Aead, csrf_token: &str, now: i64, trace_id: &str, redirect_url: &str) -> String {
    let prefix = format!("{csrf_token}|{now}|{trace_id}|");
    let mut bytes = prefix.clone().into_bytes();
    bytes.extend(aead.seal(redirect_url.as_bytes(), prefix.as_bytes()));
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

pub fn decode_state(aead: &Aead, state: &str, now: i64) -> Result<DecodedState, StateError> {
    let bytes = base64::engine::general_purpose::URL_SAFE.decode(state).map_err(|_| StateError::Invalid)?;
    let mut parts = bytes.splitn(4, |b| *b == b'|');
    let (Some(csrf), Some(time), Some(trace), Some(sealed)) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(StateError::Invalid);
    };
    let prefix_len = csrf.len() + time.len() + trace.len() + 3;
    let prefix = bytes.get(..prefix_len).ok_or(StateError::Invalid)?;
    let redirect = aead.open(sealed, prefix).map_err(|_| StateError::Invalid)?;
    let csrf_token = String::from_utf8(csrf.to_vec()).map_err(|_| StateError::Invalid)?;
    let issued_at: i64 = std::str::from_utf8(time).ok().and_then(|t| t.parse().ok()).ok_or(StateError::Invalid)?;
    if now.saturating_sub(issued_at) > WINDOW {
        return Err(StateError::Expired);
    }
    if issued_at.saturating_sub(now) > WINDOW {
        return Err(StateError::FromTheFuture);
    }
    let redirect_url = String::from_utf8(redirect).map_err(|_| StateError::Invalid)?;
    Ok(DecodedState { csrf_token, issued_at, redirect_url })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn states_round_trip_within_five_minutes_and_refuse_tampering() {
        let aead = Aead::new(&[5; 32]).unwrap();
        let state = encode_state(&aead, "csrf", 1000, "", "https://authenticate.example.com/.pomerium/sign_in?x=1");
        let decoded = decode_state(&aead, &state, 1200).unwrap();
        assert_eq!(decoded.csrf_token, "csrf");
        assert_eq!(decoded.redirect_url, "https://authenticate.example.com/.pomerium/sign_in?x=1");
        assert_eq!(decode_state(&aead, &state, 1400), Err(StateError::Expired));
        assert_eq!(decode_state(&aead, &state, 600), Err(StateError::FromTheFuture));
        assert_eq!(decode_state(&Aead::new(&[6; 32]).unwrap(), &state, 1000), Err(StateError::Invalid));
        // A changed CSRF token or time breaks the seal's associated data.
        let bytes = base64::engine::general_purpose::URL_SAFE.decode(&state).unwrap();
        let mut forged = b"other".to_vec();
        forged.extend_from_slice(&bytes[4..]);
        let forged = base64::engine::general_purpose::URL_SAFE.encode(forged);
        assert_eq!(decode_state(&aead, &forged, 1000), Err(StateError::Invalid));
        assert_eq!(decode_state(&aead, "not base64!", 1000), Err(StateError::Invalid));
        assert_eq!(decode_state(&aead, "", 1000), Err(StateError::Invalid));
    }
}
