//! The control-plane endpoints of system.md §3.1, as the stateful code flow of §3.3 runs them.
//!
//! On the authenticate host: `/.pomerium/sign_in`, the IdP callback (`/oauth2/callback`),
//! `/.pomerium/sign_out`, `/.pomerium/signed_out`, `/.pomerium/`, the development IdP's pages,
//! `/robots.txt`. On every route host: `/.pomerium/`, `/.pomerium/callback/`,
//! `/.pomerium/sign_out`, `/.pomerium/user`, `/.pomerium/jwt`, `/.pomerium/api/v1/login`. On
//! both: `/.well-known/pomerium` and its `jwks.json`.
//!
//! Every refusal writes nothing: the databroker is written only after the state, the CSRF
//! token, the code exchange and the ID token have all been checked. Every redirect target is
//! either signed by us or checked against the hosts this deployment serves.

use crate::refusal::Refusal;
use crate::{SignInState, stateless};
use authenticate::handle::SessionHandle;
use authenticate::session::{StoredSession, StoredUser};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use oidc::ProviderSettings;
use proxy::authn::endpoints::ControlRequest;
use proxy::authn::identity::{AssertionCache, Identity};
use proxy::authn::session::{self, Overlay};
use proxy::authn::{AuthnSettings, SignIn, pages};
use proxy::body::{self, ProxyBody};
use proxy::error::ErrorPage;
use proxy::runtime::SharedRecords;
use url::Url;

/// Everything an endpoint may need.
pub(crate) struct Context<'a> {
    pub settings: &'a AuthnSettings,
    pub authn: &'a SignInState,
    /// This configuration's sign-in (what finds a request's session).
    pub sign_in: &'a dyn SignIn,
    /// This configuration's identity provider; `None` when none is configured.
    pub provider: Option<&'a ProviderSettings>,
    pub assertions: &'a AssertionCache,
    pub records: &'a SharedRecords,
    pub now: i64,
}

/// Answers a control-plane request (`is_endpoint` said yes).
pub(crate) async fn handle(cx: &Context<'_>, request: &ControlRequest<'_>, callback_path: &str) -> Response<ProxyBody> {
    let path = request.url.path();
    match path {
        "/.well-known/pomerium" => return well_known(cx.settings, request),
        "/.well-known/pomerium/jwks.json" => return jwks(cx.settings, request.headers),
        proxy::authn::HPKE_KEY_PATH => return stateless::public_key_response(cx.settings, request),
        p if p.starts_with("/.well-known/pomerium") => return not_found(request),
        _ => {}
    }
    if is_cross_site_change(cx.settings, request, callback_path) {
        return Refusal::CrossSite.respond(request);
    }
    if cx.settings.serves_authenticate && cx.settings.is_authenticate_host(request.hostname) {
        return match path {
            "/" => redirect(cx.settings.authenticate_path("/.pomerium/").as_str()),
            "/robots.txt" => text(StatusCode::OK, "text/plain; charset=utf-8", "User-agent: *\nDisallow: /\n"),
            "/.pomerium/sign_in" => sign_in(cx, request).await,
            "/.pomerium/sign_out" => sign_out_authenticate(cx, request).await,
            "/.pomerium/signed_out" => html(StatusCode::OK, pages::signed_out()),
            "/.pomerium/" => user_info(cx, request, &cx.settings.authenticate_cookie()).await,
            p if p == callback_path => oauth_callback(cx, request).await,
            p if p.starts_with(DEV_IDP) => development_idp(cx, request).await,
            _ => not_found(request),
        };
    }
    match path {
        "/.pomerium/" => user_info(cx, request, &cx.settings.cookie_name).await,
        "/.pomerium/callback/" if cx.settings.stateless => stateless::route_callback(cx, request).await,
        "/.pomerium/callback/" => route_callback(cx, request),
        "/.pomerium/sign_out" => sign_out_route(cx, request).await,
        "/.pomerium/user" => user_claims(cx, request).await,
        "/.pomerium/jwt" if cx.settings.jwt_endpoint => raw_assertion(cx, request).await,
        "/.pomerium/api/v1/login" => programmatic_login(cx, request).await,
        _ => not_found(request),
    }
}

const DEV_IDP: &str = "/.pomerium/dev-idp";

