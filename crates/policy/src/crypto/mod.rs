//! What the policy reads of certificates: X.509 client certificates (fingerprint, SPKI hash,
//! subject alternative names) and SSH user certificates (signed by a trusted CA for a principal).
//!
//! Parsing happens once, before evaluation (the proxy does it per connection); evaluation then
//! compares digests and strings and allocates nothing.

mod ssh;
mod x509;

pub use ssh::verify_ssh_user_certificate;

/// The facts of an X.509 leaf certificate that `client_certificate` tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateFacts {
    /// SHA-256 of the DER certificate.
    pub fingerprint: [u8; 32],
    /// SHA-256 of the DER SubjectPublicKeyInfo.
    pub spki_hash: [u8; 32],
    pub san_emails: Vec<String>,
    pub san_dns: Vec<String>,
    pub san_uris: Vec<String>,
}
