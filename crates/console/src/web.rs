//! The web console (`/console/...`): server-rendered pages behind a Pomerium route. Sign-in is the
//! route's: the console trusts `X-Pomerium-Jwt-Assertion`, verified (ES256) against the route's
//! JWKS (`web_console_jwks_url`) with its audience the page's host, and nothing else. Without
//! `web_console_jwks_url` the pages are off.
//!
//! Pages: clusters (Manage Clusters), a cluster's status (replicas, alerts, routes, policies),
//! and rotating a cluster's token behind a confirmation (a form with a CSRF token bound to the
//! user).

use crate::api::storage_failed;
use crate::state::State;
use crate::store::Kind;
use aws_lc_rs::signature;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// The JWKS is fetched again for an unknown key id at most this often.
const JWKS_REFRESH: Duration = Duration::from_secs(10);
/// A JWKS fetch must answer within this.
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest JWKS read.
const JWKS_LIMIT: usize = 256 * 1024;
/// Clock skew allowed on `exp`.
const LEEWAY_SECONDS: i64 = 60;

/// A key of the route's JWKS: its id and its uncompressed P-256 point.
type Key = (String, Vec<u8>);

/// The JWKS of the route in front, cached (with when it was fetched).
#[derive(Debug, Default)]
pub struct Jwks {
    keys: Mutex<(Vec<Key>, Option<Instant>)>,
}

impl Jwks {
    fn find(&self, kid: &str) -> Option<Vec<u8>> {
        let cached = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cached.0.iter().find(|(id, _)| id == kid).map(|(_, key)| key.clone())
    }

    async fn key(&self, url: &str, kid: &str) -> Result<Vec<u8>, String> {
        if let Some(key) = self.find(kid) {
            return Ok(key);
        }
        let fetched_recently = {
            let cached = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            cached.1.is_some_and(|at| at.elapsed() < JWKS_REFRESH)
        };
        if !fetched_recently {
            let keys = fetch_jwks(url).await;
            let mut cached = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            cached.1 = Some(Instant::now());
            cached.0 = keys?;
        }
        self.find(kid).ok_or_else(|| format!("the assertion's key `{kid}` is not in the route's JWKS"))
    }
}

/// `{"keys": [{kty: EC, crv: P-256, kid, x, y}]}` → (kid, uncompressed point).
async fn fetch_jwks(url: &str) -> Result<Vec<Key>, String> {
    use http_body_util::BodyExt as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(proxy::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Full<Bytes>>(connector);
    let uri: http::Uri = url.parse().map_err(|e| format!("`web_console_jwks_url`: {e}"))?;
    let response = tokio::time::timeout(JWKS_TIMEOUT, client.get(uri))
        .await
        .map_err(|_| "the route's JWKS did not answer in time".to_owned())?
        .map_err(|e| format!("cannot fetch the route's JWKS: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("the route's JWKS answered {}", response.status()));
    }
    let body =
        tokio::time::timeout(JWKS_TIMEOUT, http_body_util::Limited::new(response.into_body(), JWKS_LIMIT).collect())
            .await
            .map_err(|_| "the route's JWKS did not arrive in time".to_owned())?
            .map_err(|e| format!("reading the route's JWKS: {e}"))?
            .to_bytes();
    let document: Value = serde_json::from_slice(&body).map_err(|e| format!("the route's JWKS is not JSON: {e}"))?;
    let keys = document.get("keys").and_then(Value::as_array).ok_or("the route's JWKS has no `keys`")?;
    Ok(keys
        .iter()
        .filter(|k| {
            k.get("kty").and_then(Value::as_str) == Some("EC") && k.get("crv").and_then(Value::as_str) == Some("P-256")
        })
        .filter_map(|k| {
            let kid = k.get("kid").and_then(Value::as_str)?.to_owned();
            let x = B64.decode(k.get("x").and_then(Value::as_str)?).ok()?;
            let y = B64.decode(k.get("y").and_then(Value::as_str)?).ok()?;
            let mut point = vec![4u8];
            point.extend(x);
            point.extend(y);
            Some((kid, point))
        })
        .collect())
}

/// The signed-in user (the assertion's `email`, else `sub`), or why not.
pub async fn user(state: &State, assertion: Option<&str>, host: &str) -> Result<String, String> {
    let Some(url) = &state.settings.web_console_jwks_url else {
        return Err(
            "the web console is off: set `web_console_jwks_url` to the JWKS of the Pomerium route in front of it"
                .to_owned(),
        );
    };
    let token = assertion.ok_or("no X-Pomerium-Jwt-Assertion: open the console through its Pomerium route")?;
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature_part), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the assertion is not a JWT".to_owned());
    };
    let header: Value =
        serde_json::from_slice(&B64.decode(header).map_err(|_| "the assertion's header is not base64url")?)
            .map_err(|_| "the assertion's header is not JSON")?;
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err("the assertion is not ES256".to_owned());
    }
    let kid = header.get("kid").and_then(Value::as_str).ok_or("the assertion has no `kid`")?;
    let key = state.jwks.key(url, kid).await?;
    let signed = token.len() - signature_part.len() - 1;
    let message = token.get(..signed).ok_or("the assertion is not a JWT")?;
    let signature_bytes = B64.decode(signature_part).map_err(|_| "the assertion's signature is not base64url")?;
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key)
        .verify(message.as_bytes(), &signature_bytes)
        .map_err(|_| "the assertion's signature does not verify against the route's JWKS")?;
    let claims: Value =
        serde_json::from_slice(&B64.decode(claims).map_err(|_| "the assertion's claims are not base64url")?)
            .map_err(|_| "the assertion's claims are not JSON")?;
    let now = jiff::Timestamp::now().as_second();
    if claims.get("exp").and_then(Value::as_i64).is_none_or(|exp| exp + LEEWAY_SECONDS < now) {
        return Err("the assertion expired".to_owned());
    }
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud.eq_ignore_ascii_case(name),
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str().is_some_and(|a| a.eq_ignore_ascii_case(name))),
        _ => false,
    };
    if !audience_ok {
        return Err(format!("the assertion is not for `{name}`"));
    }
    claims
        .get("email")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .or_else(|| claims.get("sub").and_then(Value::as_str))
        .map(str::to_owned)
        .ok_or_else(|| "the assertion names no user".to_owned())
}