/// A state-changing request (any method but GET, HEAD and OPTIONS) that a browser sent from a
/// page of another site: its `Origin` is not a host this configuration serves, or is `null` (a
/// sandboxed frame, a redirect across sites, a `data:` page), or, without an `Origin`, the
/// browser says `Sec-Fetch-Site: cross-site`. A request with neither is not a browser's and
/// carries no ambient cookie by accident. The identity provider's `form_post` answer to the
/// OAuth callback is cross-site by design, and its state and CSRF cookie protect it.
fn is_cross_site_change(settings: &AuthnSettings, request: &ControlRequest<'_>, callback_path: &str) -> bool {
    if [Method::GET, Method::HEAD, Method::OPTIONS].contains(request.method) {
        return false;
    }
    if request.url.path() == callback_path && settings.is_authenticate_host(request.hostname) {
        return false;
    }
    let header = |name: http::HeaderName| request.headers.get(name).map(|v| v.to_str().unwrap_or("null"));
    match header(header::ORIGIN) {
        Some(origin) => origin == "null" || Url::parse(origin).map_or(true, |url| !settings.is_own_url(&url)),
        None => header(http::HeaderName::from_static("sec-fetch-site")) == Some("cross-site"),
    }
}

// ---- responses

pub(crate) fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html(status: StatusCode, page: String) -> Response<ProxyBody> {
    text(status, "text/html; charset=utf-8", page)
}

