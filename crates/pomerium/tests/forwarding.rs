//! The `pomerium` binary forwarding to real upstreams: the pooled client (HTTP/1.1, `h2c://`,
//! HTTPS with ALPN), the upstream TLS fields, weighted balancing and outlier detection, path and
//! host rewrites, forwarding headers, request and response header settings, and the credentials
//! that never reach an upstream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests"
)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use proxy::body;
use support::*;
use tokio::sync::mpsc;

#[tokio::test]
async fn http1_upstreams_are_reached_through_a_pooled_connection() {
    let setup = Setup::new();
    let upstream = echo_upstream("plain", None).await;
    std::fs::write(setup.config_path(), setup.config(&routes(&[public("app", &format!("to: {}", upstream.http()))])))
        .unwrap();
    // Idle upstream connections are kept per proxy worker: one worker, one connection.
    let env = [("POMERIUM_PROXY_WORKERS", "1")];
    let mut server = Pomerium::spawn_with(&setup.config_path(), setup.pki.ca(), "serving", &env).await;
    let host = server.host("app");
    for index in 0..5 {
        // A new downstream connection each time; the upstream connection is reused.
        let reply = server.get(&host, &format!("/hello/{index}?q=1")).await;
        let seen = reply.seen();
        assert_eq!(seen.target(), format!("/hello/{index}?q=1"));
        assert_eq!(seen.version(), "HTTP/1.1");
        assert_eq!(seen.header("host").unwrap(), upstream.address.to_string(), "auto host rewrite");
        assert_eq!(seen.header("x-forwarded-host").unwrap(), host);
        assert_eq!(seen.header("x-request-id").unwrap(), reply.header("x-request-id"), "one id both ways");
        assert_eq!(reply.header("x-request-id").len(), 36);
    }
    assert_eq!(upstream.requests(), 5);
    assert_eq!(upstream.connections(), 1, "the upstream client pools its connections");
    server.assert_running();
}

#[tokio::test]
async fn h2c_upstreams_are_spoken_to_in_http2() {
    let setup = Setup::new();
    let upstream = echo_upstream("h2c", None).await;
    let port = upstream.address.port();
    let config = routes(&[
        public("grpc", &format!("to: h2c://127.0.0.1:{port}")),
        public("plain", &format!("to: http://127.0.0.1:{port}")),
    ]);
    let mut server = setup.start(&config).await;
    let seen = server.get(&server.host("grpc"), "/svc.Method").await.seen();
    assert_eq!(seen.version(), "HTTP/2.0", "h2c:// is HTTP/2 with prior knowledge");
    assert_eq!(seen.target(), "/svc.Method");
    let seen = server.get(&server.host("plain"), "/").await.seen();
    assert_eq!(seen.version(), "HTTP/1.1", "http:// stays HTTP/1.1");
    server.assert_running();
}

