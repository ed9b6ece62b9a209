//! `ssh_publickey`, `ssh_ca` and `ssh_username_matches_claim`.
//!
//! Keys are `authorized_keys` lines, converted to the SSH wire format at compile time as Pomerium
//! does with Go's `ssh.ParseAuthorizedKey`; the blob is checked structurally for its algorithm.

use super::{Cx, one_or_many};
use crate::error::{InvalidSshKey, WrongType};
use crate::model::{CriterionKind, SshKey};
use crate::value::{Value, ValueKind};
use crate::warning::NeverMatches;
use base64::Engine as _;

pub(super) fn username_matches_claim(data: &Value, cx: &mut Cx<'_>) -> Option<CriterionKind> {
    match &data.kind {
        ValueKind::String(claim) => {
            if claim.is_empty() {
                cx.warn(NeverMatches {
                    criterion: cx.key.clone(),
                    reason: "the claim name is empty".to_owned(),
                    span: data.span.into(),
                    help: Some("name the claim that holds the allowed usernames".to_owned()),
                });
            }
            Some(CriterionKind::SshUsernameMatchesClaim(claim.clone()))
        }
        _ => {
            cx.error(WrongType {
                what: "`ssh_username_matches_claim`".to_owned(),
                expected: "a claim name (a string)",
                found: data.kind(),
                span: data.span.into(),
                help: Some("e.g. `ssh_username_matches_claim: posix_username`".to_owned()),
            });
            None
        }
    }
}

pub(super) fn keys(data: &Value, cx: &mut Cx<'_>) -> Option<Vec<SshKey>> {
    let key = cx.key.clone();
    let entries = one_or_many(data, &key, cx)?;
    let mut keys = Vec::with_capacity(entries.len());
    for (text, value) in entries {
        match parse_authorized_key(text) {
            Ok(key) => keys.push(key),
            Err(reason) => cx.error(InvalidSshKey { reason, span: value.span.into() }),
        }
    }
    Some(keys)
}

const ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

fn is_algorithm(name: &str) -> bool {
    ALGORITHMS.contains(&name)
        || name
            .strip_suffix("-cert-v01@openssh.com")
            .is_some_and(|base| ALGORITHMS.iter().any(|a| a.strip_suffix("@openssh.com").unwrap_or(a) == base))
}

/// Parses one `authorized_keys` line: `[options] algorithm base64 [comment]`.
pub fn parse_authorized_key(line: &str) -> Result<SshKey, String> {
    let line = line.trim();
    if line.is_empty() {
        return Err("the key is empty".to_owned());
    }
    let fields = split_fields(line);
    // Options come first when the first field is not an algorithm name.
    let start = fields.iter().position(|f| is_algorithm(f)).ok_or_else(|| match fields.first() {
        Some(first) if first.starts_with("AAAA") => {
            "the line starts with the key data; put the algorithm (such as `ssh-ed25519`) before it".to_owned()
        }
        Some(first) if first.starts_with("-----BEGIN") => {
            "this is a pem file; use the `authorized_keys` line (`ssh-keygen -y -f key`)".to_owned()
        }
        _ => format!("no known key algorithm; expected one of {}", ALGORITHMS.join(", ")),
    })?;
    let algorithm = fields.get(start).copied().unwrap_or_default();
    let encoded =
        fields.get(start + 1).ok_or_else(|| format!("`{algorithm}` must be followed by the base64 key data"))?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "the key data is not valid base64".to_owned())?;
    let mut reader = WireReader { bytes: &blob, pos: 0 };
    let embedded = reader.string().ok_or("the key data is truncated")?;
    if embedded != algorithm.as_bytes() {
        return Err(format!(
            "the key data is a `{}` key, but the line says `{algorithm}`",
            String::from_utf8_lossy(embedded)
        ));
    }
    check_key_body(algorithm, &mut reader)?;
    Ok(SshKey { algorithm: algorithm.to_owned(), blob })
}