pub(crate) fn redirect(location: &str) -> Response<ProxyBody> {
    let mut response = text(StatusCode::FOUND, "text/plain; charset=utf-8", Bytes::new());
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn not_found(request: &ControlRequest<'_>) -> Response<ProxyBody> {
    ErrorPage::new(StatusCode::NOT_FOUND, request.request_id).render_as(request.format)
}

pub(crate) fn add_cookies(response: &mut Response<ProxyBody>, cookies: impl IntoIterator<Item = HeaderValue>) {
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn form_param(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn unix(now: i64) -> u64 {
    u64::try_from(now).unwrap_or_default()
}

/// The cookie for the short-lived sign-in state (CSRF token, PKCE verifier), host-only and
/// `SameSite=Lax`, so that the IdP's top-level redirect back carries it whatever
/// `cookie_same_site` says.
fn flow_cookie_settings(lifetime: std::time::Duration) -> authenticate::cookie::CookieSettings {
    authenticate::cookie::CookieSettings {
        domain: None,
        http_only: true,
        same_site: Some(authenticate::cookie::SameSite::Lax),
        expire: lifetime,
    }
}

/// The authenticate host's own session cookie is host-only too.
fn authenticate_cookie_settings(settings: &AuthnSettings) -> authenticate::cookie::CookieSettings {
    authenticate::cookie::CookieSettings { domain: None, ..settings.cookie.clone() }
}

/// The nonce sent to the IdP, bound to the state it travels with: the callback recomputes it
/// from the state it receives, so no server-side storage is needed.
fn nonce_for(state: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, state.as_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, digest.as_ref())
}

fn is_xhr(headers: &HeaderMap) -> bool {
    headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"))
}

/// Whether a redirect after sign-in may go to `url`: a host we serve, or, for a programmatic
/// login, a host of `programmatic_redirect_domain_whitelist`.
pub(crate) fn allowed_redirect(settings: &AuthnSettings, url: &Url, programmatic: bool) -> bool {
    settings.is_own_url(url) || (programmatic && is_programmatic_target(settings, url))
}

fn is_programmatic_target(settings: &AuthnSettings, url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|host| settings.programmatic_domains.iter().any(|d| d.eq_ignore_ascii_case(host)))
}

// ---- the authenticate host

/// The session of the authenticate host's own cookie, if it is valid in the databroker now.
pub(crate) async fn authenticate_session(
    cx: &Context<'_>,
    headers: &HeaderMap,
) -> Option<(SessionHandle, StoredSession)> {
    let token = authenticate::cookie::read_cookie(headers, &cx.settings.authenticate_cookie())?;
    let handle = SessionHandle::from_jwt(&token, &cx.settings.shared_key).ok()?;
    let store = cx.authn.store.as_ref()?;
    let stored = store.load(&handle.id).await.ok()??;
    let now = jiff::Timestamp::from_second(cx.now).ok()?;
    stored.validate(now).ok()?;
    Some((handle, stored))
}

/// `/.pomerium/sign_in` (§3.3 steps 2 and 4).
async fn sign_in(cx: &Context<'_>, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let settings = cx.settings;
    if stateless::is_sealed(request.url) {
        return stateless::hosted_sign_in(cx, request).await;
    }
    if let Err(error) = authenticate::verify(request.url, &settings.shared_key, unix(cx.now)) {
        return Refusal::InvalidLink { link: "sign-in", reason: error.to_string() }.respond(request);
    }
    let programmatic = param(request.url, "pomerium_programmatic").as_deref() == Some("true");
    let Some(target) = param(request.url, "pomerium_redirect_uri").and_then(|u| Url::parse(&u).ok()) else {
        return Refusal::NoRedirectUri { what: "the sign-in link" }.respond(request);
    };
    if !allowed_redirect(settings, &target, programmatic) {
        return Refusal::ForeignHost { parameter: "pomerium_redirect_uri" }.respond(request);
    }
    if let Some((handle, _)) = authenticate_session(cx, request.headers).await {
        return to_route_callback(cx, request, &handle, &target, programmatic);
    }
    start_provider_sign_in(cx, request).await
}

/// The configured identity provider, discovered (once per settings), or why there is none.
async fn configured_provider(cx: &Context<'_>) -> Result<oidc::Provider, Refusal> {
    let Some(settings) = cx.provider else { return Err(Refusal::NoIdentityProvider) };
    cx.authn.provider(settings).await.map_err(|error| {
        tracing::warn!(%error, "the identity provider is not available");
        Refusal::ProviderUnavailable
    })
}

/// §3.3 step 2 without a session: the CSRF cookie, the OAuth state (which returns to this very
/// sign-in URL), PKCE, and the redirect to the identity provider.
pub(crate) async fn start_provider_sign_in(cx: &Context<'_>, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let settings = cx.settings;
    if is_xhr(request.headers) {
        return Refusal::SignInFirst.respond(request);
    }
    let provider = match configured_provider(cx).await {
        Ok(provider) => provider,
        Err(refusal) => return refusal.respond(request),
    };
    let existing = authenticate::cookie::read_cookie(request.headers, &settings.csrf_cookie())
        .and_then(|value| authenticate::csrf::open_csrf(&settings.cookie_aead, &value, cx.now).ok());
    let csrf_token = existing.clone().unwrap_or_else(authenticate::csrf::new_token);
    let state = authenticate::state::encode_state(&settings.cookie_aead, &csrf_token, cx.now, "", request.url.as_str());
    let (location, verifier) = provider.authorization_url(&state, &nonce_for(&state));
    let mut response = redirect(location.as_str());
    add_cookies(
        &mut response,
        authenticate::cookie::clear_cookies(&authenticate_cookie_settings(settings), &settings.authenticate_cookie()),
    );
    if existing.is_none() {
        let sealed = authenticate::csrf::seal_csrf(&settings.cookie_aead, &csrf_token, cx.now);
        let lifetime = std::time::Duration::from_secs(12 * 3600);
        if let Ok(cookies) =
            authenticate::cookie::set_cookies(&flow_cookie_settings(lifetime), &settings.csrf_cookie(), &sealed, cx.now)
        {
            add_cookies(&mut response, cookies);
        }
    }
    if let Some(verifier) = verifier {
        let sealed = authenticate::csrf::seal_pkce(&settings.cookie_aead, &state, &verifier, cx.now);
        let lifetime = std::time::Duration::from_secs(600);
        if let Ok(cookies) =
            authenticate::cookie::set_cookies(&flow_cookie_settings(lifetime), &settings.pkce_cookie(), &sealed, cx.now)
        {
            add_cookies(&mut response, cookies);
        }
    }
    response
}

/// §3.3 step 4: a route-scoped handle, sealed, sent to the route host's callback, signed.
fn to_route_callback(
    cx: &Context<'_>,
    request: &ControlRequest<'_>,
    handle: &SessionHandle,
    redirect: &Url,
    programmatic: bool,
) -> Response<ProxyBody> {
    let settings = cx.settings;
    let callback = match param(request.url, "pomerium_callback_uri").and_then(|u| Url::parse(&u).ok()) {
        Some(url) if settings.is_own_url(&url) => url,
        Some(_) => {
            return Refusal::ForeignHost { parameter: "pomerium_callback_uri" }.respond(request);
        }
        None => {
            let mut url = redirect.clone();
            url.set_path("/.pomerium/callback/");
            url.set_query(None);
            url.set_fragment(None);
            url
        }
    };
    let mut audience = vec![settings.authenticate_host.clone()];
    audience.extend(redirect.host_str().map(str::to_owned));
    audience.extend(callback.host_str().map(str::to_owned));
    audience.dedup();
    let scoped =
        SessionHandle { issuer: settings.authenticate_host.clone(), audience, issued_at: cx.now, ..handle.clone() };
    let sealed = authenticate::handle::seal_for_callback(&scoped.to_jwt(&settings.shared_key), &settings.shared_aead);
    let mut url = callback;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("pomerium_redirect_uri", redirect.as_str());
        query.append_pair("pomerium_session_encrypted", &sealed);
        if programmatic {
            query.append_pair("pomerium_programmatic", "true");
        }
        if let Some(hosts) = param(request.url, "pomerium_additional_hosts").filter(|h| !h.is_empty()) {
            query.append_pair("pomerium_additional_hosts", &hosts);
        }
    }
    redirect_signed(settings, &url, cx.now)
}