#[tokio::test]
async fn upstream_tls_fields_take_effect() {
    let setup = Setup::new();
    let upstream_pki = Pki::new("upstream ca");
    let client_pki = Pki::new("upstream client ca");
    let server_leaf = upstream_pki.issue(&["upstream.internal"]);
    let open = echo_upstream("tls", Some(upstream_tls(&server_leaf, None))).await;
    let mutual = echo_upstream("mtls", Some(upstream_tls(&server_leaf, Some(client_pki.ca())))).await;
    let ca_b64 = base64(&upstream_pki.ca_pem());
    let ca_file = setup.write("upstream-ca.pem", &upstream_pki.ca_pem());
    let client_leaf = client_pki.issue(&["proxy.client"]);
    let client_cert_file = setup.write("client.pem", &client_leaf.cert_pem);
    let client_key_file = setup.write("client-key.pem", &client_leaf.key_pem);
    let (open, mutual) = (format!("https://{}", open.address), format!("https://{}", mutual.address));
    let config = routes(&[
        public("verify", &format!("to: {open}")),
        public("skip", &format!("to: {open}\ntls_skip_verify: true")),
        public("ca", &format!("to: {open}\ntls_custom_ca: {ca_b64}\ntls_server_name: upstream.internal")),
        public(
            "ca-file",
            &format!("to: {open}\ntls_custom_ca_file: {}\ntls_server_name: upstream.internal", ca_file.display()),
        ),
        public("ca-no-name", &format!("to: {open}\ntls_custom_ca: {ca_b64}")),
        public("ca-wrong-name", &format!("to: {open}\ntls_custom_ca: {ca_b64}\ntls_server_name: other.internal")),
        public(
            "upstream-name",
            &format!(
                "to: {open}\ntls_custom_ca: {ca_b64}\ntls_server_name: other.internal\ntls_upstream_server_name: upstream.internal"
            ),
        ),
        public("no-client-cert", &format!("to: {mutual}\ntls_custom_ca: {ca_b64}\ntls_server_name: upstream.internal")),
        public(
            "client-cert",
            &format!(
                "to: {mutual}\ntls_custom_ca: {ca_b64}\ntls_server_name: upstream.internal\ntls_client_cert: {}\ntls_client_key: {}",
                base64(&client_leaf.cert_pem),
                base64(&client_leaf.key_pem)
            ),
        ),
        public(
            "client-cert-file",
            &format!(
                "to: {mutual}\ntls_custom_ca_file: {}\ntls_server_name: upstream.internal\ntls_client_cert_file: {}\ntls_client_key_file: {}",
                ca_file.display(),
                client_cert_file.display(),
                client_key_file.display()
            ),
        ),
    ]);
    let mut server = setup.start(&config).await;
    let expectations = [
        ("verify", 502, "the system roots do not know the test CA"),
        ("skip", 200, "tls_skip_verify accepts any certificate"),
        ("ca", 200, "tls_custom_ca and tls_server_name verify the upstream"),
        ("ca-file", 200, "tls_custom_ca_file reads the CA from a file"),
        ("ca-no-name", 502, "the certificate is not for 127.0.0.1"),
        ("ca-wrong-name", 502, "tls_server_name is the name verified"),
        ("upstream-name", 200, "tls_upstream_server_name overrides tls_server_name"),
        ("no-client-cert", 502, "the upstream requires a client certificate"),
        ("client-cert", 200, "tls_client_cert and tls_client_key are presented"),
        ("client-cert-file", 200, "tls_client_cert_file and tls_client_key_file are presented"),
    ];
    for (name, status, why) in expectations {
        let reply = server.get(&server.host(name), "/").await;
        assert_eq!(reply.status.as_u16(), status, "{name}: {why}: {}", reply.text());
        if status == 200 {
            assert_eq!(reply.seen().version(), "HTTP/2.0", "{name}: ALPN negotiates h2 with a TLS upstream");
        } else {
            assert_eq!(reply.header("x-pomerium-intercepted-response"), "true", "{name}");
            assert_eq!(reply.header("x-frame-options"), "SAMEORIGIN", "{name}: error pages carry the headers");
        }
    }
    server.assert_running();
}

#[tokio::test]
async fn weighted_round_robin_follows_the_weights() {
    let setup = Setup::new();
    let (a, b) = (echo_upstream("a", None).await, echo_upstream("b", None).await);
    let config = routes(&[public(
        "app",
        &format!("to:\n  - {},3\n  - {},1\nload_balancing_policy: round_robin", a.http(), b.http()),
    )]);
    let mut server = setup.start(&config).await;
    let mut order = String::new();
    for _ in 0..8 {
        order.push_str(server.get(&server.host("app"), "/").await.seen().upstream());
    }
    assert_eq!(order, "aabaaaba", "smooth weighted round robin, 3:1");
    assert_eq!((a.requests(), b.requests()), (6, 2));
    server.assert_running();
}

