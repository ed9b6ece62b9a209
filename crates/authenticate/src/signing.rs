//! The key that signs `X-Pomerium-Jwt-Assertion` (system.md §3.6, §1.3 `signing_key`): an EC P-256
//! key (ES256) or an RSA key (RS256) from `signing_key`, or a P-256 key derived from the shared
//! secret; its public JWK (`kid` = hex of the RFC 7638 SHA-256 thumbprint) and the JWKS document.
//!
//! `signing_key` is PEM; its first private key signs ("if multiple keys are provided only the first
//! will be used for signing"). Its DER is read as Go reads it, whatever the PEM label says: SEC1,
//! PKCS#1 or PKCS#8. EC keys on other curves than P-256 are refused (Go would choose ES256 for them
//! and then fail to sign), as are RSA keys outside 2048 to 8192 bits (aws-lc's limits).
//!
//! The derivation is Pomerium's (`config/options.go`, `deriveSigningKey`, which calls
//! filippo.io/keygen's `ECDSALegacy`): read the first 40 bytes (`N.BitLen()/8 + 8`) of HKDF-SHA256
//! of the shared secret (no salt, info `"derived-jwt-signing-key"`) as a big-endian integer k; the
//! private scalar is (k mod (N − 1)) + 1, N the order of P-256. A replica of this server and a Go
//! Pomerium with the same shared secret therefore publish the same key (the same JWK and `kid`); the
//! tests pin this with vectors computed independently of this code.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P256K1_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING, ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

/// A signing key, parsed once.
pub struct SigningKey {
    key: Key,
    key_id: String,
    jwk: Value,
    /// The encoded JOSE header, the same for every signature.
    header: String,
    rng: aws_lc_rs::rand::SystemRandom,
}

/// The key pair, by kind; the kind chooses the JWS algorithm.
enum Key {
    /// P-256, ES256.
    Ec(EcdsaKeyPair),
    /// RSA, RS256 (PKCS#1 v1.5 with SHA-256).
    Rsa(RsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("alg", &self.algorithm()).field("kid", &self.key_id).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the signing key is not a PEM private key")]
    NotPem,
    #[error("the signing key is an EC key on a curve other than P-256 (only P-256 is supported)")]
    UnsupportedCurve,
    #[error("the signing key is an RSA key of an unsupported size (2048 to 8192 bits are supported)")]
    UnsupportedRsaSize,
    #[error("the signing key is not an RSA or EC P-256 private key")]
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

/// The HKDF info of the derived key (Pomerium's `deriveSigningKey`).
const DERIVATION_INFO: &[u8] = b"derived-jwt-signing-key";

/// How many bytes of the HKDF stream the derivation reads: `N.BitLen()/8 + 8` for P-256.
const DERIVATION_LEN: usize = 40;

/// N − 1, N the order of P-256 (0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551).
const P256_ORDER_MINUS_ONE: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, //
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x50,
];

impl SigningKey {
    /// The first private key in `pem`: EC P-256 (SEC1 "EC PRIVATE KEY" or PKCS#8) or RSA
    /// (PKCS#1 "RSA PRIVATE KEY" or PKCS#8).
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, KeyError> {
        use rustls_pki_types::pem::PemObject as _;
        let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError::NotPem)?;
        SigningKey::with(Key::from_der(der.secret_der())?)
    }

    /// Every private key in `pem`, in order: the first signs, all are published in the JWKS (as
    /// Pomerium does, so that a key being retired still verifies while its tokens live).
    pub fn all_from_pem(pem: &[u8]) -> Result<Vec<SigningKey>, KeyError> {
        use rustls_pki_types::pem::PemObject as _;
        let mut keys = Vec::new();
        for der in rustls_pki_types::PrivateKeyDer::pem_slice_iter(pem) {
            let der = der.map_err(|_| KeyError::NotPem)?;
            keys.push(SigningKey::with(Key::from_der(der.secret_der())?)?);
        }
        if keys.is_empty() {
            return Err(KeyError::NotPem);
        }
        Ok(keys)
    }