fn redirect_signed(settings: &AuthnSettings, url: &Url, now: i64) -> Response<ProxyBody> {
    redirect(authenticate::sign(url, &settings.shared_key, unix(now)).as_str())
}

/// The IdP's redirect back (§3.3 step 3): state, CSRF, code exchange, ID token, then the
/// session is written and the browser returns to the signed sign-in URL.
async fn oauth_callback(cx: &Context<'_>, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let settings = cx.settings;
    let get = |name: &str| {
        if request.method == Method::POST { form_param(&request.body, name) } else { param(request.url, name) }
    };
    if let Some(error) = get("error") {
        let description = get("error_description").unwrap_or_default();
        return Refusal::ProviderRefused { error, description }.respond(request);
    }
    let Some(code) = get("code").filter(|c| !c.is_empty()) else {
        return Refusal::ProviderSentNo { parameter: "code" }.respond(request);
    };
    let Some(state) = get("state") else {
        return Refusal::ProviderSentNo { parameter: "state" }.respond(request);
    };
    let decoded = match authenticate::state::decode_state(&settings.cookie_aead, &state, cx.now) {
        Ok(decoded) => decoded,
        Err(error) => {
            return Refusal::InvalidState(error.to_string()).respond(request);
        }
    };
    let cookie_token = authenticate::cookie::read_cookie(request.headers, &settings.csrf_cookie())
        .and_then(|value| authenticate::csrf::open_csrf(&settings.cookie_aead, &value, cx.now).ok());
    if !cookie_token.is_some_and(|token| authenticate::csrf::tokens_match(&token, &decoded.csrf_token)) {
        return Refusal::CsrfMismatch.respond(request);
    }
    let Ok(return_to) = Url::parse(&decoded.redirect_url) else {
        return Refusal::StateWithoutUrl.respond(request);
    };
    if !settings.is_authenticate_host(return_to.host_str().unwrap_or_default())
        || return_to.path() != "/.pomerium/sign_in"
    {
        return Refusal::StateOutsideAuthenticate.respond(request);
    }
    let verifier = authenticate::cookie::read_cookie(request.headers, &settings.pkce_cookie())
        .and_then(|value| authenticate::csrf::open_pkce(&settings.cookie_aead, &state, &value, cx.now).ok());
    let provider = match configured_provider(cx).await {
        Ok(provider) => provider,
        Err(refusal) => return refusal.respond(request),
    };
    let identity = match provider.exchange(&code, verifier.as_deref(), &nonce_for(&state)).await {
        Ok(identity) => identity,
        Err(error) => {
            tracing::warn!(%error, "the sign-in failed at the code exchange");
            return Refusal::ExchangeRefused(error.to_string()).respond(request);
        }
    };
    let Some(store) = &cx.authn.store else {
        return Refusal::NoSessionStore.respond(request);
    };
    let (session, user) = new_session(settings, &identity, &return_to, cx.now);
    let versions = match store.persist(&session, &user).await {
        Ok(versions) => versions,
        Err(error) => {
            tracing::warn!(%error, "the session could not be saved");
            return Refusal::SessionNotSaved.respond(request);
        }
    };
    let handle = SessionHandle {
        id: session.id.clone(),
        user_id: session.user_id.clone(),
        idp_id: Some(settings.idp_id.clone()).filter(|id| !id.is_empty()),
        issuer: settings.authenticate_host.clone(),
        audience: session.audience.clone(),
        issued_at: cx.now,
        databroker_server_version: versions.server_version,
        databroker_record_version: versions.latest_record_version,
    };
    tracing::info!(session = %session.id, user = %session.user_id, "signed in");
    let mut response = redirect(return_to.as_str());
    let cookie_settings = authenticate_cookie_settings(settings);
    match authenticate::cookie::set_cookies(
        &cookie_settings,
        &settings.authenticate_cookie(),
        &handle.to_jwt(&settings.shared_key),
        cx.now,
    ) {
        Ok(cookies) => add_cookies(&mut response, cookies),
        Err(error) => {
            return Refusal::SessionCookie(error.to_string()).respond(request);
        }
    }
    let flow = flow_cookie_settings(std::time::Duration::ZERO);
    add_cookies(&mut response, authenticate::cookie::clear_cookies(&flow, &settings.csrf_cookie()));
    add_cookies(&mut response, authenticate::cookie::clear_cookies(&flow, &settings.pkce_cookie()));
    response
}