#[tokio::test]
async fn least_request_avoids_the_busy_upstream() {
    let setup = Setup::new();
    // `busy` holds every request it gets; the others answer at once.
    let (arrived, mut arrivals) = mpsc::unbounded_channel::<()>();
    let busy = spawn_upstream(None, move |_: Request<Incoming>| {
        let arrived = arrived.clone();
        async move {
            let _ = arrived.send(());
            tokio::time::sleep(Duration::from_secs(60)).await;
            Response::new(body::empty())
        }
    })
    .await;
    let (b, c) = (echo_upstream("b", None).await, echo_upstream("c", None).await);
    let config = routes(&[public(
        "app",
        &format!("to:\n  - {}\n  - {}\n  - {}\nload_balancing_policy: least_request", busy.http(), b.http(), c.http()),
    )]);
    let mut server = setup.start(&config).await;
    let host = server.host("app");
    let mut held = 0;
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    let mut pending = Vec::new();
    for _ in 0..60 {
        let request = server.h1("app.test.localhost").await;
        let host = host.clone();
        let mut task = tokio::spawn(async move {
            let mut request = request;
            request.fetch(get(&host, "/")).await
        });
        tokio::select! {
            reply = &mut task => {
                *served.entry(reply.unwrap().seen().upstream().to_owned()).or_default() += 1;
            }
            _ = arrivals.recv() => {
                held += 1;
                pending.push(task);
            }
            () = tokio::time::sleep(PROMPTLY) => panic!("the request went nowhere"),
        }
    }
    // Round robin would send every third request (20) to the busy upstream; least request sends
    // one there only when both of its two random draws are the busy one (1 in 9).
    assert!(held < 20, "{held} requests went to the busy upstream; {served:?}");
    assert!(served.get("b").is_some_and(|&n| n > 0) && served.get("c").is_some_and(|&n| n > 0), "{served:?}");
    assert_eq!(held + served.values().sum::<usize>(), 60);
    server.assert_running();
    for task in pending {
        task.abort();
    }
}

#[tokio::test]
async fn failing_upstreams_are_ejected() {
    let setup = Setup::new();
    let good = echo_upstream("good", None).await;
    let bad = spawn_upstream(None, |_: Request<Incoming>| async {
        Response::builder().status(500).body(body::full("broken")).unwrap()
    })
    .await;
    let to = format!("to:\n  - {}\n  - {}", good.http(), bad.http());
    let config = routes(&[
        public("detected", &format!("{to}\noutlier_detection:\n  consecutive_5xx: 2\n  base_ejection_time: 60s")),
        public("undetected", &to),
    ]);
    let mut server = setup.start(&config).await;
    let mut statuses = Vec::new();
    for _ in 0..14 {
        statuses.push(server.get(&server.host("detected"), "/").await.status.as_u16());
    }
    assert_eq!(statuses[..4], [200, 500, 200, 500], "round robin until the second failure");
    assert!(statuses[4..].iter().all(|&s| s == 200), "then the failing upstream is out: {statuses:?}");
    assert_eq!(bad.requests(), 2);

    let mut failures = 0;
    for _ in 0..6 {
        failures += usize::from(server.get(&server.host("undetected"), "/").await.status == 500);
    }
    assert_eq!(failures, 3, "without outlier detection the failing upstream keeps its share");
    server.assert_running();
}

#[tokio::test]
async fn path_rewrites() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let to = upstream.http();
    let config = routes(&[
        public("prefix", &format!("prefix: /api/\nto: {to}\nprefix_rewrite: /v2/")),
        public(
            "regex",
            &format!("to: {to}\nregex_rewrite_pattern: '^/old/(.*)$'\nregex_rewrite_substitution: '/new/\\1'"),
        ),
        public("implicit", &format!("to: {to}/base/")),
        public("none", &format!("to: {to}")),
    ]);
    let mut server = setup.start(&config).await;
    let cases = [
        ("prefix", "/api/users?x=1", "/v2/users?x=1"),
        ("regex", "/old/a/b?q=/old/", "/new/a/b?q=/old/"),
        ("regex", "/other", "/other"),
        ("implicit", "/x/y", "/base/x/y"),
        ("none", "/as/is?k=v", "/as/is?k=v"),
    ];
    for (name, path, expected) in cases {
        let seen = server.get(&server.host(name), path).await.seen();
        assert_eq!(seen.target(), expected, "{name} {path}");
    }
    let reply = server.get(&server.host("prefix"), "/elsewhere").await;
    assert_eq!(reply.status, 404, "the prefix route matches /api/ only");
    server.assert_running();
}

