//! HPKE as Pomerium's stateless (hosted authenticate) flow uses it (`pkg/hpke`): RFC 9180 in
//! **auth** mode (the sender's key pair authenticates the message), suite X25519-HKDF-SHA256 /
//! HKDF-SHA256 / ChaCha20-Poly1305, empty `info` and `aad`; a sealed message is the
//! encapsulated key (32 bytes) followed by the ciphertext.
//!
//! - A key pair derived from a secret (`DerivePrivateKey`): `okm = HKDF-Expand(HKDF-Extract(salt
//!   = "", secret), "pomerium/hpke", 32)`, then RFC 9180 `DeriveKeyPair(okm)`. A server's key is
//!   derived from its shared secret, so every replica has the same one.
//! - Keys travel as unpadded URL-safe base64 of their 32 bytes; `/.well-known/pomerium/hpke-public-key`
//!   serves the raw bytes.
//! - URL values are sealed as Go's sorted `url.Values.Encode` text: V1 plain in
//!   `pomerium_hpke_sender_pub` / `pomerium_hpke_query`, V2 zstd-compressed in `k` / `q`
//!   (unpadded URL-safe base64). The other side answers in the version it was asked in.

use crate::signed_url::go_encode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable as _, Kem as _, OpModeR, OpModeS, Serializable as _};
use std::io::Read as _;

type KemPrivate = <X25519HkdfSha256 as hpke::Kem>::PrivateKey;
type KemPublic = <X25519HkdfSha256 as hpke::Kem>::PublicKey;
type Encapped = <X25519HkdfSha256 as hpke::Kem>::EncappedKey;

/// The length of a public key and of the encapsulated key that starts a sealed message.
pub const KEY_LEN: usize = 32;
/// The HKDF `info` of `DerivePrivateKey`.
const DERIVE_INFO: &[u8] = b"pomerium/hpke";
/// The most a V2 query may decompress to (Pomerium's decoder allows 4 MiB of memory).
const MAX_DECOMPRESSED: u64 = 1024 * 1024;
/// Bounds the zstd window a sender may ask the decoder for.
const MAX_WINDOW: u64 = 4 * 1024 * 1024;

const PARAM_SENDER_V1: &str = "pomerium_hpke_sender_pub";
const PARAM_QUERY_V1: &str = "pomerium_hpke_query";
const PARAM_SENDER_V2: &str = "k";
const PARAM_QUERY_V2: &str = "q";

/// Why sealed values were not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpkeError {
    #[error("no sealed query (neither `k` and `q` nor `pomerium_hpke_sender_pub` and `pomerium_hpke_query`)")]
    Missing,
    #[error("the sender's public key is not a valid X25519 key")]
    PublicKey,
    #[error("the sealed query is not unpadded url-safe base64")]
    Encoding,
    #[error("the sealed query does not open with this key (tampered with, or sealed for another server)")]
    Open,
    #[error("the sealed query does not decompress")]
    Decompress,
    #[error("the sealed query is too large")]
    TooLarge,
    #[error("the message could not be sealed")]
    Seal,
}

/// A public key (X25519).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey([u8; KEY_LEN]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl PublicKey {
    /// The raw 32 bytes (what `/.well-known/pomerium/hpke-public-key` serves).
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, HpkeError> {
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| HpkeError::PublicKey)?;
        KemPublic::from_bytes(&key).map_err(|_| HpkeError::PublicKey)?;
        Ok(PublicKey(key))
    }

    /// Unpadded URL-safe base64 (Pomerium's `PublicKey.String`).
    pub fn from_base64(text: &str) -> Result<PublicKey, HpkeError> {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| HpkeError::PublicKey)?;
        PublicKey::from_bytes(&bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Compared in constant time (cheap, and the habit is the point).
    pub fn same_as(&self, other: &PublicKey) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }

    /// The JSON Web Key form (RFC 8037), `kid` `pomerium/hpke`.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({"kty": "OKP", "kid": "pomerium/hpke", "crv": "X25519", "x": self.to_base64()})
    }

    fn kem(&self) -> Result<KemPublic, HpkeError> {
        KemPublic::from_bytes(&self.0).map_err(|_| HpkeError::PublicKey)
    }
}

