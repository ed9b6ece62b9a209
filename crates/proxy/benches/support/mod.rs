//! The setup of benchmark B2 (`shared/spec/benchmarks.md`), shared by `benches/authorize.rs`,
//! `benches/authorize_allocations.rs` and `tests/authorize_in_process.rs`: Pomerium's
//! `BenchmarkEvaluate` shape, 100 routes with `allowed_users`, identity headers and
//! `Authorization: Bearer ${pomerium.jwt}`, and a signed-in user whose session and user records
//! sit in an in-memory databroker that a synced cache follows, as in an all-in-one server.
//!
//! Everything here runs once, untimed; the callers time [`proxy::authorize::authorize`].

#![allow(dead_code, reason = "each including target uses a different part")]

use authenticate::handle::SessionHandle;
use authenticate::session::{StoredIdToken, StoredOAuthToken, StoredSession, StoredUser};
use authn::{Authenticator, SessionStore, SignInState};
use base64::Engine as _;
use databroker::client::{Broker, SyncedCache};
use databroker::record::Versions;
use http::HeaderMap;
use http::header::{ACCEPT, COOKIE, HeaderValue};
use proxy::authn::Authn;
use proxy::authorize::Probe;
use proxy::runtime::{Environment, Runtime, SharedRecords};
use serde_json::{Map, Value, json};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

/// Routes in the configuration (Pomerium's benchmark has 100).
pub const ROUTES: usize = 100;
/// The route the request hits.
pub const TARGET_ROUTE: usize = 50;
/// The shared secret (32 bytes): signs session handles and derives the assertion's signing key.
pub const SHARED_KEY: [u8; 32] = [0x5a; 32];
const COOKIE_KEY: [u8; 32] = [0xa5; 32];

/// The signed-in user every route allows.
pub const ALICE: &str = "alice@example.com";
/// A signed-in user no route allows.
pub const BOB: &str = "bob@example.com";

/// The host of route `i`.
pub fn host(i: usize) -> String {
    format!("r{i}.example.com")
}

/// The configuration: 100 routes, each allowing its own user and Alice.
pub fn config_text(routes: usize) -> String {
    let key = base64::engine::general_purpose::STANDARD.encode(SHARED_KEY);
    let cookie_key = base64::engine::general_purpose::STANDARD.encode(COOKIE_KEY);
    let mut text = format!(
        "shared_secret: {key}\ncookie_secret: {cookie_key}\n\
         authenticate_service_url: https://authenticate.example.com\nroutes:\n"
    );
    for i in 0..routes {
        let _ = write!(
            text,
            "  - from: https://{host}\n    to: http://127.0.0.1:1\n    allowed_users: [user{i}@example.com, {ALICE}]\n    \
             pass_identity_headers: true\n    set_request_headers:\n      Authorization: \"Bearer ${{pomerium.jwt}}\"\n",
            host = host(i),
        );
    }
    text
}

/// A runtime over the configuration, with a session store on an in-memory databroker and the
/// cache the policy reads, and two signed-in users' cookies.
#[derive(Debug)]
pub struct Fixture {
    pub runtime: Runtime,
    pub authn: Arc<Authn>,
    /// The records the policy reads (what the synced cache writes).
    pub records: SharedRecords,
    /// `_pomerium=<handle>` of Alice's session.
    pub alice_cookie: String,
    /// `_pomerium=<handle>` of Bob's session.
    pub bob_cookie: String,
    cache_task: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.cache_task.abort();
    }
}

/// Builds the fixture; must run inside a Tokio runtime (the cache and the storage's cleanup are
/// tasks on it).
pub async fn fixture(routes: usize) -> Result<Fixture, String> {
    let loaded = config::load(&config_text(routes), config::Format::Yaml, &config::env::Empty);
    let errors: Vec<String> = loaded.errors.iter().map(|e| e.diagnostic.to_string()).collect();
    let config = loaded.config.filter(|_| errors.is_empty()).ok_or_else(|| format!("bad config: {errors:?}"))?;

    let storage = databroker::open(&databroker::Backend::Memory).await.map_err(|e| e.to_string())?;
    let broker = Broker::Local(storage);
    let records = SharedRecords::default();
    let cache = SyncedCache::new(Arc::clone(&records.0), &[]);
    let cache_task = cache.spawn(broker.clone());
    let store = SessionStore::new(broker, Some(Arc::clone(&cache)));
    let authenticator = Authenticator(Arc::new(SignInState::new(Some(store.clone()))));
    let authn = Arc::new(Authn::new(Arc::new(authenticator)));
    let environment = Environment {
        fallback_shared_key: SHARED_KEY.to_vec(),
        fallback_cookie_key: COOKIE_KEY.to_vec(),
        authn: Arc::clone(&authn),
        remote_authorize: None,
        records: records.clone(),
        clients: Arc::new(proxy::upstream::UpstreamClients::new(proxy::upstream::ClientOptions::default())),
    };
    let runtime = Runtime::build(&config, &environment).map_err(|e| e.to_string())?;

    let alice_cookie = sign_in(&store, &cache, "alice-id", ALICE, "Alice").await?;
    let bob_cookie = sign_in(&store, &cache, "bob-id", BOB, "Bob").await?;
    Ok(Fixture { runtime, authn, records, alice_cookie, bob_cookie, cache_task })
}