#[tokio::test]
async fn host_rewrites() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let to = upstream.http();
    let config = routes(&[
        public("auto", &format!("to: {to}")),
        public("literal", &format!("to: {to}\nhost_rewrite: backend.internal")),
        public("header", &format!("to: {to}\nhost_rewrite_header: x-target-host")),
        public(
            "path",
            &format!(
                "to: {to}\nhost_path_regex_rewrite_pattern: '^/tenant/([a-z]+)/.*$'\nhost_path_regex_rewrite_substitution: '\\1.tenants.internal'"
            ),
        ),
        public("preserve", &format!("to: {to}\npreserve_host_header: true")),
    ]);
    let mut server = setup.start(&config).await;
    let host_seen = |reply: Reply| reply.seen().header("host").unwrap();
    assert_eq!(host_seen(server.get(&server.host("auto"), "/").await), upstream.address.to_string());
    let reply = server.get(&server.host("literal"), "/").await;
    assert_eq!(reply.seen().header("x-forwarded-host").unwrap(), server.host("literal"));
    assert_eq!(host_seen(reply), "backend.internal");
    let with_header = request(Method::GET, &server.host("header"), "/")
        .header("x-target-host", "chosen.internal")
        .body(body::empty())
        .unwrap();
    assert_eq!(host_seen(server.fetch(with_header).await), "chosen.internal");
    assert_eq!(host_seen(server.get(&server.host("header"), "/").await), server.host("header"), "no header: kept");
    assert_eq!(host_seen(server.get(&server.host("path"), "/tenant/acme/x").await), "acme.tenants.internal");
    assert_eq!(host_seen(server.get(&server.host("preserve"), "/").await), server.host("preserve"));
    server.assert_running();
}

fn forwarded_request(host: &str) -> Request<proxy::body::ProxyBody> {
    request(Method::GET, host, "/")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "front.example")
        .header("x-envoy-external-address", "6.6.6.6")
        .header("x-forwarded-port", "8443")
        .header("forwarded", "for=203.0.113.9;host=front.example;proto=http")
        .header("x-real-ip", "203.0.113.9")
        .body(body::empty())
        .unwrap()
}

#[tokio::test]
async fn forwarding_headers_trust_no_hop_by_default() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let config = routes(&[
        public("app", &format!("to: {}", upstream.http())),
        public("no-xfh", &format!("to: {}\nremove_request_headers: [x-forwarded-host]", upstream.http())),
    ]);
    let mut server = setup.start(&config).await;
    let seen = server.fetch(forwarded_request(&server.host("app"))).await.seen();
    assert_eq!(seen.header("x-forwarded-for").unwrap(), "203.0.113.9, 127.0.0.1", "the peer is appended");
    assert_eq!(seen.header("x-forwarded-proto").unwrap(), "https", "the client's claim is overwritten");
    assert_eq!(seen.header("x-forwarded-host").unwrap(), server.host("app"), "the client's claim is dropped");
    assert_eq!(seen.header("x-envoy-external-address"), None, "a loopback peer is internal; the client's is dropped");
    for claim in ["x-forwarded-port", "forwarded", "x-real-ip"] {
        assert_eq!(seen.header(claim), None, "{claim}: what an untrusted client says is dropped");
    }
    let seen = server.fetch(forwarded_request(&server.host("no-xfh"))).await.seen();
    assert_eq!(seen.header("x-forwarded-host"), None, "removed, and not appended");
    server.assert_running();
}

#[tokio::test]
async fn forwarding_headers_with_a_trusted_hop() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let config = format!("xff_num_trusted_hops: 1\n{}", routes(&[public("app", &format!("to: {}", upstream.http()))]));
    let mut server = setup.start(&config).await;
    let seen = server.fetch(forwarded_request(&server.host("app"))).await.seen();
    assert_eq!(seen.header("x-forwarded-for").unwrap(), "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.header("x-forwarded-proto").unwrap(), "http", "a trusted hop's proto is kept");
    assert_eq!(seen.header("x-envoy-external-address").unwrap(), "203.0.113.9", "the client behind the trusted hop");
    assert_eq!(seen.header("x-forwarded-host").unwrap(), format!("front.example, {}", server.host("app")));
    assert_eq!(seen.header("x-forwarded-port").unwrap(), "8443", "a trusted hop's claims are kept");
    assert_eq!(seen.header("forwarded").unwrap(), "for=203.0.113.9;host=front.example;proto=http");
    assert_eq!(seen.header("x-real-ip").unwrap(), "203.0.113.9");
    server.assert_running();
}

