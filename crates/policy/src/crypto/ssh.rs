//! SSH user certificates: Pomerium's `ssh_verify_user_cert` built-in, which is Go's
//! `ssh.ParsePublicKey` followed by `ssh.CertChecker.Authenticate` with the trusted CAs as
//! `IsUserAuthority` and no supported critical options.
//!
//! Go checks the signature over its own re-encoding of the certificate and compares CAs by their
//! re-encoding; OpenSSH signs the bytes as sent. For every certificate whose encoding is
//! canonical the two agree, so a certificate here must be canonical (it always is when OpenSSH or
//! Go made it) and its bytes are verified as they are. A trusted CA is compared by value, which is
//! what comparing Go's re-encodings amounts to.

use aws_lc_rs::signature::{self, EcdsaVerificationAlgorithm, RsaParameters, UnparsedPublicKey};
use jiff::Timestamp;
use ppl::model::SshKey;

const USER_CERT: u32 = 1;
/// `valid_before` of a certificate that never expires.
const CERT_TIME_INFINITY: u64 = u64::MAX;
/// The one critical option Go's `CheckCert` leaves to its caller instead of refusing.
const SOURCE_ADDRESS: &[u8] = b"source-address";
/// The largest RSA modulus aws-lc-rs verifies: 8192 bits.
const MAX_RSA_LEN: usize = 1024;
/// The largest ECDSA scalar, P-521's.
const MAX_SCALAR_LEN: usize = 66;

/// Certificate formats and the key format each certifies (Go's `certKeyAlgoNames`, less the
/// `rsa-sha2-*` names, which are not key formats and which `ParsePublicKey` refuses).
const CERT_ALGORITHMS: &[(&[u8], &[u8])] = &[
    (b"ssh-rsa-cert-v01@openssh.com", b"ssh-rsa"),
    (b"ssh-dss-cert-v01@openssh.com", b"ssh-dss"),
    (b"ecdsa-sha2-nistp256-cert-v01@openssh.com", b"ecdsa-sha2-nistp256"),
    (b"ecdsa-sha2-nistp384-cert-v01@openssh.com", b"ecdsa-sha2-nistp384"),
    (b"ecdsa-sha2-nistp521-cert-v01@openssh.com", b"ecdsa-sha2-nistp521"),
    (b"sk-ecdsa-sha2-nistp256-cert-v01@openssh.com", b"sk-ecdsa-sha2-nistp256@openssh.com"),
    (b"ssh-ed25519-cert-v01@openssh.com", b"ssh-ed25519"),
    (b"sk-ssh-ed25519-cert-v01@openssh.com", b"sk-ssh-ed25519@openssh.com"),
];

/// Whether `presented` (a public key in SSH wire format) is a user certificate for `principal`,
/// valid at `now`, signed by one of `trusted_cas`, as Pomerium's `ssh_verify_user_cert` decides.
/// Anything malformed is `false`: there Go returns an error, which OPA (builtin errors not
/// strict, its default) turns into an undefined call, failing the criterion as `false` does.
pub fn verify_ssh_user_certificate(presented: &[u8], principal: &str, trusted_cas: &[SshKey], now: Timestamp) -> bool {
    let Some(cert) = Certificate::parse(presented) else {
        return false;
    };
    // Cheap checks first; the signature last.
    cert.cert_type == USER_CERT
        && only_source_address(cert.critical_options)
        && principal_allowed(cert.principals, principal.as_bytes())
        && valid_at(cert.valid_after, cert.valid_before, now)
        && trusted_cas.iter().any(|ca| cert.signature_key.same_as(cert.signature_key_blob, &ca.blob))
        && cert.signature_key.verify(cert.signed, cert.signature_format, cert.signature_blob)
}

/// The fields of a certificate that the checks read, borrowed from its wire bytes.
struct Certificate<'a> {
    cert_type: u32,
    /// The principals, a well-formed sequence of SSH strings.
    principals: &'a [u8],
    valid_after: u64,
    valid_before: u64,
    /// The critical options, well-formed tuples in strictly increasing key order.
    critical_options: &'a [u8],
    signature_key: PublicKey<'a>,
    signature_key_blob: &'a [u8],
    /// Every byte before the signature field: what the CA signed.
    signed: &'a [u8],
    signature_format: &'a [u8],
    signature_blob: &'a [u8],
}

