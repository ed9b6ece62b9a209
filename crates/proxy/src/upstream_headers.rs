//! What an allowed request carries upstream, built in one place for every path: the pipeline
//! deciding in process, the authorize service answering a proxy or an Envoy (`Check`), and the
//! benchmark entry. Split mode stays identical to all-in-one because the authorize service sends
//! the proxy exactly what [`build`] made, and the proxy applies it with [`apply`].
//!
//! **Precedence** (Pomerium's: its authorize service's `headersEvaluatorEvaluation.fillHeaders`
//! adds the identity headers, then the Kubernetes ones, then `set_request_headers`, to one
//! `http.Header`, and `toEnvoyHeaders` sends each name once with its values joined by `,`; Envoy
//! strips the client's credentials and impersonation headers before, and the route's
//! `request_headers_to_remove` after):
//!
//! 1. **strip** what a client may not send: the `_pomerium` cookie, `Authorization: Pomerium …`
//!    (or `Bearer Pomerium-…`), `X-Pomerium-Authorization`, on a route that passes identity the
//!    assertion and claim headers, and on a Kubernetes route every `Impersonate-*` header;
//! 2. **set**, replacing what the client sent: on a route with `pass_identity_headers`,
//!    `X-Pomerium-Jwt-Assertion` and the `X-Pomerium-Claim-*` headers; on a route with
//!    `kubernetes_service_account_token`, `Authorization: Bearer <token>`, `Impersonate-User` and
//!    `Impersonate-Group`; then every `set_request_headers` template. A template that names a
//!    header identity already set does not replace it: its value is joined after identity's,
//!    `identity,template`, as Pomerium sends it;
//! 3. **remove** the route's `remove_request_headers` (and, on a route that does not pass
//!    identity, the assertion and claim headers; never a header `set_request_headers` names).

use crate::authn::{self, identity::Identity};
use crate::runtime::RouteRuntime;
use crate::templates::Values;
use crate::tls::ClientCertificate;
use http::header::{self, HeaderValue};
use http::{HeaderMap, HeaderName};

/// The headers an allowed request gets upstream, in the documented precedence (identity, then
/// Kubernetes, then `set_request_headers`; one value per name, joined by `,` where several set
/// it). `request` is the client's request headers as they arrived (templates read them);
/// `identity` is the allowed outcome's.
pub(crate) fn build(
    settings: &authn::AuthnSettings,
    route: &RouteRuntime,
    request: &HeaderMap,
    certificate: Option<&ClientCertificate>,
    identity: Option<&Identity>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut set: Vec<(HeaderName, HeaderValue)> = match identity {
        Some(identity) => identity_headers(settings, route, identity),
        None => Vec::new(),
    };
    let values = TemplateValues { headers: request, certificate, identity };
    for (name, template) in &route.set_request_headers {
        let Ok(value) = HeaderValue::from_str(&template.render(&values)) else { continue };
        match set.iter_mut().find(|(set_name, _)| set_name == name) {
            Some((_, first)) => {
                let mut joined = first.as_bytes().to_vec();
                joined.push(b',');
                joined.extend_from_slice(value.as_bytes());
                if let Ok(joined) = HeaderValue::from_bytes(&joined) {
                    *first = joined;
                }
            }
            None => set.push((name.clone(), value)),
        }
    }
    set
}

/// Applies what [`build`] made (here or on the authorize service) to the request going upstream:
/// strips what the client may not send, sets `set` over the client's headers, removes the route's
/// `remove_request_headers`.
pub(crate) fn apply(
    headers: &mut HeaderMap,
    route: &RouteRuntime,
    cookie_name: &str,
    set: &[(HeaderName, HeaderValue)],
) {
    strip_pomerium_credentials(headers, cookie_name);
    for name in &route.forged_identity_headers {
        headers.remove(name);
    }
    if route.kubernetes_authorization.is_some() {
        remove_impersonation_headers(headers);
    }
    for (name, value) in set {
        headers.insert(name, value.clone());
    }
    for name in &route.remove_request_headers {
        headers.remove(name);
    }
}

/// Whether a header template reads the request's identity.
pub(crate) fn reads_identity(template: &crate::templates::HeaderTemplate) -> bool {
    template.references().any(
        |path| matches!(path, [a, b] if a == "pomerium" && matches!(b.as_str(), "jwt" | "id_token" | "access_token")),
    )
}

/// Whether a header template reads the session's tokens (not just the assertion).
pub(crate) fn reads_tokens(template: &crate::templates::HeaderTemplate) -> bool {
    template
        .references()
        .any(|path| matches!(path, [a, b] if a == "pomerium" && matches!(b.as_str(), "id_token" | "access_token")))
}

/// The values `set_request_headers` templates can read.
struct TemplateValues<'a> {
    headers: &'a HeaderMap,
    certificate: Option<&'a ClientCertificate>,
    identity: Option<&'a Identity>,
}

