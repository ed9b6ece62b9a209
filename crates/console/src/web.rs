//! The web console (`/console/...`): server-rendered pages behind a Pomerium route. Sign-in is the
//! route's: the console trusts `X-Pomerium-Jwt-Assertion`, verified (ES256) against the route's
//! JWKS (`web_console_jwks_url`) with its audience the page's host, and nothing else. Without
//! `web_console_jwks_url` the pages are off.
//!
//! Pages: clusters (Manage Clusters), a cluster's status (replicas, alerts, routes, policies),
//! renaming a cluster and overriding its IP address (through the API's handler), rotating a
//! cluster's token behind a confirmation, a cluster's routes and policies (list,
//! create, edit as the API's JSON text, delete behind a confirmation; saved through the API's own
//! code path, so a refused save shows the API's diagnostics with line:column), and applying the
//! pending changeset; API tokens (names listed, never values; made, shown once; deleted). Every
//! form carries a CSRF token bound to the user and the form's path.

use crate::api::storage_failed;
use crate::state::State;
use crate::store::Kind;
use aws_lc_rs::signature;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use pages::escape;
use serde_json::{Value, json};
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
    /// Where a successful form sends the browser (303 See Other).
    pub location: Option<String>,
}

fn page(status: StatusCode, title: &str, user: &str, body: &str) -> Page {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title} · pomerium-console</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.error{{color:#b00}}.warning{{color:#a60}}.success{{color:#070}}</style></head>\
         <body><nav><a href=\"/console/\">Manage Clusters</a> · <a href=\"/console/tokens\">API Tokens</a> · signed in as {user}</nav><h1>{title}</h1>{body}</body></html>",
        title = escape(title),
        user = escape(user),
    );
    Page { status, html, location: None }
}