    /// The P-256 key Pomerium derives from the shared secret (see the module's note).
    pub fn derive(shared_secret: &[u8]) -> Result<SigningKey, KeyError> {
        let stream = derivation_stream(shared_secret)?;
        let scalar = scalar_from_stream(&stream);
        let private = aws_lc_rs::agreement::PrivateKey::from_private_key(&aws_lc_rs::agreement::ECDH_P256, &scalar)
            .map_err(|_| KeyError::Derive)?;
        let public = private.compute_public_key().map_err(|_| KeyError::Derive)?;
        let key_pair =
            EcdsaKeyPair::from_private_key_and_public_key(&ECDSA_P256_SHA256_FIXED_SIGNING, &scalar, public.as_ref())
                .map_err(|_| KeyError::Derive)?;
        SigningKey::with(Key::Ec(key_pair)).map_err(|_| KeyError::Derive)
    }

    fn with(key: Key) -> Result<SigningKey, KeyError> {
        // RFC 7638: the required members in lexicographic order, no white space.
        let (thumbprint_input, mut jwk) = match &key {
            Key::Ec(key_pair) => {
                let point = key_pair.public_key().as_ref();
                let (x, y) = point.get(1..33).zip(point.get(33..65)).ok_or(KeyError::Unsupported)?;
                let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
                let input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                (input, json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}))
            }
            Key::Rsa(key_pair) => {
                let public = key_pair.public_key();
                let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
                let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
                let input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                (input, json!({"kty": "RSA", "n": n, "e": e}))
            }
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, thumbprint_input.as_bytes());
        let key_id: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let alg = key.algorithm();
        if let Value::Object(members) = &mut jwk {
            members.insert("kid".into(), Value::String(key_id.clone()));
            members.insert("alg".into(), Value::String(alg.into()));
            members.insert("use".into(), Value::String("sig".into()));
        }
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"{key_id}","typ":"JWT"}}"#));
        Ok(SigningKey { key, key_id, jwk, header, rng: aws_lc_rs::rand::SystemRandom::new() })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// "ES256" or "RS256", by the key's kind.
    pub fn algorithm(&self) -> &'static str {
        self.key.algorithm()
    }

    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// A compact JWS of `claims`.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, SignError> {
        let body = serde_json::to_vec(claims).map_err(|_| SignError::Sign)?;
        let mut token = String::with_capacity(self.header.len() + body.len() * 4 / 3 + 700);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&body, &mut token);
        let signature = match &self.key {
            Key::Ec(key_pair) => {
                key_pair.sign(&self.rng, token.as_bytes()).map_err(|_| SignError::Sign)?.as_ref().to_vec()
            }
            Key::Rsa(key_pair) => {
                let mut signature = vec![0; key_pair.public_modulus_len()];
                key_pair
                    .sign(&RSA_PKCS1_SHA256, &self.rng, token.as_bytes(), &mut signature)
                    .map_err(|_| SignError::Sign)?;
                signature
            }
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }

    /// The claims of a token this key signed.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, SignError> {
        let (input, signature) = token.rsplit_once('.').ok_or(SignError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| SignError::Malformed)?;
        let public = match &self.key {
            Key::Ec(key_pair) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key_pair.public_key().as_ref()),
            Key::Rsa(key_pair) => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key_pair.public_key().as_ref()),
        };
        public.verify(input.as_bytes(), &signature).map_err(|_| SignError::Signature)?;
        let body = input.split('.').nth(1).ok_or(SignError::Malformed)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| SignError::Malformed)?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(claims)) => Ok(claims),
            _ => Err(SignError::Malformed),
        }
    }
}

impl Key {
    /// A private key's DER, tried as Go's `loadPrivateKey` tries it (SEC1, PKCS#1, PKCS#8), whatever
    /// its PEM label.
    fn from_der(der: &[u8]) -> Result<Key, KeyError> {
        // `from_private_key_der` takes SEC1 and PKCS#8 EC keys.
        if let Ok(key_pair) = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Ok(Key::Ec(key_pair));
        }
        let rsa =
            RsaKeyPair::from_der(der).or_else(|pkcs1| RsaKeyPair::from_pkcs8(der).map_err(|pkcs8| (pkcs1, pkcs8)));
        match rsa {
            Ok(key_pair) => Ok(Key::Rsa(key_pair)),
            Err((pkcs1, pkcs8)) => {
                let size = |rejected: aws_lc_rs::error::KeyRejected| {
                    matches!(rejected.description_(), "TooSmall" | "TooLarge")
                };
                if size(pkcs1) || size(pkcs8) {
                    return Err(KeyError::UnsupportedRsaSize);
                }
                let other_curves = [
                    &ECDSA_P384_SHA384_FIXED_SIGNING,
                    &ECDSA_P521_SHA512_FIXED_SIGNING,
                    &ECDSA_P256K1_SHA256_FIXED_SIGNING,
                ];
                if other_curves.into_iter().any(|alg| EcdsaKeyPair::from_private_key_der(alg, der).is_ok()) {
                    return Err(KeyError::UnsupportedCurve);
                }
                Err(KeyError::Unsupported)
            }
        }
    }

    fn algorithm(&self) -> &'static str {
        match self {
            Key::Ec(_) => "ES256",
            Key::Rsa(_) => "RS256",
        }
    }
}

