//! `proxy::authorize::authorize` on benchmark B2's setup (100 routes, `allowed_users`, identity
//! headers, `Authorization: Bearer ${pomerium.jwt}`, a session in an in-memory databroker): what
//! the benchmark measures is a real allow, and the other answers are right.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

#[path = "../benches/support/mod.rs"]
mod support;

use authenticate::signing::SigningKey;
use http::StatusCode;
use http::header::LOCATION;
use proxy::authorize::{Authorized, authorize};
use support::{ALICE, SHARED_KEY, TARGET_ROUTE, fixture, headers, host, probe};

fn header<'a>(set: &'a [(http::HeaderName, http::HeaderValue)], name: &str) -> Option<&'a str> {
    set.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_str().unwrap())
}

#[tokio::test]
async fn a_signed_in_user_is_allowed_with_a_signed_assertion_and_the_bearer_header() {
    let fixture = fixture(support::ROUTES).await.unwrap();
    let authority = host(TARGET_ROUTE);
    let request = headers(Some(&fixture.alice_cookie), "text/html").unwrap();
    let key = SigningKey::derive(&SHARED_KEY).unwrap();
    let mut previous = None;
    // Signed afresh, then from the assertion cache, then afresh again (the cache forgotten), from
    // the cache again, and afresh once Alice's user record is written again (as the refresher
    // does when the provider's userinfo changes).
    for round in 0..5 {
        if round == 2 {
            fixture.authn.forget_assertions();
        }
        if round == 4 {
            let user = serde_json::json!({"id": "alice-id", "email": ALICE, "claims": {"department": ["sales"]}});
            let user = user.as_object().unwrap();
            fixture.records.0.write().unwrap().upsert("type.googleapis.com/user.User", "alice-id", user).unwrap();
        }
        let Authorized::Allow(set) = authorize(&fixture.runtime, &probe(&authority, &request)).await else {
            panic!("round {round}: Alice is not allowed");
        };
        let jwt = header(&set, "x-pomerium-jwt-assertion").expect("the assertion header");
        assert_eq!(jwt.split('.').count(), 3, "a compact JWS: {jwt}");
        let claims = key.verify(jwt).unwrap();
        assert_eq!(claims["email"], ALICE);
        assert_eq!(claims["aud"], authority.as_str());
        assert_eq!(claims["sub"], "alice-id");
        assert_eq!(claims["sid"], "session-of-alice-id");
        assert_eq!(header(&set, "authorization"), Some(format!("Bearer {jwt}").as_str()));
        match round {
            1 => assert_eq!(previous.as_deref(), Some(jwt), "the second request reuses the signed assertion"),
            2 => assert_ne!(previous.as_deref(), Some(jwt), "forget_assertions makes the next request sign anew"),
            3 => assert_eq!(previous.as_deref(), Some(jwt), "reused again"),
            4 => assert_ne!(previous.as_deref(), Some(jwt), "a user record written again is signed anew"),
            _ => {}
        }
        previous = Some(jwt.to_owned());
    }
}

#[tokio::test]
async fn without_a_session_a_browser_is_sent_to_sign_in_and_an_api_client_gets_401() {
    let fixture = fixture(support::ROUTES).await.unwrap();
    let authority = host(TARGET_ROUTE);

    let browser = headers(None, "text/html").unwrap();
    let Authorized::Deny(response) = authorize(&fixture.runtime, &probe(&authority, &browser)).await else {
        panic!("allowed without a session");
    };
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = url::Url::parse(response.headers()[LOCATION].to_str().unwrap()).unwrap();
    assert_eq!(location.host_str(), Some("authenticate.example.com"));
    assert_eq!(location.path(), "/.pomerium/sign_in");
    let redirect = location.query_pairs().find(|(k, _)| k == "pomerium_redirect_uri").map(|(_, v)| v.into_owned());
    assert_eq!(redirect.as_deref(), Some(format!("https://{authority}/some/path").as_str()));
    authenticate::signed_url::verify(&location, &SHARED_KEY, authenticate_now()).unwrap();

    let api = headers(None, "application/json").unwrap();
    let Authorized::Deny(response) = authorize(&fixture.runtime, &probe(&authority, &api)).await else {
        panic!("allowed without a session");
    };
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // A forged cookie is no session either.
    let forged = headers(Some("_pomerium=eyJhbGciOiJIUzI1NiJ9.e30.AAAA"), "application/json").unwrap();
    let Authorized::Deny(response) = authorize(&fixture.runtime, &probe(&authority, &forged)).await else {
        panic!("allowed with a forged cookie");
    };
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_signed_in_user_not_in_allowed_users_is_forbidden() {
    let fixture = fixture(support::ROUTES).await.unwrap();
    let authority = host(TARGET_ROUTE);
    for accept in ["text/html", "application/json"] {
        let request = headers(Some(&fixture.bob_cookie), accept).unwrap();
        let Authorized::Deny(response) = authorize(&fixture.runtime, &probe(&authority, &request)).await else {
            panic!("Bob is allowed ({accept})");
        };
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{accept}");
    }
    // Alice, on another route that lists her.
    let request = headers(Some(&fixture.alice_cookie), "application/json").unwrap();
    assert!(matches!(authorize(&fixture.runtime, &probe(&host(7), &request)).await, Authorized::Allow(_)));
}

fn authenticate_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A service account (a `user.ServiceAccount` record, its handle sent as `Authorization: Bearer
/// Pomerium-<jwt>`) acts as its user: the policy lets it in as Alice, and the assertion names
/// Alice (`sub`, `email`) with the service account as `sid` (Pomerium's
/// `getSessionOrServiceAccount`).
#[tokio::test]
async fn a_service_account_acts_as_its_user() {
    let fixture = fixture(support::ROUTES).await.unwrap();
    let authority = host(TARGET_ROUTE);
    let account = serde_json::json!({"id": "sa-1", "user_id": "alice-id", "expires_at": "2099-01-01T00:00:00Z"});
    fixture
        .records
        .0
        .write()
        .unwrap()
        .upsert("type.googleapis.com/user.ServiceAccount", "sa-1", account.as_object().unwrap())
        .unwrap();
    let handle = authenticate::handle::SessionHandle {
        id: "sa-1".to_owned(),
        user_id: "alice-id".to_owned(),
        idp_id: None,
        issuer: "authenticate.example.com".to_owned(),
        audience: vec![],
        issued_at: authenticate_now() as i64,
        databroker_server_version: 0,
        databroker_record_version: 0,
    };
    let mut request = headers(None, "application/json").unwrap();
    let bearer = format!("Bearer Pomerium-{}", handle.to_jwt(&SHARED_KEY));
    request.insert(http::header::AUTHORIZATION, http::HeaderValue::from_str(&bearer).unwrap());
    let Authorized::Allow(set) = authorize(&fixture.runtime, &probe(&authority, &request)).await else {
        panic!("the service account is not allowed");
    };
    let jwt = header(&set, "x-pomerium-jwt-assertion").expect("the assertion header");
    let claims = SigningKey::derive(&SHARED_KEY).unwrap().verify(jwt).unwrap();
    assert_eq!(claims["sub"], "alice-id");
    assert_eq!(claims["email"], ALICE);
    assert_eq!(claims["sid"], "sa-1");
}