/// A private key with its public key. `Debug` shows only the public half.
#[derive(Clone)]
pub struct PrivateKey {
    secret: KemPrivate,
    public: PublicKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey").field("public", &self.public).finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Pomerium's `DerivePrivateKey(seed)`: the same seed always gives the same key.
    pub fn derive(seed: &[u8]) -> PrivateKey {
        let prk = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, &[]).extract(seed);
        let mut okm = [0u8; KEY_LEN];
        let info = [DERIVE_INFO];
        // 32 bytes from SHA-256's HKDF never exceeds its 255 * 32 limit.
        if let Ok(expanded) = prk.expand(&info, aws_lc_rs::hkdf::HKDF_SHA256) {
            let _ = expanded.fill(&mut okm);
        }
        let (secret, public) = X25519HkdfSha256::derive_keypair(&okm);
        PrivateKey { secret, public: PublicKey(public.to_bytes().into()) }
    }

    /// A fresh random key.
    pub fn generate() -> PrivateKey {
        let mut seed = [0u8; KEY_LEN];
        let _ = aws_lc_rs::rand::fill(&mut seed);
        PrivateKey::derive(&seed)
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }
}

/// Pomerium's `Seal`: auth mode from `sender` to `receiver`; `enc ‖ ciphertext`.
pub fn seal(sender: &PrivateKey, receiver: &PublicKey, message: &[u8]) -> Result<Vec<u8>, HpkeError> {
    let mode = OpModeS::Auth((sender.secret.clone(), sender.public.kem()?));
    let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &mode,
        &receiver.kem()?,
        &[],
        message,
        &[],
    )
    .map_err(|_| HpkeError::Seal)?;
    let mut out = enc.to_bytes().to_vec();
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Pomerium's `Open`: only a message sealed by `sender`'s private key for `receiver` opens.
pub fn open(receiver: &PrivateKey, sender: &PublicKey, sealed: &[u8]) -> Result<Vec<u8>, HpkeError> {
    let (enc, ciphertext) = sealed.split_at_checked(KEY_LEN).ok_or(HpkeError::Open)?;
    open_auth(&receiver.secret, sender, enc, ciphertext, &[], &[])
}

fn open_auth(
    receiver: &KemPrivate,
    sender: &PublicKey,
    enc: &[u8],
    ciphertext: &[u8],
    info: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, HpkeError> {
    let enc = Encapped::from_bytes(enc).map_err(|_| HpkeError::Open)?;
    let mode = OpModeR::Auth(sender.kem()?);
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &mode, receiver, &enc, info, ciphertext, aad,
    )
    .map_err(|_| HpkeError::Open)
}

/// The two forms of a sealed query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `pomerium_hpke_sender_pub` and `pomerium_hpke_query`, the query text as it is.
    V1,
    /// `k` and `q`, the query text zstd-compressed (what sign-in requests use).
    V2,
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Which sealed form `pairs` (a query) carries, if any.
pub fn sealed_version(pairs: &[(String, String)]) -> Option<Version> {
    let has = |name| get(pairs, name).is_some();
    if has(PARAM_SENDER_V1) && has(PARAM_QUERY_V1) {
        Some(Version::V1)
    } else if has(PARAM_SENDER_V2) && has(PARAM_QUERY_V2) {
        Some(Version::V2)
    } else {
        None
    }
}