impl Values for TemplateValues<'_> {
    fn lookup(&self, path: &[String]) -> Option<String> {
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        let leaf = || {
            self.certificate
                .and_then(ClientCertificate::leaf)
                .and_then(|der| policy::crypto::CertificateFacts::from_der(der.as_ref()))
        };
        match names.as_slice() {
            ["pomerium", "request", "headers", name] => {
                self.headers.get(*name).and_then(|v| v.to_str().ok()).map(str::to_owned)
            }
            ["pomerium", "client_cert_fingerprint"] => {
                leaf().map(|facts| facts.fingerprint.iter().map(|b| format!("{b:02x}")).collect())
            }
            ["pomerium", "client_cert_san_dns"] => leaf().map(|facts| facts.san_dns.join(",")),
            ["pomerium", "client_cert_san_email"] => leaf().map(|facts| facts.san_emails.join(",")),
            ["pomerium", "jwt"] => self.identity.map(|i| i.jwt.to_string()),
            ["pomerium", "id_token"] => self.identity.and_then(|i| i.id_token.clone()),
            ["pomerium", "access_token"] => self.identity.and_then(|i| i.access_token.clone()),
            _ => None,
        }
    }
}

/// The headers an allowed request carries upstream because of who sent it: on a route that
/// passes identity, `X-Pomerium-Jwt-Assertion` and the `X-Pomerium-Claim-*` headers (system.md
/// §3.6, §3.7); on a route to a Kubernetes API server, its service account token and the user and
/// groups to impersonate (`fillKubernetesHeaders`).
fn identity_headers(
    settings: &authn::AuthnSettings,
    route: &RouteRuntime,
    identity: &Identity,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if route.passes_identity {
        out.push((HeaderName::from_static("x-pomerium-jwt-assertion"), identity.header.clone()));
        for (name, value) in authn::identity::claim_headers(settings, identity) {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
                out.push((name, value));
            }
        }
    }
    if let Some(token) = &route.kubernetes_authorization {
        out.push((header::AUTHORIZATION, token.authorization()));
        let email = identity.claims.get("email").and_then(serde_json::Value::as_str).unwrap_or_default();
        let groups: Vec<&str> = identity
            .claims
            .get("groups")
            .and_then(serde_json::Value::as_array)
            .map(|groups| groups.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        for (name, value) in [("impersonate-user", email.to_owned()), ("impersonate-group", groups.join(","))] {
            if value.is_empty() {
                continue;
            }
            if let Ok(value) = HeaderValue::from_str(&value) {
                out.push((HeaderName::from_static(name), value));
            }
        }
    }
    out
}

/// Removes the impersonation headers a client sent (Pomerium's `remove-impersonate-headers.lua`):
/// on a route to a Kubernetes API server only Pomerium says whom to impersonate.
fn remove_impersonation_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name == "impersonate-user" || name == "impersonate-group" || name.starts_with("impersonate-extra-")
        })
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

const X_POMERIUM_AUTHORIZATION: HeaderName = HeaderName::from_static("x-pomerium-authorization");

/// Pomerium's `clean-upstream` filter: the session cookie and Pomerium's own authorization
/// headers are for the proxy, never for the upstream.
fn strip_pomerium_credentials(headers: &mut HeaderMap, cookie_name: &str) {
    headers.remove(X_POMERIUM_AUTHORIZATION);
    let is_pomerium = |value: &HeaderValue| {
        value.to_str().is_ok_and(|v| {
            let v = v.trim_start();
            v.get(..9).is_some_and(|p| p.eq_ignore_ascii_case("pomerium ")) || v.starts_with("Bearer Pomerium-")
        })
    };
    if headers.get(header::AUTHORIZATION).is_some_and(is_pomerium) {
        headers.remove(header::AUTHORIZATION);
    }
    let cookies: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(header::COOKIE);
    for cookie in cookies {
        let Ok(text) = cookie.to_str() else {
            headers.append(header::COOKIE, cookie);
            continue;
        };
        let kept: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|pair| !pair.is_empty() && pair.split('=').next().map(str::trim) != Some(cookie_name))
            .collect();
        if let Ok(value) = HeaderValue::from_str(&kept.join("; "))
            && !kept.is_empty()
        {
            headers.append(header::COOKIE, value);
        }
    }
}

#[cfg(test)]
mod credential_tests {
    use super::*;

    #[test]
    fn pomerium_credentials_do_not_go_upstream() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; _pomerium=secret; b=2"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Pomerium abc"));
        headers.insert("x-pomerium-authorization", HeaderValue::from_static("abc"));
        strip_pomerium_credentials(&mut headers, "_pomerium");
        assert_eq!(headers.get(header::COOKIE).map(|v| v.to_str().ok()), Some(Some("a=1; b=2")));
        assert!(headers.get(header::AUTHORIZATION).is_none());
        assert!(headers.get("x-pomerium-authorization").is_none());

        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("_pomerium=only"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer upstream-token"));
        strip_pomerium_credentials(&mut headers, "_pomerium");
        assert!(headers.get(header::COOKIE).is_none());
        assert!(headers.get(header::AUTHORIZATION).is_some(), "other bearer tokens are the upstream's");
    }
}
