//! The `pomerium` process over its life: hot reload on a held connection, invalid edits that
//! keep the old configuration (and show on `/metrics`), graceful shutdown on SIGTERM, plain HTTP
//! with `insecure_server`, the HTTP→HTTPS redirect listener, and the self-signed bootstrap
//! certificate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests"
)]

mod support;

use std::time::Duration;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use proxy::body;
use support::browser::Browser;
use support::*;
use tokio::sync::mpsc;

/// The value of a metric line `name value`.
async fn metric(address: std::net::SocketAddr, name: &str) -> String {
    let reply = plain_get(address, "localhost", "/metrics").await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn reloadable(setup: &Setup, body: &str, upstream: &Upstream) -> String {
    setup.config(&format!(
        "metrics_address: 127.0.0.1:0\n{}",
        routes(&[
            public("app", &format!("response:\n  status: 200\n  body: {body}")),
            public("svc", &format!("to: {}", upstream.http())),
        ])
    ))
}

#[tokio::test]
async fn valid_edits_take_effect_on_open_connections() {
    let setup = Setup::new();
    let (a, b) = (echo_upstream("a", None).await, echo_upstream("b", None).await);
    let mut server = setup.start_raw(&reloadable(&setup, "one", &a)).await;
    let metrics = server.listener("serving metrics").await;
    let (app, svc) = (server.host("app"), server.host("svc"));
    let mut http1 = server.h1("app.test.localhost").await;
    let mut http2 = server.h2("svc.test.localhost").await;
    assert_eq!(http1.fetch(get(&app, "/")).await.text(), "one");
    assert_eq!(http2.fetch(get(&svc, "/")).await.seen().upstream(), "a");

    setup.rewrite_config(&reloadable(&setup, "two, longer", &b));
    server.wait_for_log("configuration reloaded").await;
    assert_eq!(http1.fetch(get(&app, "/")).await.text(), "two, longer", "the same HTTP/1.1 connection");
    assert_eq!(http2.fetch(get(&svc, "/")).await.seen().upstream(), "b", "the same HTTP/2 connection");
    assert!(!http1.is_closed() && !http2.is_closed(), "no connection was dropped");
    assert_eq!(metric(metrics, "pomerium_config_reloads_total{result=\"success\"}").await, "1");
    assert_eq!(metric(metrics, "pomerium_config_last_reload_success").await, "1");
    assert_eq!(metric(metrics, "pomerium_routes").await, "2");
    server.assert_running();
}

#[tokio::test]
async fn invalid_edits_keep_the_old_configuration() {
    let setup = Setup::new();
    let upstream = echo_upstream("a", None).await;
    let good = reloadable(&setup, "original", &upstream);
    let mut server = setup.start_raw(&good).await;
    let metrics = server.listener("serving metrics").await;
    let app = server.host("app");
    let mut connection = server.h1("app.test.localhost").await;
    assert_eq!(metric(metrics, "pomerium_config_last_reload_success").await, "1");

    let bad_policy = good.replace(
        "allow_public_unauthenticated_access: true",
        "policy:\n      allow:\n        or:\n          - no_such_criterion: true",
    );
    let edits = [format!("{good}\nroutes: [\n"), bad_policy, "certificates: 42\n".to_owned()];
    for (index, edit) in edits.iter().enumerate() {
        setup.rewrite_config(edit);
        server.wait_for_log_after("configuration not reloaded; the previous one keeps serving", index).await;
        assert_eq!(connection.fetch(get(&app, "/")).await.text(), "original", "edit {index}");
        assert_eq!(server.get(&app, "/").await.text(), "original", "edit {index}, new connection");
        assert_eq!(metric(metrics, "pomerium_config_last_reload_success").await, "0");
        assert_eq!(metric(metrics, "pomerium_config_reloads_total{result=\"failure\"}").await, (index + 1).to_string());
        server.assert_running();
    }
    assert_eq!(server.count_logs("configuration reloaded"), 0);
    let logs = server.logs().join("\n");
    for problem in ["invalid yaml", "unknown criterion `no_such_criterion`", "`certificates` must be a list"] {
        assert!(logs.contains(problem), "the log says why: {problem}");
    }

    setup.rewrite_config(&reloadable(&setup, "fixed", &upstream));
    server.wait_for_log("configuration reloaded").await;
    assert_eq!(connection.fetch(get(&app, "/")).await.text(), "fixed");
    assert_eq!(metric(metrics, "pomerium_config_last_reload_success").await, "1");
    assert_eq!(metric(metrics, "pomerium_config_reloads_total{result=\"success\"}").await, "1");
    server.assert_running();
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let setup = Setup::new();
    let (arrived, mut arrivals) = mpsc::unbounded_channel::<()>();
    let slow = spawn_upstream(None, move |_: Request<Incoming>| {
        let arrived = arrived.clone();
        async move {
            let _ = arrived.send(());
            tokio::time::sleep(Duration::from_millis(500)).await;
            Response::new(body::full("finished after SIGTERM"))
        }
    })
    .await;
    let mut server = setup.start(&routes(&[public("slow", &format!("to: {}", slow.http()))])).await;
    let mut connection = server.h2("slow.test.localhost").await;
    let host = server.host("slow");
    let in_flight = tokio::spawn(async move { connection.fetch(get(&host, "/")).await });
    tokio::time::timeout(PROMPTLY, arrivals.recv()).await.expect("the request reached the upstream");
    server.terminate();
    let reply = tokio::time::timeout(PROMPTLY, in_flight).await.unwrap().unwrap();
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "finished after SIGTERM"));
    let status = server.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{}", server.logs().join("\n"));
    assert_eq!(server.count_logs("shutting down"), 1);
    assert!(tokio::net::TcpStream::connect(server.address).await.is_err(), "no longer listening");
}

