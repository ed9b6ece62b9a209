//! Pomerium's discrete services (seed 001 "Discrete Services"), as real processes: `databroker`
//! on a real PostgreSQL, `authorize`, `authenticate` and `proxy`, each its own `pomerium`, talking
//! gRPC over TLS with the shared secret; a person signs in against the real OpenID provider
//! (`oidc-provider`) and reaches the upstream through the proxy, whose every decision the
//! authorize service makes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use base64::Engine as _;
use databroker::auth::ServiceAuth;
use ext_authz::wire;
use http::Method;
use pg_test_cluster::TestPostgres;
use std::net::SocketAddr;
use support::browser::{Browser, OidcProvider};
use support::{Pomerium, Setup, echo_upstream, example_com_route, shared_secret_base64};
use url::Url;

const CALLBACK: &str = "https://authenticate.test.localhost/oauth2/callback";

/// Options every service shares: the secrets, the authenticate URL, the identity provider, the
/// routes, and trust in the test CA for the gRPC hops.
fn shared(setup: &Setup, idp: &OidcProvider, upstream: SocketAddr) -> String {
    format!(
        "shared_secret: {secret}\n\
         cookie_secret: {secret}\n\
         authenticate_service_url: https://authenticate.test.localhost\n\
         certificate_authority: {ca}\n\
         health_check_addr: 127.0.0.1:0\n\
         {idp}\
         jwt_claims_headers: [email, groups]\n\
         routes:\n\
         {app}\
         \x20 - from: https://sales.test.localhost\n\
         \x20   to: http://{upstream}\n\
         \x20   policy:\n\
         \x20     allow:\n\
         \x20       and:\n\
         \x20         - claim/groups: sales\n\
         \x20 - from: https://token.test.localhost\n\
         \x20   to: http://{upstream}\n\
         \x20   allow_any_authenticated_user: true\n\
         \x20   set_request_headers:\n\
         \x20     x-token: ${{pomerium.access_token}}\n",
        secret = shared_secret_base64(),
        ca = base64::engine::general_purpose::STANDARD.encode(setup.pki.ca_pem()),
        idp = idp.config(),
        app = example_com_route("app", upstream),
    )
}

/// The certificate of the gRPC services, for the address the others dial.
fn grpc_certificate(setup: &Setup) -> String {
    let leaf = setup.pki.issue(&["127.0.0.1"]);
    let cert = setup.write("grpc.pem", &leaf.cert_pem);
    let key = setup.write("grpc-key.pem", &leaf.key_pem);
    format!("certificates:\n  - cert: {}\n    key: {}\n", cert.display(), key.display())
}

/// The route hosts' certificate (`*.test.localhost`).
fn web_certificate(setup: &Setup) -> String {
    format!("certificates:\n  - cert: {}\n    key: {}\n", setup.cert_path.display(), setup.key_path.display())
}

struct Deployment {
    databroker: Pomerium,
    authorize: Pomerium,
    authenticate: Pomerium,
    proxy: Pomerium,
    authorize_url: String,
}

async fn deploy(setup: &Setup, idp: &OidcProvider, upstream: SocketAddr, postgres: &str) -> Deployment {
    deploy_with(setup, idp, upstream, postgres, "").await
}

