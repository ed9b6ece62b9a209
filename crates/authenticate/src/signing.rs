//! The key that signs `X-Pomerium-Jwt-Assertion` (system.md §3.6, §1.3 `signing_key`): a P-256
//! key from `signing_key`, or derived from the shared secret; its public JWK (`kid` = hex of the
//! RFC 7638 SHA-256 thumbprint) and the JWKS document.
//!
//! The derivation reads the scalar from HKDF-SHA256(shared secret, info
//! `"derived-jwt-signing-key"`), drawing again while it is out of range. Pomerium feeds the same
//! HKDF stream to Go's ECDSA key generation; whether the two give the same key is not verified,
//! so replicas of this server agree with each other, not necessarily with a Go Pomerium.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

/// A signing key, parsed once.
pub struct SigningKey {
    key_pair: EcdsaKeyPair,
    key_id: String,
    jwk: Value,
    /// The encoded JOSE header, the same for every signature.
    header: String,
    rng: aws_lc_rs::rand::SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.key_id).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the signing key is not a PEM private key")]
    NotPem,
    #[error("the signing key is not an EC P-256 key (RSA and other curves are not supported yet)")]
    Unsupported,
    #[error("the shared secret cannot derive a key")]
    Derive,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("signing failed")]
    Sign,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature does not verify")]
    Signature,
}

impl SigningKey {
    /// A PKCS#8 or SEC1 ("EC PRIVATE KEY") P-256 key in PEM.
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, KeyError> {
        use rustls_pki_types::pem::PemObject as _;
        let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError::NotPem)?;
        let key_pair = match &der {
            rustls_pki_types::PrivateKeyDer::Pkcs8(der) => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_pkcs8_der())
            }
            rustls_pki_types::PrivateKeyDer::Sec1(der) => {
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_sec1_der())
            }
            _ => return Err(KeyError::Unsupported),
        }
        .map_err(|_| KeyError::Unsupported)?;
        Ok(SigningKey::with(key_pair))
    }

    /// The P-256 key derived from the shared secret (see the module's note).
    pub fn derive(shared_secret: &[u8]) -> Result<SigningKey, KeyError> {
        struct Len(usize);
        impl aws_lc_rs::hkdf::KeyType for Len {
            fn len(&self) -> usize {
                self.0
            }
        }
        let salt = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, &[]);
        let prk = salt.extract(shared_secret);
        // 32 bytes per draw; a draw out of range (probability ~2^-32) takes the next one.
        let mut stream = [0u8; 32 * 8];
        let info = [b"derived-jwt-signing-key".as_slice()];
        prk.expand(&info, Len(stream.len())).and_then(|okm| okm.fill(&mut stream)).map_err(|_| KeyError::Derive)?;
        for scalar in stream.chunks(32) {
            let Ok(private) =
                aws_lc_rs::agreement::PrivateKey::from_private_key(&aws_lc_rs::agreement::ECDH_P256, scalar)
            else {
                continue;
            };
            let Ok(public) = private.compute_public_key() else { continue };
            if let Ok(key_pair) =
                EcdsaKeyPair::from_private_key_and_public_key(&ECDSA_P256_SHA256_FIXED_SIGNING, scalar, public.as_ref())
            {
                return Ok(SigningKey::with(key_pair));
            }
        }
        Err(KeyError::Derive)
    }

    fn with(key_pair: EcdsaKeyPair) -> SigningKey {
        let point = key_pair.public_key().as_ref();
        let (x, y) = point.get(1..33).zip(point.get(33..65)).unwrap_or_default();
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        // RFC 7638: the required members in lexicographic order, no white space.
        let thumbprint_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, thumbprint_input.as_bytes());
        let key_id: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": key_id, "alg": "ES256", "use": "sig"});
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"ES256","kid":"{key_id}","typ":"JWT"}}"#));
        SigningKey { key_pair, key_id, jwk, header, rng: aws_lc_rs::rand::SystemRandom::new() }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn algorithm(&self) -> &'static str {
        "ES256"
    }

    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// A compact JWS of `claims`.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, SignError> {
        let body = serde_json::to_vec(claims).map_err(|_| SignError::Sign)?;
        let mut token = String::with_capacity(self.header.len() + body.len() * 4 / 3 + 100);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&body, &mut token);
        let signature = self.key_pair.sign(&self.rng, token.as_bytes()).map_err(|_| SignError::Sign)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// The claims of a token this key signed.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, SignError> {
        let (input, signature) = token.rsplit_once('.').ok_or(SignError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| SignError::Malformed)?;
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            self.key_pair.public_key().as_ref(),
        );
        public.verify(input.as_bytes(), &signature).map_err(|_| SignError::Signature)?;
        let body = input.split('.').nth(1).ok_or(SignError::Malformed)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| SignError::Malformed)?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(claims)) => Ok(claims),
            _ => Err(SignError::Malformed),
        }
    }
}

/// `{"keys": [...]}`.
pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn derived_keys_are_deterministic_and_sign_verifiably() {
        let a = SigningKey::derive(&[7; 32]).unwrap();
        let b = SigningKey::derive(&[7; 32]).unwrap();
        let c = SigningKey::derive(&[8; 32]).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        assert_ne!(a.key_id(), c.key_id());
        assert_eq!(a.key_id().len(), 64);
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String("alice".into()));
        let token = a.sign(&claims).unwrap();
        assert_eq!(b.verify(&token).unwrap(), claims);
        assert_eq!(c.verify(&token), Err(SignError::Signature));
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["kid"], a.key_id());
        assert_eq!(jwks(&[&a])["keys"][0]["kid"], a.key_id());
    }

    #[test]
    fn pem_keys_load_and_other_text_is_refused() {
        let generated =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new())
                .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(generated.as_ref())
        );
        let key = SigningKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(key.algorithm(), "ES256");
        assert_eq!(SigningKey::from_pem(b"nonsense").map(|_| ()), Err(KeyError::NotPem));
    }
}
