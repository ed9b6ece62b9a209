//! Keys derived from the cluster token (`internal/zero/bootstrap/new.go` upstream), so that every
//! replica of a cluster, and a replica restarted with the control plane away, has the same ones:
//! one HKDF-SHA256 stream (the token's bytes as the secret, no salt, no info) read in order for
//!
//! 1. the P-256 signing key: 40 bytes, as an unsigned big-endian integer `x`, give the scalar
//!    `x mod (n - 1) + 1` (Go 1.19's `ecdsa.GenerateKey`, which upstream reproduces with
//!    `filippo.io/keygen.ECDSALegacy`);
//! 2. the 32-byte cookie secret;
//! 3. the 32-byte key that seals `bootstrap.dat` (see [`crate::seal`]).

use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;

/// The bytes of the stream the signing key takes.
const SIGNING_SEED_LEN: usize = 256 / 8 + 8;
const KEY_LEN: usize = 32;
const STREAM_LEN: usize = SIGNING_SEED_LEN + KEY_LEN + KEY_LEN;

/// The order of P-256's base point, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the cluster token is empty")]
    EmptyToken,
    #[error("deriving keys from the cluster token failed")]
    Derivation,
}

/// The keys of a cluster. `Debug` prints none of them.
pub struct DerivedKeys {
    /// The P-256 private scalar, big-endian, 32 bytes.
    signing_scalar: [u8; 32],
    signing_key: EcdsaKeyPair,
    pub cookie_secret: [u8; KEY_LEN],
    pub file_key: [u8; KEY_LEN],
}

impl std::fmt::Debug for DerivedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedKeys").finish_non_exhaustive()
    }
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl DerivedKeys {
    pub fn from_token(token: &str) -> Result<Self, KeyError> {
        if token.is_empty() {
            return Err(KeyError::EmptyToken);
        }
        let mut stream = [0u8; STREAM_LEN];
        Salt::new(HKDF_SHA256, &[])
            .extract(token.as_bytes())
            .expand(&[], Len(STREAM_LEN))
            .and_then(|okm| okm.fill(&mut stream))
            .map_err(|_| KeyError::Derivation)?;
        let (seed, rest) = stream.split_at(SIGNING_SEED_LEN);
        let (cookie, file) = rest.split_at(KEY_LEN);
        let signing_scalar = legacy_p256_scalar(seed);
        let signing_key =
            EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, &sec1_der(&signing_scalar))
                .map_err(|_| KeyError::Derivation)?;
        Ok(Self {
            signing_scalar,
            signing_key,
            cookie_secret: cookie.try_into().map_err(|_| KeyError::Derivation)?,
            file_key: file.try_into().map_err(|_| KeyError::Derivation)?,
        })
    }

    /// The signing key as PKCS#8 PEM.
    pub fn signing_key_pem(&self) -> Result<String, KeyError> {
        let der = self.signing_key.to_pkcs8v1().map_err(|_| KeyError::Derivation)?;
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok(pem)
    }

    /// The signing key's scalar (big-endian): what upstream's `D` holds.
    pub fn signing_scalar(&self) -> &[u8; 32] {
        &self.signing_scalar
    }

    /// The uncompressed public point (0x04 || X || Y).
    pub fn signing_public_key(&self) -> &[u8] {
        self.signing_key.public_key().as_ref()
    }

    /// The cookie secret in standard base64, as the `cookie_secret` option takes it.
    pub fn cookie_secret_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.cookie_secret)
    }
}

/// `x mod (n - 1) + 1` for the big-endian `seed`, computed bit by bit (no big-integer crate for
/// one 320-bit reduction).
fn legacy_p256_scalar(seed: &[u8]) -> [u8; 32] {
    let modulus = {
        let mut m = limbs(&P256_N);
        m[0] -= 1; // n is odd: n - 1 borrows nothing.
        m
    };
    let mut r = [0u64; 4];
    for byte in seed {
        for bit in (0..8).rev() {
            let carry = r[3] >> 63;
            r = [
                r[0] << 1 | u64::from((byte >> bit) & 1),
                r[1] << 1 | r[0] >> 63,
                r[2] << 1 | r[1] >> 63,
                r[3] << 1 | r[2] >> 63,
            ];
            if carry == 1 || !less_than(&r, &modulus) {
                r = sub(&r, &modulus);
            }
        }
    }
    // r < n - 1, so r + 1 < n does not overflow.
    let one = [1u64, 0, 0, 0];
    let r = add(&r, &one);
    let mut out = [0u8; 32];
    for (chunk, limb) in out.chunks_exact_mut(8).zip(r.iter().rev()) {
        chunk.copy_from_slice(&limb.to_be_bytes());
    }
    out
}