#[tokio::test]
async fn request_header_settings() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let fields = format!(
        "to: {}\n\
         set_request_headers:\n  X-Set: fixed\n  X-Both: from-config\n  X-Echo: 'got ${{pomerium.request.headers[\"X-In\"]}}'\n  X-Dollar: 'a $$ b'\n\
         remove_request_headers: [X-Secret, X-Both]",
        upstream.http()
    );
    let mut server = setup.start(&routes(&[public("app", &fields)])).await;
    let sent = request(Method::GET, &server.host("app"), "/")
        .header("x-secret", "s3cret")
        .header("x-both", "from-client")
        .header("x-set", "from-client")
        .header("x-in", "hello")
        .header("x-other", "kept")
        .body(body::empty())
        .unwrap();
    let seen = server.fetch(sent).await.seen();
    assert_eq!(seen.header("x-secret"), None, "removed");
    assert_eq!(seen.header("x-both").unwrap(), "from-config", "set wins over remove");
    assert_eq!(seen.header("x-set").unwrap(), "fixed", "set replaces the client's value");
    assert_eq!(seen.header("x-echo").unwrap(), "got hello", "templates read request headers");
    assert_eq!(seen.header("x-dollar").unwrap(), "a $ b");
    assert_eq!(seen.header("x-other").unwrap(), "kept");
    server.assert_running();
}

/// An upstream answering with the headers its request asked for in `x-respond-<name>`.
async fn header_upstream() -> Upstream {
    spawn_upstream(None, |request: Request<Incoming>| async move {
        let mut response = Response::builder();
        for (name, value) in request.headers() {
            if let Some(wanted) = name.as_str().strip_prefix("x-respond-") {
                response = response.header(wanted, value);
            }
        }
        response.body(body::full("headers")).unwrap()
    })
    .await
}

#[tokio::test]
async fn default_and_route_response_headers() {
    let setup = Setup::new();
    let upstream = header_upstream().await;
    let config = routes(&[
        public("app", &format!("to: {}", upstream.http())),
        public(
            "custom",
            &format!("to: {}\nset_response_headers:\n  X-Frame-Options: DENY\n  X-Route: custom", upstream.http()),
        ),
        public("bare", &format!("to: {}\nset_response_headers:\n  disable: 'true'", upstream.http())),
    ]);
    let mut server = setup.start(&config).await;
    let asking = |host: &str| {
        request(Method::GET, host, "/")
            .header("x-respond-x-frame-options", "ALLOWALL")
            .header("x-respond-x-upstream", "yes")
            .body(body::empty())
            .unwrap()
    };
    let reply = server.fetch(asking(&server.host("app"))).await;
    assert_eq!(reply.header("strict-transport-security"), "max-age=31536000; includeSubDomains; preload");
    assert_eq!(reply.header("x-frame-options"), "SAMEORIGIN", "the default replaces the upstream's");
    assert_eq!(reply.header("x-xss-protection"), "1; mode=block");
    assert_eq!(reply.header("x-upstream"), "yes");
    let reply = server.fetch(asking(&server.host("custom"))).await;
    assert_eq!(reply.header("x-frame-options"), "DENY", "the route's merge over the defaults");
    assert_eq!(reply.header("x-route"), "custom");
    assert!(reply.headers.contains_key("strict-transport-security"));
    let reply = server.fetch(asking(&server.host("bare"))).await;
    assert_eq!(reply.header("x-frame-options"), "ALLOWALL", "`disable` clears them all");
    assert!(!reply.headers.contains_key("strict-transport-security"));
    // Answers no route made carry the global headers too.
    for reply in [server.get(&server.host("nowhere"), "/").await, server.get(&server.host("app"), "/ping").await] {
        assert_eq!(reply.header("x-frame-options"), "SAMEORIGIN", "{reply:?}");
        assert!(reply.headers.contains_key("strict-transport-security"), "{reply:?}");
    }
    server.assert_running();
}

#[tokio::test]
async fn global_response_headers_replace_the_defaults() {
    let setup = Setup::new();
    let upstream = header_upstream().await;
    let config = format!(
        "set_response_headers:\n  X-Global: everywhere\n{}",
        routes(&[public("app", &format!("to: {}", upstream.http()))])
    );
    let mut server = setup.start(&config).await;
    for reply in [server.get(&server.host("app"), "/").await, server.get(&server.host("nowhere"), "/").await] {
        assert_eq!(reply.header("x-global"), "everywhere", "{reply:?}");
        assert!(!reply.headers.contains_key("x-frame-options"), "{reply:?}");
        assert!(!reply.headers.contains_key("strict-transport-security"), "{reply:?}");
    }
    server.assert_running();
}

