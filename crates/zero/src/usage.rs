//! Usage reports (`internal/zero/controller/usagereporter` upstream): the users who signed in,
//! their ids and emails pseudonymised with the cluster's pseudonymization key
//! (`cryptutil.Pseudonymize`: HMAC-SHA256, standard base64), so the control plane counts users
//! without learning who they are.

use crate::api::ReportUsageUser;
use aws_lc_rs::hmac;
use base64::Engine as _;

/// `cryptutil.Pseudonymize`.
pub fn pseudonymize(key: &[u8], data: &str) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// One user as a report carries them; `last_signed_in_at` is RFC 3339.
pub fn user(key: &[u8], user_id: &str, email: Option<&str>, last_signed_in_at: &str) -> ReportUsageUser {
    ReportUsageUser {
        last_signed_in_at: last_signed_in_at.to_owned(),
        pseudonymous_email: email.filter(|e| !e.is_empty()).map(|e| pseudonymize(key, e)).unwrap_or_default(),
        pseudonymous_id: pseudonymize(key, user_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python: `base64.b64encode(hmac.new(b"key", b"user-1", hashlib.sha256).digest())`.
    #[test]
    fn pseudonyms_are_hmac_sha256_in_base64() {
        assert_eq!(pseudonymize(b"key", "user-1"), PSEUDONYM);
        let u = user(b"key", "user-1", None, "2026-01-01T00:00:00Z");
        assert_eq!((u.pseudonymous_id.as_str(), u.pseudonymous_email.as_str()), (PSEUDONYM, ""));
        assert_ne!(user(b"key", "user-1", Some("a@example.com"), "t").pseudonymous_email, "");
        assert_ne!(pseudonymize(b"other", "user-1"), PSEUDONYM);
    }

    const PSEUDONYM: &str = "ijLmgHSUiv0NN9Whtr4yku7qfUCW0o3BCqn1P3pEixM=";
}