/// A page: status and HTML.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub html: String,
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, user: &str, body: &str) -> Page {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title} · pomerium-console</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.error{{color:#b00}}.warning{{color:#a60}}.success{{color:#070}}</style></head>\
         <body><nav><a href=\"/console/\">Manage Clusters</a> · signed in as {user}</nav><h1>{title}</h1>{body}</body></html>",
        title = escape(title),
        user = escape(user),
    );
    Page { status, html }
}

fn csrf(state: &State, user: &str, action: &str) -> String {
    state.keys.sign(format!("web-csrf\n{user}\n{action}").as_bytes())
}

fn field<'a>(map: &'a serde_json::Map<String, Value>, name: &str) -> &'a str {
    map.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// Answers a page under `/console/`.
pub async fn handle(
    state: &State,
    method: &Method,
    segments: &[&str],
    assertion: Option<&str>,
    host: &str,
    form: &[u8],
) -> Page {
    let user = match user(state, assertion, host).await {
        Ok(user) => user,
        Err(why) => {
            tracing::info!(reason = %why, "web console: refused");
            return Page { status: StatusCode::UNAUTHORIZED, html: format!("<!doctype html><p>{}</p>", escape(&why)) };
        }
    };
    match render(state, method, segments, &user, form).await {
        Ok(page) | Err(page) => page,
    }
}