/// The first [`DERIVATION_LEN`] bytes of HKDF-SHA256 of the shared secret, with an empty salt (the
/// same as Go's nil salt: HMAC pads both to a block of zeros) and [`DERIVATION_INFO`].
fn derivation_stream(shared_secret: &[u8]) -> Result<[u8; DERIVATION_LEN], KeyError> {
    struct Len(usize);
    impl aws_lc_rs::hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let prk = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, &[]).extract(shared_secret);
    let mut stream = [0u8; DERIVATION_LEN];
    prk.expand(&[DERIVATION_INFO], Len(stream.len()))
        .and_then(|okm| okm.fill(&mut stream))
        .map_err(|_| KeyError::Derive)?;
    Ok(stream)
}

/// `ECDSALegacy`'s scalar: the stream as a big-endian integer k, then (k mod (N − 1)) + 1, which is
/// in [1, N − 1], so the addition never carries out of 32 bytes.
fn scalar_from_stream(stream: &[u8; DERIVATION_LEN]) -> [u8; 32] {
    let mut scalar = reduce(stream, &P256_ORDER_MINUS_ONE);
    for byte in scalar.iter_mut().rev() {
        let (sum, carry) = byte.overflowing_add(1);
        *byte = sum;
        if !carry {
            break;
        }
    }
    scalar
}

/// `value mod modulus`, both big-endian, `modulus` not zero, by binary long division: the remainder
/// takes in the bits of `value` one at a time, most significant first, and the modulus is subtracted
/// whenever the remainder reaches it. The remainder is below the modulus before each step, so after
/// doubling and taking in a bit it is below twice the modulus: it fits in 33 bytes (257 bits) and one
/// subtraction brings it back below the modulus. Big-endian arrays of one length compare as their
/// numbers do.
fn reduce(value: &[u8], modulus: &[u8; 32]) -> [u8; 32] {
    let mut wide_modulus = [0u8; 33];
    for (wide, byte) in wide_modulus.iter_mut().rev().zip(modulus.iter().rev()) {
        *wide = *byte;
    }
    let mut remainder = [0u8; 33];
    for byte in value {
        for shift in (0..8).rev() {
            // remainder = remainder * 2 + bit
            let mut carry = (byte >> shift) & 1;
            for digit in remainder.iter_mut().rev() {
                let out = *digit >> 7;
                *digit = (*digit << 1) | carry;
                carry = out;
            }
            if remainder >= wide_modulus {
                let mut borrow = false;
                for (digit, subtrahend) in remainder.iter_mut().rev().zip(wide_modulus.iter().rev()) {
                    let (difference, under) = digit.overflowing_sub(*subtrahend);
                    let (difference, under_again) = difference.overflowing_sub(u8::from(borrow));
                    *digit = difference;
                    borrow = under || under_again;
                }
            }
        }
    }
    let mut result = [0u8; 32];
    for (out, digit) in result.iter_mut().rev().zip(remainder.iter().rev()) {
        *out = *digit;
    }
    result
}

