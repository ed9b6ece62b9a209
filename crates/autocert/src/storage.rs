//! What autocert keeps in `autocert_dir`, per ACME directory (the "issuer"):
//!
//! - `accounts/<issuer>/account.json`: the account's credentials (its key), mode 0600;
//! - `certificates/<issuer>/<name>/<name>.crt` (the chain, PEM) and `<name>.key` (PEM, 0600);
//! - `locks/<issuer>/<name>.lock`: held by the replica ordering `<name>`; created with O_EXCL,
//!   removed when the order ends, taken over when older than [`LOCK_STALE`].
//!
//! Files are written to a temporary name and renamed, so a reader never sees half a file.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use instant_acme::AccountCredentials;

use crate::Stored;

/// A lock file older than this was left by a replica that died mid-order (an order is bounded
/// well below it).
pub const LOCK_STALE: Duration = Duration::from_secs(600);

/// Whether `name` is a DNS name that is safe as a file name: letters, digits, `-` and `.`,
/// labels of 1 to 63 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !name.split('.').all(|label| label.bytes().all(|b| b.is_ascii_digit()))
}

/// The directory name of an ACME directory URL: its host, port and path, with anything but
/// letters, digits, `.` and `-` made `-`.
pub fn issuer_key(directory_url: &str) -> String {
    let without_scheme = directory_url.split_once("://").map_or(directory_url, |(_, rest)| rest);
    let key: String = without_scheme
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let key = key.trim_matches(['-', '.']).to_owned();
    if key.is_empty() { "default".to_owned() } else { key }
}

fn certificate_dir(dir: &Path, issuer: &str, name: &str) -> PathBuf {
    dir.join("certificates").join(issuer).join(name)
}

/// The stored certificate for `name`: `None` when there is none, an error when it cannot be read.
pub fn load_certificate(dir: &Path, issuer: &str, name: &str) -> Result<Option<Stored>, String> {
    let base = certificate_dir(dir, issuer, name);
    let chain_path = base.join(format!("{name}.crt"));
    let key_path = base.join(format!("{name}.key"));
    let chain = match std::fs::read(&chain_path) {
        Ok(chain) => chain,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read `{}`: {e}", chain_path.display())),
    };
    let key = std::fs::read(&key_path).map_err(|e| format!("cannot read `{}`: {e}", key_path.display()))?;
    parse(&chain, &key).map(Some).map_err(|e| format!("`{}`: {e}", chain_path.display()))
}

/// A chain and key from PEM, with the leaf's validity.
pub fn parse(chain_pem: &[u8], key_pem: &[u8]) -> Result<Stored, String> {
    use rustls_pki_types::pem::PemObject as _;
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))?;
    let leaf = chain.first().ok_or("no certificate in the chain")?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("invalid certificate: {e}"))?;
    let not_before = parsed.validity().not_before.timestamp();
    let not_after = parsed.validity().not_after.timestamp();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("invalid key: {e}"))?;
    let key = crate::certified_key(chain, key)?;
    Ok(Stored { key, not_before, not_after })
}

/// Stores a certificate for `name`.
pub fn save_certificate(dir: &Path, issuer: &str, name: &str, chain_pem: &str, key_pem: &str) -> Result<(), String> {
    let base = certificate_dir(dir, issuer, name);
    create_dir(&base)?;
    // The key first: a reader that finds the new chain finds its key.
    write_atomically(&base.join(format!("{name}.key")), key_pem.as_bytes(), true)?;
    write_atomically(&base.join(format!("{name}.crt")), chain_pem.as_bytes(), false)
}

/// The stored account credentials for the issuer, if any.
pub fn load_account(dir: &Path, issuer: &str) -> Result<Option<AccountCredentials>, String> {
    let path = dir.join("accounts").join(issuer).join("account.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("`{}` is not an ACME account: {e}; remove it to make a new account", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
    }
}

/// Stores the account credentials for the issuer.
pub fn save_account(dir: &Path, issuer: &str, credentials: &AccountCredentials) -> Result<(), String> {
    let base = dir.join("accounts").join(issuer);
    create_dir(&base)?;
    let json = serde_json::to_vec_pretty(credentials).map_err(|e| format!("account credentials: {e}"))?;
    write_atomically(&base.join("account.json"), &json, true)
}

/// The lock of `name`, held until dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "autocert: cannot remove the lock file");
        }
    }
}

/// Takes the lock of `name`: `None` when another process holds it (and it is not stale).
pub fn try_lock(dir: &Path, issuer: &str, name: &str) -> Result<Option<Lock>, String> {
    let base = dir.join("locks").join(issuer);
    create_dir(&base)?;
    let path = base.join(format!("{name}.lock"));
    for _ in 0..2 {
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                // Who holds it, for whoever looks.
                let _ = writeln!(file, "{}", std::process::id());
                return Ok(Some(Lock { path }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let age = std::fs::metadata(&path).and_then(|m| m.modified()).ok().and_then(|m| m.elapsed().ok());
                match age {
                    Some(age) if age > LOCK_STALE => {
                        tracing::warn!(path = %path.display(), "autocert: taking over a stale lock file");
                        let _ = std::fs::remove_file(&path);
                    }
                    _ => return Ok(None),
                }
            }
            Err(e) => return Err(format!("cannot create the lock file `{}`: {e}", path.display())),
        }
    }
    Ok(None)
}

fn create_dir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path)
        .map_err(|e| format!("cannot create `{}` (check autocert_dir and its permissions): {e}", path.display()))
}

fn write_atomically(path: &Path, contents: &[u8], secret: bool) -> Result<(), String> {
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let fail = |e: std::io::Error| format!("cannot write `{}`: {e}", path.display());
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&temporary).map_err(fail)?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn names_and_issuers_are_safe_file_names() {
        assert!(valid_name("a.example.com"));
        for bad in ["", "..", "a/b", "a..b", "-a.com", "1.2.3.4", "a_b.com", "*.a.com"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(issuer_key("https://127.0.0.1:14000/dir"), "127.0.0.1-14000-dir");
        assert_eq!(
            issuer_key("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org-directory"
        );
        assert_eq!(issuer_key("https://../"), "default");
    }

    #[test]
    fn a_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let lock = try_lock(dir.path(), "i", "a.test").unwrap().unwrap();
        assert!(try_lock(dir.path(), "i", "a.test").unwrap().is_none());
        assert!(try_lock(dir.path(), "i", "b.test").unwrap().is_some());
        drop(lock);
        assert!(try_lock(dir.path(), "i", "a.test").unwrap().is_some());
    }

    #[test]
    fn a_stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let held = try_lock(dir.path(), "i", "a.test").unwrap().unwrap();
        // A replica that died mid-order left its lock an hour ago.
        std::mem::forget(held);
        let path = dir.path().join("locks/i/a.test.lock");
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)).unwrap();
        assert!(try_lock(dir.path(), "i", "a.test").unwrap().is_some());
    }

    #[test]
    fn a_certificate_round_trips_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_certificate(dir.path(), "i", "a.test").unwrap().is_none());
        let generated = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        let chain = generated.cert.pem();
        let key = generated.signing_key.serialize_pem();
        save_certificate(dir.path(), "i", "a.test", &chain, &key).unwrap();
        let stored = load_certificate(dir.path(), "i", "a.test").unwrap().unwrap();
        assert!(stored.not_after > stored.not_before);
        std::fs::write(dir.path().join("certificates/i/a.test/a.test.crt"), "garbage").unwrap();
        assert!(load_certificate(dir.path(), "i", "a.test").is_err());
    }
}