async fn render(state: &State, method: &Method, segments: &[&str], user: &str, form: &[u8]) -> Result<Page, Page> {
    let failed = |e| {
        let reply = storage_failed(e);
        page(reply.status, "Error", user, "<p class=\"error\">The console's storage failed; try again.</p>")
    };
    match (method.as_str(), segments) {
        ("GET", []) => {
            let clusters = state.store.list(Kind::Cluster).await.map_err(failed)?;
            let mut rows = String::new();
            for cluster in &clusters {
                let id = field(cluster, "id");
                let replicas = crate::clusters::replicas(state, id).await.map(|r| r.len()).unwrap_or(0);
                rows.push_str(&format!(
                    "<tr><td><a href=\"/console/clusters/{id}\">{}</a></td><td>{}</td><td>{replicas}</td><td><a href=\"/console/clusters/{id}/rotate\">Rotate Token</a></td></tr>",
                    escape(field(cluster, "name")),
                    escape(field(cluster, "fqdn")),
                    id = escape(id),
                ));
            }
            let body = format!(
                "<table><tr><th>Cluster</th><th>Domain</th><th>Replicas</th><th>Actions</th></tr>{rows}</table>"
            );
            Ok(page(StatusCode::OK, "Manage Clusters", user, &body))
        }
        ("GET", ["clusters", id]) => {
            let cluster = live_cluster(state, id, user).await?;
            let replicas = crate::clusters::replicas(state, id).await.unwrap_or_default();
            let alerts = crate::clusters::health(state, id).await.unwrap_or_default();
            let routes = state.store.list_where(Kind::Route, "namespaceId", id).await.map_err(failed)?;
            let policies = state.store.list_where(Kind::Policy, "namespaceId", id).await.map_err(failed)?;
            let text = |v: &Value, k: &str| escape(v.get(k).and_then(Value::as_str).unwrap_or_default());
            let mut body =
                String::from("<h2>Replicas</h2><table><tr><th>Hostname</th><th>Version</th><th>Last seen</th></tr>");
            for r in &replicas {
                body.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    text(r, "hostname"),
                    text(r, "version"),
                    text(r, "updatedAt")
                ));
            }
            body.push_str("</table><h2>Status</h2><ul>");
            for a in &alerts {
                body.push_str(&format!(
                    "<li class=\"{}\"><b>{}</b>: {}</li>",
                    text(a, "status"),
                    text(a, "id"),
                    text(a, "description")
                ));
            }
            body.push_str("</ul><h2>Routes</h2><ul>");
            for r in &routes {
                body.push_str(&format!("<li>{} — {}</li>", escape(field(r, "name")), escape(field(r, "from"))));
            }
            body.push_str("</ul><h2>Policies</h2><ul>");
            for p in &policies {
                body.push_str(&format!("<li>{}</li>", escape(field(p, "name"))));
            }
            body.push_str("</ul>");
            Ok(page(StatusCode::OK, field(&cluster, "name"), user, &body))
        }
        ("GET", ["clusters", id, "rotate"]) => {
            let cluster = live_cluster(state, id, user).await?;
            let body = format!(
                "<p>Rotating the token of <b>{name}</b> invalidates the current token and <b>shuts the cluster down</b>: its replicas exit until they are restarted with the new token.</p>\
                 <form method=\"post\" action=\"/console/clusters/{id}/rotate\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Confirm</button></form>",
                name = escape(field(&cluster, "name")),
                id = escape(id),
                csrf = csrf(state, user, &format!("rotate/{id}")),
            );
            Ok(page(StatusCode::OK, "Rotate Token", user, &body))
        }
        ("POST", ["clusters", id, "rotate"]) => {
            let given: String = url::form_urlencoded::parse(form)
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            if !state.keys.verify(format!("web-csrf\n{user}\nrotate/{id}").as_bytes(), &given) {
                return Err(page(
                    StatusCode::FORBIDDEN,
                    "Rotate Token",
                    user,
                    "<p class=\"error\">The form expired or did not come from this console: open Rotate Token again.</p>",
                ));
            }
            let mut cluster = live_cluster(state, id, user).await?;
            let token = crate::clusters::rotate(state, id, &mut cluster).await.map_err(|reply| {
                page(
                    reply.status,
                    "Rotate Token",
                    user,
                    "<p class=\"error\">The token could not be rotated; try again.</p>",
                )
            })?;
            tracing::info!(cluster = %id, %user, "cluster token rotated from the web console");
            let body = format!(
                "<p>The new token of <b>{}</b> (shown once; copy it somewhere safe):</p><pre id=\"token\">{}</pre>",
                escape(field(&cluster, "name")),
                escape(&token)
            );
            Ok(page(StatusCode::OK, "New Cluster Token", user, &body))
        }
        _ => Err(page(StatusCode::NOT_FOUND, "Not Found", user, "<p>No such page.</p>")),
    }
}

async fn live_cluster(state: &State, id: &str, user: &str) -> Result<serde_json::Map<String, Value>, Page> {
    match state.store.live(Kind::Cluster, id).await {
        Ok(Some(cluster)) => Ok(cluster),
        Ok(None) => Err(page(StatusCode::NOT_FOUND, "Not Found", user, "<p>No such cluster.</p>")),
        Err(_) => {
            Err(page(StatusCode::SERVICE_UNAVAILABLE, "Error", user, "<p>The console's storage failed; try again.</p>"))
        }
    }
}
