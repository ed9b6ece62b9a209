//! Pomerium Zero's bundles (`bundle::decode`: the control plane's length-delimited records) and
//! the sealed `bootstrap.dat` (`seal::open`): raw bytes, and plaintexts sealed under the right key
//! so that the JSON behind the authentication tag is read too. Nothing may panic; what opens is
//! what was sealed.
#![no_main]

use chacha20poly1305::aead::{Aead as _, KeyInit as _};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [5; 32];

fuzz_target!(|data: &[u8]| {
    let _ = zero::bundle::decode(data);
    let _ = zero::seal::open(&KEY, data);
    // The same bytes as a plaintext sealed with the file key (nonce after the ciphertext).
    let nonce = [3u8; 24];
    let cipher = XChaCha20Poly1305::new_from_slice(&KEY).unwrap();
    let mut sealed = cipher.encrypt(XNonce::from_slice(&nonce), data).unwrap();
    sealed.extend_from_slice(&nonce);
    if let Ok(config) = zero::seal::open(&KEY, &sealed) {
        let resealed = zero::seal::seal(&KEY, &config).unwrap();
        assert!(zero::seal::open(&KEY, &resealed).ok() == Some(config), "what opens is what was sealed");
    }
});
