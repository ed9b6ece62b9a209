//! XChaCha20-Poly1305 as Pomerium's `cryptutil` uses it (system.md §3.4): a 32-byte key, a
//! random 24-byte nonce, serialized as ciphertext ‖ nonce (the nonce appended).

use chacha20poly1305::aead::{Aead as _, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// An AEAD keyed with one of the deployment's secrets.
#[derive(Clone)]
pub struct Aead(XChaCha20Poly1305);

impl std::fmt::Debug for Aead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aead(<key>)")
    }
}

/// The key is not 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an aead key must be 32 bytes")]
pub struct KeyError;

/// Sealed data that does not open under this key and associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sealed data is not authentic")]
pub struct OpenError;

impl Aead {
    pub fn new(key: &[u8]) -> Result<Aead, KeyError> {
        XChaCha20Poly1305::new_from_slice(key).map(Aead).map_err(|_| KeyError)
    }

    /// Encrypts and authenticates `plaintext` with `aad`; ciphertext ‖ nonce.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // The system's random source; failing it is not recoverable in any useful way, and a
        // zero nonce would be reused, so the output is then empty (and never opens).
        if aws_lc_rs::rand::fill(&mut nonce).is_err() {
            return Vec::new();
        }
        let Ok(mut sealed) = self.0.encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad }) else {
            return Vec::new();
        };
        sealed.extend_from_slice(&nonce);
        sealed
    }

    /// Opens what [`Aead::seal`] made with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError);
        }
        let (ciphertext, nonce) = sealed.split_at(sealed.len() - NONCE_LEN);
        self.0.decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad }).map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn sealed_data_opens_only_unchanged_with_its_key_and_aad() {
        let aead = Aead::new(&[1; 32]).unwrap();
        let sealed = aead.seal(b"hello", b"aad");
        assert_eq!(sealed.len(), 5 + TAG_LEN + NONCE_LEN);
        assert_eq!(aead.open(&sealed, b"aad").unwrap(), b"hello");
        assert_eq!(aead.open(&sealed, b"other"), Err(OpenError));
        assert_eq!(Aead::new(&[2; 32]).unwrap().open(&sealed, b"aad"), Err(OpenError));
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert_eq!(aead.open(&tampered, b"aad"), Err(OpenError), "byte {i}");
        }
        assert_eq!(aead.open(&sealed[..10], b"aad"), Err(OpenError));
        assert_ne!(aead.seal(b"hello", b"aad"), sealed, "a fresh nonce each time");
        assert_eq!(Aead::new(&[0; 31]).map(|_| ()), Err(KeyError));
    }
}