/// The session and user records of a new sign-in (`PersistSession`).
fn new_session(
    settings: &AuthnSettings,
    identity: &oidc::Identity,
    return_to: &Url,
    now: i64,
) -> (StoredSession, StoredUser) {
    let issued = jiff::Timestamp::from_second(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let lifetime =
        jiff::SignedDuration::try_from(settings.cookie_expire).unwrap_or(jiff::SignedDuration::from_hours(14));
    let redirect_host = param(return_to, "pomerium_redirect_uri")
        .and_then(|u| Url::parse(&u).ok())
        .and_then(|u| u.host_str().map(str::to_owned));
    let mut audience = vec![settings.authenticate_host.clone()];
    audience.extend(redirect_host);
    let claims = authenticate::session::claims_from(&identity.claims);
    let text_claim = |name: &str| identity.claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let session = StoredSession {
        id: authenticate::csrf::new_token(),
        user_id: identity.subject.clone(),
        idp_id: Some(settings.idp_id.clone()).filter(|id| !id.is_empty()),
        issued_at: Some(issued),
        expires_at: issued.checked_add(lifetime).ok(),
        accessed_at: Some(issued),
        id_token: identity.id_token.as_ref().map(|token| authenticate::session::StoredIdToken {
            issuer: token.issuer.clone(),
            subject: token.subject.clone(),
            expires_at: Some(token.expires_at),
            issued_at: Some(token.issued_at),
            raw: token.raw.clone(),
        }),
        oauth_token: Some(authenticate::session::StoredOAuthToken {
            access_token: identity.access_token.clone(),
            token_type: identity.token_type.clone(),
            expires_at: identity.expires_at,
            refresh_token: identity.refresh_token.clone(),
        }),
        claims: claims.clone(),
        audience,
        refresh_disabled: false,
    };
    let user =
        StoredUser { id: identity.subject.clone(), name: text_claim("name"), email: text_claim("email"), claims };
    (session, user)
}

/// `/.pomerium/sign_out` on the authenticate host: ends the session of its cookie, revokes the
/// tokens at the IdP, and sends the browser to the IdP's end-session page or back.
async fn sign_out_authenticate(cx: &Context<'_>, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let settings = cx.settings;
    if let Some(page) = confirm_unsigned_sign_out(cx, request) {
        return page;
    }
    let session = authenticate_session(cx, request.headers).await;
    let id_token = match &session {
        Some((handle, _)) => end_session(cx, &handle.id).await,
        None => None,
    };
    let target = sign_out_target(settings, request);
    let mut location = target.clone();
    if let Some(provider_settings) = cx.provider
        && let Ok(provider) = cx.authn.provider(provider_settings).await
        && let Some(url) = provider.end_session_url(id_token.as_deref(), &target, "")
    {
        location = url;
    }
    let mut response = redirect(location.as_str());
    add_cookies(
        &mut response,
        authenticate::cookie::clear_cookies(&authenticate_cookie_settings(settings), &settings.authenticate_cookie()),
    );
    response
}

/// Where a sign-out ends: `pomerium_redirect_uri` when it is ours, `signout_redirect_url`, or
/// the signed-out page.
fn sign_out_target(settings: &AuthnSettings, request: &ControlRequest<'_>) -> Url {
    let from_request = param(request.url, "pomerium_redirect_uri")
        .or_else(|| form_param(&request.body, "pomerium_redirect_uri"))
        .and_then(|u| Url::parse(&u).ok())
        .filter(|u| settings.is_own_url(u));
    from_request
        .or_else(|| settings.signout_redirect_url.clone())
        .unwrap_or_else(|| settings.authenticate_path("/.pomerium/signed_out"))
}

/// An unsigned GET gets a confirmation page (a link alone must not sign anyone out); a POST
/// is accepted (one from another site was refused by `handle`).
fn confirm_unsigned_sign_out(cx: &Context<'_>, request: &ControlRequest<'_>) -> Option<Response<ProxyBody>> {
    if request.method == Method::POST {
        return None;
    }
    if authenticate::verify(request.url, &cx.settings.shared_key, unix(cx.now)).is_ok() {
        return None;
    }
    let mut action = request.url.clone();
    let kept: Vec<(String, String)> = action
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("pomerium_signature") && k != "pomerium_issued" && k != "pomerium_expiry")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    action.set_query(None);
    if !kept.is_empty() {
        action.query_pairs_mut().extend_pairs(kept);
    }
    Some(html(StatusCode::OK, pages::confirm_sign_out(action.as_str())))
}

/// Deletes a session (every replica's cache follows the tombstone) and revokes its tokens at
/// the IdP. Returns the ID token, the end-session hint.
async fn end_session(cx: &Context<'_>, id: &str) -> Option<String> {
    let store = cx.authn.store.as_ref()?;
    let stored = store.load(id).await.ok().flatten();
    if let Err(error) = store.delete(id).await {
        tracing::warn!(%error, session = id, "the session could not be deleted");
    } else {
        tracing::info!(session = id, "signed out");
    }
    let stored = stored?;
    if let (Some(provider_settings), Some(token)) = (cx.provider, &stored.oauth_token)
        && let Ok(provider) = cx.authn.provider(provider_settings).await
    {
        let revoked = match &token.refresh_token {
            Some(refresh) => provider.revoke(refresh, oidc::TokenHint::RefreshToken).await,
            None => provider.revoke(&token.access_token, oidc::TokenHint::AccessToken).await,
        };
        if let Err(error) = revoked {
            tracing::warn!(%error, "the identity provider did not revoke the token");
        }
    }
    stored.id_token.map(|t| t.raw)
}