#[tokio::test]
async fn insecure_server_serves_plain_http() {
    let setup = Setup::new();
    let upstream = echo_upstream("a", None).await;
    let config = format!(
        "address: 127.0.0.1:0\nhealth_check_addr: 127.0.0.1:0\ninsecure_server: true\nshared_secret: {}\n\
         authenticate_service_url: https://authenticate.test.localhost\n{}",
        shared_secret_base64(),
        routes(&[
            public("app", &format!("to: {}", upstream.http())),
            route("private", &format!("to: {}\nallow_any_authenticated_user: true", upstream.http())),
            public("moved", "redirect:\n  path_redirect: /new"),
        ])
    );
    let mut server = setup.start_raw(&config).await;
    assert_eq!(server.wait_for_log("serving").await["fields"]["tls"], false);
    let reply = plain_get(server.address, &server.host("app"), "/x").await;
    let seen = reply.seen();
    assert_eq!(seen.header("x-forwarded-proto").unwrap(), "http");
    assert!(!reply.headers.contains_key("strict-transport-security"), "no HSTS without TLS");
    assert_eq!(reply.header("x-frame-options"), "SAMEORIGIN");

    let reply = plain_get(server.address, &server.host("moved"), "/old").await;
    assert_eq!(reply.header("location"), format!("http://{}/new", server.host("moved")), "URLs keep http");
    let browser = request(Method::GET, &server.host("private"), "/p").header("accept", "text/html").body(body::empty());
    let reply = plain_fetch(server.address, browser.unwrap()).await;
    assert_eq!(reply.status, 302);
    let location = url::Url::parse(reply.header("location")).unwrap();
    let back = location.query_pairs().find(|(k, _)| k == "pomerium_redirect_uri").unwrap().1.into_owned();
    assert_eq!(back, format!("http://{}/p", server.host("private")));
    server.assert_running();
}

