//! Secrets: those annotations name (`applyTLSAnnotations`, `applySecretAnnotations`), whose data
//! become route fields, and those `spec.tls` names, which become certificates (`ParseTLSCerts`).
//!
//! Secrets are looked up in the Ingress's namespace. Data comes base64-encoded in the route
//! fields that take PEM (`tls_custom_ca`, `tls_client_cert`, ...), as Pomerium's controller
//! writes them; the validation then checks the PEM as it would in `config.yaml`.

use crate::Certificate;
use crate::annotations::SecretUse;
use crate::deps::{ObjectKey, secret_data, secret_type};
use crate::doc::{Key, Node, NodeKind, Source};
use crate::error::{HeaderConflict, MissingSecret, MissingSecretKey, SecretNotUtf8, TranslateError, WrongSecretType};
use crate::translate::Cx;
use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeMap;

const TLS_SECRET: &str = "kubernetes.io/tls";
const TOKEN_SECRET: &str = "kubernetes.io/service-account-token";
const OPAQUE_SECRET: &str = "Opaque";

/// One use of a Secret, for messages: who names it and which Secret it is.
struct Use<'a> {
    /// The annotation's name after the prefix.
    name: &'a str,
    /// `` annotation `prefix/name` `` or `spec.tls`.
    user: String,
    secret: ObjectKey,
}

/// Applies a Secret-backed annotation: reads the Secret and sets (or merges into) route fields.
pub(crate) fn apply(
    cx: &mut Cx<'_>,
    name: &str,
    secret_name: &str,
    secret_use: SecretUse,
    fields: &mut Vec<(String, Node)>,
) {
    let user = format!("annotation `{}`", cx.annotation(name));
    let usage = Use { name, user, secret: ObjectKey::new(&cx.key.namespace, secret_name) };
    let Some(secret) = lookup(cx, &usage) else { return };
    let data = secret_data(secret);
    let result = match secret_use {
        SecretUse::CustomCa => base64_field(cx, &usage, &data, "ca.crt", "tls_custom_ca", fields),
        SecretUse::DownstreamClientCa => base64_field(cx, &usage, &data, "ca.crt", "tls_downstream_client_ca", fields),
        SecretUse::ClientCertificate => client_certificate(cx, &usage, &data, fields),
        SecretUse::ServiceAccountToken => token(cx, &usage, secret, &data, fields),
        SecretUse::RequestHeaders => headers(cx, &usage, secret, &data, "set_request_headers", fields),
        SecretUse::ResponseHeaders => headers(cx, &usage, secret, &data, "set_response_headers", fields),
    };
    if let Err(error) = result {
        cx.errors.push(error);
    }
}

fn lookup<'a>(cx: &mut Cx<'a>, usage: &Use<'_>) -> Option<&'a Secret> {
    let secret = cx.deps.secrets.get(&usage.secret);
    if secret.is_none() {
        let error =
            MissingSecret { ingress: cx.label.clone(), user: usage.user.clone(), secret: usage.secret.to_string() };
        cx.errors.push(error.into());
    }
    secret
}

fn source(usage: &Use<'_>) -> Source {
    Source::Secret { annotation: usage.name.to_owned(), secret: usage.secret.to_string() }
}

/// A key's bytes; a missing or empty key is an error naming it (upstream: `key ... has no data`).
fn required<'d>(
    cx: &Cx<'_>,
    usage: &Use<'_>,
    data: &'d BTreeMap<String, Vec<u8>>,
    key: &str,
) -> Result<&'d [u8], TranslateError> {
    match data.get(key).filter(|bytes| !bytes.is_empty()) {
        Some(bytes) => Ok(bytes),
        None => {
            let keys: Vec<String> =
                data.iter().filter(|(_, bytes)| !bytes.is_empty()).map(|(k, _)| format!("`{k}`")).collect();
            let help =
                (!keys.is_empty()).then(|| format!("the secret has data under {}", ppl::suggest::join_and(&keys)));
            Err(MissingSecretKey {
                ingress: cx.label.clone(),
                user: usage.user.clone(),
                secret: usage.secret.to_string(),
                key: key.to_owned(),
                help,
            }
            .into())
        }
    }
}

/// A key's data, base64-encoded, as route field `field`.
fn base64_field(
    cx: &Cx<'_>,
    usage: &Use<'_>,
    data: &BTreeMap<String, Vec<u8>>,
    key: &str,
    field: &str,
    fields: &mut Vec<(String, Node)>,
) -> Result<(), TranslateError> {
    let bytes = required(cx, usage, data, key)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    set(fields, field, Node::string(encoded, source(usage)));
    Ok(())
}

/// A TLS Secret's `tls.crt` and `tls.key` → `tls_client_cert` and `tls_client_key`: both or
/// neither, so that a missing half is reported once, as the missing key.
fn client_certificate(
    cx: &mut Cx<'_>,
    usage: &Use<'_>,
    data: &BTreeMap<String, Vec<u8>>,
    fields: &mut Vec<(String, Node)>,
) -> Result<(), TranslateError> {
    let (cert, key) = (required(cx, usage, data, "tls.crt"), required(cx, usage, data, "tls.key"));
    match (cert, key) {
        (Ok(_), Ok(_)) => {
            base64_field(cx, usage, data, "tls.crt", "tls_client_cert", fields)?;
            base64_field(cx, usage, data, "tls.key", "tls_client_key", fields)
        }
        (Err(error), Ok(_)) | (Ok(_), Err(error)) => Err(error),
        (Err(first), Err(second)) => {
            cx.errors.push(first);
            Err(second)
        }
    }
}