/// Pomerium's `EncryptURLValuesV1`/`V2`: `values` (any `k`/`q`/`pomerium_hpke_*` among them
/// dropped) sealed into the two parameters that replace them.
pub fn seal_values(
    version: Version,
    sender: &PrivateKey,
    receiver: &PublicKey,
    values: &[(String, String)],
) -> Result<Vec<(String, String)>, HpkeError> {
    let kept: Vec<(String, String)> = values.iter().filter(|(k, _)| !is_hpke_param(k)).cloned().collect();
    let text = go_encode(&kept);
    let (message, names) = match version {
        Version::V1 => (text.into_bytes(), (PARAM_SENDER_V1, PARAM_QUERY_V1)),
        Version::V2 => (
            ruzstd::encoding::compress_to_vec(text.as_bytes(), ruzstd::encoding::CompressionLevel::Fastest),
            (PARAM_SENDER_V2, PARAM_QUERY_V2),
        ),
    };
    let sealed = seal(sender, receiver, &message)?;
    Ok(vec![(names.0.to_owned(), sender.public.to_base64()), (names.1.to_owned(), URL_SAFE_NO_PAD.encode(sealed))])
}

/// Pomerium's `DecryptURLValues`, stricter: only the sealed values are returned (a parameter
/// beside them is not authenticated, so it is not believed), with the sender's key and the
/// version to answer in.
pub fn open_values(receiver: &PrivateKey, pairs: &[(String, String)]) -> Result<Opened, HpkeError> {
    let version = sealed_version(pairs).ok_or(HpkeError::Missing)?;
    let (sender_name, query_name) = match version {
        Version::V1 => (PARAM_SENDER_V1, PARAM_QUERY_V1),
        Version::V2 => (PARAM_SENDER_V2, PARAM_QUERY_V2),
    };
    let sender = PublicKey::from_base64(get(pairs, sender_name).unwrap_or_default())?;
    let sealed = URL_SAFE_NO_PAD.decode(get(pairs, query_name).unwrap_or_default()).map_err(|_| HpkeError::Encoding)?;
    let message = open(receiver, &sender, &sealed)?;
    let text = match version {
        Version::V1 => message,
        Version::V2 => decompress(&message)?,
    };
    let values = url::form_urlencoded::parse(&text).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    Ok(Opened { sender, values, version })
}

/// What [`open_values`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Who sealed them (the caller decides whether that is who it expects).
    pub sender: PublicKey,
    pub values: Vec<(String, String)>,
    /// The form to answer in.
    pub version: Version,
}

impl Opened {
    pub fn get(&self, name: &str) -> Option<&str> {
        get(&self.values, name)
    }
}

fn decompress(data: &[u8]) -> Result<Vec<u8>, HpkeError> {
    let decoder = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(data, MAX_WINDOW)
        .map_err(|_| HpkeError::Decompress)?;
    let mut out = Vec::new();
    decoder.take(MAX_DECOMPRESSED + 1).read_to_end(&mut out).map_err(|_| HpkeError::Decompress)?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(HpkeError::TooLarge);
    }
    Ok(out)
}

fn is_hpke_param(name: &str) -> bool {
    matches!(name, PARAM_SENDER_V1 | PARAM_QUERY_V1 | PARAM_SENDER_V2 | PARAM_QUERY_V2)
}

/// `pomerium_issued` and `pomerium_expiry` in Unix milliseconds (`urlutil.BuildTimeParameters`):
/// now, and now + `validity`.
pub fn time_parameters(now_ms: i64, validity_ms: i64) -> [(String, String); 2] {
    [
        ("pomerium_issued".to_owned(), now_ms.to_string()),
        ("pomerium_expiry".to_owned(), now_ms.saturating_add(validity_ms).to_string()),
    ]
}

/// Why sealed values are not (or no longer) valid in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("the link has no valid pomerium_issued or pomerium_expiry")]
    Invalid,
    #[error("the link was issued in the future (check the clocks)")]
    Future,
    #[error("the link has expired")]
    Expired,
}