#[tokio::test]
async fn http_is_redirected_to_https() {
    let setup = Setup::new();
    let upstream = echo_upstream("a", None).await;
    let config =
        format!("http_redirect_addr: 127.0.0.1:0\n{}", routes(&[public("app", &format!("to: {}", upstream.http()))]));
    let mut server = setup.start(&config).await;
    let redirect = server.listener("redirecting http to https").await;
    let port = server.address.port();
    let reply = plain_get(redirect, "app.test.localhost", "/path?q=1").await;
    assert_eq!(reply.status, 301);
    let location = reply.header("location").to_owned();
    assert_eq!(location, format!("https://app.test.localhost:{port}/path?q=1"));
    let post = request(Method::POST, "app.test.localhost:80", "/form").body(body::full("a=1")).unwrap();
    let reply = plain_fetch(redirect, post).await;
    assert_eq!(
        (reply.status.as_u16(), reply.header("location")),
        (308, format!("https://app.test.localhost:{port}/form").as_str())
    );
    let reply = plain_get(redirect, "evil.example@app.test.localhost", "/").await;
    assert_eq!(reply.status, 400, "only a plain host is redirected to");

    // Following the redirect reaches the route over TLS.
    let target = url::Url::parse(&location).unwrap();
    let host = format!("{}:{}", target.host_str().unwrap(), target.port().unwrap());
    let reply = server.get(&host, &format!("{}?{}", target.path(), target.query().unwrap())).await;
    assert_eq!(reply.seen().target(), "/path?q=1");
    assert_eq!(upstream.requests(), 1, "the redirect listener never forwards");
    server.assert_running();
}