/// `{"keys": [...]}`.
pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use aws_lc_rs::encoding::{AsBigEndian as _, AsDer as _};
    use base64::engine::general_purpose::STANDARD;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2).unwrap(), 16).unwrap()).collect()
    }

    fn pem(label: &str, der: &[u8]) -> String {
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", STANDARD.encode(der))
    }

    fn claims() -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String("alice".into()));
        claims.insert("iss".into(), Value::String("authenticate.example.com".into()));
        claims
    }

    fn header_of(token: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap()
    }

    /// One DER TLV: (tag, contents, rest).
    fn tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, first) = (input[0], input[1]);
        let (len, start) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let count = usize::from(first & 0x7f);
            (input[2..2 + count].iter().fold(0, |len, b| len << 8 | usize::from(*b)), 2 + count)
        };
        (tag, &input[start..start + len], &input[start + len..])
    }

    // The derivation vectors below were computed independently of this code, by this Python 3.11
    // script (standard library only: RFC 5869 HKDF with hmac/hashlib, Python integers for the
    // reduction, affine double-and-add on P-256 for the public point); the public points were also
    // checked with `openssl ec` on the scalars and the HKDF output with `openssl kdf … HKDF`:
    //
    // import base64, hashlib, hmac
    // def hkdf_sha256(ikm, salt, info, length):
    //     prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    //     okm, t, i = b"", b"", 1
    //     while len(okm) < length:
    //         t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
    //         okm, i = okm + t, i + 1
    //     return okm[:length]
    // P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
    // N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    // A = P - 3
    // G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    //      0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)
    // def add(p, q):
    //     if p is None: return q
    //     if q is None: return p
    //     if p[0] == q[0] and (p[1] + q[1]) % P == 0: return None
    //     if p == q: l = (3 * p[0] * p[0] + A) * pow(2 * p[1], -1, P) % P
    //     else: l = (q[1] - p[1]) * pow(q[0] - p[0], -1, P) % P
    //     x = (l * l - p[0] - q[0]) % P
    //     return (x, (l * (p[0] - x) - p[1]) % P)
    // def mul(k, p):
    //     r = None
    //     for bit in bin(k)[2:]:
    //         r = add(r, r)
    //         if bit == "1": r = add(r, p)
    //     return r
    // b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    // for secret in [bytes(32), bytes([7]) * 32, b"pomerium shared secret"]:
    //     stream = hkdf_sha256(secret, b"", b"derived-jwt-signing-key", 40)
    //     d = int.from_bytes(stream, "big") % (N - 1) + 1
    //     x, y = mul(d, G)
    //     x, y = b64u(x.to_bytes(32, "big")), b64u(y.to_bytes(32, "big"))
    //     kid = hashlib.sha256(('{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}' % (x, y)).encode()).hexdigest()
    //     print(secret.hex(), stream.hex(), d.to_bytes(32, "big").hex(), x, y, kid)
    // for v in [0, 1, N - 2, N - 1, N, 2 * (N - 1), 2 * (N - 1) - 1, 2**256 - 1, 2**256, 2**320 - 1,
    //           (N - 1) * (2**64 - 1)]:
    //     print(v.to_bytes(40, "big").hex(), (v % (N - 1)).to_bytes(32, "big").hex())

    /// A derivation vector.
    struct Derived {
        secret: &'static [u8],
        /// The 40 bytes of HKDF output.
        stream: &'static str,
        scalar: &'static str,
        x: &'static str,
        y: &'static str,
        kid: &'static str,
    }

    const DERIVED: [Derived; 3] = [
        Derived {
            secret: &[0; 32],
            stream: "223ec59900b59adde787f658b7deab8ff0c2c9d92a3a110ba499391ddf20f5c73607f681de53f995",
            scalar: "e83d913594ea4b19f9bc9067c83062bddfc067e89be4895d3ea5cbb82a62c6b6",
            x: "vtX3_FY7ysMww7a05IAHrclc8W83bgqelopuPVUIOKA",
            y: "U4pYkH1kn0iSX5t5x1Jy57jF3kWdyZz9Lhs_Lkuo2s4",
            kid: "3a8cd442a4b539651cb3ec0b569cb937e0060e6474ab55649e14f28c02db3d41",
        },
        Derived {
            secret: &[7; 32],
            stream: "9eb74ae5cc707eafb8dea86974690ab85d400f0a33b0008ef883925d78ef20242acb58b2924619cf",
            scalar: "854f27180941412386d98ad77487736493744063fde98c4d9636b378b5159240",
            x: "e1L46P5gabXxpJ147BeWsNZeJWIAZ02GXx74oMUaEQ0",
            y: "yuUWdUtunGw1dtIxjzXiw1-1l5gi_60DebJq5cQ_BiM",
            kid: "1cff7e4d4c0f5e9efb6c41c5777c695d937d7f4fb1922d577f311b014b567f34",
        },
        Derived {
            secret: b"pomerium shared secret",
            stream: "e200a97f6e4fbb4da1427053c3864cf0d49d3206e504095238f45b6c1c8fde5e751aeab0610440a6",
            scalar: "0f922ba07335e8240fd97526bd9419259cf723cd5874243a251d0f50e20c1f97",
            x: "a5TtTTGcATHZgA5_13ipvrBPjKGyUgK2IcBcEYSTSnU",
            y: "jPrVFhb4itSEuWQp_ek6uu-W33jDyGSPDK2CeMvSI-Q",
            kid: "bf7f263135adbe62010ed783d21a6328ad82cbb5d2c8dc8c5d813f09e60bedd0",
        },
    ];

    /// (40-byte value, value mod (N − 1)), from the same script.
    const REDUCTIONS: [(&str, &str); 11] = [
        (
            "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ),
        (
            "00000000000000000000000000000000000000000000000000000000000000000000000000000001",
            "0000000000000000000000000000000000000000000000000000000000000001",
        ),
        (
            "0000000000000000ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc63254f",
            "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc63254f",
        ),
        (
            "0000000000000000ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ),
        (
            "0000000000000000ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
            "0000000000000000000000000000000000000000000000000000000000000001",
        ),
        (
            "0000000000000001fffffffe00000001ffffffffffffffff79cdf55b4e2f3d09e7739585f8c64aa0",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ),
        (
            "0000000000000001fffffffe00000001ffffffffffffffff79cdf55b4e2f3d09e7739585f8c64a9f",
            "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc63254f",
        ),
        (
            "0000000000000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "00000000ffffffff00000000000000004319055258e8617b0c46353d039cdaaf",
        ),
        (
            "00000000000000010000000000000000000000000000000000000000000000000000000000000000",
            "00000000ffffffff00000000000000004319055258e8617b0c46353d039cdab0",
        ),
        (
            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "fffffffe00000001431905529c0166cd22159165b6faae71f756a572fc63254f",
        ),
        (
            "ffffffff0000000000000000fffffffebce6faada7179e8536d2d015554b86cb0c46353d039cdab0",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ),
    ];

    #[test]
    fn derived_keys_match_go_pomerium() {
        for Derived { secret, stream, scalar, x, y, kid } in DERIVED {
            assert_eq!(hex(&derivation_stream(secret).unwrap()), stream);
            let stream: [u8; DERIVATION_LEN] = unhex(stream).try_into().unwrap();
            assert_eq!(hex(&scalar_from_stream(&stream)), scalar);
            let key = SigningKey::derive(secret).unwrap();
            let Key::Ec(key_pair) = &key.key else { panic!("a derived key is EC") };
            assert_eq!(hex(key_pair.private_key().as_be_bytes().unwrap().as_ref()), scalar);
            assert_eq!(key.algorithm(), "ES256");
            assert_eq!(key.key_id(), kid);
            assert_eq!(
                key.public_jwk(),
                &json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"})
            );
            // The JWK is the key that signs: a verifier built from x and y alone accepts its tokens.
            let token = key.sign(&claims()).unwrap();
            assert_eq!(header_of(&token), json!({"alg": "ES256", "kid": kid, "typ": "JWT"}));
            let point = [vec![4], URL_SAFE_NO_PAD.decode(x).unwrap(), URL_SAFE_NO_PAD.decode(y).unwrap()].concat();
            let (input, signature) = token.rsplit_once('.').unwrap();
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
                .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(signature).unwrap())
                .unwrap();
        }
    }

    #[test]
    fn the_reduction_matches_python() {
        for (value, remainder) in REDUCTIONS {
            assert_eq!(hex(&reduce(&unhex(value), &P256_ORDER_MINUS_ONE)), remainder, "{value}");
        }
        // Any length of input, and other moduli.
        assert_eq!(reduce(&[], &P256_ORDER_MINUS_ONE), [0; 32]);
        let mut seven = [0; 32];
        seven[31] = 7;
        assert_eq!(reduce(&[0x01, 0x00], &seven)[31], 4); // 256 = 36·7 + 4
        assert_eq!(reduce(&[0xff; 100], &seven)[31], 3); // (2^800 − 1) mod 7: 2^800 = 2^(3·266+2) ≡ 4
    }

    #[test]
    fn the_scalar_is_in_range_at_the_edges() {
        // N − 1 as its P-256 order; N itself, for the edge cases.
        let order = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
        let mut incremented = P256_ORDER_MINUS_ONE;
        incremented[31] += 1;
        assert_eq!(hex(&incremented), order);
        let stream =
            |hex32: &str| -> [u8; DERIVATION_LEN] { unhex(&format!("{}{hex32}", "00".repeat(8))).try_into().unwrap() };
        // k ≡ 0 gives 1, k ≡ N − 2 gives N − 1 (the largest scalar), k = 2^320 − 1 stays in range.
        assert_eq!(hex(&scalar_from_stream(&stream(&"00".repeat(32)))), format!("{}01", "00".repeat(31)));
        let n_minus_2 = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc63254f";
        let n_minus_1 = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550";
        assert_eq!(hex(&scalar_from_stream(&stream(n_minus_2))), n_minus_1);
        assert_eq!(hex(&scalar_from_stream(&stream(n_minus_1))), format!("{}01", "00".repeat(31)));
        assert_eq!(
            hex(&scalar_from_stream(&[0xff; DERIVATION_LEN])),
            "fffffffe00000001431905529c0166cd22159165b6faae71f756a572fc632550"
        );
        // (N − 1)·G = −G: the x coordinate of the generator.
        let private =
            aws_lc_rs::agreement::PrivateKey::from_private_key(&aws_lc_rs::agreement::ECDH_P256, &unhex(n_minus_1))
                .unwrap();
        let public = private.compute_public_key().unwrap();
        assert_eq!(hex(&public.as_ref()[1..33]), "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296");
    }

    #[test]
    fn derived_keys_are_deterministic_and_sign_verifiably() {
        let a = SigningKey::derive(&[7; 32]).unwrap();
        let b = SigningKey::derive(&[7; 32]).unwrap();
        let c = SigningKey::derive(&[8; 32]).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        assert_ne!(a.key_id(), c.key_id());
        assert_eq!(a.key_id().len(), 64);
        let token = a.sign(&claims()).unwrap();
        assert_eq!(b.verify(&token).unwrap(), claims());
        assert_eq!(c.verify(&token), Err(SignError::Signature));
        assert_eq!(header_of(&token)["kid"], a.key_id());
        assert_eq!(jwks(&[&a])["keys"][0]["kid"], a.key_id());
        for malformed in ["", ".", "..", "a.b.c", "a.b.!!!"] {
            assert!(a.verify(malformed).is_err(), "{malformed:?}");
        }
        // Any shared secret derives a key, the empty one too.
        assert!(SigningKey::derive(&[]).is_ok());
    }

    #[test]
    fn ec_pem_keys_load_and_other_text_is_refused() {
        let generated =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new())
                .unwrap();
        let key = SigningKey::from_pem(pem("PRIVATE KEY", generated.as_ref()).as_bytes()).unwrap();
        assert_eq!(key.algorithm(), "ES256");
        assert_eq!(key.verify(&key.sign(&claims()).unwrap()).unwrap(), claims());
        // The same key as SEC1 has the same kid.
        let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, generated.as_ref()).unwrap();
        let sec1 = key_pair.private_key().as_der().unwrap();
        let from_sec1 = SigningKey::from_pem(pem("EC PRIVATE KEY", sec1.as_ref()).as_bytes()).unwrap();
        assert_eq!(from_sec1.key_id(), key.key_id());
        // Go reads the DER whatever the label says.
        let mislabelled = SigningKey::from_pem(pem("EC PRIVATE KEY", generated.as_ref()).as_bytes()).unwrap();
        assert_eq!(mislabelled.key_id(), key.key_id());

        assert_eq!(SigningKey::from_pem(b"nonsense").map(|_| ()), Err(KeyError::NotPem));
        assert_eq!(SigningKey::from_pem(b"").map(|_| ()), Err(KeyError::NotPem));
        for label in ["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"] {
            let garbage = pem(label, b"\x30\x03\x02\x01\x00");
            assert_eq!(SigningKey::from_pem(garbage.as_bytes()).map(|_| ()), Err(KeyError::Unsupported), "{label}");
            assert_eq!(SigningKey::from_pem(pem(label, b"").as_bytes()).map(|_| ()), Err(KeyError::Unsupported));
        }
    }

    #[test]
    fn other_curves_and_key_types_are_refused_clearly() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let p384 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let refused = SigningKey::from_pem(pem("PRIVATE KEY", p384.as_ref()).as_bytes()).unwrap_err();
        assert_eq!(refused, KeyError::UnsupportedCurve);
        assert!(refused.to_string().contains("P-256"));
        let ed25519 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        assert_eq!(
            SigningKey::from_pem(pem("PRIVATE KEY", ed25519.as_ref()).as_bytes()).map(|_| ()),
            Err(KeyError::Unsupported)
        );
        // A 1024-bit RSA key (a test fixture made with `openssl genrsa -traditional 1024`).
        assert_eq!(SigningKey::from_pem(RSA_1024.as_bytes()).map(|_| ()), Err(KeyError::UnsupportedRsaSize));
    }

    const RSA_1024: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIICXgIBAAKBgQCgQMlKTSyyY7gEhBcIw8jGtO/KfMEY5KljskIHhEbDJjLw0ZSg\n\
