//! Everything sign-in reads from a browser is hostile: cookies, the OAuth state, the sealed
//! session of a callback, signed URLs, session tokens in headers. Arbitrary bytes must give an
//! error (never a panic), and a valid value with any byte changed must be refused.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use authenticate::aead::Aead;
use authenticate::handle::{self, SessionHandle};
use authenticate::{csrf, state};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

const KEY: [u8; 32] = [9; 32];

fn handle() -> SessionHandle {
    SessionHandle {
        id: "session".into(),
        user_id: "alice".into(),
        idp_id: None,
        issuer: "authenticate.example.com".into(),
        audience: vec!["app.example.com".into()],
        issued_at: 1000,
        databroker_server_version: 1,
        databroker_record_version: 2,
    }
}

proptest! {
    #[test]
    fn arbitrary_text_is_refused_without_panicking(text in ".{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let aead = Aead::new(&KEY).unwrap();
        prop_assert!(SessionHandle::from_jwt(&text, &KEY).is_err());
        prop_assert!(state::decode_state(&aead, &text, 1000).is_err());
        prop_assert!(handle::open_from_callback(&text, &aead).is_err());
        prop_assert!(csrf::open_csrf(&aead, &text, 1000).is_err());
        prop_assert!(csrf::open_pkce(&aead, "state", &text, 1000).is_err());
        prop_assert!(aead.open(&bytes, b"").is_err());
        if let Ok(url) = url::Url::parse(&format!("https://app.example.com/?{text}")) {
            prop_assert!(authenticate::verify(&url, &KEY, 1000).is_err());
        }
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            headers.insert("cookie", value.clone());
            headers.insert("authorization", value.clone());
            headers.insert("x-pomerium-authorization", value);
        }
        // Finding a token is fine; it must then fail verification like any other text.
        if let Some(token) = authenticate::cookie::session_token(&headers, Some(&text), "_pomerium") {
            prop_assert!(SessionHandle::from_jwt(&token, &KEY).is_err());
        }
    }

    #[test]
    fn a_changed_byte_breaks_a_valid_handle_state_or_sealed_session(index in 0usize..400, flip in 1u8..=255) {
        let aead = Aead::new(&KEY).unwrap();
        let jwt = handle().to_jwt(&KEY);
        let state = state::encode_state(&aead, "csrf", 1000, "", "https://authenticate.example.com/.pomerium/sign_in");
        let sealed = handle::seal_for_callback(&jwt, &aead);
        for (value, check) in [
            (&jwt, Box::new(|v: &str| SessionHandle::from_jwt(v, &KEY).is_ok()) as Box<dyn Fn(&str) -> bool>),
            (&state, Box::new(|v: &str| state::decode_state(&aead, v, 1000).is_ok())),
            (&sealed, Box::new(|v: &str| handle::open_from_callback(v, &aead).is_ok())),
        ] {
            prop_assert!(check(value));
            let mut bytes = value.clone().into_bytes();
            let at = index % bytes.len();
            bytes[at] ^= flip;
            if let Ok(changed) = String::from_utf8(bytes) {
                // Base64 has a few encodings of the last bits of its last character; a change
                // there may decode to the same bytes, which is not a forgery.
                let same_bytes = decodes_to_same(value, &changed);
                prop_assert!(same_bytes || !check(&changed), "{value} changed at {at} still accepted");
            }
        }
    }
}

/// Whether two base64url texts (or dot-separated parts of them) decode to the same bytes.
fn decodes_to_same(a: &str, b: &str) -> bool {
    use base64::Engine as _;
    let decode = |text: &str| -> Option<Vec<Vec<u8>>> {
        text.split('.')
            .map(|part| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part.trim_end_matches('='))
                    .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(part))
                    .ok()
            })
            .collect()
    };
    matches!((decode(a), decode(b)), (Some(x), Some(y)) if x == y)
}
