//! Key material: certificates, private keys, CRLs and secrets, given inline (usually as base64 of
//! PEM) or by a `*_file` option read through the [`Environment`]. Certificates are checked to be
//! PEM holding parseable X.509; keys to be PEM private keys.

use crate::diagnostic::{BadPem, Conflict, IgnoredOption, Origin, UnreadableFile};
use crate::env::{Environment, MAX_FILE_BYTES};
use crate::read::{Field, Sink};
use crate::secret::Secret;
use base64::Engine as _;
use ppl::Span;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::fmt;
use std::path::Path;

/// Certificates read from PEM (a chain, or a bundle of authorities), DER-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificates(Vec<CertificateDer<'static>>);

impl Certificates {
    pub fn ders(&self) -> &[CertificateDer<'static>] {
        &self.0
    }
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Certificates(<{} certificates>)", self.0.len())
    }
}

/// A private key, kept as its PEM text so that it is never printed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PrivateKey(Secret);

impl PrivateKey {
    /// A key from PEM text made by the server itself (managed mode derives its signing key);
    /// `None` when the text holds no private key.
    pub fn from_pem(pem: &[u8]) -> Option<PrivateKey> {
        PrivateKeyDer::from_pem_slice(pem).ok().map(|_| PrivateKey(Secret::new(pem.to_vec())))
    }

    /// The key in DER, for rustls. Loading checked that the PEM holds one.
    pub fn der(&self) -> Option<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(self.0.expose()).ok()
    }

    pub fn pem(&self) -> &Secret {
        &self.0
    }
}

/// A certificate chain and the key for its leaf.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CertifiedKey {
    pub certificates: Certificates,
    pub key: PrivateKey,
}

/// Certificate revocation lists, DER-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Crls(Vec<CertificateRevocationListDer<'static>>);

impl Crls {
    pub fn ders(&self) -> &[CertificateRevocationListDer<'static>] {
        &self.0
    }
}

impl fmt::Debug for Crls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Crls(<{} lists>)", self.0.len())
    }
}

/// Bytes read for an option, with where to report problems with them.
#[derive(Debug, Clone)]
pub(crate) struct Material {
    pub bytes: Vec<u8>,
    pub option: String,
    pub span: Span,
    pub origin: Origin,
    pub from_file: bool,
}

/// How an inline value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Base64 of the bytes (certificates, keys, CAs).
    Base64,
    /// The bytes themselves (tokens, client secrets, connection strings).
    Text,
}

/// Which of `x` and `x_file` Pomerium uses when both are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precedence {
    /// Both set is an error.
    Exclusive,
    Inline,
    File,
}

/// Reads `inline` or `file`, as `precedence` says.
pub(crate) fn inline_or_file(
    inline: Option<&Field>,
    file: Option<&Field>,
    encoding: Encoding,
    precedence: Precedence,
    env: &dyn Environment,
    sink: &mut Sink,
) -> Option<Material> {
    match (inline, file) {
        (Some(inline), Some(file)) => match precedence {
            Precedence::Exclusive => {
                let other = (inline.origin == file.origin).then(|| inline.key_span.into());
                sink.error(
                    &file.origin,
                    Conflict {
                        first: inline.name.clone(),
                        second: file.name.clone(),
                        span: file.key_span.into(),
                        other,
                        help: Some("give the value inline or as a file, not both".to_owned()),
                    },
                );
                None
            }
            Precedence::Inline => {
                ignored(file, &inline.name, sink);
                read_inline(inline, encoding, sink)
            }
            Precedence::File => {
                ignored(inline, &file.name, sink);
                read_file(file, env, sink)
            }
        },
        (Some(inline), None) => read_inline(inline, encoding, sink),
        (None, Some(file)) => read_file(file, env, sink),
        (None, None) => None,
    }
}

fn ignored(field: &Field, winner: &str, sink: &mut Sink) {
    let because = format!("`{winner}` is also set and takes precedence");
    sink.warning(&field.origin, IgnoredOption { option: field.name.clone(), because, span: field.key_span.into() });
}

fn read_inline(field: &Field, encoding: Encoding, sink: &mut Sink) -> Option<Material> {
    let text = field.string(sink)?;
    let bytes = match encoding {
        Encoding::Text => text.into_bytes(),
        Encoding::Base64 => decode_base64(field, &text, sink)?,
    };
    Some(Material {
        bytes,
        option: field.name.clone(),
        span: field.span(),
        origin: field.origin.clone(),
        from_file: false,
    })
}

/// Base64 as Go's `StdEncoding` reads it: padded, line breaks ignored.
pub(crate) fn decode_base64(field: &Field, text: &str, sink: &mut Sink) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            let help = if text.trim_start().starts_with("-----BEGIN") {
                Some(format!(
                    "`{}` takes the base64 of the pem text (`base64 -w0 file.pem`), or use `{}_file` with a path",
                    field.name, field.name
                ))
            } else {
                Some("the value must be standard base64 with padding".to_owned())
            };
            field.invalid(sink, format!("not base64: {}", base64_reason(&error)), help);
            None
        }
    }
}

