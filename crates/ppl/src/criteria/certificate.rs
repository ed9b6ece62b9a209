//! `client_certificate`: the certificate matcher (ppl.md §2.4 "client_certificate details").

use super::{Cx, matchers, one_or_many};
use crate::error::{EmptyValue, InvalidFingerprint, InvalidSpkiHash, UnknownField, WrongType};
use crate::model::CertificateMatcher;
use crate::suggest;
use crate::value::Value;
use base64::Engine as _;

const FIELDS: &[&str] = &["fingerprint", "spki_hash", "san_email", "san_dns", "san_uri"];

pub(super) fn matcher(data: &Value, cx: &mut Cx<'_>) -> Option<CertificateMatcher> {
    let Some(entries) = data.as_object() else {
        cx.error(WrongType {
            what: "`client_certificate`".to_owned(),
            expected: "an object of certificate conditions",
            found: data.kind(),
            span: data.span.into(),
            help: Some(format!("the conditions are {}", fields())),
        });
        return None;
    };
    let mut matcher = CertificateMatcher::default();
    for entry in entries {
        let value = &entry.value;
        match entry.key.as_str() {
            "fingerprint" => matcher.fingerprints = Some(digests(value, "fingerprint", cx, fingerprint)),
            "spki_hash" => matcher.spki_hashes = Some(digests(value, "spki_hash", cx, spki_hash)),
            field @ ("san_email" | "san_dns" | "san_uri") => {
                // Messages about the matcher name the field (`san_dns`), not the criterion.
                let criterion = std::mem::replace(&mut cx.key, field.to_owned());
                let parsed = matchers::string(value, cx);
                cx.key = criterion;
                match field {
                    "san_email" => matcher.san_email = parsed,
                    "san_dns" => matcher.san_dns = parsed,
                    _ => matcher.san_uri = parsed,
                }
            }
            other => cx.error(UnknownField {
                criterion: "client_certificate".to_owned(),
                field: other.to_owned(),
                span: entry.key_span.into(),
                help: Some(
                    suggest::did_you_mean(other, FIELDS).unwrap_or_else(|| format!("the conditions are {}", fields())),
                ),
            }),
        }
    }
    Some(matcher)
}

fn fields() -> String {
    let quoted: Vec<String> = FIELDS.iter().map(|f| format!("`{f}`")).collect();
    suggest::join_and(&quoted)
}

/// Which digest a parse error is about.
pub(crate) enum DigestError {
    Empty,
    Fingerprint(String),
    Spki(String),
}

fn digests(
    value: &Value,
    what: &str,
    cx: &mut Cx<'_>,
    parse: fn(&str) -> Result<[u8; 32], DigestError>,
) -> Vec<[u8; 32]> {
    let Some(entries) = one_or_many(value, what, cx) else {
        return Vec::new();
    };
    let mut parsed = Vec::with_capacity(entries.len());
    for (text, item) in entries {
        match parse(text) {
            Ok(digest) => parsed.push(digest),
            Err(DigestError::Empty) => cx.error(EmptyValue {
                what: format!("a certificate {}", if what == "fingerprint" { "fingerprint" } else { "spki hash" }),
                span: item.span.into(),
                help: None,
            }),
            Err(DigestError::Fingerprint(reason)) => {
                cx.error(InvalidFingerprint { text: text.to_owned(), span: item.span.into(), reason });
            }
            Err(DigestError::Spki(reason)) => {
                cx.error(InvalidSpkiHash { text: text.to_owned(), span: item.span.into(), reason })
            }
        }
    }
    parsed
}