/// What a sign-in through an OIDC provider leaves behind: a session (with tokens and the IdP's
/// claims) and a user, persisted; the cookie carrying the session handle, once the cache holds
/// the records.
async fn sign_in(
    store: &SessionStore,
    cache: &SyncedCache,
    user_id: &str,
    email: &str,
    name: &str,
) -> Result<String, String> {
    let now = jiff::Timestamp::now();
    let later = now.checked_add(jiff::SignedDuration::from_hours(14)).map_err(|e| e.to_string())?;
    let claims = object(json!({
        "email": [email],
        "email_verified": [true],
        "name": [name],
        "sub": [user_id],
        "iss": ["https://idp.example.com"],
    }))?;
    let session = StoredSession {
        id: format!("session-of-{user_id}"),
        user_id: user_id.to_owned(),
        idp_id: None,
        issued_at: Some(now),
        expires_at: Some(later),
        accessed_at: Some(now),
        id_token: Some(StoredIdToken {
            issuer: "https://idp.example.com".to_owned(),
            subject: user_id.to_owned(),
            expires_at: Some(later),
            issued_at: Some(now),
            raw: format!("eyJhbGciOiJSUzI1NiJ9.{}.signature", "x".repeat(400)),
        }),
        oauth_token: Some(StoredOAuthToken {
            access_token: format!("access-token-{}", "y".repeat(200)),
            token_type: "Bearer".to_owned(),
            expires_at: Some(later),
            refresh_token: Some("refresh-token".to_owned()),
        }),
        claims: claims.clone(),
        audience: vec!["authenticate.example.com".to_owned()],
        refresh_disabled: false,
    };
    let user =
        StoredUser { id: user_id.to_owned(), name: Some(name.to_owned()), email: Some(email.to_owned()), claims };
    let versions: Versions = store.persist(&session, &user).await.map_err(|e| e.to_string())?;
    if !cache.wait_for(versions, Duration::from_secs(10)).await {
        return Err(format!("the cache did not reach {versions:?}"));
    }
    let handle = SessionHandle {
        id: session.id.clone(),
        user_id: user_id.to_owned(),
        idp_id: None,
        issuer: "authenticate.example.com".to_owned(),
        audience: vec!["authenticate.example.com".to_owned()],
        issued_at: now.as_second(),
        databroker_server_version: versions.server_version,
        databroker_record_version: versions.latest_record_version,
    };
    Ok(format!("_pomerium={}", handle.to_jwt(&SHARED_KEY)))
}

fn object(value: Value) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("not an object".to_owned()),
    }
}

/// A browser's request headers, with `cookie` when given.
pub fn headers(cookie: Option<&str>, accept: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_str(accept).map_err(|e| e.to_string())?);
    headers.insert("user-agent", HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64) benchmark"));
    if let Some(cookie) = cookie {
        headers.insert(COOKIE, HeaderValue::from_str(cookie).map_err(|e| e.to_string())?);
    }
    Ok(headers)
}

/// `GET https://<authority>/some/path` with `headers`.
pub fn probe<'a>(authority: &'a str, headers: &'a HeaderMap) -> Probe<'a> {
    Probe {
        method: "GET",
        authority,
        path: "/some/path",
        query: None,
        headers,
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
    }
}

/// Panics unless `result` is an allow for Alice with an assertion signed by the derived key for
/// `authority`, and `Authorization: Bearer` the same assertion: what the benchmark must measure.
pub fn assert_allowed(result: &proxy::authorize::Authorized, authority: &str) {
    let proxy::authorize::Authorized::Allow(set) = result else {
        panic!("not allowed: {result:?}");
    };
    let header = |name: &str| set.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.to_str().ok());
    let jwt = header("x-pomerium-jwt-assertion").expect("an x-pomerium-jwt-assertion header");
    assert_eq!(jwt.split('.').count(), 3, "a compact JWS: {jwt}");
    let key = authenticate::signing::SigningKey::derive(&SHARED_KEY).expect("the derived key");
    let claims = key.verify(jwt).expect("the assertion verifies");
    assert_eq!(claims.get("email").and_then(Value::as_str), Some(ALICE));
    assert_eq!(claims.get("aud").and_then(Value::as_str), Some(authority));
    assert_eq!(header("authorization"), Some(format!("Bearer {jwt}").as_str()));
}

/// B5's subject: Alice's session and user as the record cache holds them.
pub fn alice_subject(records: &policy::records::MemoryRecords) -> authenticate::assertion::AssertionSubject<'_> {
    use policy::records::Records as _;
    let session = records.session("session-of-alice-id").expect("Alice's session");
    let user = records.user("alice-id").expect("Alice's user");
    authenticate::assertion::AssertionSubject {
        session_id: &session.id,
        session: Some(session),
        user_id: &user.id,
        user: Some(user),
        directory_user: None,
    }
}