impl<'a> Certificate<'a> {
    /// Go's `parseCert` (PROTOCOL.certkeys), refusing what Go refuses and, beyond that, encodings
    /// that Go would re-encode differently before checking the signature.
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        let format = r.string()?;
        let key_format = CERT_ALGORITHMS.iter().find(|(cert, _)| *cert == format).map(|(_, key)| *key)?;
        let _nonce = r.string()?;
        PublicKey::parse_body(key_format, &mut r, Encoding::Canonical)?;
        let _serial = r.u64()?;
        let cert_type = r.u32()?;
        let _key_id = r.string()?;
        let principals = r.string()?;
        let valid_after = r.u64()?;
        let valid_before = r.u64()?;
        let critical_options = r.string()?;
        let extensions = r.string()?;
        let _reserved = r.string()?;
        let signature_key_blob = r.string()?;
        let signed = bytes.get(..bytes.len().checked_sub(r.0.len())?)?;
        let signature = r.string()?;
        if !r.is_empty() {
            return None;
        }

        let mut list = Reader(principals);
        while !list.is_empty() {
            list.string()?;
        }
        check_tuples(critical_options)?;
        check_tuples(extensions)?;
        // Only a plain key can sign: certificate formats are not in `parse_body`, as in Go.
        let signature_key = PublicKey::parse(signature_key_blob, Encoding::Canonical)?;

        let mut sig = Reader(signature);
        let signature_format = sig.string()?;
        let signature_blob = sig.string()?;
        // Only security-key formats carry more, and no CA here verifies those.
        if !sig.is_empty() {
            return None;
        }

        Some(Certificate {
            cert_type,
            principals,
            valid_after,
            valid_before,
            critical_options,
            signature_key,
            signature_key_blob,
            signed,
            signature_format,
            signature_blob,
        })
    }
}

/// Go's `parseTuples`: keys in strictly increasing order, each value empty or one string.
fn check_tuples(tuples: &[u8]) -> Option<()> {
    let mut r = Reader(tuples);
    let mut last: Option<&[u8]> = None;
    while !r.is_empty() {
        let key = r.string()?;
        if last.is_some_and(|last| key <= last) {
            return None;
        }
        last = Some(key);
        let data = r.string()?;
        if !data.is_empty() {
            let mut value = Reader(data);
            // Go re-encodes an empty inner string as no data at all, so the signature would
            // not verify in Go over such a value.
            if value.string()?.is_empty() || !value.is_empty() {
                return None;
            }
        }
    }
    Some(())
}

/// Go's `CheckCert` refuses every critical option but `source-address`, which it leaves to the
/// server code that calls it; the policy does not check the address either.
fn only_source_address(critical_options: &[u8]) -> bool {
    let mut r = Reader(critical_options);
    while !r.is_empty() {
        let (Some(key), Some(_)) = (r.string(), r.string()) else {
            return false;
        };
        if key != SOURCE_ADDRESS {
            return false;
        }
    }
    true
}

/// An empty principal list admits every principal.
fn principal_allowed(principals: &[u8], principal: &[u8]) -> bool {
    let mut r = Reader(principals);
    if r.is_empty() {
        return true;
    }
    while let Some(p) = r.string() {
        if p == principal {
            return true;
        }
    }
    false
}

/// Go's `CheckCert` clock test, in whole seconds (`time.Time.Unix`, which floors), with the
/// u64 fields read as int64: a value of 2^63 or more is "not yet valid" for `valid_after` and
/// "expired" for `valid_before`, except the infinity value.
fn valid_at(valid_after: u64, valid_before: u64, now: Timestamp) -> bool {
    let mut now_s = now.as_second();
    if now.subsec_nanosecond() < 0 {
        now_s = now_s.saturating_sub(1);
    }
    let Ok(after) = i64::try_from(valid_after) else {
        return false;
    };
    if now_s < after {
        return false;
    }
    valid_before == CERT_TIME_INFINITY || i64::try_from(valid_before).is_ok_and(|b| now_s < b)
}

