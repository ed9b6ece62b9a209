//! The identity provider's JWKS document and the ID tokens checked against it (`oidc`'s readers,
//! through `oidc::fuzzing::verify_id_token`): a JWKS that is arbitrary bytes or the real one, a
//! token whose header, claims and signature are arbitrary, or whose header and claims are
//! arbitrary JSON signed with the real key (so that the claim checks run). Nothing may panic; a
//! token not signed with the key is never accepted, and an accepted one has the right issuer and
//! audience.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "https://idp.example.com";
const CLIENT_ID: &str = "client";

#[derive(Debug, Arbitrary)]
struct Input {
    /// Arbitrary bytes instead of the real JWKS.
    jwks: Option<Vec<u8>>,
    /// Arbitrary JSON instead of `{"alg":"ES256","kid":"k1"}`.
    header: Option<String>,
    claims: String,
    /// Signed with the real key (else `signature` is the signature).
    signed: bool,
    signature: Vec<u8>,
    /// A token given whole instead.
    raw: Option<String>,
    nonce: Option<String>,
    now: i64,
}

struct Key {
    pair: EcdsaKeyPair,
    jwks: Vec<u8>,
}

fn key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| {
        let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, document.as_ref()).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let (x, y) = point[1..].split_at(32);
        let jwks = format!(
            r#"{{"keys":[{{"kty":"RSA","kid":"r1","n":"AQAB","e":"AQAB"}},{{"kty":"EC","crv":"P-256","kid":"k1","use":"sig","x":"{}","y":"{}"}}]}}"#,
            URL_SAFE_NO_PAD.encode(x),
            URL_SAFE_NO_PAD.encode(y)
        );
        Key { pair, jwks: jwks.into_bytes() }
    })
}

fuzz_target!(|input: Input| {
    let key = key();
    let real_jwks = input.jwks.is_none();
    let jwks = input.jwks.as_deref().unwrap_or(&key.jwks);
    let header = input.header.as_deref().unwrap_or(r#"{"alg":"ES256","kid":"k1"}"#);
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(&input.claims));
    let signed = input.signed && input.raw.is_none();
    let token = match &input.raw {
        Some(raw) => raw.clone(),
        None if input.signed => {
            let signature = key.pair.sign(&SystemRandom::new(), signing_input.as_bytes()).unwrap();
            format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
        }
        None => format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&input.signature)),
    };
    let verified =
        oidc::fuzzing::verify_id_token(jwks, &token, Some(ISSUER), CLIENT_ID, input.nonce.as_deref(), input.now);
    if let Ok(claims) = verified {
        assert!(signed || !real_jwks, "accepted a token the key did not sign: {token}");
        let iss = claims.get("iss").and_then(|v| v.as_str()).unwrap_or_default();
        assert_eq!(iss.trim_end_matches('/'), ISSUER, "accepted another issuer: {claims:?}");
    }
});