/// [`deploy`], with `extra` top-level options for every service.
async fn deploy_with(
    setup: &Setup,
    idp: &OidcProvider,
    upstream: SocketAddr,
    postgres: &str,
    extra: &str,
) -> Deployment {
    let common = format!("{}{extra}", shared(setup, idp, upstream));
    let grpc = grpc_certificate(setup);
    let databroker = Pomerium::spawn_until(
        &setup.write(
            "databroker.yaml",
            &format!(
                "services: databroker\ngrpc_address: 127.0.0.1:0\n\
                 databroker_storage_type: postgres\ndatabroker_storage_connection_string: {postgres}\n{grpc}{common}"
            ),
        ),
        setup.pki.ca(),
        "serving gRPC",
    )
    .await;
    let databroker_url = format!("https://127.0.0.1:{}", databroker.address.port());
    let authorize = Pomerium::spawn_until(
        &setup.write(
            "authorize.yaml",
            &format!(
                "services: authorize\ngrpc_address: 127.0.0.1:0\ndatabroker_service_url: {databroker_url}\n\
                 {grpc}{common}"
            ),
        ),
        setup.pki.ca(),
        "serving gRPC",
    )
    .await;
    let authorize_url = format!("https://127.0.0.1:{}", authorize.address.port());
    let web = web_certificate(setup);
    let authenticate = Pomerium::spawn(
        &setup.write(
            "authenticate.yaml",
            &format!(
                "services: authenticate\naddress: 127.0.0.1:0\ndatabroker_service_url: {databroker_url}\n{web}{common}"
            ),
        ),
        setup.pki.ca(),
    )
    .await;
    let proxy = Pomerium::spawn(
        &setup.write(
            "proxy.yaml",
            &format!(
                "services: proxy\naddress: 127.0.0.1:0\ndatabroker_service_url: {databroker_url}\n\
                 authorize_service_url: {authorize_url}\n{web}{common}"
            ),
        ),
        setup.pki.ca(),
    )
    .await;
    Deployment { databroker, authorize, authenticate, proxy, authorize_url }
}

/// A browser that reaches the authenticate host on its service and every other host on the proxy.
fn browser_for(deployment: &Deployment) -> Browser {
    let mut browser = Browser::new(&deployment.proxy);
    browser.hosts.insert("authenticate.test.localhost".to_owned(), deployment.authenticate.address);
    browser
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discrete_services_sign_a_user_in_and_authorize_every_request() {
    let postgres = TestPostgres::shared().unwrap().database().unwrap();
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &["https://authenticate.test.localhost/.pomerium/signed_out"], None);
    let upstream = echo_upstream("app", None).await;
    let mut deployment = deploy(&setup, &idp, upstream.address, &postgres).await;
    let mut browser = browser_for(&deployment);

    // Sign-in: the proxy sends the browser to the authenticate service, which runs the code flow
    // and writes the session to the databroker; the proxy's callback sets the cookie.
    let page = browser.get("https://app.test.localhost/hello").await;
    assert!(page.url.as_str().contains("/interaction/"), "at the provider's login: {:?}", browser.visited);
    let page = browser.sign_in_at_provider(page, "alice").await;
    let logs = || {
        format!(
            "authenticate:\n{}\nproxy:\n{}\nauthorize:\n{}",
            deployment.authenticate.logs().join("\n"),
            deployment.proxy.logs().join("\n"),
            deployment.authorize.logs().join("\n")
        )
    };
    assert_eq!(page.reply.status, 200, "{:?}\n{}", browser.visited, logs());
    assert_eq!(page.url.as_str(), "https://app.test.localhost/hello");
    let seen = page.reply.seen();
    assert_eq!(seen.header("x-pomerium-claim-email").as_deref(), Some("alice@example.com"));
    assert_eq!(seen.header("x-pomerium-claim-groups").as_deref(), Some("engineering,staff"));
    // The authorize service signed the assertion; it verifies against the proxy's JWKS (both
    // derive the key from the shared secret).
    let jwks =
        browser.send(Method::GET, &url("https://app.test.localhost/.well-known/pomerium/jwks.json"), None, &[]).await;
    let claims = support::verify_es256(&seen.header("x-pomerium-jwt-assertion").unwrap(), &jwks.json());
    assert_eq!(
        (claims["email"].as_str(), claims["aud"].as_str()),
        (Some("alice@example.com"), Some("app.test.localhost"))
    );
    // The session lives in the databroker, not in either process: the authenticate service wrote
    // it, the authorize service found it.
    assert_eq!(deployment.authenticate.count_logs("signed in"), 1);

    // Header templates that read the identity are filled by the authorize service.
    let page = browser.get("https://token.test.localhost/").await;
    assert!(page.reply.seen().header("x-token").is_some_and(|token| !token.is_empty()), "{}", logs());
    // The policy decides on the provider's claims: alice is not in sales.
    assert_eq!(browser.get("https://sales.test.localhost/").await.reply.status, 403);

    // The proxy serves no authenticate endpoints and the authenticate service no routes.
    let mut wrong = Browser::new(&deployment.authenticate);
    assert_eq!(wrong.send(Method::GET, &url("https://app.test.localhost/"), None, &[]).await.status, 404);

    // Sign-out through the proxy ends the session in the databroker: the old cookie is no
    // session for the authorize service any more.
    let cookie = browser.cookie("app.test.localhost", "_pomerium").expect("a session cookie");
    let signed_out =
        browser.send(Method::POST, &url("https://app.test.localhost/.pomerium/sign_out"), Some(&[]), &[]).await;
    assert_eq!(signed_out.status, 302, "{}", signed_out.text());
    support::eventually("the signed-out session to be refused", || {
        let mut replay = browser_for(&deployment);
        replay.set_cookie("app.test.localhost", "_pomerium", &cookie);
        async move {
            let reply = replay
                .send(Method::GET, &url("https://app.test.localhost/"), None, &[("accept", "application/json")])
                .await;
            (reply.status == 401).then_some(())
        }
    })
    .await;

    // Every decision is the authorize service's: without it, the proxy answers 503 (Envoy's
    // `status_on_error`) rather than deciding alone.
    deployment.authorize.terminate();
    support::eventually("the proxy to answer 503 without its authorize service", || {
        let mut probe = browser_for(&deployment);
        async move {
            let reply =
                probe.send(Method::GET, &url("https://app.test.localhost/"), None, &[("accept", "text/html")]).await;
            (reply.status == 503).then_some(())
        }
    })
    .await;
    deployment.databroker.assert_running();
    deployment.proxy.assert_running();
}

