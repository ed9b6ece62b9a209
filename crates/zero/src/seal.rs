//! The sealed bootstrap cache, `bootstrap.dat` (`internal/zero/bootstrap/file.go` and
//! `pkg/cryptutil/encrypt.go` upstream): the JSON of the [`BootstrapConfig`] sealed with
//! XChaCha20-Poly1305 under the file key derived from the cluster token, no associated data, laid
//! out as `ciphertext ‖ tag ‖ nonce` (the 24-byte nonce last). A file that is truncated, tampered
//! with or sealed under another token does not open: it is refused whole, never half-read.

use crate::api::BootstrapConfig;
use chacha20poly1305::aead::{Aead as _, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// A bootstrap configuration is a few hundred bytes; a larger file is not one of ours.
pub const MAX_FILE_LEN: usize = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the file is truncated ({0} bytes; a sealed bootstrap configuration has at least 41)")]
    Truncated(usize),
    #[error("the file is larger than {MAX_FILE_LEN} bytes: it is not a sealed bootstrap configuration")]
    TooLarge,
    #[error(
        "the file does not open with the key derived from this cluster token: it was tampered with, \
         or sealed for another token (delete it; it is written again once the control plane answers)"
    )]
    Unauthentic,
    #[error("the file opens but does not hold a bootstrap configuration: {0}")]
    NotBootstrap(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the system random source failed")]
    Random,
    #[error("sealing failed")]
    Seal,
}

/// Seals `config` under `file_key` (see [`crate::keys::DerivedKeys::file_key`]).
pub fn seal(file_key: &[u8; 32], config: &BootstrapConfig) -> Result<Vec<u8>, SealError> {
    let plaintext = serde_json::to_vec(config).map_err(|_| SealError::Seal)?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError::Random)?;
    let cipher = XChaCha20Poly1305::new_from_slice(file_key).map_err(|_| SealError::Seal)?;
    let mut sealed = cipher.encrypt(XNonce::from_slice(&nonce), plaintext.as_slice()).map_err(|_| SealError::Seal)?;
    sealed.extend_from_slice(&nonce);
    Ok(sealed)
}

/// Opens what [`seal`] made (or what upstream's `cryptutil.Encrypt` made) with the same key.
pub fn open(file_key: &[u8; 32], sealed: &[u8]) -> Result<BootstrapConfig, OpenError> {
    if sealed.len() > MAX_FILE_LEN {
        return Err(OpenError::TooLarge);
    }
    // Upstream refuses `len <= nonce`; an empty plaintext is not JSON either, so require a tag and
    // at least one byte of ciphertext.
    if sealed.len() <= NONCE_LEN + TAG_LEN {
        return Err(OpenError::Truncated(sealed.len()));
    }
    let (ciphertext, nonce) = sealed.split_at(sealed.len() - NONCE_LEN);
    let cipher = XChaCha20Poly1305::new_from_slice(file_key).map_err(|_| OpenError::Unauthentic)?;
    let plaintext = cipher.decrypt(XNonce::from_slice(nonce), ciphertext).map_err(|_| OpenError::Unauthentic)?;
    serde_json::from_slice(&plaintext).map_err(|e| OpenError::NotBootstrap(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use crate::keys::DerivedKeys;

    fn config() -> BootstrapConfig {
        BootstrapConfig {
            cluster_id: "cluster".into(),
            organization_id: "org".into(),
            shared_secret: vec![7; 32],
            pseudonymization_key: vec![9; 32],
            databroker_storage_connection: Some("postgres://u:p@db/pomerium".into()),
        }
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let key = DerivedKeys::from_token("token").unwrap().file_key;
        let a = seal(&key, &config()).unwrap();
        let b = seal(&key, &config()).unwrap();
        assert_ne!(a, b, "each seal takes a new nonce");
        assert_eq!(open(&key, &a).unwrap(), config());
        assert_eq!(open(&key, &b).unwrap(), config());
        // The connection string's password is not readable in the file.
        assert!(!a.windows(8).any(|w| w == b"postgres"));
    }

    #[test]
    fn layout_is_ciphertext_tag_nonce() {
        let key = [3u8; 32];
        let sealed = seal(&key, &config()).unwrap();
        let json = serde_json::to_vec(&config()).unwrap();
        assert_eq!(sealed.len(), json.len() + TAG_LEN + NONCE_LEN);
        let (body, nonce) = sealed.split_at(sealed.len() - NONCE_LEN);
        let opened = XChaCha20Poly1305::new_from_slice(&key).unwrap().decrypt(XNonce::from_slice(nonce), body).unwrap();
        assert_eq!(opened, json);
    }

    #[test]
    fn truncated_tampered_and_foreign_files_are_refused() {
        let key = DerivedKeys::from_token("token").unwrap().file_key;
        let sealed = seal(&key, &config()).unwrap();
        for len in [0, 1, NONCE_LEN, NONCE_LEN + TAG_LEN] {
            assert_eq!(open(&key, &sealed[..len]), Err(OpenError::Truncated(len)));
        }
        for len in [NONCE_LEN + TAG_LEN + 1, sealed.len() / 2, sealed.len() - 1] {
            assert_eq!(open(&key, &sealed[..len]), Err(OpenError::Unauthentic), "{len}");
        }
        for index in [0, sealed.len() / 2, sealed.len() - NONCE_LEN - 1, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[index] ^= 1;
            assert_eq!(open(&key, &tampered), Err(OpenError::Unauthentic), "{index}");
        }
        let other = DerivedKeys::from_token("rotated").unwrap().file_key;
        assert_eq!(open(&other, &sealed), Err(OpenError::Unauthentic));
        assert_eq!(open(&key, &vec![0; MAX_FILE_LEN + 1]), Err(OpenError::TooLarge));
    }

    #[test]
    fn authentic_but_not_a_bootstrap_config_is_refused() {
        let key = [5u8; 32];
        let nonce = [1u8; NONCE_LEN];
        let mut sealed = XChaCha20Poly1305::new_from_slice(&key)
            .unwrap()
            .encrypt(XNonce::from_slice(&nonce), &b"{\"x\":1}"[..])
            .unwrap();
        sealed.extend_from_slice(&nonce);
        assert!(matches!(open(&key, &sealed), Err(OpenError::NotBootstrap(_))));
    }
}
