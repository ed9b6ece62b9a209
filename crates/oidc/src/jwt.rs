//! ID tokens: JWKS parsing, RS256/ES256 signature checks (aws-lc-rs), and the claims an RP must
//! check (OpenID Connect Core §3.1.3.7).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Clock skew allowed on `exp` and `iat`.
const LEEWAY: i64 = 60;

#[derive(Debug, Clone)]
pub(crate) struct Jwk {
    pub kid: Option<String>,
    key: Key,
}

#[derive(Debug, Clone)]
enum Key {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256 { point: Vec<u8> },
}

fn b64(value: Option<&Value>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(value?.as_str()?.trim_end_matches('=')).ok()
}

/// The signing keys of a JWKS document (other keys are skipped).
pub(crate) fn parse_jwks(body: &[u8]) -> Result<Vec<Jwk>, String> {
    let document: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let keys = document.get("keys").and_then(Value::as_array).ok_or("no `keys`")?;
    let mut out = Vec::new();
    for key in keys {
        if key.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
            continue;
        }
        let kid = key.get("kid").and_then(Value::as_str).map(str::to_owned);
        let parsed = match key.get("kty").and_then(Value::as_str) {
            Some("RSA") => b64(key.get("n")).zip(b64(key.get("e"))).map(|(n, e)| Key::Rsa { n, e }),
            Some("EC") if key.get("crv").and_then(Value::as_str) == Some("P-256") => {
                b64(key.get("x")).zip(b64(key.get("y"))).map(|(x, y)| {
                    let mut point = vec![4u8];
                    point.extend(x);
                    point.extend(y);
                    Key::P256 { point }
                })
            }
            _ => None,
        };
        if let Some(key) = parsed {
            out.push(Jwk { kid, key });
        }
    }
    Ok(out)
}

fn parts(token: &str) -> Result<(&str, &str, &str), String> {
    if token.len() > 64 * 1024 {
        return Err("longer than 64 KiB".into());
    }
    let mut it = token.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(b), Some(s), None) => Ok((h, b, s)),
        _ => Err("not a compact JWS".into()),
    }
}

fn header(token: &str) -> Result<Map<String, Value>, String> {
    let (h, _, _) = parts(token)?;
    match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).map_err(|_| "bad header encoding")?) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err("bad header".into()),
    }
}

/// The token's `kid`, if any.
pub(crate) fn key_id(token: &str) -> Result<Option<String>, String> {
    Ok(header(token)?.get("kid").and_then(Value::as_str).map(str::to_owned))
}

/// The claims, once the signature verifies with one of `keys`.
pub(crate) fn verify(token: &str, keys: &[Jwk]) -> Result<Map<String, Value>, String> {
    let header = header(token)?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    let kid = header.get("kid").and_then(Value::as_str);
    let (h, b, s) = parts(token)?;
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| "bad signature encoding")?;
    let input = format!("{h}.{b}");
    let candidates = keys.iter().filter(|k| kid.is_none() || k.kid.as_deref() == kid);
    let mut verified = false;
    let mut any = false;
    for key in candidates {
        any = true;
        let ok = match (&key.key, alg) {
            (Key::Rsa { n, e }, "RS256") => aws_lc_rs::signature::RsaPublicKeyComponents { n, e }
                .verify(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &signature)
                .is_ok(),
            (Key::P256 { point }, "ES256") => {
                aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(input.as_bytes(), &signature)
                    .is_ok()
            }
            _ => false,
        };
        if ok {
            verified = true;
            break;
        }
    }
    if !any {
        return Err(format!("no key `{}` in the provider's JWKS", kid.unwrap_or_default()));
    }
    if !verified {
        return Err(format!("the signature ({alg}) does not verify"));
    }
    match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b).map_err(|_| "bad claims encoding")?) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err("the claims are not a JSON object".into()),
    }
}

/// Issuer (unless `issuer` is `None`: Azure's multi-tenant endpoint, whose tokens name each
/// tenant), audience, expiry and nonce.
pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    issuer: Option<&str>,
    client_id: &str,
    nonce: Option<&str>,
    now: i64,
) -> Result<(), String> {
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
    if let Some(issuer) = issuer
        && iss.trim_end_matches('/') != issuer.trim_end_matches('/')
    {
        return Err(format!("issued by `{iss}`, not `{issuer}`"));
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == client_id,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    if !audience_ok {
        return Err("issued for another audience".into());
    }
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or("no expiry")?;
    if exp.saturating_add(LEEWAY) < now {
        return Err("expired".into());
    }
    if claims.get("iat").and_then(Value::as_i64).is_some_and(|iat| iat > now.saturating_add(LEEWAY)) {
        return Err("issued in the future".into());
    }
    if let Some(nonce) = nonce
        && claims.get("nonce").and_then(Value::as_str) != Some(nonce)
    {
        return Err("the nonce does not match this sign-in".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn claims_are_checked_one_by_one() {
        let good = json!({"iss": "https://idp", "aud": ["pomerium"], "exp": 2000, "iat": 1000, "nonce": "n"});
        assert_eq!(check_claims(&claims(good.clone()), Some("https://idp/"), "pomerium", Some("n"), 1500), Ok(()));
        let mut other = good.clone();
        other["aud"] = json!("someone-else");
        assert!(
            check_claims(&claims(other), Some("https://idp"), "pomerium", Some("n"), 1500)
                .unwrap_err()
                .contains("audience")
        );
        let mut other = good.clone();
        other["iss"] = json!("https://evil");
        assert!(check_claims(&claims(other), Some("https://idp"), "pomerium", Some("n"), 1500).is_err());
        assert!(
            check_claims(&claims(good.clone()), Some("https://idp"), "pomerium", Some("m"), 1500)
                .unwrap_err()
                .contains("nonce")
        );
        assert_eq!(
            check_claims(&claims(good), Some("https://idp"), "pomerium", Some("n"), 3000),
            Err("expired".into())
        );
    }

    #[test]
    fn an_audience_array_without_the_client_id_is_refused() {
        let base = json!({"iss": "https://idp", "exp": 2000, "iat": 1000, "nonce": "n"});
        for aud in [json!(["someone-else"]), json!(["someone-else", "pomerium-other"]), json!([]), Value::Null] {
            let mut token = base.clone();
            token["aud"] = aud.clone();
            assert_eq!(
                check_claims(&claims(token), Some("https://idp"), "pomerium", Some("n"), 1500),
                Err("issued for another audience".into()),
                "{aud}"
            );
        }
    }

    #[test]
    fn signatures_verify_only_with_the_right_key() {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap().as_ref(),
        )
        .unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])}]});
        let keys = parse_jwks(jwks.to_string().as_bytes()).unwrap();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"a"}"#)
        );
        let signature = pair.sign(&rng, input.as_bytes()).unwrap();
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        assert_eq!(verify(&token, &keys).unwrap()["sub"], "a");
        let forged = format!(
            "{}.{}.{}",
            input.split('.').next().unwrap(),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"b"}"#),
            token.rsplit('.').next().unwrap()
        );
        assert!(verify(&forged, &keys).is_err());
        let unknown =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k2"}"#), token.split_once('.').unwrap().1);
        assert!(verify(&unknown, &keys).unwrap_err().contains("no key"));
    }
}