92zs1u/7cAMykX13AOJBNBLEIFKqAnRjwdp/7QdCMgxEtmJeqG6t7sg20W+mRbDx\n\
6O1NGErKAy/t2NLk+AiUpKvTk7pmRjtWrS/pR1ch6OWt593EIIAWVlf8zwIDAQAB\n\
AoGBAIbhAIrBGfWraJ6kbp656qsUbx8GkZ/aFZgL2PdqpgRqikWWoHo6xjsxTRtb\n\
09UkD22yGLy4j3LzoZ/mIQA1kSj1fvCz8JWoa13RN5Kif1uCmQyKeTAsnopINGlw\n\
Xrr8Rdm5rUitBFQvt2J1fiDwNXPzDh+nx++JTtRXxfDoodYBAkEA1NzPK4qjX1rZ\n\
Be6W9i7BjRchH9p6N5SBU+dcvZfUGc1mo6jt7xiZBaFcYKiyD//pomhhGogj4M90\n\
i5A3f8Y7LwJBAMC6oIgKjVw4/DOSrFQvk8cENKMejvt/hqPVN7XoGLrSc4cFdJzJ\n\
irvJRuBCwAW/l38zWpB5bPzHaBfNyJFZcGECQQDDGJrdGpWAmUCeWj6M5u/JRDC9\n\
BD7OYFNktoJe1yC0gXkYeYWShiYCbhHAGf4SAgl+LFMLwUm5DAuSuxzTBLpLAkAJ\n\
ivQZ6FPZhiTOtOt9e6GYkBe/H+s6frT+9ba9dhGLZpI71ERS4xPQeoXc4tE5N6Rb\n\
swI/9xMzbPg1fYX51HDhAkEAnm/6OpteLifuAp1LVW5yY72eXAYlMAxUw5IcyCu2\n\
CJrk0xOm4RyhNbvzVWYtjD1/+Sr0jZDG4UW3UfBuIrb+1A==\n\
-----END RSA PRIVATE KEY-----\n";

    #[test]
    fn rsa_keys_sign_rs256_with_an_rfc7638_kid() {
        let generated = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = generated.as_der().unwrap();
        let key = SigningKey::from_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes()).unwrap();
        assert_eq!(key.algorithm(), "RS256");

        // The thumbprint, computed from the public key's DER (RSAPublicKey: SEQUENCE { n, e }).
        let (tag, sequence, _) = tlv(generated.public_key().as_ref());
        assert_eq!(tag, 0x30);
        let (tag, n, rest) = tlv(sequence);
        assert_eq!(tag, 0x02);
        let (tag, e, _) = tlv(rest);
        assert_eq!(tag, 0x02);
        let unsigned = |int: &[u8]| -> Vec<u8> { int.iter().copied().skip_while(|b| *b == 0).collect() };
        let (n, e) = (URL_SAFE_NO_PAD.encode(unsigned(n)), URL_SAFE_NO_PAD.encode(unsigned(e)));
        assert_eq!(e, "AQAB");
        assert_eq!(n.len(), 342); // 256 bytes
        let thumbprint = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, thumbprint.as_bytes()).as_ref());
        assert_eq!(key.key_id(), kid);
        assert_eq!(key.public_jwk(), &json!({"kty": "RSA", "n": n, "e": e, "kid": kid, "alg": "RS256", "use": "sig"}));
        assert_eq!(jwks(&[&key])["keys"][0]["kid"], kid);

        let token = key.sign(&claims()).unwrap();
        assert_eq!(header_of(&token), json!({"alg": "RS256", "kid": kid, "typ": "JWT"}));
        assert_eq!(key.verify(&token).unwrap(), claims());
        // A verifier built from the JWK's n and e alone accepts it.
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert_eq!(signature.len(), 256);
        aws_lc_rs::signature::RsaPublicKeyComponents {
            n: URL_SAFE_NO_PAD.decode(&n).unwrap(),
            e: URL_SAFE_NO_PAD.decode(&e).unwrap(),
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &signature)
        .unwrap();

        // The same key as PKCS#1 ("RSA PRIVATE KEY", the PrivateKeyInfo's OCTET STRING).
        let (_, info, _) = tlv(pkcs8.as_ref());
        let (_, _, rest) = tlv(info); // version
        let (_, _, rest) = tlv(rest); // algorithm
        let (tag, pkcs1, _) = tlv(rest);
        assert_eq!(tag, 0x04);
        let from_pkcs1 = SigningKey::from_pem(pem("RSA PRIVATE KEY", pkcs1).as_bytes()).unwrap();
        assert_eq!(from_pkcs1.key_id(), kid);
        assert_eq!(from_pkcs1.verify(&token).unwrap(), claims());

        // Other keys refuse it, and it refuses theirs.
        let other = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let other = SigningKey::from_pem(pem("PRIVATE KEY", other.as_der().unwrap().as_ref()).as_bytes()).unwrap();
        assert_ne!(other.key_id(), kid);
        assert_eq!(other.verify(&token), Err(SignError::Signature));
        assert_eq!(key.verify(&other.sign(&claims()).unwrap()), Err(SignError::Signature));
        let ec = SigningKey::derive(&[7; 32]).unwrap();
        assert_eq!(ec.verify(&token), Err(SignError::Signature));
        assert_eq!(key.verify(&ec.sign(&claims()).unwrap()), Err(SignError::Signature));
        // A tampered body fails.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory"}"#);
        parts[1] = &forged;
        assert_eq!(key.verify(&parts.join(".")), Err(SignError::Signature));
    }

    #[test]
    fn the_first_of_several_keys_signs() {
        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let rsa = pem("PRIVATE KEY", rsa.as_der().unwrap().as_ref());
        let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new())
            .unwrap();
        let ec = pem("PRIVATE KEY", ec.as_ref());
        let (rsa_key, ec_key) =
            (SigningKey::from_pem(rsa.as_bytes()).unwrap(), SigningKey::from_pem(ec.as_bytes()).unwrap());
        let rsa_first = SigningKey::from_pem(format!("{rsa}{ec}").as_bytes()).unwrap();
        assert_eq!((rsa_first.algorithm(), rsa_first.key_id()), ("RS256", rsa_key.key_id()));
        let ec_first = SigningKey::from_pem(format!("{ec}\n{rsa}").as_bytes()).unwrap();
        assert_eq!((ec_first.algorithm(), ec_first.key_id()), ("ES256", ec_key.key_id()));
    }

    #[test]
    fn every_key_of_a_pem_is_read_in_order() {
        let pem_of = |der: &[u8]| {
            format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                base64::engine::general_purpose::STANDARD.encode(der)
            )
        };
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let first = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let second = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let both = format!("{}{}", pem_of(first.as_ref()), pem_of(second.as_ref()));
        let keys = SigningKey::all_from_pem(both.as_bytes()).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].key_id(), SigningKey::from_pem(both.as_bytes()).unwrap().key_id(), "the first signs");
        assert_ne!(keys[0].key_id(), keys[1].key_id());
        assert_eq!(jwks(&keys.iter().collect::<Vec<_>>())["keys"].as_array().unwrap().len(), 2);
        assert!(SigningKey::all_from_pem(b"no keys here").is_err());
    }
}