/// The development IdP's pages, served on the authenticate host.
async fn development_idp(cx: &Context<'_>, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let Some(provider_settings) = cx.provider.filter(|p| p.provider == config::options::DEVELOPMENT_PROVIDER) else {
        return not_found(request);
    };
    let Ok(provider) = cx.authn.provider(provider_settings).await else { return not_found(request) };
    let Some(idp) = provider.development() else { return not_found(request) };
    let path = request.url.path().strip_prefix(DEV_IDP).unwrap_or_default();
    let answer = idp.handle(request.method, path, request.url.query(), &request.body);
    let mut response = text(answer.status, answer.content_type, answer.body);
    if let Some(location) = answer.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

// ---- route hosts

/// `/.pomerium/callback/` (§3.3 step 5): the sealed handle becomes the route host's cookie.
fn route_callback(cx: &Context<'_>, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let settings = cx.settings;
    if let Err(error) = authenticate::verify(request.url, &settings.shared_key, unix(cx.now)) {
        return Refusal::InvalidLink { link: "callback", reason: error.to_string() }.respond(request);
    }
    let Some(sealed) = param(request.url, "pomerium_session_encrypted") else {
        return Refusal::CallbackWithoutSession.respond(request);
    };
    let Ok(jwt) = authenticate::handle::open_from_callback(&sealed, &settings.shared_aead) else {
        return Refusal::CallbackSessionSealed.respond(request);
    };
    if SessionHandle::from_jwt(&jwt, &settings.shared_key).is_err() {
        return Refusal::CallbackSessionInvalid.respond(request);
    }
    let programmatic = param(request.url, "pomerium_programmatic").as_deref() == Some("true");
    let Some(mut redirect_to) = param(request.url, "pomerium_redirect_uri").and_then(|u| Url::parse(&u).ok()) else {
        return Refusal::NoRedirectUri { what: "the callback" }.respond(request);
    };
    if !allowed_redirect(settings, &redirect_to, programmatic) {
        return Refusal::ForeignHost { parameter: "pomerium_redirect_uri" }.respond(request);
    }
    let mut response = match param(request.url, "pomerium_additional_hosts").filter(|h| !h.is_empty()) {
        // Multi-host sign-in (`depends_on`): the next host's callback, signed again.
        Some(hosts) => {
            let mut hosts = hosts.split(',').map(str::trim).filter(|h| !h.is_empty());
            let next = hosts.next().unwrap_or_default();
            let rest: Vec<&str> = hosts.collect();
            let scheme = if settings.tls { "https" } else { "http" };
            let Ok(mut url) = Url::parse(&format!("{scheme}://{next}/.pomerium/callback/")) else {
                return Refusal::InvalidAdditionalHost.respond(request);
            };
            if !settings.is_own_url(&url) {
                return Refusal::ForeignHost { parameter: "pomerium_additional_hosts" }.respond(request);
            }
            url.query_pairs_mut()
                .append_pair("pomerium_redirect_uri", redirect_to.as_str())
                .append_pair("pomerium_session_encrypted", &sealed);
            if !rest.is_empty() {
                url.query_pairs_mut().append_pair("pomerium_additional_hosts", &rest.join(","));
            }
            redirect_signed(settings, &url, cx.now)
        }
        None => {
            if programmatic {
                redirect_to.query_pairs_mut().append_pair("pomerium_jwt", &jwt);
            }
            redirect(redirect_to.as_str())
        }
    };
    match authenticate::cookie::set_cookies(&settings.cookie, &settings.cookie_name, &jwt, cx.now) {
        Ok(cookies) => add_cookies(&mut response, cookies),
        Err(error) => {
            return Refusal::SessionCookie(error.to_string()).respond(request);
        }
    }
    response
}