#[tokio::test]
async fn location_headers_are_rewritten() {
    let setup = Setup::new();
    let upstream = header_upstream().await;
    let internal = format!("http://{}/", upstream.address);
    let fields = format!(
        "to: {}\nrewrite_response_headers:\n  - header: Location\n    prefix: {internal}\n    value: https://app.test.localhost/",
        upstream.http()
    );
    let mut server = setup.start(&routes(&[public("app", &fields)])).await;
    let redirecting = |location: &str| {
        request(Method::GET, &server.host("app"), "/")
            .header("x-respond-location", location)
            .body(body::empty())
            .unwrap()
    };
    let reply = server.fetch(redirecting(&format!("{internal}login?next=/a"))).await;
    assert_eq!(reply.header("location"), "https://app.test.localhost/login?next=/a");
    let reply = server.fetch(redirecting("https://elsewhere.example/")).await;
    assert_eq!(reply.header("location"), "https://elsewhere.example/", "other values are left alone");
    server.assert_running();
}

#[tokio::test]
async fn pomerium_credentials_never_reach_the_upstream() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let mut server = setup.start(&routes(&[public("app", &format!("to: {}", upstream.http()))])).await;
    let with_pomerium = request(Method::GET, &server.host("app"), "/")
        .header("cookie", "a=1; _pomerium=session-secret; b=2")
        .header("authorization", "Pomerium pomerium-jwt")
        .header("x-pomerium-authorization", "pomerium-jwt")
        .body(body::empty())
        .unwrap();
    let seen = server.fetch(with_pomerium).await.seen();
    assert_eq!(seen.header("cookie").unwrap(), "a=1; b=2");
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("x-pomerium-authorization"), None);
    let with_bearer = request(Method::GET, &server.host("app"), "/")
        .header("cookie", "_pomerium=only")
        .header("authorization", "Bearer upstream-token")
        .body(body::empty())
        .unwrap();
    let seen = server.fetch(with_bearer).await.seen();
    assert_eq!(seen.header("cookie"), None);
    assert_eq!(seen.header("authorization").unwrap(), "Bearer upstream-token", "other credentials are the upstream's");
    // A handle in the query is consumed like the cookie, however its name is encoded.
    let in_query = server.get(&server.host("app"), "/x?a=1&pomerium_session=h1&pomerium%5Fsession=h2&b=2").await;
    assert_eq!(in_query.seen().target(), "/x?a=1&b=2");
    let only = server.get(&server.host("app"), "/x?pomerium_session=h").await;
    assert_eq!(only.seen().target(), "/x");
    server.assert_running();
}

#[tokio::test]
async fn forged_identity_headers_never_reach_the_upstream() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let config = format!(
        "jwt_claims_headers:\n  X-Pomerium-Claim-Email: email\n{}",
        routes(&[
            public("plain", &format!("to: {}", upstream.http())),
            public("identity", &format!("to: {}\npass_identity_headers: true", upstream.http())),
        ])
    );
    let mut server = setup.start(&config).await;
    for name in ["plain", "identity"] {
        let forged = request(Method::GET, &server.host(name), "/")
            .header("x-pomerium-jwt-assertion", "forged.jwt.value")
            .header("x-pomerium-claim-email", "ceo@example.com")
            .header("x-pomerium-reproxy-policy", "forged")
            .body(body::empty())
            .unwrap();
        let seen = server.fetch(forged).await.seen();
        assert_eq!(seen.header("x-pomerium-reproxy-policy"), None, "{name}");
        if name == "plain" {
            for header in ["x-pomerium-jwt-assertion", "x-pomerium-claim-email"] {
                assert_eq!(seen.header(header), None, "{name}: a client's {header} is not the proxy's");
            }
        } else {
            // The proxy's own: an anonymous assertion (no user on a public route), and the
            // claim header of a claim nobody has, empty.
            let assertion = seen.header("x-pomerium-jwt-assertion").unwrap();
            assert_ne!(assertion, "forged.jwt.value");
            assert_eq!(assertion.split('.').count(), 3);
            assert_eq!(seen.header("x-pomerium-claim-email").as_deref(), Some(""), "{name}");
        }
    }
    server.assert_running();
}
