//! HMAC-SHA-512/256, the MAC of Pomerium's signed URLs (`pkg/cryptutil/hmac.go`). aws-lc-rs has
//! SHA-512/256 but no HMAC over it, so the construction (RFC 2104) is written out here.

use aws_lc_rs::digest::{Context, SHA512_256};

/// SHA-512's block size, which SHA-512/256 shares.
const BLOCK: usize = 128;

/// HMAC-SHA-512/256 of `message` under `key`.
pub fn hmac_sha512_256(key: &[u8], message: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        let hashed = aws_lc_rs::digest::digest(&SHA512_256, key);
        copy_into(&mut block, hashed.as_ref());
    } else {
        copy_into(&mut block, key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let mut inner = Context::new(&SHA512_256);
    inner.update(&pad(0x36));
    for part in message {
        inner.update(part);
    }
    let mut outer = Context::new(&SHA512_256);
    outer.update(&pad(0x5c));
    outer.update(inner.finish().as_ref());
    let mut mac = [0u8; 32];
    copy_into(&mut mac, outer.finish().as_ref());
    mac
}

fn copy_into(target: &mut [u8], source: &[u8]) {
    for (t, s) in target.iter_mut().zip(source) {
        *t = *s;
    }
}

/// Compares two MACs in constant time.
pub fn macs_equal(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Vectors from Python's `hmac.new(key, message, "sha512_256")` (OpenSSL), an independent
    /// implementation.
    #[test]
    fn matches_an_independent_implementation() {
        let mac = hmac_sha512_256(b"key", &[b"The quick brown fox ", b"jumps over the lazy dog"]);
        assert_eq!(hex(&mac), "7fb65e03577da9151a1016e9c2e514d4d48842857f13927f348588173dca6d89");
        // A key longer than the block is hashed first.
        let mac = hmac_sha512_256(&[b'k'; 200], &[]);
        assert_eq!(hex(&mac), "bccdd972ab4da2fb743a5ec156a81bf2adb8c38ec8caa128f3f237d5a213bc27");
    }

    #[test]
    fn equal_macs_compare_equal_and_others_do_not() {
        let mac = hmac_sha512_256(b"key", &[b"a"]);
        assert!(macs_equal(&mac, &mac));
        assert!(!macs_equal(&mac, &hmac_sha512_256(b"key", &[b"b"])));
        assert!(!macs_equal(&mac, &mac[..31]));
    }
}