fn check_type(cx: &Cx<'_>, usage: &Use<'_>, secret: &Secret, expected: &'static str) -> Result<(), TranslateError> {
    let found = secret_type(secret);
    if found == expected {
        return Ok(());
    }
    Err(WrongSecretType {
        ingress: cx.label.clone(),
        user: usage.user.clone(),
        secret: usage.secret.to_string(),
        expected,
        found: found.to_owned(),
    }
    .into())
}

fn text(cx: &Cx<'_>, usage: &Use<'_>, key: &str, bytes: &[u8]) -> Result<String, TranslateError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        let error = SecretNotUtf8 {
            ingress: cx.label.clone(),
            user: usage.user.clone(),
            secret: usage.secret.to_string(),
            key: key.to_owned(),
        };
        error.into()
    })
}

/// A service account token Secret's `token` → `kubernetes_service_account_token`.
fn token(
    cx: &Cx<'_>,
    usage: &Use<'_>,
    secret: &Secret,
    data: &BTreeMap<String, Vec<u8>>,
    fields: &mut Vec<(String, Node)>,
) -> Result<(), TranslateError> {
    check_type(cx, usage, secret, TOKEN_SECRET)?;
    let token = text(cx, usage, "token", required(cx, usage, data, "token")?)?;
    set(fields, "kubernetes_service_account_token", Node::string(token, source(usage)));
    Ok(())
}

/// An Opaque Secret's entries merged into a header map; a header the annotation also sets is an
/// error (`util.MergeMaps`).
fn headers(
    cx: &mut Cx<'_>,
    usage: &Use<'_>,
    secret: &Secret,
    data: &BTreeMap<String, Vec<u8>>,
    field: &str,
    fields: &mut Vec<(String, Node)>,
) -> Result<(), TranslateError> {
    check_type(cx, usage, secret, OPAQUE_SECRET)?;
    let position = fields.iter().position(|(k, _)| k == field);
    if position.is_none() {
        fields.push((field.to_owned(), Node { kind: NodeKind::Object(Vec::new()), source: source(usage) }));
    }
    let index = position.unwrap_or(fields.len().saturating_sub(1));
    let Some((_, Node { kind: NodeKind::Object(entries), .. })) = fields.get_mut(index) else {
        // The annotation is not a map: `config::load` reports that; there is nothing to merge into.
        return Ok(());
    };
    for (key, bytes) in data {
        if entries.iter().any(|(k, _)| k.text == *key) {
            let error = HeaderConflict {
                ingress: cx.label.clone(),
                user: usage.user.clone(),
                secret: usage.secret.to_string(),
                header: key.clone(),
                annotation: cx.annotation(field),
            };
            cx.errors.push(error.into());
            continue;
        }
        match text(cx, usage, key, bytes) {
            Ok(value) => {
                entries.push((Key { text: key.clone(), source: source(usage) }, Node::string(value, source(usage))))
            }
            Err(error) => cx.errors.push(error),
        }
    }
    Ok(())
}

fn set(fields: &mut Vec<(String, Node)>, key: &str, value: Node) {
    match fields.iter_mut().find(|(k, _)| k == key) {
        Some((_, slot)) => *slot = value,
        None => fields.push((key.to_owned(), value)),
    }
}

/// The `kubernetes.io/tls` Secrets of `spec.tls`, as certificates.
pub(crate) fn certificates(cx: &mut Cx<'_>) -> Vec<Certificate> {
    let entries = cx.ingress.spec.as_ref().and_then(|spec| spec.tls.clone()).unwrap_or_default();
    let mut certificates = Vec::new();
    for entry in entries {
        let Some(name) = entry.secret_name.filter(|n| !n.is_empty()) else { continue };
        let usage = Use { name: "", user: "`spec.tls`".to_owned(), secret: ObjectKey::new(&cx.key.namespace, &name) };
        let Some(secret) = lookup(cx, &usage) else { continue };
        match certificate(cx, &usage, secret, entry.hosts.unwrap_or_default()) {
            Ok(certificate) => certificates.push(certificate),
            Err(errors) => cx.errors.extend(errors),
        }
    }
    certificates
}

fn certificate(
    cx: &Cx<'_>,
    usage: &Use<'_>,
    secret: &Secret,
    hosts: Vec<String>,
) -> Result<Certificate, Vec<TranslateError>> {
    check_type(cx, usage, secret, TLS_SECRET).map_err(|e| vec![e])?;
    let data = secret_data(secret);
    match (required(cx, usage, &data, "tls.crt"), required(cx, usage, &data, "tls.key")) {
        (Ok(cert), Ok(key)) => {
            Ok(Certificate { secret: usage.secret.clone(), hosts, cert: cert.to_vec(), key: key.to_vec() })
        }
        (cert, key) => Err(cert.err().into_iter().chain(key.err()).collect()),
    }
}