/// `/.pomerium/sign_out` on a route host: ends the session, clears the cookie, and lets the
/// authenticate service clear its own and end the IdP session.
async fn sign_out_route(cx: &Context<'_>, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let settings = cx.settings;
    if let Some(page) = confirm_unsigned_sign_out(cx, request) {
        return page;
    }
    let token = authenticate::cookie::session_token(request.headers, request.url.query(), &settings.cookie_name);
    if let Some(handle) = token.and_then(|t| SessionHandle::from_jwt(&t, &settings.shared_key).ok()) {
        end_session(cx, &handle.id).await;
    }
    let mut url = settings.authenticate_path("/.pomerium/sign_out");
    url.query_pairs_mut().append_pair("pomerium_redirect_uri", sign_out_target(settings, request).as_str());
    let mut response = redirect_signed(settings, &url, cx.now);
    add_cookies(&mut response, authenticate::cookie::clear_cookies(&settings.cookie, &settings.cookie_name));
    response
}

/// The identity of the request's session, as the upstream would see it; `None` without one.
async fn current_identity(
    cx: &Context<'_>,
    request: &ControlRequest<'_>,
    cookie_name: &str,
) -> Result<Option<Identity>, Response<ProxyBody>> {
    let mut headers = request.headers.clone();
    if cookie_name != cx.settings.cookie_name {
        // The authenticate host's cookie, read as if it were the session cookie.
        match authenticate::cookie::read_cookie(request.headers, cookie_name) {
            Some(value) => {
                headers.remove(header::COOKIE);
                if let Ok(cookie) = HeaderValue::from_str(&format!("{}={value}", cx.settings.cookie_name)) {
                    headers.insert(header::COOKIE, cookie);
                }
            }
            None => return Ok(None),
        }
    }
    let found = match token_session(cx, &headers).await {
        Some(found) => Some(found),
        None => match session::find(cx.settings, cx.sign_in, &headers, request.url.query()).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "the session could not be read");
                return Err(Refusal::SessionStoreUnavailable.respond(request));
            }
        },
    };
    let Some(found) = found else { return Ok(None) };
    let records = cx.records.read();
    let now = jiff::Timestamp::from_second(cx.now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let overlay;
    let records: &dyn policy::records::Records = match &found.fetched {
        Some(fetched) => {
            overlay = Overlay { base: &records, fetched, session_id: found.id() };
            &overlay
        }
        None => &*records,
    };
    if policy::records::resolve_session(records, Some(found.id()), now).is_none() {
        return Ok(None);
    }
    let identity = proxy::authn::identity::identity(
        cx.settings,
        cx.assertions,
        records,
        Some(found.id()),
        request.hostname,
        cx.now,
        false,
    );
    Ok(identity)
}

/// The session of an identity provider token, where the global `bearer_token_format` reads one
/// (Pomerium's `getUserInfoData`); a token that gives none leaves the session handle to decide.
async fn token_session(cx: &Context<'_>, headers: &HeaderMap) -> Option<session::RequestSession> {
    let settings = cx.settings;
    let proxy::authn::bearer::Bearer::IdpToken(kind, token) =
        proxy::authn::bearer::read(headers, settings.bearer_token_format, &settings.cookie_name)
    else {
        return None;
    };
    let audiences = settings.access_token_audiences.as_deref();
    match crate::bearer::session(settings, cx.authn, cx.provider, cx.records, kind, token, audiences).await {
        Ok(found) => Some(found),
        Err(error) => {
            tracing::debug!(%error, "no session from the bearer token for a /.pomerium/ page");
            None
        }
    }
}

/// `/.pomerium/`: the user info page.
async fn user_info(cx: &Context<'_>, request: &ControlRequest<'_>, cookie_name: &str) -> Response<ProxyBody> {
    let identity = match current_identity(cx, request, cookie_name).await {
        Ok(identity) => identity,
        Err(response) => return response,
    };
    let sign_out = "/.pomerium/sign_out";
    let sign_in = if cx.settings.is_authenticate_host(request.hostname) {
        None
    } else {
        let mut original = request.url.clone();
        original.set_path("/");
        original.set_query(None);
        sign_in_link(cx, &original).await.map(|url| url.to_string())
    };
    let claims = identity.as_ref().map(|i| visible_claims(&i.claims));
    html(StatusCode::OK, pages::user_info(claims.as_ref(), sign_out, sign_in.as_deref()))
}

/// The authenticate service's sign-in URL that returns to `original`: signed, or sealed in the
/// stateless flow (`None` when the authenticate service's key cannot be fetched).
async fn sign_in_link(cx: &Context<'_>, original: &Url) -> Option<Url> {
    let settings = cx.settings;
    if settings.stateless {
        return match stateless::sign_in_url(settings, cx.authn, original, None, Vec::new()).await {
            Ok(url) => Some(url),
            Err(error) => {
                tracing::warn!(%error, "no sign-in link: the authenticate service's key is not available");
                None
            }
        };
    }
    Some(authenticate::sign_in_url(&settings.authenticate_url, original, None, &[], &settings.shared_key, unix(cx.now)))
}