/// What is wrong with some base64, in words.
pub(crate) fn base64_reason(error: &base64::DecodeError) -> String {
    match error {
        base64::DecodeError::InvalidByte(offset, byte) => {
            format!("`{}` at byte {offset} is not a base64 character", char::from(*byte).escape_default())
        }
        base64::DecodeError::InvalidLastSymbol { offset, .. } => format!("the text is cut short at byte {offset}"),
        base64::DecodeError::InvalidLength(length) => format!("{length} characters cannot be base64"),
        base64::DecodeError::InvalidPadding => "the `=` padding is wrong".to_owned(),
    }
}

/// What is wrong with some PEM, in words.
fn pem_reason(error: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as E;
    match error {
        E::MissingSectionEnd { end_marker } => {
            format!("no `-----END {}-----` line", String::from_utf8_lossy(end_marker))
        }
        E::IllegalSectionStart { line } => {
            format!("a malformed `-----BEGIN` line: `{}`", String::from_utf8_lossy(line).trim())
        }
        E::Base64Decode(reason) => format!("a block is not base64 ({})", reason.to_lowercase().trim_end_matches('.')),
        E::NoItemsFound => "no pem block found".to_owned(),
        other => other.to_string().to_lowercase(),
    }
}

/// Reads the file a `*_file` option names.
pub(crate) fn read_file(field: &Field, env: &dyn Environment, sink: &mut Sink) -> Option<Material> {
    let path = field.string(sink)?;
    let unreadable = |reason: String| UnreadableFile {
        option: field.name.clone(),
        path: path.clone(),
        reason,
        span: field.span().into(),
        help: None,
    };
    match env.read_file(Path::new(&path)) {
        Ok(bytes) if bytes.len() > MAX_FILE_BYTES => {
            sink.error(&field.origin, unreadable(format!("it is larger than the limit of {MAX_FILE_BYTES} bytes")));
            None
        }
        Ok(bytes) => Some(Material {
            bytes,
            option: field.name.clone(),
            span: field.span(),
            origin: field.origin.clone(),
            from_file: true,
        }),
        Err(error) => {
            sink.error(&field.origin, unreadable(error.to_string().to_lowercase()));
            None
        }
    }
}

fn bad_pem(material: &Material, what: &'static str, reason: impl Into<String>, sink: &mut Sink) {
    let help = (!material.from_file && !material.bytes.starts_with(b"-----"))
        .then(|| "the value must be the base64 of a pem file (`base64 -w0 file.pem`)".to_owned());
    sink.error(
        &material.origin,
        BadPem { option: material.option.clone(), what, reason: reason.into(), span: material.span.into(), help },
    );
}

/// Every certificate in the PEM, each parsed as X.509.
pub(crate) fn certificates(material: &Material, sink: &mut Sink) -> Option<Certificates> {
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(&material.bytes) {
        match item {
            Ok(der) => {
                if let Err(error) = x509_parser::parse_x509_certificate(der.as_ref()) {
                    bad_pem(
                        material,
                        "certificate",
                        format!("certificate {} is not valid x.509: {error}", out.len() + 1),
                        sink,
                    );
                    return None;
                }
                out.push(der);
            }
            Err(error) => {
                bad_pem(material, "certificate", format!("the pem is malformed: {}", pem_reason(&error)), sink);
                return None;
            }
        }
    }
    if out.is_empty() {
        bad_pem(material, "certificate", "no `BEGIN CERTIFICATE` block found", sink);
        return None;
    }
    Some(Certificates(out))
}

pub(crate) fn private_key(material: &Material, sink: &mut Sink) -> Option<PrivateKey> {
    match PrivateKeyDer::from_pem_slice(&material.bytes) {
        Ok(_) => Some(PrivateKey(Secret::new(material.bytes.clone()))),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            bad_pem(material, "private key", "no `BEGIN PRIVATE KEY` (or RSA, EC) block found", sink);
            None
        }
        Err(error) => {
            bad_pem(material, "private key", format!("the pem is malformed: {}", pem_reason(&error)), sink);
            None
        }
    }
}

pub(crate) fn crls(material: &Material, sink: &mut Sink) -> Option<Crls> {
    let mut out = Vec::new();
    for item in CertificateRevocationListDer::pem_slice_iter(&material.bytes) {
        match item {
            Ok(der) => {
                if let Err(error) = x509_parser::parse_x509_crl(der.as_ref()) {
                    bad_pem(
                        material,
                        "certificate revocation list",
                        format!("list {} is not a valid x.509 crl: {error}", out.len() + 1),
                        sink,
                    );
                    return None;
                }
                out.push(der);
            }
            Err(error) => {
                bad_pem(
                    material,
                    "certificate revocation list",
                    format!("the pem is malformed: {}", pem_reason(&error)),
                    sink,
                );
                return None;
            }
        }
    }
    if out.is_empty() {
        bad_pem(material, "certificate revocation list", "no `BEGIN X509 CRL` block found", sink);
        return None;
    }
    Some(Crls(out))
}

/// A certificate and its key, both required when either is set.
pub(crate) fn certified_key(cert: Option<Material>, key: Option<Material>, sink: &mut Sink) -> Option<CertifiedKey> {
    let certificates = certificates(&cert?, sink);
    let key = private_key(&key?, sink);
    Some(CertifiedKey { certificates: certificates?, key: key? })
}