fn see_other(location: String) -> Page {
    Page { status: StatusCode::SEE_OTHER, html: String::new(), location: Some(location) }
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
            return Page {
                status: StatusCode::UNAUTHORIZED,
                html: format!("<!doctype html><p>{}</p>", escape(&why)),
                location: None,
            };
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
                    "<tr><td><a href=\"/console/clusters/{id}\">{}</a></td><td>{}</td><td>{replicas}</td><td><a href=\"/console/clusters/{id}/edit\">Rename / Override IP</a> · <a href=\"/console/clusters/{id}/rotate\">Rotate Token</a></td></tr>",
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
            body.push_str(&format!(
                "</ul><h2>Routes</h2><p><a href=\"/console/clusters/{0}/routes\">Manage routes</a> · <a href=\"/console/clusters/{0}/policies\">Manage policies</a></p><ul>",
                escape(id)
            ));
            for r in &routes {
                body.push_str(&format!("<li>{} — {}</li>", escape(field(r, "name")), escape(field(r, "from"))));
            }
            body.push_str("</ul><h2>Policies</h2><ul>");
            for p in &policies {
                body.push_str(&format!("<li>{}</li>", escape(field(p, "name"))));
            }
            body.push_str("</ul>");
            let fqdn = escape(field(&cluster, "fqdn"));
            body.push_str(&format!(
                "<h2>Certificate</h2><p>Routes under <code>*.{fqdn}</code> are served with the cluster's wildcard certificate from this console's CA: clients trust it through <a id=\"ca\" href=\"/api/v0/organizations/{org}/ca.pem\">the CA certificate</a>.</p>",
                org = escape(&state.org_id),
            ));
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
        ("GET", ["clusters", id, "edit"]) => {
            let cluster = live_cluster(state, id, user).await?;
            Ok(cluster_form(
                state,
                StatusCode::OK,
                user,
                segments,
                field(&cluster, "name"),
                field(&cluster, "manualOverrideIpAddress"),
                "",
            ))
        }
        ("POST", ["clusters", id, "edit"]) => {
            verify_csrf(state, user, segments, form)?;
            live_cluster(state, id, user).await?;
            let (name, ip) = (form_value(form, "name"), form_value(form, "ip"));
            let ip_value = if ip.trim().is_empty() { Value::Null } else { json!(ip.trim()) };
            let body = json!({"name": name, "manualOverrideIpAddress": ip_value}).to_string();
            let request = crate::api::Request {
                method: &Method::PUT,
                segments: Vec::new(),
                query: None,
                authorization: None,
                body: body.as_bytes(),
                source: None,
            };
            let reply = match crate::clusters::handle(state, &request, &[id]).await {
                Ok(reply) | Err(reply) => reply,
            };
            if reply.status.is_success() {
                tracing::info!(cluster = %id, %user, "cluster renamed or its IP overridden from the web console");
                return Ok(see_other("/console/".to_owned()));
            }
            Err(cluster_form(state, reply.status, user, segments, &name, &ip, &problems(&reply)))
        }
        ("POST", ["clusters", id, "apply"]) => {
            verify_csrf(state, user, segments, form)?;
            live_cluster(state, id, user).await?;
            let pending = state
                .store
                .list_where(Kind::Changeset, "namespaceId", id)
                .await
                .map_err(failed)?
                .into_iter()
                .find(|c| field(c, "status") == "pending");
            let Some(changeset) = pending else {
                return Ok(see_other(format!("/console/clusters/{id}/routes")));
            };
            let reply = match crate::api::apply_changeset(state, field(&changeset, "id")).await {
                Ok(reply) | Err(reply) => reply,
            };
            if reply.status.is_success() {
                tracing::info!(cluster = %id, %user, "changeset applied from the web console");
                return Ok(see_other(format!("/console/clusters/{id}/routes")));
            }
            let body =
                format!("{}<p><a href=\"/console/clusters/{}/routes\">Back</a></p>", problems(&reply), escape(id));
            Err(page(reply.status, "Changes Not Applied", user, &body))
        }
        ("GET", ["clusters", id, kind]) => {
            let (kind, _) = kind_of(kind, user)?;
            let cluster = live_cluster(state, id, user).await?;
            list_page(state, user, &cluster, kind).await
        }
        ("GET", ["clusters", id, kind, "new"]) => {
            let (kind, _) = kind_of(kind, user)?;
            live_cluster(state, id, user).await?;
            let template = match kind {
                Kind::Route => {
                    json!({"namespaceId": id, "name": "", "from": "https://app.example.com", "to": ["http://localhost:8080"], "policyIds": []})
                }
                _ => {
                    json!({"namespaceId": id, "name": "", "ppl": {"allow": {"and": [{"email": {"is": "user@example.com"}}]}}})
                }
            };
            let text = serde_json::to_string_pretty(&template).unwrap_or_default();
            Ok(form_page(state, StatusCode::OK, user, id, kind, segments, &text, None))
        }
        ("POST", ["clusters", id, kind_segment, "new"]) => {
            let (kind, _) = kind_of(kind_segment, user)?;
            verify_csrf(state, user, segments, form)?;
            live_cluster(state, id, user).await?;
            let text = form_value(form, "text");
            let reply = crate::api::entity(state, &Method::POST, kind, &[], text.as_bytes()).await;
            saved(state, user, id, kind, segments, &text, &reply, kind_segment)
        }
        ("GET", ["clusters", id, kind, entity_id]) => {
            let (kind, _) = kind_of(kind, user)?;
            live_cluster(state, id, user).await?;
            let mut entity = in_cluster(state, kind, id, entity_id, user).await?;
            for computed in ["id", "createdAt", "updatedAt"] {
                entity.remove(computed);
            }
            let text = serde_json::to_string_pretty(&crate::api::public(entity)).unwrap_or_default();
            Ok(form_page(state, StatusCode::OK, user, id, kind, segments, &text, None))
        }
        ("POST", ["clusters", id, kind_segment, entity_id]) => {
            let (kind, _) = kind_of(kind_segment, user)?;
            verify_csrf(state, user, segments, form)?;
            live_cluster(state, id, user).await?;
            in_cluster(state, kind, id, entity_id, user).await?;
            let text = form_value(form, "text");
            let reply = crate::api::entity(state, &Method::PUT, kind, &[entity_id], text.as_bytes()).await;
            saved(state, user, id, kind, segments, &text, &reply, kind_segment)
        }
        ("GET", ["clusters", id, kind_segment, entity_id, "delete"]) => {
            let (kind, noun) = kind_of(kind_segment, user)?;
            live_cluster(state, id, user).await?;
            let entity = in_cluster(state, kind, id, entity_id, user).await?;
            let body = format!(
                "<p>Delete the {noun} <b>{name}</b>? The cluster keeps serving it until the change is applied.</p>\
                 <form method=\"post\" action=\"/console/{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Delete</button></form>",
                name = escape(field(&entity, "name")),
                action = escape(&segments.join("/")),
                csrf = csrf(state, user, &form_action(segments)),
            );
            Ok(page(StatusCode::OK, &format!("Delete {noun}"), user, &body))
        }
        ("POST", ["clusters", id, kind_segment, entity_id, "delete"]) => {
            let (kind, noun) = kind_of(kind_segment, user)?;
            verify_csrf(state, user, segments, form)?;
            live_cluster(state, id, user).await?;
            in_cluster(state, kind, id, entity_id, user).await?;
            let reply = crate::api::entity(state, &Method::DELETE, kind, &[entity_id], b"").await;
            if reply.status.is_success() {
                tracing::info!(cluster = %id, %user, %noun, id = %entity_id, "deleted from the web console");
                return Ok(see_other(format!("/console/clusters/{}/{kind_segment}", escape(id))));
            }
            Err(page(reply.status, &format!("Delete {noun}"), user, &problems(&reply)))
        }
        ("GET", ["tokens"]) => tokens_page(state, user, StatusCode::OK, "").await,
        ("POST", ["tokens"]) => {
            verify_csrf(state, user, segments, form)?;
            let name = form_value(form, "name").trim().to_owned();
            if name.is_empty() || name.chars().count() > 100 {
                let problem = "<p class=\"error\" id=\"error\">A token needs a name of 1 to 100 characters.</p>";
                return Err(tokens_page(state, user, StatusCode::BAD_REQUEST, problem).await?);
            }
            let token = crate::auth::new_refresh_token().map_err(|_| {
                page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Error",
                    user,
                    "<p>The system random generator failed; try again.</p>",
                )
            })?;
            let id = crate::store::new_id();
            let record = json!({
                "id": id, "name": name, "tokenDigest": crate::auth::token_id(&token),
                "createdAt": crate::store::now(), "createdBy": user,
            });
            state
                .store
                .put(Kind::ApiToken, &id, record.as_object().cloned().unwrap_or_default())
                .await
                .map_err(failed)?;
            tracing::info!(%user, token = %name, "API token made from the web console");
            let body = format!(
                "<p>The new token <b>{}</b> (shown once; copy it somewhere safe; exchange it at <code>POST /api/v0/token</code>):</p><pre id=\"token\">{}</pre><p><a href=\"/console/tokens\">API Tokens</a></p>",
                escape(&name),
                escape(&token)
            );
            Ok(page(StatusCode::OK, "New API Token", user, &body))
        }
        ("POST", ["tokens", id, "delete"]) => {
            verify_csrf(state, user, segments, form)?;
            match state.store.live(Kind::ApiToken, id).await.map_err(failed)? {
                Some(_) => state.store.delete(Kind::ApiToken, id).await.map_err(failed)?,
                None => return Err(page(StatusCode::NOT_FOUND, "Not Found", user, "<p>No such token.</p>")),
            }
            tracing::info!(%user, token = %id, "API token deleted from the web console");
            Ok(see_other("/console/tokens".to_owned()))
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

/// `routes` or `policies` in a path: the kind and its noun.
fn kind_of(segment: &str, user: &str) -> Result<(Kind, &'static str), Page> {
    match segment {
        "routes" => Ok((Kind::Route, "route")),
        "policies" => Ok((Kind::Policy, "policy")),
        _ => Err(page(StatusCode::NOT_FOUND, "Not Found", user, "<p>No such page.</p>")),
    }
}

/// A form's CSRF action: its path, so a token is good for one form of one user.
fn form_action(segments: &[&str]) -> String {
    format!("form/{}", segments.join("/"))
}

fn form_value(form: &[u8], name: &str) -> String {
    url::form_urlencoded::parse(form).find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default()
}

fn verify_csrf(state: &State, user: &str, segments: &[&str], form: &[u8]) -> Result<(), Page> {
    let given = form_value(form, "csrf");
    if state.keys.verify(format!("web-csrf\n{user}\n{}", form_action(segments)).as_bytes(), &given) {
        return Ok(());
    }
    Err(page(
        StatusCode::FORBIDDEN,
        "Refused",
        user,
        "<p class=\"error\">The form expired or did not come from this console: open the page again.</p>",
    ))
}

/// The entity `entity_id` of `kind`, when it is live and in cluster `cluster_id`.
async fn in_cluster(
    state: &State,
    kind: Kind,
    cluster_id: &str,
    entity_id: &str,
    user: &str,
) -> Result<serde_json::Map<String, Value>, Page> {
    match state.store.live(kind, entity_id).await {
        Ok(Some(entity)) if field(&entity, "namespaceId") == cluster_id => Ok(entity),
        Ok(_) => Err(page(StatusCode::NOT_FOUND, "Not Found", user, "<p>No such entity in this cluster.</p>")),
        Err(_) => {
            Err(page(StatusCode::SERVICE_UNAVAILABLE, "Error", user, "<p>The console's storage failed; try again.</p>"))
        }
    }
}

/// An API answer's error and every diagnostic (code, line:column, message, help), as HTML.
fn problems(reply: &crate::api::Reply) -> String {
    let body = reply.body.clone().unwrap_or(Value::Null);
    let text = |v: &Value, k: &str| escape(v.get(k).and_then(Value::as_str).unwrap_or_default());
    let mut html = format!("<p class=\"error\" id=\"error\">{}</p>", text(&body, "error"));
    let diagnostics = body.get("diagnostics").and_then(Value::as_array).cloned().unwrap_or_default();
    if !diagnostics.is_empty() {
        html.push_str("<ul id=\"diagnostics\">");
        for d in &diagnostics {
            let at = |k: &str| d.get(k).and_then(Value::as_u64).unwrap_or(0);
            html.push_str(&format!(
                "<li class=\"{severity}\"><code>{code}</code> at {line}:{column}: {message}",
                severity = text(d, "severity"),
                code = text(d, "code"),
                line = at("line"),
                column = at("column"),
                message = text(d, "message"),
            ));
            if d.get("help").is_some() {
                html.push_str(&format!("<br>help: {}", text(d, "help")));
            }
            html.push_str("</li>");
        }
        html.push_str("</ul>");
    }
    html
}

/// The form of a route or policy: its JSON text (as the API takes it), and what refused it.
#[expect(clippy::too_many_arguments, reason = "one page's parts")]
fn form_page(
    state: &State,
    status: StatusCode,
    user: &str,
    cluster_id: &str,
    kind: Kind,
    segments: &[&str],
    text: &str,
    refused: Option<&crate::api::Reply>,
) -> Page {
    let noun = if kind == Kind::Route { "route" } else { "policy" };
    let title = if segments.last() == Some(&"new") { format!("New {noun}") } else { format!("Edit {noun}") };
    let body = format!(
        "{problems}<p>The {noun} as JSON, as the API takes it, or the same as YAML (Zero's field names{ppl}).</p>\
         <form method=\"post\" action=\"/console/{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <textarea name=\"text\" id=\"text\" rows=\"20\" cols=\"100\" spellcheck=\"false\">{text}</textarea><br>\
         <button type=\"submit\" id=\"save\">Save</button> <a href=\"/console/clusters/{cluster}/{list}\">Cancel</a></form>",
        problems = refused.map(problems).unwrap_or_default(),
        ppl = if kind == Kind::Policy { "; the rule in `ppl`" } else { "" },
        action = escape(&segments.join("/")),
        csrf = csrf(state, user, &form_action(segments)),
        text = escape(text),
        cluster = escape(cluster_id),
        list = if kind == Kind::Route { "routes" } else { "policies" },
    );
    page(status, &title, user, &body)
}

/// After a save through the API: to the list when it was accepted, else the form again with the
/// text as sent and the API's diagnostics.
#[expect(clippy::too_many_arguments, reason = "one page's parts")]
fn saved(
    state: &State,
    user: &str,
    cluster_id: &str,
    kind: Kind,
    segments: &[&str],
    text: &str,
    reply: &crate::api::Reply,
    list: &str,
) -> Result<Page, Page> {
    if reply.status.is_success() {
        tracing::info!(cluster = %cluster_id, %user, kind = kind.name(), "saved from the web console");
        return Ok(see_other(format!("/console/clusters/{}/{list}", escape(cluster_id))));
    }
    Err(form_page(state, reply.status, user, cluster_id, kind, segments, text, Some(reply)))
}

/// A cluster's routes or policies, with the pending changeset's Apply button when the cluster
/// does not apply changes at once.
async fn list_page(
    state: &State,
    user: &str,
    cluster: &serde_json::Map<String, Value>,
    kind: Kind,
) -> Result<Page, Page> {
    let failed =
        |_| page(StatusCode::SERVICE_UNAVAILABLE, "Error", user, "<p>The console's storage failed; try again.</p>");
    let id = field(cluster, "id");
    let (segment, noun, title) =
        if kind == Kind::Route { ("routes", "route", "Routes") } else { ("policies", "policy", "Policies") };
    let entities = state.store.list_where(kind, "namespaceId", id).await.map_err(failed)?;
    let mut body = format!(
        "<p>Cluster <a href=\"/console/clusters/{id}\">{name}</a> · <a href=\"/console/clusters/{id}/routes\">Routes</a> · \
         <a href=\"/console/clusters/{id}/policies\">Policies</a></p>",
        id = escape(id),
        name = escape(field(cluster, "name")),
    );
    let settings = state.store.live(Kind::Settings, id).await.map_err(failed)?.unwrap_or_default();
    let auto_apply = settings.get("autoApplyChangesets").and_then(Value::as_bool) == Some(true);
    let changesets = state.store.list_where(Kind::Changeset, "namespaceId", id).await.map_err(failed)?;
    if !auto_apply && changesets.iter().any(|c| field(c, "status") == "pending") {
        let segments = ["clusters", id, "apply"];
        body.push_str(&format!(
            "<form method=\"post\" action=\"/console/clusters/{id}/apply\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             Changes not yet on the cluster: <button type=\"submit\" id=\"apply\">Apply changes</button></form>",
            id = escape(id),
            csrf = csrf(state, user, &form_action(&segments)),
        ));
    }
    body.push_str(&format!("<table id=\"{segment}\"><tr><th>Name</th>"));
    if kind == Kind::Route {
        body.push_str("<th>From</th><th>To</th>");
    }
    body.push_str("<th>Actions</th></tr>");
    for entity in &entities {
        let entity_id = escape(field(entity, "id"));
        body.push_str(&format!("<tr><td>{}</td>", escape(field(entity, "name"))));
        if kind == Kind::Route {
            let to = entity.get("to").map(|v| v.to_string()).unwrap_or_default();
            body.push_str(&format!("<td>{}</td><td>{}</td>", escape(field(entity, "from")), escape(&to)));
        }
        body.push_str(&format!(
            "<td><a href=\"/console/clusters/{id}/{segment}/{entity_id}\">Edit</a> · \
             <a href=\"/console/clusters/{id}/{segment}/{entity_id}/delete\">Delete</a></td></tr>",
            id = escape(id),
        ));
    }
    body.push_str(&format!(
        "</table><p><a href=\"/console/clusters/{id}/{segment}/new\" id=\"new\">New {noun}</a></p>",
        id = escape(id)
    ));
    Ok(page(StatusCode::OK, title, user, &body))
}

/// The API tokens: their names (never their values), a form to make one, a Delete button for
/// each made here (those of the configuration file stay there).
async fn tokens_page(state: &State, user: &str, status: StatusCode, problem: &str) -> Result<Page, Page> {
    let stored = state.store.list(Kind::ApiToken).await.map_err(|_| {
        page(StatusCode::SERVICE_UNAVAILABLE, "Error", user, "<p>The console's storage failed; try again.</p>")
    })?;
    let mut body = format!("{problem}<table id=\"tokens\"><tr><th>Name</th><th>Made</th><th>Actions</th></tr>");
    for token in &state.settings.api_tokens {
        body.push_str(&format!(
            "<tr><td>{}</td><td>in the configuration file (<code>api_tokens</code>)</td><td></td></tr>",
            escape(&token.name)
        ));
    }
    for token in &stored {
        let id = field(token, "id");
        body.push_str(&format!(
            "<tr><td>{name}</td><td>{at} by {by}</td><td><form method=\"post\" action=\"/console/tokens/{id}/delete\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Delete</button></form></td></tr>",
            name = escape(field(token, "name")),
            at = escape(field(token, "createdAt")),
            by = escape(field(token, "createdBy")),
            csrf = csrf(state, user, &form_action(&["tokens", id, "delete"])),
            id = escape(id),
        ));
    }
    body.push_str(&format!(
        "</table><h2>New token</h2><form method=\"post\" action=\"/console/tokens\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         Name <input name=\"name\" id=\"name\"> <button type=\"submit\">Create</button></form>",
        csrf(state, user, &form_action(&["tokens"]))
    ));
    Ok(page(status, "API Tokens", user, &body))
}

/// Rename a cluster, override its IP address (empty: the override removed).
fn cluster_form(
    state: &State,
    status: StatusCode,
    user: &str,
    segments: &[&str],
    name: &str,
    ip: &str,
    problem: &str,
) -> Page {
    let body = format!(
        "{problem}<form method=\"post\" action=\"/console/{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p>Name <input name=\"name\" value=\"{name}\"></p><p>Override IP address (empty: none) <input name=\"ip\" value=\"{ip}\"></p>\
         <button type=\"submit\">Save</button></form>",
        action = escape(&segments.join("/")),
        csrf = csrf(state, user, &form_action(segments)),
        name = escape(name),
        ip = escape(ip),
    );
    page(status, "Rename / Override IP", user, &body)
}