/// Splits on whitespace, keeping double-quoted option values (`command="a b"`) together.
fn split_fields(line: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    fields.push(line.get(s..i).unwrap_or_default());
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        fields.push(line.get(s..).unwrap_or_default());
    }
    fields
}

struct WireReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> WireReader<'a> {
    fn string(&mut self) -> Option<&'a [u8]> {
        let len_bytes: [u8; 4] = self.bytes.get(self.pos..self.pos + 4)?.try_into().ok()?;
        let len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
        let start = self.pos + 4;
        let value = self.bytes.get(start..start.checked_add(len)?)?;
        self.pos = start + len;
        Some(value)
    }

    fn done(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

fn check_key_body(algorithm: &str, reader: &mut WireReader<'_>) -> Result<(), String> {
    let truncated = || "the key data is truncated".to_owned();
    if algorithm.ends_with("-cert-v01@openssh.com") {
        // A certificate: nonce, then the key; its signature is checked when it is used.
        reader.string().ok_or_else(truncated)?;
        return Ok(());
    }
    match algorithm {
        "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => {
            let key = reader.string().ok_or_else(truncated)?;
            if key.len() != 32 {
                return Err(format!("an ed25519 key is 32 bytes, this one is {}", key.len()));
            }
        }
        "ssh-rsa" => {
            reader.string().ok_or_else(truncated)?;
            let modulus = reader.string().ok_or_else(truncated)?;
            if modulus.len() < 64 {
                return Err("the rsa modulus is too short".to_owned());
            }
        }
        "ssh-dss" => {
            for _ in 0..4 {
                reader.string().ok_or_else(truncated)?;
            }
        }
        _ => {
            // ecdsa-sha2-<curve> and its security-key form: curve name, then the point.
            let curve = reader.string().ok_or_else(truncated)?;
            let expected = algorithm.trim_end_matches("@openssh.com").rsplit('-').next().unwrap_or_default();
            if curve != expected.as_bytes() {
                return Err(format!("the key's curve is `{}`, expected `{expected}`", String::from_utf8_lossy(curve)));
            }
            let point = reader.string().ok_or_else(truncated)?;
            if point.first() != Some(&4) {
                return Err("the ecdsa point is not in uncompressed form".to_owned());
            }
        }
    }
    if algorithm.starts_with("sk-") {
        reader.string().ok_or_else(truncated)?;
    }
    if reader.done() { Ok(()) } else { Err("the key data has trailing bytes".to_owned()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHuCKzHqANC9hY4Q2y5LvTzk6YHVw8GuqKbvsYgWbXkk alice@laptop";

    #[test]
    fn parses_authorized_keys_lines() {
        let key = parse_authorized_key(ED25519).unwrap();
        assert_eq!(key.algorithm, "ssh-ed25519");
        assert_eq!(key.blob.len(), 4 + 11 + 4 + 32);
        let with_options = format!("command=\"echo hi there\",no-pty {ED25519}");
        assert_eq!(parse_authorized_key(&with_options).unwrap(), key);
    }

    #[test]
    fn rejects_bad_keys_with_a_reason() {
        assert_eq!(parse_authorized_key("").unwrap_err(), "the key is empty");
        assert!(parse_authorized_key("ssh-ed25519").unwrap_err().contains("followed by the base64"));
        assert!(parse_authorized_key("ssh-ed25519 !!!").unwrap_err().contains("base64"));
        assert!(
            parse_authorized_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIHuCKzHqANC9hY4Q2y5LvTzk6YHVw8GuqKbvsYgWbXkk")
                .unwrap_err()
                .contains("is a `ssh-ed25519` key")
        );
        assert!(
            parse_authorized_key("AAAAC3NzaC1lZDI1NTE5AAAAIHuCKzHqANC9hY4Q2y5LvTzk6YHVw8GuqKbvsYgWbXkk")
                .unwrap_err()
                .contains("starts with the key data")
        );
        assert!(parse_authorized_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAAQA=").unwrap_err().contains("32 bytes"));
    }
}