/// A SHA-256 certificate fingerprint in either of the forms Pomerium accepts: 64 lowercase hex
/// digits, or 32 uppercase hex pairs separated by `:`.
pub(crate) fn fingerprint(text: &str) -> Result<[u8; 32], DigestError> {
    if text.is_empty() {
        return Err(DigestError::Empty);
    }
    let short = text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let long = text.len() == 95
        && text.split(':').count() == 32
        && text
            .split(':')
            .all(|pair| pair.len() == 2 && pair.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
    if short || long {
        let hex: String = text.chars().filter(|&c| c != ':').collect();
        return decode_hex(&hex).ok_or_else(|| DigestError::Fingerprint("not hex".to_owned()));
    }
    let digits: String = text.chars().filter(|&c| c != ':').collect();
    let all_hex = digits.bytes().all(|b| b.is_ascii_hexdigit());
    let reason = if all_hex && digits.len() == 40 {
        "this is a sha-1 fingerprint; use the sha-256 one".to_owned()
    } else if all_hex && digits.len() == 64 && text.contains(':') {
        "pairs separated by `:` must be uppercase".to_owned()
    } else if all_hex && digits.len() == 64 {
        "64 hex digits without `:` must be lowercase".to_owned()
    } else if all_hex {
        format!("{} hex digits, a sha-256 fingerprint has 64", digits.len())
    } else {
        "not hex digits".to_owned()
    };
    Err(DigestError::Fingerprint(reason))
}

/// A base64 (standard alphabet, padded) SHA-256 hash of a SubjectPublicKeyInfo.
pub(crate) fn spki_hash(text: &str) -> Result<[u8; 32], DigestError> {
    if text.is_empty() {
        return Err(DigestError::Empty);
    }
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DigestError::Spki("this looks like hex; the spki hash is written in base64".to_owned()));
    }
    match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| DigestError::Spki(format!("decodes to {} bytes, a sha-256 hash has 32", bytes.len()))),
        Err(_) => Err(DigestError::Spki("not valid base64".to_owned())),
    }
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let bytes = hex.as_bytes();
    for (i, slot) in out.iter_mut().enumerate() {
        let pair = std::str::from_utf8(bytes.get(2 * i..2 * i + 2)?).ok()?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    (bytes.len() == 64).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: &str = "17859273e8a980631d367b2d5a6a6635412b0f22835f69e47b3f65624546a704";
    const LONG: &str =
        "17:85:92:73:E8:A9:80:63:1D:36:7B:2D:5A:6A:66:35:41:2B:0F:22:83:5F:69:E4:7B:3F:65:62:45:46:A7:04";

    fn reason(text: &str) -> String {
        match fingerprint(text) {
            Ok(_) => "ok".to_owned(),
            Err(DigestError::Empty) => "empty".to_owned(),
            Err(DigestError::Fingerprint(r) | DigestError::Spki(r)) => r,
        }
    }

    #[test]
    fn both_fingerprint_forms_give_the_same_digest() {
        let short = fingerprint(SHORT).ok().unwrap();
        let long = fingerprint(LONG).ok().unwrap();
        assert_eq!(short, long);
        assert_eq!(short[0], 0x17);
        assert_eq!(short[31], 0x04);
    }

    #[test]
    fn other_fingerprint_forms_are_rejected_with_a_reason() {
        assert_eq!(reason(""), "empty");
        assert_eq!(reason(&SHORT.to_uppercase()), "64 hex digits without `:` must be lowercase");
        assert_eq!(reason(&LONG.to_lowercase()), "pairs separated by `:` must be uppercase");
        assert_eq!(reason(&SHORT[..40]), "this is a sha-1 fingerprint; use the sha-256 one");
        assert_eq!(reason("abc"), "3 hex digits, a sha-256 fingerprint has 64");
        assert_eq!(reason("xyz"), "not hex digits");
    }

    #[test]
    fn spki_hashes_must_be_32_bytes_of_base64() {
        assert!(spki_hash("FsDbM0rUYIiL3V339eIKqiz6HPSB+Pz2WeAWhqlqh8U=").is_ok());
        assert!(matches!(spki_hash("FsDbM0rUYIiL3V339eIKqiz6HPSB+Pz2WeAWhqlqh8U"), Err(DigestError::Spki(_))));
        assert!(
            matches!(spki_hash("AAAA"), Err(DigestError::Spki(r)) if r == "decodes to 3 bytes, a sha-256 hash has 32")
        );
        assert!(matches!(spki_hash(SHORT), Err(DigestError::Spki(r)) if r.contains("hex")));
    }
}