/// How the tests dial the gRPC services: trusting the test CA.
fn grpc_options(setup: &Setup) -> databroker::client::RemoteOptions {
    databroker::client::RemoteOptions { ca_pem: Some(setup.pki.ca_pem().into_bytes()), insecure_skip_verify: false }
}

/// An ext_authz client of the deployment's authorize service, with the shared secret.
async fn authorize_client(deployment: &Deployment, options: &databroker::client::RemoteOptions) -> ext_authz::Client {
    let urls = [deployment.authorize_url.clone()];
    ext_authz::Client::connect(&urls, ServiceAuth::new(&support::SHARED_KEY), options, Default::default())
        .await
        .unwrap()
}

/// A Check as Envoy builds it for Pomerium: headers only, no route id, the client's address.
fn envoy_like(path: &str, accept: &str) -> ext_authz::CheckRequest {
    let host = "app.test.localhost";
    let headers = [("accept", accept), (":authority", host)].map(|(name, value)| (name.to_owned(), value.to_owned()));
    support::envoy_check("192.0.2.7", host, path, headers)
}

/// [`envoy_like`] with the client certificate chain as Pomerium's Envoy forwards it: dynamic
/// metadata `com.pomerium.client-certificate-info` {presented, chain} from its Lua filter, the
/// chain URL-encoded PEM (`urlEncodedPemEncodedPeerCertificateChain`), and no verdict.
fn envoy_like_with_certificate(path: &str, chain_pem: &str) -> ext_authz::CheckRequest {
    let mut request = envoy_like(path, "application/json");
    let value = |kind| prost_types::Value { kind: Some(kind) };
    let fields = [
        ("presented".to_owned(), value(prost_types::value::Kind::BoolValue(true))),
        (
            "chain".to_owned(),
            value(prost_types::value::Kind::StringValue(
                url::form_urlencoded::byte_serialize(chain_pem.as_bytes()).collect(),
            )),
        ),
    ];
    let info = prost_types::Struct { fields: fields.into_iter().collect() };
    let attributes = request.attributes.as_mut().unwrap();
    attributes.metadata_context = Some(wire::Metadata {
        filter_metadata: [("com.pomerium.client-certificate-info".to_owned(), info)].into_iter().collect(),
    });
    request
}

