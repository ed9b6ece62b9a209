//! What sign-in reads from a browser: the session cookie (chunked or not) and session tokens in
//! headers or the query, the session handle (an HS256 JWT), the OAuth `state`, the sealed session
//! of a callback, the CSRF and PKCE cookies, signed URLs. Each reader gets either arbitrary text or
//! a valid value with bytes changed (so that the decoders behind the first check run), and must
//! refuse without panicking; arbitrary text is never accepted (it cannot carry a valid MAC).
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use authenticate::aead::Aead;
use authenticate::handle::{self, SessionHandle};
use authenticate::{cookie, csrf, jws, state};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [9; 32];
const NOW: i64 = 1000;

#[derive(Debug, Arbitrary)]
struct Input {
    /// 0: the text as is; 1..: the valid value of that kind with `edits` applied.
    base: u8,
    edits: Vec<(u16, u8)>,
    truncate: Option<u16>,
    text: String,
    cookie_header: Vec<u8>,
    query: Option<String>,
}

struct Valid {
    aead: Aead,
    values: Vec<String>,
}

fn valid() -> &'static Valid {
    static VALID: OnceLock<Valid> = OnceLock::new();
    VALID.get_or_init(|| {
        let aead = Aead::new(&KEY).unwrap();
        let jwt = SessionHandle {
            id: "session".into(),
            user_id: "alice".into(),
            idp_id: None,
            issuer: "authenticate.example.com".into(),
            audience: vec!["app.example.com".into()],
            issued_at: NOW,
            databroker_server_version: 1,
            databroker_record_version: 2,
        }
        .to_jwt(&KEY);
        let signed = authenticate::signed_url::sign(
            &url::Url::parse("https://authenticate.example.com/.pomerium/sign_in?pomerium_redirect_uri=https%3A%2F%2Fapp.example.com%2F").unwrap(),
            &KEY,
            NOW as u64,
        );
        let values = vec![
            state::encode_state(&aead, "csrf", NOW, "", "https://authenticate.example.com/.pomerium/sign_in"),
            handle::seal_for_callback(&jwt, &aead),
            csrf::seal_csrf(&aead, "csrf-token", NOW),
            csrf::seal_pkce(&aead, "state", "verifier", NOW),
            signed.to_string(),
            jwt,
        ];
        Valid { aead, values }
    })
}

fuzz_target!(|input: Input| {
    let Valid { aead, values } = valid();
    let text = match usize::from(input.base) % (values.len() + 1) {
        0 => input.text.clone(),
        n => {
            let mut bytes = values[n - 1].clone().into_bytes();
            for (at, flip) in &input.edits {
                if !bytes.is_empty() {
                    let at = usize::from(*at) % bytes.len();
                    bytes[at] ^= flip;
                }
            }
            if let Some(len) = input.truncate {
                bytes.truncate(usize::from(len));
            }
            bytes.extend_from_slice(input.text.as_bytes());
            String::from_utf8_lossy(&bytes).into_owned()
        }
    };
    let arbitrary = input.base == 0;
    let results = [
        SessionHandle::from_jwt(&text, &KEY).is_ok(),
        state::decode_state(aead, &text, NOW).is_ok(),
        handle::open_from_callback(&text, aead).is_ok(),
        csrf::open_csrf(aead, &text, NOW).is_ok(),
        csrf::open_pkce(aead, "state", &text, NOW).is_ok(),
        jws::verify_hs256(&text, &KEY).is_ok(),
        aead.open(text.as_bytes(), b"").is_ok(),
        url::Url::parse(&text).is_ok_and(|url| authenticate::signed_url::verify(&url, &KEY, NOW as u64).is_ok()),
    ];
    if arbitrary {
        assert_eq!(results, [false; 8], "arbitrary text accepted: {text:?}");
    }
    // The cookie and token readers: whatever they find must then be verified like any text.
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(&input.cookie_header) {
        headers.append("cookie", value.clone());
        headers.append("authorization", value.clone());
        headers.append("x-pomerium-authorization", value);
    }
    if let Ok(value) = HeaderValue::from_str(&text) {
        headers.append("cookie", value);
    }
    let _ = cookie::read_cookie(&headers, "_pomerium");
    if let Some(token) = cookie::session_token(&headers, input.query.as_deref(), "_pomerium") {
        let _ = SessionHandle::from_jwt(&token, &KEY);
    }
});