/// How strictly to read a key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// Inside a certificate: as Go reads it, and also canonical (minimal mpints), with points
    /// validated.
    Canonical,
    /// A trusted CA, only compared with a certificate's already validated key: as Go reads it.
    Lenient,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    fn from_name(name: &[u8]) -> Option<Curve> {
        match name {
            b"nistp256" => Some(Curve::P256),
            b"nistp384" => Some(Curve::P384),
            b"nistp521" => Some(Curve::P521),
            _ => None,
        }
    }

    fn key_format(self) -> &'static [u8] {
        match self {
            Curve::P256 => b"ecdsa-sha2-nistp256",
            Curve::P384 => b"ecdsa-sha2-nistp384",
            Curve::P521 => b"ecdsa-sha2-nistp521",
        }
    }

    fn scalar_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    /// The hash follows the curve (RFC 5656): SHA-256, SHA-384, SHA-512.
    fn algorithm(self) -> &'static EcdsaVerificationAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
            Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED,
        }
    }

    /// Go's `elliptic.Unmarshal`: an uncompressed point on the curve.
    fn valid_point(self, point: &[u8]) -> bool {
        let coordinates = self.scalar_len().saturating_mul(2).saturating_add(1);
        point.len() == coordinates
            && point.first() == Some(&4)
            && signature::ParsedPublicKey::new(self.algorithm(), point).is_ok()
    }
}