/// The authorize service speaks Envoy's ext_authz: a Check built as Envoy builds it (headers
/// only, no route id) is decided by host and path; a call without the shared secret is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorize_service_answers_envoy_shaped_checks_and_only_with_the_shared_secret() {
    let postgres = TestPostgres::shared().unwrap().database().unwrap();
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let upstream = echo_upstream("app", None).await;
    let deployment = deploy(&setup, &idp, upstream.address, &postgres).await;
    let options = grpc_options(&setup);
    let client = authorize_client(&deployment, &options).await;
    let answer = client.check(envoy_like("/page?x=1", "text/html")).await.unwrap();
    assert_eq!(answer.status.as_ref().map(|s| s.code), Some(tonic::Code::PermissionDenied as i32));
    let Some(wire::check_response::HttpResponse::DeniedResponse(denied)) = answer.http_response else {
        panic!("a denial: {answer:?}")
    };
    assert_eq!(denied.status.map(|s| s.code), Some(302), "a browser without a session is sent to sign in");
    let location = denied.headers.iter().filter_map(|h| h.header.as_ref()).find(|h| h.key == "location").unwrap();
    let location = url(&location.value);
    assert_eq!(location.host_str(), Some("authenticate.test.localhost"));
    assert_eq!(
        location.query_pairs().find(|(k, _)| k == "pomerium_redirect_uri").map(|(_, v)| v.into_owned()).as_deref(),
        Some("https://app.test.localhost/page?x=1")
    );
    let answer = client.check(envoy_like("/api", "application/json")).await.unwrap();
    let Some(wire::check_response::HttpResponse::DeniedResponse(denied)) = answer.http_response else { panic!() };
    assert_eq!(denied.status.map(|s| s.code), Some(401), "an API client gets 401");
    assert!(denied.body.contains("Unauthenticated"), "{}", denied.body);

    // A caller without the shared secret is refused before anything is decided.
    let foreign = ext_authz::Client::connect(
        std::slice::from_ref(&deployment.authorize_url),
        ServiceAuth::new(b"not the shared secret at all...."),
        &options,
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(foreign.check(envoy_like("/", "text/html")).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    // A malformed call is an error, not a panic.
    assert_eq!(
        client.check(ext_authz::CheckRequest { attributes: None }).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
}

/// downstream_mtls in split services: the authorize service checks the client certificate chain
/// it is given against its own `downstream_mtls.ca`, whether the caller is our proxy or an Envoy
/// (whose Lua filter forwards the chain without a verdict), as Pomerium's authorize does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorize_service_checks_client_certificates_whoever_forwards_them() {
    use support::{H2, Pki, client_tls};
    let postgres = TestPostgres::shared().unwrap().database().unwrap();
    let setup = Setup::new();
    let idp = OidcProvider::start(&[CALLBACK], &[], None);
    let upstream = echo_upstream("app", None).await;
    let client_pki = Pki::new("client ca");
    let ca_file = setup.write("client-ca.pem", &client_pki.ca_pem());
    let mtls = format!("downstream_mtls:\n  ca_file: {}\n", ca_file.display());
    let deployment = deploy_with(&setup, &idp, upstream.address, &postgres, &mtls).await;
    let trusted = client_pki.issue(&["alice"]);
    let untrusted = Pki::new("someone else").issue(&["mallory"]);

    // An Envoy: a trusted chain passes the certificate rule (the next answer is about the
    // missing session, 401); an untrusted one, or none, is 495.
    let client = authorize_client(&deployment, &grpc_options(&setup)).await;
    let status = |answer: ext_authz::CheckResponse| match answer.http_response {
        Some(wire::check_response::HttpResponse::DeniedResponse(denied)) => denied.status.map(|s| s.code),
        other => panic!("a denial: {other:?}"),
    };
    let answer = client.check(envoy_like_with_certificate("/", &trusted.cert_pem)).await.unwrap();
    assert_eq!(status(answer), Some(401));
    let answer = client.check(envoy_like_with_certificate("/", &untrusted.cert_pem)).await.unwrap();
    assert_eq!(status(answer), Some(495));
    let answer = client.check(envoy_like("/", "application/json")).await.unwrap();
    assert_eq!(status(answer), Some(495));

    // Our proxy forwards the chain its handshake received, the same way.
    for (leaf, expected) in [(&trusted, 401), (&untrusted, 495)] {
        let tls = client_tls(&setup.pki.ca(), &[b"h2"], Some(leaf));
        let mut connection = H2::handshake(deployment.proxy.tls("app.test.localhost", tls).await).await;
        let request = support::request(Method::GET, "app.test.localhost", "/")
            .header("accept", "application/json")
            .body(proxy::body::empty())
            .unwrap();
        let reply = connection.fetch(request).await;
        assert_eq!(reply.status.as_u16(), expected, "{}", reply.text());
    }
    assert_eq!(upstream.requests(), 0);
}