/// The assertion's claims without the JWT bookkeeping (`/.pomerium/user`).
fn visible_claims(claims: &serde_json::Map<String, serde_json::Value>) -> serde_json::Map<String, serde_json::Value> {
    claims
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "iss" | "aud" | "exp" | "iat" | "jti"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Without a session, what a protected path answers: a sign-in redirect for a browser, else 401.
async fn login_required(cx: &Context<'_>, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let accept = request.headers.get(header::ACCEPT).and_then(|a| a.to_str().ok());
    if policy::decision::wants_html(accept) {
        return match sign_in_link(cx, request.url).await {
            Some(url) => redirect(url.as_str()),
            None => Refusal::AuthenticateUnavailable.respond(request),
        };
    }
    ErrorPage::new(StatusCode::UNAUTHORIZED, request.request_id)
        .with_message("Unauthenticated")
        .render_as(request.format)
}

/// `/.pomerium/user`: the user's claims as JSON; 404 without a subject.
async fn user_claims(cx: &Context<'_>, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let identity = match current_identity(cx, request, &cx.settings.cookie_name).await {
        Ok(Some(identity)) => identity,
        Ok(None) => return login_required(cx, request).await,
        Err(response) => return response,
    };
    if identity.claims.get("sub").and_then(|s| s.as_str()).is_none_or(str::is_empty) {
        return not_found(request);
    }
    let body = serde_json::Value::Object(visible_claims(&identity.claims)).to_string();
    text(StatusCode::OK, "application/json", body)
}

/// `/.pomerium/jwt` (runtime flag `pomerium_jwt_endpoint`): the assertion itself.
async fn raw_assertion(cx: &Context<'_>, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    match current_identity(cx, request, &cx.settings.cookie_name).await {
        Ok(Some(identity)) => text(StatusCode::OK, "application/jwt", identity.jwt.to_string()),
        Ok(None) => login_required(cx, request).await,
        Err(response) => response,
    }
}

/// `/.pomerium/api/v1/login?pomerium_redirect_uri=…`: the sign-in URL for a command-line tool,
/// whose local listener gets `pomerium_jwt` at the end.
async fn programmatic_login(cx: &Context<'_>, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let settings = cx.settings;
    let Some(target) = param(request.url, "pomerium_redirect_uri").and_then(|u| Url::parse(&u).ok()) else {
        return Refusal::RedirectUriRequired.respond(request);
    };
    if !is_programmatic_target(settings, &target) {
        return Refusal::NotProgrammaticTarget.respond(request);
    }
    let mut callback = request.url.clone();
    callback.set_path("/.pomerium/callback/");
    callback.set_query(None);
    if settings.stateless {
        let extra = vec![
            ("pomerium_callback_uri".to_owned(), callback.to_string()),
            ("pomerium_programmatic".to_owned(), "true".to_owned()),
        ];
        return match stateless::sign_in_url(settings, cx.authn, &target, None, extra).await {
            Ok(url) => text(StatusCode::OK, "text/plain; charset=utf-8", url.to_string()),
            Err(error) => {
                tracing::warn!(%error, "no sign-in URL: the authenticate service's key is not available");
                Refusal::AuthenticateUnavailable.respond(request)
            }
        };
    }
    let mut url = settings.authenticate_path("/.pomerium/sign_in");
    url.query_pairs_mut()
        .append_pair("pomerium_redirect_uri", target.as_str())
        .append_pair("pomerium_callback_uri", callback.as_str())
        .append_pair("pomerium_programmatic", "true");
    let signed = authenticate::sign(&url, &settings.shared_key, unix(cx.now));
    text(StatusCode::OK, "text/plain; charset=utf-8", signed.to_string())
}

// ---- well-known

/// `/.well-known/pomerium`.
fn well_known(settings: &AuthnSettings, request: &ControlRequest<'_>) -> Response<ProxyBody> {
    let origin = request.url.origin().ascii_serialization();
    let document = serde_json::json!({
        "issuer": format!("{origin}/"),
        "authentication_callback_endpoint": settings.authenticate_path("/oauth2/callback").as_str(),
        "jwks_uri": format!("{origin}/.well-known/pomerium/jwks.json"),
        "frontchannel_logout_uri": format!("{origin}/.pomerium/sign_out"),
    });
    let mut response = text(StatusCode::OK, "application/json", document.to_string());
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// `/.well-known/pomerium/jwks.json`: the public keys the assertions verify against.
fn jwks(settings: &AuthnSettings, headers: &HeaderMap) -> Response<ProxyBody> {
    let body = settings.jwks.clone();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    let etag: String = digest.as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect();
    let etag = format!("\"{etag}\"");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if matches {
        text(StatusCode::NOT_MODIFIED, "application/json", Bytes::new())
    } else {
        text(StatusCode::OK, "application/json", body)
    };
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    response
}