/// A public key's values: two keys are equal exactly when Go's encodings of them are. Integers
/// are magnitudes without leading zeros.
#[derive(Debug, PartialEq, Eq)]
enum PublicKey<'a> {
    Ed25519(&'a [u8]),
    Ecdsa(Curve, &'a [u8]),
    Rsa { e: &'a [u8], n: &'a [u8] },
    Dsa([&'a [u8]; 4]),
    SkEcdsa { point: &'a [u8], application: &'a [u8] },
    SkEd25519 { key: &'a [u8], application: &'a [u8] },
}

impl<'a> PublicKey<'a> {
    /// A whole key in wire format (Go's `ParsePublicKey`), nothing after it.
    fn parse(blob: &'a [u8], encoding: Encoding) -> Option<Self> {
        let mut r = Reader(blob);
        let format = r.string()?;
        let key = Self::parse_body(format, &mut r, encoding)?;
        r.is_empty().then_some(key)
    }

    /// The fields after the format name (Go's `parsePubKey` for plain keys).
    fn parse_body(format: &[u8], r: &mut Reader<'a>, encoding: Encoding) -> Option<Self> {
        let canonical = encoding == Encoding::Canonical;
        let mpint = |r: &mut Reader<'a>| {
            let m = r.mpint()?;
            (m.canonical || !canonical).then_some(m.magnitude)
        };
        match format {
            b"ssh-ed25519" => {
                let key = r.string()?;
                (key.len() == 32).then_some(PublicKey::Ed25519(key))
            }
            b"ecdsa-sha2-nistp256" | b"ecdsa-sha2-nistp384" | b"ecdsa-sha2-nistp521" => {
                let curve = Curve::from_name(r.string()?)?;
                let point = r.string()?;
                // Go takes the curve from the inner name and re-encodes with it, so a mismatch
                // changes the signed bytes; a trusted CA is only compared, by its inner name.
                if canonical && (curve.key_format() != format || !curve.valid_point(point)) {
                    return None;
                }
                Some(PublicKey::Ecdsa(curve, point))
            }
            b"ssh-rsa" => {
                let e = mpint(r)?;
                let n = mpint(r)?;
                // Go's parseRSA: an odd exponent of at least 3 and at most 24 bits.
                if e.len() > 3 {
                    return None;
                }
                let value = e.iter().fold(0u32, |v, &b| (v << 8) | u32::from(b));
                (value >= 3 && value & 1 == 1).then_some(PublicKey::Rsa { e, n })
            }
            b"ssh-dss" => {
                let p = mpint(r)?;
                let q = mpint(r)?;
                let g = mpint(r)?;
                let y = mpint(r)?;
                // Go's checkDSAParams: P of 1024, 2048 or 3072 bits.
                let bits = p.first().map_or(0, |&top| {
                    p.len().saturating_sub(1).saturating_mul(8).saturating_add(8 - top.leading_zeros() as usize)
                });
                matches!(bits, 1024 | 2048 | 3072).then_some(PublicKey::Dsa([p, q, g, y]))
            }
            b"sk-ecdsa-sha2-nistp256@openssh.com" => {
                let curve = Curve::from_name(r.string()?)?;
                let point = r.string()?;
                let application = r.string()?;
                if curve != Curve::P256 || (canonical && !curve.valid_point(point)) {
                    return None;
                }
                Some(PublicKey::SkEcdsa { point, application })
            }
            b"sk-ssh-ed25519@openssh.com" => {
                let key = r.string()?;
                let application = r.string()?;
                (key.len() == 32).then_some(PublicKey::SkEd25519 { key, application })
            }
            _ => None,
        }
    }

    /// Go's `IsUserAuthority`: Pomerium compares `Marshal()` of both keys, that is their values.
    /// `blob` is `self`'s canonical wire form.
    fn same_as(&self, blob: &[u8], trusted: &[u8]) -> bool {
        blob == trusted || PublicKey::parse(trusted, Encoding::Lenient).is_some_and(|k| k == *self)
    }

    /// Go's `PublicKey.Verify` for the CA algorithms aws-lc-rs offers.
    fn verify(&self, signed: &[u8], format: &[u8], blob: &[u8]) -> bool {
        match *self {
            PublicKey::Ed25519(key) => {
                format == b"ssh-ed25519"
                    && UnparsedPublicKey::new(&signature::ED25519, key).verify(signed, blob).is_ok()
            }
            PublicKey::Ecdsa(curve, point) => {
                let mut fixed = [0u8; 2 * MAX_SCALAR_LEN];
                format == curve.key_format()
                    && ecdsa_fixed_signature(curve, blob, &mut fixed)
                        .is_some_and(|sig| UnparsedPublicKey::new(curve.algorithm(), point).verify(signed, sig).is_ok())
            }
            PublicKey::Rsa { e, n } => {
                let params: &RsaParameters = match format {
                    // SHA-1, accepted as Go accepts it.
                    b"ssh-rsa" => &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
                    b"rsa-sha2-256" => &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                    b"rsa-sha2-512" => &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
                    _ => return false,
                };
                // Go pads a signature shorter than the modulus with leading zeros (some
                // clients drop them); a longer one fails.
                let mut padded = [0u8; MAX_RSA_LEN];
                let Some(pad) = n.len().checked_sub(blob.len()) else {
                    return false;
                };
                let Some(sig) = padded.get_mut(..n.len()) else {
                    return false;
                };
                let Some(tail) = sig.get_mut(pad..) else {
                    return false;
                };
                tail.copy_from_slice(blob);
                signature::RsaPublicKeyComponents { n, e }.verify(params, signed, sig).is_ok()
            }
            // Go verifies DSA and security-key CAs too; aws-lc-rs has no DSA, and security-key
            // signatures (PROTOCOL.u2f) are not implemented here.
            PublicKey::Dsa(_) | PublicKey::SkEcdsa { .. } | PublicKey::SkEd25519 { .. } => false,
        }
    }
}

/// The SSH ECDSA signature blob (mpint r, mpint s; RFC 5656) as aws-lc-rs's fixed form: r and
/// s big-endian, each padded to the scalar length. Go reads any mpint here and `ecdsa.Verify`
/// refuses values that are not in 1..n-1; aws-lc-rs checks the range, so only the sign, zero and
/// the length are decided here.
fn ecdsa_fixed_signature<'b>(curve: Curve, blob: &[u8], out: &'b mut [u8; 2 * MAX_SCALAR_LEN]) -> Option<&'b [u8]> {
    let len = curve.scalar_len();
    let mut r = Reader(blob);
    let values = [r.mpint()?.magnitude, r.mpint()?.magnitude];
    if !r.is_empty() {
        return None;
    }
    let fixed = out.get_mut(..len.checked_mul(2)?)?;
    for (half, value) in fixed.chunks_exact_mut(len).zip(values) {
        if value.is_empty() {
            return None;
        }
        let pad = len.checked_sub(value.len())?;
        half.get_mut(pad..)?.copy_from_slice(value);
    }
    Some(fixed)
}

/// An mpint (RFC 4251): its magnitude without leading zeros, and whether it was encoded
/// minimally. Negative values are refused: nowhere here is one valid.
struct Mpint<'a> {
    magnitude: &'a [u8],
    canonical: bool,
}