/// Little-endian 64-bit limbs of a big-endian 32-byte number.
fn limbs(bytes: &[u8; 32]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (limb, chunk) in out.iter_mut().zip(bytes.rchunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *limb = u64::from_be_bytes(word);
    }
    out
}

fn less_than(a: &[u64; 4], b: &[u64; 4]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

fn sub(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
    let mut out = [0u64; 4];
    let mut borrow = false;
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        let (d, b1) = x.overflowing_sub(*y);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        *o = d;
        borrow = b1 || b2;
    }
    out
}

fn add(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
    let mut out = [0u64; 4];
    let mut carry = false;
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        let (s, c1) = x.overflowing_add(*y);
        let (s, c2) = s.overflowing_add(u64::from(carry));
        *o = s;
        carry = c1 || c2;
    }
    out
}

/// RFC 5915 `ECPrivateKey` for a P-256 scalar (no public key: the parser computes it).
fn sec1_der(scalar: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
    der.extend_from_slice(scalar);
    // [0] { OID 1.2.840.10045.3.1.7 (prime256v1) }
    der.extend_from_slice(&[0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]);
    der
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Computed independently (Python's `hmac` for HKDF and its big integers for the reduction):
    /// see `VECTOR_SCRIPT` below.
    #[test]
    fn derivation_vector() {
        let keys = DerivedKeys::from_token("secret").unwrap();
        assert_eq!(hex(keys.signing_scalar()), VECTOR_SCALAR);
        assert_eq!(hex(&keys.cookie_secret), VECTOR_COOKIE);
        assert_eq!(hex(&keys.file_key), VECTOR_FILE);
        assert_eq!(keys.signing_public_key().len(), 65);
        let pem = keys.signing_key_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        assert!(!format!("{keys:?}").contains(&hex(&keys.cookie_secret)));
    }

    #[test]
    fn deterministic_and_token_dependent() {
        let a = DerivedKeys::from_token("token-a").unwrap();
        let b = DerivedKeys::from_token("token-a").unwrap();
        let c = DerivedKeys::from_token("token-b").unwrap();
        assert_eq!(a.signing_scalar(), b.signing_scalar());
        assert_eq!(a.file_key, b.file_key);
        assert_eq!(a.signing_key_pem().unwrap(), b.signing_key_pem().unwrap());
        assert_ne!(a.file_key, c.file_key);
        assert_ne!(a.cookie_secret, a.file_key);
        assert!(matches!(DerivedKeys::from_token(""), Err(KeyError::EmptyToken)));
    }

    #[test]
    fn reduction_edges() {
        // All ones (2^320 - 1) and zero reduce into [1, n - 1].
        let max = legacy_p256_scalar(&[0xff; 40]);
        assert!(less_than(&limbs(&max), &limbs(&P256_N)));
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(legacy_p256_scalar(&[0; 40]), one);
        // n - 1 itself reduces to 0, plus one.
        let mut seed = [0u8; 40];
        seed[8..].copy_from_slice(&P256_N);
        seed[39] -= 1;
        assert_eq!(legacy_p256_scalar(&seed), one);
        // n reduces to 1, plus one.
        seed[39] += 1;
        one[31] = 2;
        assert_eq!(legacy_p256_scalar(&seed), one);
    }

    #[allow(dead_code, reason = "documentation of how the vector was made")]
    const VECTOR_SCRIPT: &str = r#"
import hmac, hashlib
prk = hmac.new(b"\0" * 32, b"secret", hashlib.sha256).digest()
okm, t, i = b"", b"", 1
while len(okm) < 104:
    t = hmac.new(prk, t + bytes([i]), hashlib.sha256).digest(); okm += t; i += 1
n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
k = int.from_bytes(okm[:40], "big") % (n - 1) + 1
print(k.to_bytes(32, "big").hex(), okm[40:72].hex(), okm[72:104].hex())
"#;
    const VECTOR_SCALAR: &str = "ce963b17a71008fcdbb480b8734f7a4c66fd40cf1ee09afba095d76da5de8f63";
    const VECTOR_COOKIE: &str = "14d15f03058d7fee63dc28f564b7b9fe3da514f80daad4bf1babe30c1ef6188c";
    const VECTOR_FILE: &str = "41ffc98d6ed1e918d39b424ad8a36e114bae18307d53e7b2fd99c15e5ce299af";
}