#[tokio::test]
async fn without_certificates_a_self_signed_one_is_served() {
    let setup = Setup::new();
    let upstream = echo_upstream("a", None).await;
    let config = format!(
        "address: 127.0.0.1:0\nhealth_check_addr: 127.0.0.1:0\nshared_secret: {}\n\
         authenticate_service_url: https://authenticate.test.localhost\n{}",
        shared_secret_base64(),
        routes(&[public("app", &format!("to: {}", upstream.http()))])
    );
    let mut server = setup.start_raw(&config).await;
    let warning =
        server.wait_for_log("no certificate configured: serving a self-signed one that browsers will not trust").await;
    assert_eq!(warning["level"], "WARN");

    let stream = server.tls("app.test.localhost", accept_any_server(&[b"http/1.1"])).await;
    let served = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let mut names = proxy::tls::certificate_names(&served).unwrap();
    names.sort();
    for name in ["app.test.localhost", "authenticate.test.localhost", "localhost"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    drop(stream);

    // A client that trusts exactly that certificate verifies the route's name against it.
    let config = client_tls(&served, &[b"h2"], None);
    let mut connection = H2::handshake(server.tls("app.test.localhost", config).await).await;
    let reply = connection.fetch(get(&server.host("app"), "/")).await;
    assert_eq!(reply.seen().upstream(), "a");
    assert!(!reply.headers.contains_key("strict-transport-security"), "no HSTS for a self-signed certificate");
    server.assert_running();
}

/// The README's run command: `examples/config.yaml` as it is (only its port made free), on
/// defaults: a self-signed certificate, random secrets, the in-memory databroker and the
/// development identity provider. A person signs in as alice and the example upstream sees them.
#[tokio::test]
async fn the_example_config_runs_on_defaults() {
    let setup = Setup::new();
    let upstream = echo_upstream("whoami", None).await;
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/config.yaml")).unwrap();
    assert!(example.contains("address: \":8443\""), "the example listens on :8443");
    assert!(example.contains("http://localhost:8001"), "the example upstream is on :8001");
    let text = example
        .replace("address: \":8443\"", "address: 127.0.0.1:0")
        .replace("http://localhost:8001", &format!("http://{}", upstream.address));
    let mut server = setup.start_raw(&text).await;
    server.wait_for_log("no certificate configured: serving a self-signed one that browsers will not trust").await;
    let port = server.address.port();
    let fetch = |name: &str, path: &str, accept: &str| {
        let host = format!("{name}.localhost.pomerium.io");
        let request =
            request(Method::GET, &format!("{host}:{port}"), path).header("accept", accept).body(body::empty());
        let server = &server;
        async move {
            let stream = server.tls(&host, accept_any_server(&[b"h2"])).await;
            H2::handshake(stream).await.fetch(request.unwrap()).await
        }
    };

    let reply = fetch("status", "/status.json", "*/*").await;
    assert_eq!((reply.status.as_u16(), reply.text()), (200, r#"{"status":"ok"}"#.to_owned()));

    let reply = fetch("wiki", "/page", "text/html").await;
    assert_eq!(reply.status, 302, "the wiki needs a user");
    let location = url::Url::parse(reply.header("location")).unwrap();
    assert_eq!(location.host_str(), Some("authenticate.localhost.pomerium.io"));
    let back = location.query_pairs().find(|(k, _)| k == "pomerium_redirect_uri").unwrap().1.into_owned();
    assert_eq!(back, format!("https://wiki.localhost.pomerium.io:{port}/page"));

    // The development identity provider's page lists the configured users; alice signs in and
    // the wiki's upstream sees her.
    let mut browser = Browser::new(&server);
    browser.insecure = true;
    let page = browser.get(&format!("https://wiki.localhost.pomerium.io:{port}/page")).await;
    let html = page.reply.text();
    assert!(html.contains("for development only"), "{html}");
    assert!(html.contains("alice@example.com") && html.contains("bob@example.org"));
    let page = browser.submit_first_form_containing(page, "alice@example.com").await;
    assert_eq!(page.url.as_str(), format!("https://wiki.localhost.pomerium.io:{port}/page"), "{:?}", browser.visited);
    let seen = page.reply.seen();
    assert_eq!(seen.upstream(), "whoami");
    assert_eq!(seen.header("x-pomerium-claim-email").as_deref(), Some("alice@example.com"));
    assert_eq!(seen.header("x-pomerium-claim-groups").as_deref(), Some("engineering"));

    let reply = fetch("admin", "/admin/billing", "application/json").await;
    assert_eq!(reply.status, 401, "API clients are not redirected");

    let reply = fetch("docs", "/a?b=1", "*/*").await;
    assert_eq!((reply.status.as_u16(), reply.header("location")), (301, "https://wiki.localhost.pomerium.io/a?b=1"));

    let reply = fetch("status", "/", "*/*").await;
    assert_eq!(reply.seen().upstream(), "whoami", "the public status page needs no user");
    let reply = fetch("nowhere", "/", "application/json").await;
    assert_eq!(reply.status, 404);
    server.assert_running();
}

/// An option the server does not act on is not silent: the start logs `check`'s warning, at the
/// option's place in the file; a refused one stops the start with the reason.
#[tokio::test]
async fn options_the_server_does_not_act_on_are_warned_about_at_their_place() {
    let setup = Setup::new();
    let text = setup
        .config(&format!("codec_type: http3\n{}", routes(&[public("app", "response:\n  status: 200\n  body: ok")])));
    let line = text.lines().position(|l| l.starts_with("codec_type:")).unwrap() + 1;
    let server = setup.start_raw(&text).await;
    let logs = server.logs().join("\n");
    let place = format!(":{line}:1: [config::option::not_supported] `codec_type` is accepted but has no effect");
    assert!(logs.contains(&place), "the start warns at the option's place ({place}):\n{logs}");
    drop(server);

    std::fs::write(setup.config_path(), text.replace("codec_type: http3", "ssh_address: \":2200\"")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pomerium"))
        .arg("--config")
        .arg(setup.config_path())
        .env_clear()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("a refused configuration must stop the start promptly");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[config::option::refused] `ssh_address` is refused"), "{stderr}");
}