/// A cursor over SSH wire data (RFC 4251 types).
#[derive(Clone, Copy)]
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()?;
        self.take(usize::try_from(len).ok()?)
    }

    fn mpint(&mut self) -> Option<Mpint<'a>> {
        let raw = self.string()?;
        let canonical = match raw {
            [] => true,
            [0, next, ..] => next & 0x80 != 0,
            [0] => false,
            [first, ..] if first & 0x80 != 0 => return None,
            [_, ..] => true,
        };
        let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
        Some(Mpint { magnitude: raw.get(start..)?, canonical })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/crypto/ssh/", $name))
        };
    }

    const CA_ED25519: &str = fixture!("ca_ed25519.pub");
    const CA_ECDSA256: &str = fixture!("ca_ecdsa256.pub");
    const CA_ECDSA384: &str = fixture!("ca_ecdsa384.pub");
    const CA_ECDSA521: &str = fixture!("ca_ecdsa521.pub");
    const CA_RSA: &str = fixture!("ca_rsa.pub");
    const CA_OTHER: &str = fixture!("ca_other.pub");
    const USER_ED25519: &str = fixture!("user_ed25519.pub");
    const ED25519: &str = fixture!("ed25519-cert.pub");

    /// The wire bytes of an authorized_keys style line (`format base64 comment`).
    fn wire(line: &str) -> Vec<u8> {
        let b64 = line.split_whitespace().nth(1).unwrap();
        base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
    }

    fn ca(line: &str) -> SshKey {
        SshKey { algorithm: line.split_whitespace().next().unwrap().to_owned(), blob: wire(line) }
    }

    fn at(time: &str) -> Timestamp {
        time.parse().unwrap()
    }

    const NOW: &str = "2025-06-01T12:00:00Z";

    fn verify(cert: &[u8], principal: &str, cas: &[&str], now: &str) -> bool {
        let cas: Vec<SshKey> = cas.iter().map(|line| ca(line)).collect();
        verify_ssh_user_certificate(cert, principal, &cas, at(now))
    }

    fn all_cas() -> Vec<&'static str> {
        vec![CA_ED25519, CA_ECDSA256, CA_ECDSA384, CA_ECDSA521, CA_RSA]
    }

    #[test]
    fn each_ca_algorithm() {
        let cases = [
            (fixture!("ed25519-cert.pub"), CA_ED25519),
            (fixture!("ecdsa256-cert.pub"), CA_ECDSA256),
            (fixture!("ecdsa384-cert.pub"), CA_ECDSA384),
            (fixture!("ecdsa521-cert.pub"), CA_ECDSA521),
            (fixture!("rsa-sha512-cert.pub"), CA_RSA),
            (fixture!("rsa-sha256-cert.pub"), CA_RSA),
            (fixture!("rsa-sha1-cert.pub"), CA_RSA),
        ];
        for (cert, signer) in cases {
            let cert = wire(cert);
            assert!(verify(&cert, "alice", &[signer], NOW));
            assert!(verify(&cert, "bob", &all_cas(), NOW));
            assert!(!verify(&cert, "carol", &all_cas(), NOW));
            // Trusting every CA but the signer is not enough.
            let others: Vec<&str> = all_cas().into_iter().filter(|c| *c != signer).collect();
            assert!(!verify(&cert, "alice", &others, NOW));
        }
    }

    #[test]
    fn principals() {
        let cert = wire(ED25519);
        assert!(verify(&cert, "alice", &[CA_ED25519], NOW));
        assert!(!verify(&cert, "", &[CA_ED25519], NOW));
        assert!(!verify(&cert, "alic", &[CA_ED25519], NOW));
        assert!(!verify(&cert, "Alice", &[CA_ED25519], NOW));
        // No principals: valid for everyone.
        let any = wire(fixture!("any-principal-cert.pub"));
        for principal in ["alice", "carol", "", "root"] {
            assert!(verify(&any, principal, &[CA_ED25519], NOW));
        }
    }

    #[test]
    fn trusted_authorities() {
        let cert = wire(ED25519);
        assert!(!verify(&cert, "alice", &[], NOW));
        assert!(!verify(&cert, "alice", &[CA_OTHER], NOW));
        assert!(verify(&cert, "alice", &[CA_OTHER, CA_ED25519], NOW));
        // The user's own key is no authority.
        assert!(!verify(&cert, "alice", &[USER_ED25519], NOW));
    }

    #[test]
    fn a_trusted_ca_is_compared_by_value() {
        // The RSA CA with a needless leading zero in its exponent: Go re-encodes both keys
        // before comparing, so it is the same authority.
        let blob = wire(CA_RSA);
        let mut r = Reader(&blob);
        let format = r.string().unwrap();
        let e = r.string().unwrap();
        let n = r.string().unwrap();
        let mut padded = Vec::new();
        for field in [format, &[&[0u8][..], e].concat(), n] {
            padded.extend((field.len() as u32).to_be_bytes());
            padded.extend(field);
        }
        assert_ne!(padded, blob);
        let trusted = SshKey { algorithm: "ssh-rsa".to_owned(), blob: padded };
        let cert = wire(fixture!("rsa-sha512-cert.pub"));
        assert!(verify_ssh_user_certificate(&cert, "alice", &[trusted], at(NOW)));
    }

    #[test]
    fn only_user_certificates() {
        let host = wire(fixture!("host-cert.pub"));
        assert!(!verify(&host, "alice", &all_cas(), NOW));
        // A plain key, even a trusted CA's own, is not a certificate.
        assert!(!verify(&wire(USER_ED25519), "alice", &all_cas(), NOW));
        assert!(!verify(&wire(CA_ED25519), "alice", &all_cas(), NOW));
    }

    #[test]
    fn validity_window() {
        // Valid from 2020-01-01T00:00:00Z (inclusive) to 2030-01-01T00:00:00Z (exclusive).
        let cert = wire(ED25519);
        let check = |now| verify(&cert, "alice", &[CA_ED25519], now);
        assert!(!check("2019-12-31T23:59:59.999Z"));
        assert!(check("2020-01-01T00:00:00Z"));
        assert!(check("2029-12-31T23:59:59.999Z"));
        assert!(!check("2030-01-01T00:00:00Z"));
        assert!(!check("2040-01-01T00:00:00Z"));

        let expired = wire(fixture!("expired-cert.pub"));
        assert!(!verify(&expired, "alice", &[CA_ED25519], NOW));
        assert!(verify(&expired, "alice", &[CA_ED25519], "2010-06-01T00:00:00Z"));

        // always:forever is 0 to infinity; Go floors the time to whole seconds.
        let forever = wire(fixture!("forever-cert.pub"));
        let check = |now| verify(&forever, "alice", &[CA_ED25519], now);
        assert!(check("1970-01-01T00:00:00Z"));
        assert!(!check("1969-12-31T23:59:59.5Z"));
        assert!(check("9999-12-30T00:00:00Z"));
    }

    #[test]
    fn validity_bounds_past_int64() {
        let now = at(NOW);
        assert!(valid_at(0, u64::MAX, now));
        assert!(!valid_at(1 << 63, u64::MAX, now));
        assert!(!valid_at(u64::MAX, u64::MAX, now));
        assert!(!valid_at(0, 1 << 63, now));
        assert!(!valid_at(0, u64::MAX - 1, now));
        assert!(valid_at(0, i64::MAX as u64, now));
    }

    #[test]
    fn critical_options_and_extensions() {
        let force = wire(fixture!("force-command-cert.pub"));
        assert!(!verify(&force, "alice", &[CA_ED25519], NOW));
        let source = wire(fixture!("source-address-cert.pub"));
        assert!(verify(&source, "alice", &[CA_ED25519], NOW));
        let no_pty = wire(fixture!("no-pty-cert.pub"));
        assert!(verify(&no_pty, "alice", &[CA_ED25519], NOW));
    }

    #[test]
    fn any_changed_byte_fails() {
        for (cert, signer) in [
            (ED25519, CA_ED25519),
            (fixture!("ecdsa256-cert.pub"), CA_ECDSA256),
            (fixture!("rsa-sha512-cert.pub"), CA_RSA),
        ] {
            let cert = wire(cert);
            assert!(verify(&cert, "alice", &[signer], NOW));
            for i in 0..cert.len() {
                let mut flipped = cert.clone();
                flipped[i] ^= 0x01;
                assert!(!verify(&flipped, "alice", &[signer], NOW), "byte {i}");
            }
            for len in 0..cert.len() {
                assert!(!verify(&cert[..len], "alice", &[signer], NOW), "{len}");
            }
            let mut longer = cert.clone();
            longer.push(0);
            assert!(!verify(&longer, "alice", &[signer], NOW));
        }
    }

    #[test]
    fn ecdsa_signature_conversion() {
        let mut out = [0u8; 2 * MAX_SCALAR_LEN];
        let blob = |r: &[u8], s: &[u8]| {
            let mut b = Vec::new();
            for v in [r, s] {
                b.extend((v.len() as u32).to_be_bytes());
                b.extend(v);
            }
            b
        };
        // A leading zero (for a high first byte) is dropped, short values are left-padded.
        let fixed = ecdsa_fixed_signature(Curve::P256, &blob(&[0, 0x80, 1], &[7]), &mut out).unwrap().to_vec();
        assert_eq!(fixed.len(), 64);
        assert_eq!(&fixed[..32], &[[0u8; 30].as_slice(), &[0x80, 1]].concat()[..]);
        assert_eq!(&fixed[32..], &[[0u8; 31].as_slice(), &[7]].concat()[..]);
        // Zero, negative, too long, or anything after s: refused.
        assert!(ecdsa_fixed_signature(Curve::P256, &blob(&[], &[1]), &mut out).is_none());
        assert!(ecdsa_fixed_signature(Curve::P256, &blob(&[0x80], &[1]), &mut out).is_none());
        assert!(ecdsa_fixed_signature(Curve::P256, &blob(&[1; 33], &[1]), &mut out).is_none());
        let mut trailing = blob(&[1], &[1]);
        trailing.push(0);
        assert!(ecdsa_fixed_signature(Curve::P256, &trailing, &mut out).is_none());
        // P-521's scalars take 66 bytes.
        let fixed = ecdsa_fixed_signature(Curve::P521, &blob(&[1; 66], &[1; 66]), &mut out);
        assert_eq!(fixed.map(<[u8]>::len), Some(132));
    }

    #[test]
    fn mpints() {
        let parse = |raw: &[u8]| {
            let mut b = (raw.len() as u32).to_be_bytes().to_vec();
            b.extend(raw);
            Reader(&b).mpint().map(|m| (m.magnitude.to_vec(), m.canonical))
        };
        assert_eq!(parse(&[]), Some((vec![], true)));
        assert_eq!(parse(&[0]), Some((vec![], false)));
        assert_eq!(parse(&[1, 0]), Some((vec![1, 0], true)));
        assert_eq!(parse(&[0, 0x80]), Some((vec![0x80], true)));
        assert_eq!(parse(&[0, 1]), Some((vec![1], false)));
        assert_eq!(parse(&[0x80]), None);
    }

    #[test]
    fn option_tuples() {
        let tuple = |key: &[u8], data: &[u8]| {
            let mut b = Vec::new();
            for field in [key, data] {
                b.extend((field.len() as u32).to_be_bytes());
                b.extend(field);
            }
            b
        };
        let inner = |v: &[u8]| {
            let mut b = (v.len() as u32).to_be_bytes().to_vec();
            b.extend(v);
            b
        };
        assert!(check_tuples(&[]).is_some());
        assert!(check_tuples(&tuple(b"a", b"")).is_some());
        assert!(check_tuples(&tuple(b"a", &inner(b"v"))).is_some());
        assert!(check_tuples(&[tuple(b"a", b""), tuple(b"b", b"")].concat()).is_some());
        // Out of order, repeated, an empty inner value, extra bytes in the value: refused.
        assert!(check_tuples(&[tuple(b"b", b""), tuple(b"a", b"")].concat()).is_none());
        assert!(check_tuples(&[tuple(b"a", b""), tuple(b"a", b"")].concat()).is_none());
        assert!(check_tuples(&tuple(b"a", &inner(b""))).is_none());
        assert!(check_tuples(&tuple(b"a", &[inner(b"v"), vec![0]].concat())).is_none());
        assert!(check_tuples(&tuple(b"a", b"")[..6]).is_none());
    }

    #[test]
    fn hostile_input_never_panics() {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let cas: Vec<SshKey> = all_cas().into_iter().map(ca).collect();
        let now = at(NOW);
        let certs = [wire(ED25519), wire(fixture!("ecdsa521-cert.pub")), wire(fixture!("rsa-sha1-cert.pub"))];
        for round in 0..3000 {
            let len = (next() % 400) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            assert!(!verify_ssh_user_certificate(&bytes, "alice", &cas, now));
            // Random keys as trusted CAs.
            let bogus = SshKey { algorithm: "ssh-rsa".to_owned(), blob: bytes };
            let cert = &certs[round % certs.len()];
            assert!(!verify_ssh_user_certificate(cert, "alice", std::slice::from_ref(&bogus), now));
            // Mutations of real certificates, lengths included, reach every field.
            let mut mutated = cert.clone();
            for _ in 0..1 + round % 3 {
                let at = (next() as usize) % mutated.len();
                mutated[at] = next() as u8;
            }
            let valid = verify_ssh_user_certificate(&mutated, "alice", &cas, now);
            assert_eq!(valid, mutated == *cert);
        }
    }
}