/// `urlutil.ValidateTimeParameters`: five minutes of leeway both ways.
pub fn check_time_parameters(values: &[(String, String)], now_ms: i64) -> Result<(), TimeError> {
    let leeway = i64::try_from(crate::signed_url::LEEWAY_SECONDS).unwrap_or(300).saturating_mul(1000);
    let number = |name| get(values, name).and_then(|v| v.parse::<i64>().ok()).ok_or(TimeError::Invalid);
    let issued = number("pomerium_issued")?;
    if now_ms.saturating_add(leeway) < issued {
        return Err(TimeError::Future);
    }
    let expiry = number("pomerium_expiry")?;
    if now_ms.saturating_sub(leeway) > expiry {
        return Err(TimeError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn derived_keys_are_deterministic_per_seed() {
        let a = PrivateKey::derive(b"KEY 1");
        assert_eq!(a.public_key(), PrivateKey::derive(b"KEY 1").public_key());
        assert_ne!(a.public_key(), PrivateKey::derive(b"KEY 2").public_key());
        // The derivation is pinned: HKDF-SHA256(salt "", info "pomerium/hpke") then RFC 9180
        // DeriveKeyPair, as circl computes it for Pomerium's `DerivePrivateKey`.
        let again = PrivateKey::derive(b"KEY 1");
        assert_eq!(a.public_key().to_base64(), again.public_key().to_base64());
        assert_eq!(a.public_key().to_base64().len(), 43);
    }

    #[test]
    fn rfc9180_auth_mode_vector_opens() {
        // RFC 9180 A.2.3 (Auth, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305):
        // the suite, the mode and the key derivation this module uses, on the RFC's numbers.
        let (receiver, _) =
            X25519HkdfSha256::derive_keypair(&hex("64835d5ee64aa7aad57c6f2e4f758f7696617f8829e70bc9ac7a5ef95d1c756c"));
        let (_, sender) =
            X25519HkdfSha256::derive_keypair(&hex("9d8f94537d5a3ddef71234c0baedfad4ca6861634d0b94c3007fed557ad17df6"));
        assert_eq!(sender.to_bytes().to_vec(), hex("f0f4f9e96c54aeed3f323de8534fffd7e0577e4ce269896716bcb95643c8712b"));
        let sender = PublicKey::from_bytes(&sender.to_bytes()).unwrap();
        let opened = open_auth(
            &receiver,
            &sender,
            &hex("f7674cc8cd7baa5872d1f33dbaffe3314239f6197ddf5ded1746760bfc847e0e"),
            &hex("ab1a13c9d4f01a87ec3440dbd756e2677bd2ecf9df0ce7ed73869b98e00c09be111cb9fdf077347aeb88e61bdf"),
            &hex("4f6465206f6e2061204772656369616e2055726e"),
            &hex("436f756e742d30"),
        )
        .unwrap();
        assert_eq!(opened, b"Beauty is truth, truth beauty");
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2).unwrap(), 16).unwrap()).collect()
    }

    #[test]
    fn seal_and_open_round_trip_and_authenticate_the_sender() {
        let (k1, k2, k3) = (PrivateKey::generate(), PrivateKey::generate(), PrivateKey::generate());
        let sealed = seal(&k1, k2.public_key(), b"HELLO WORLD").unwrap();
        assert_eq!(open(&k2, k1.public_key(), &sealed).unwrap(), b"HELLO WORLD");
        // Another claimed sender, another receiver, a flipped byte, a truncation: refused.
        assert_eq!(open(&k2, k3.public_key(), &sealed), Err(HpkeError::Open));
        assert_eq!(open(&k3, k1.public_key(), &sealed), Err(HpkeError::Open));
        for i in [0, 31, 32, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(open(&k2, k1.public_key(), &bad), Err(HpkeError::Open));
        }
        assert_eq!(open(&k2, k1.public_key(), &sealed[..20]), Err(HpkeError::Open));
    }

    #[test]
    fn url_values_round_trip_in_both_versions_and_only_sealed_values_count() {
        let (k1, k2) = (PrivateKey::generate(), PrivateKey::generate());
        let values = pairs(&[("x", "y"), ("a", "b c&d"), ("a", "é"), ("k", "dropped")]);
        for version in [Version::V1, Version::V2] {
            let mut sealed = seal_values(version, &k1, k2.public_key(), &values).unwrap();
            assert_eq!(sealed_version(&sealed), Some(version));
            sealed.push(("a".into(), "injected".into()));
            let opened = open_values(&k2, &sealed).unwrap();
            assert_eq!(opened.version, version);
            assert_eq!(&opened.sender, k1.public_key());
            assert_eq!(opened.values, pairs(&[("a", "b c&d"), ("a", "é"), ("x", "y")]));
        }
    }

    #[test]
    fn v2_compresses() {
        let (k1, k2) = (PrivateKey::generate(), PrivateKey::generate());
        let long = "b".repeat(128 * 1024);
        let sealed = seal_values(Version::V2, &k1, k2.public_key(), &pairs(&[("a", &long)])).unwrap();
        assert!(go_encode(&sealed).len() < 1024);
        let opened = open_values(&k2, &sealed).unwrap();
        assert_eq!(opened.get("a"), Some(long.as_str()));
    }

    #[test]
    fn bad_sealed_queries_are_refused_without_panics() {
        let (k1, k2) = (PrivateKey::generate(), PrivateKey::generate());
        let good = seal_values(Version::V2, &k1, k2.public_key(), &pairs(&[("a", "b")])).unwrap();
        assert_eq!(open_values(&k2, &pairs(&[("a", "b")])), Err(HpkeError::Missing));
        let with = |k: &str, q: &str| pairs(&[("k", k), ("q", q)]);
        assert_eq!(open_values(&k2, &with("nope", &good[1].1)), Err(HpkeError::PublicKey));
        assert_eq!(open_values(&k2, &with(&good[0].1, "!!")), Err(HpkeError::Encoding));
        assert_eq!(open_values(&k2, &with(&good[0].1, "")), Err(HpkeError::Open));
        let mut tampered = URL_SAFE_NO_PAD.decode(&good[1].1).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x80;
        assert_eq!(open_values(&k2, &with(&good[0].1, &URL_SAFE_NO_PAD.encode(&tampered))), Err(HpkeError::Open));
        // Sealed properly but not zstd: refused, not a panic.
        let garbage = URL_SAFE_NO_PAD.encode(seal(&k1, k2.public_key(), b"not zstd at all").unwrap());
        assert_eq!(open_values(&k2, &with(&good[0].1, &garbage)), Err(HpkeError::Decompress));
        // A decompression bomb stops at the bound.
        let bomb = ruzstd::encoding::compress_to_vec(
            &vec![b'a'; 2 * 1024 * 1024][..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let bomb = URL_SAFE_NO_PAD.encode(seal(&k1, k2.public_key(), &bomb).unwrap());
        assert_eq!(open_values(&k2, &with(&good[0].1, &bomb)), Err(HpkeError::TooLarge));
    }

    #[test]
    fn time_parameters_have_five_minutes_of_leeway() {
        let now = 1_700_000_000_000;
        let values = time_parameters(now, 5 * 60 * 1000).to_vec();
        assert_eq!(check_time_parameters(&values, now), Ok(()));
        assert_eq!(check_time_parameters(&values, now + 10 * 60 * 1000), Ok(()));
        assert_eq!(check_time_parameters(&values, now + 10 * 60 * 1000 + 1), Err(TimeError::Expired));
        assert_eq!(check_time_parameters(&values, now - 5 * 60 * 1000 - 1), Err(TimeError::Future));
        assert_eq!(check_time_parameters(&[], now), Err(TimeError::Invalid));
    }

    #[test]
    fn the_public_key_travels_as_base64_and_jwk() {
        let key = PrivateKey::derive(b"seed");
        let text = key.public_key().to_base64();
        assert_eq!(&PublicKey::from_base64(&text).unwrap(), key.public_key());
        assert_eq!(&PublicKey::from_bytes(key.public_key().as_bytes()).unwrap(), key.public_key());
        assert!(PublicKey::from_bytes(&[0; 31]).is_err());
        assert_eq!(key.public_key().jwk()["x"], text);
        assert!(!format!("{key:?}").contains("secret"));
    }
}
