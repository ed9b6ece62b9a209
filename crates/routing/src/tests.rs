#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests fail by panicking")]

use super::*;
use proptest::prelude::*;

fn table(routes: &[(&str, PathRule)]) -> RouteTable<usize> {
    let mut builder = Builder::new(Options::default());
    for (i, (host, rule)) in routes.iter().enumerate() {
        builder.add(host, rule.clone(), i).unwrap();
    }
    builder.build()
}

fn find(table: &RouteTable<usize>, authority: &str, path: &str) -> Option<usize> {
    table.lookup(&Request { authority, path, connect: false }).map(|m| *m.value)
}

fn prefix(p: &str) -> PathRule {
    PathRule::Prefix(p.to_owned())
}

#[test]
fn the_first_matching_route_wins_whatever_its_kind() {
    let t = table(&[
        ("app.example.com", prefix("/api/")),
        ("app.example.com", PathRule::Exact("/api/health".to_owned())),
        ("app.example.com", PathRule::Regex("/api/v[0-9]+/.*".to_owned())),
        ("app.example.com", prefix("/")),
    ]);
    assert_eq!(find(&t, "app.example.com", "/api/health"), Some(0));
    assert_eq!(find(&t, "app.example.com", "/api/v1/x"), Some(0));
    assert_eq!(find(&t, "app.example.com", "/api"), Some(3));
    assert_eq!(find(&t, "app.example.com", "/"), Some(3));

    let t = table(&[
        ("app.example.com", PathRule::Regex("/api/v[0-9]+/.*".to_owned())),
        ("app.example.com", PathRule::Exact("/api/health".to_owned())),
        ("app.example.com", prefix("/api/")),
    ]);
    assert_eq!(find(&t, "app.example.com", "/api/v2/users"), Some(0));
    assert_eq!(find(&t, "app.example.com", "/api/health"), Some(1));
    assert_eq!(find(&t, "app.example.com", "/api/other"), Some(2));
    assert_eq!(find(&t, "app.example.com", "/other"), None);
}

#[test]
fn regexes_are_anchored_at_both_ends() {
    let t = table(&[("a.example.com", PathRule::Regex("/x[0-9]".to_owned()))]);
    assert_eq!(find(&t, "a.example.com", "/x1"), Some(0));
    assert_eq!(find(&t, "a.example.com", "/x12"), None);
    assert_eq!(find(&t, "a.example.com", "/y/x1"), None);
}

#[test]
fn hosts_compare_without_case_and_without_port_by_default() {
    let t = table(&[("App.Example.com", prefix("/"))]);
    assert_eq!(find(&t, "app.example.com", "/"), Some(0));
    assert_eq!(find(&t, "APP.EXAMPLE.COM:443", "/"), Some(0));
    assert_eq!(find(&t, "app.example.com:8443", "/"), Some(0));
    assert_eq!(find(&t, "other.example.com", "/"), None);
}

#[test]
fn ports_count_when_match_any_incoming_port_is_off() {
    let mut builder = Builder::new(Options { match_any_incoming_port: false, default_port: 443 });
    builder.add("app.example.com", prefix("/"), 0).unwrap();
    builder.add("app.example.com:8443", prefix("/"), 1).unwrap();
    let t = builder.build();
    assert_eq!(find(&t, "app.example.com", "/"), Some(0));
    assert_eq!(find(&t, "app.example.com:443", "/"), Some(0));
    assert_eq!(find(&t, "app.example.com:8443", "/"), Some(1));
    assert_eq!(find(&t, "app.example.com:9000", "/"), None);
}

#[test]
fn a_host_with_its_own_routes_never_falls_through_to_wildcards() {
    let t = table(&[("*.example.com", prefix("/")), ("app.example.com", prefix("/api"))]);
    assert_eq!(find(&t, "app.example.com", "/api/x"), Some(1));
    assert_eq!(find(&t, "app.example.com", "/other"), None, "Envoy picks the virtual host first");
    assert_eq!(find(&t, "web.example.com", "/other"), Some(0));
}

#[test]
fn wildcards_keep_their_configured_order() {
    let t = table(&[
        ("*.b.example.com", prefix("/admin")),
        ("*.example.com", prefix("/")),
        ("*.b.example.com", prefix("/")),
        ("app-*.example.com", prefix("/")),
    ]);
    assert_eq!(find(&t, "x.b.example.com", "/admin/1"), Some(0));
    assert_eq!(find(&t, "x.b.example.com", "/"), Some(1), "the broader wildcard comes first");
    assert_eq!(find(&t, "app-1.example.com", "/"), Some(1));
    assert_eq!(find(&t, "example.com", "/"), None);
    assert_eq!(find(&t, "example.org", "/"), None);
}

#[test]
fn glob_hosts_match_anywhere() {
    let t = table(&[("app-*.example.com", prefix("/")), ("example.*", prefix("/"))]);
    assert_eq!(find(&t, "app-blue.example.com", "/"), Some(0));
    assert_eq!(find(&t, "example.org", "/"), Some(1));
    assert_eq!(find(&t, "www.example.org", "/"), None);
}

#[test]
fn connect_routes_match_only_connect_requests_with_their_port() {
    let t = table(&[("db.example.com:5432", PathRule::Connect), ("db.example.com", prefix("/"))]);
    let connect = |authority| t.lookup(&Request { authority, path: "", connect: true }).map(|m| *m.value);
    assert_eq!(connect("db.example.com:5432"), Some(0));
    assert_eq!(connect("DB.example.com:5432"), Some(0));
    assert_eq!(connect("db.example.com:5433"), None);
    assert_eq!(find(&t, "db.example.com", "/"), Some(1));
}

#[test]
fn bad_routes_are_refused_and_leave_no_trace() {
    let mut builder = Builder::new(Options::default());
    assert!(matches!(builder.add("a.example.com", PathRule::Regex("(".to_owned()), 0), Err(RouteError::Regex { .. })));
    assert!(matches!(builder.add("a b", prefix("/"), 0), Err(RouteError::Host { .. })));
    assert!(matches!(builder.add("", prefix("/"), 0), Err(RouteError::Host { .. })));
    assert!(matches!(builder.add("db.example.com", PathRule::Connect, 0), Err(RouteError::ConnectWithoutPort { .. })));
    assert!(matches!(builder.add("a.example.com:http", prefix("/"), 0), Err(RouteError::Host { .. })));
    builder.add("*.example.com", prefix("/"), 7).unwrap();
    let t = builder.build();
    assert_eq!(t.len(), 1);
    // The failed regex route did not create a virtual host for a.example.com.
    assert_eq!(find(&t, "a.example.com", "/"), Some(7));
}

#[test]
fn hostile_authorities_match_nothing_and_do_not_panic() {
    let t = table(&[("*.example.com", prefix("/")), ("a.example.com", prefix("/"))]);
    for authority in
        ["", ":", "[", "[::1", "a.example.com:", "a.example.com:99999", "é.example.com", &"a".repeat(10_000)]
    {
        let _ = find(&t, authority, "/");
        let _ = t.lookup(&Request { authority, path: "/", connect: true });
    }
    assert_eq!(find(&t, "a.example.com:99999", "/"), None);
}

// --- the table against a plain reading of the rules ---

/// Envoy's algorithm written the slow, obvious way: pick the virtual host, then scan in order.
fn reference(routes: &[(String, PathRule)], authority: &str, path: &str) -> Option<usize> {
    let options = Options::default();
    let key = authority.to_ascii_lowercase();
    let key = key.rsplit_once(':').filter(|(_, port)| port.parse::<u16>().is_ok()).map_or(key.as_str(), |(h, _)| h);
    let parsed: Vec<(HostPattern, &PathRule)> =
        routes.iter().map(|(h, r)| (HostPattern::parse(h, options).unwrap(), r)).collect();
    let path_matches = |rule: &PathRule| match rule {
        PathRule::Prefix(p) => path.starts_with(p.as_str()),
        PathRule::Exact(p) => path == p,
        PathRule::Regex(r) => regex::Regex::new(&format!("^(?:{r})$")).unwrap().is_match(path),
        PathRule::Connect => false,
    };
    let has_virtual_host = parsed.iter().any(|(h, _)| *h == HostPattern::Exact(key.to_owned()));
    parsed.iter().position(|(host, rule)| {
        let host_ok = match host {
            HostPattern::Exact(h) => h == key,
            wildcard => !has_virtual_host && wildcard.matches(key),
        };
        host_ok && path_matches(rule)
    })
}

fn host_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a.example.com".to_owned()),
        Just("b.example.com".to_owned()),
        Just("x.a.example.com".to_owned()),
        Just("*.example.com".to_owned()),
        Just("*.a.example.com".to_owned()),
        Just("*-1.example.com".to_owned()),
        Just("b*.example.com".to_owned()),
        Just("*".to_owned()),
    ]
}

fn rule_strategy() -> impl Strategy<Value = PathRule> {
    let segment = prop_oneof![Just(""), Just("/"), Just("/a"), Just("/a/"), Just("/ab"), Just("/a/b"), Just("/b")];
    prop_oneof![
        segment.clone().prop_map(|s| PathRule::Prefix(s.to_owned())),
        segment.clone().prop_map(|s| PathRule::Exact(s.to_owned())),
        prop_oneof![Just("/a.*"), Just("/[ab]+"), Just("/a/b?"), Just(".*")]
            .prop_map(|r| PathRule::Regex(r.to_owned())),
    ]
}

proptest! {
    #[test]
    fn the_table_agrees_with_the_plain_reading(
        routes in prop::collection::vec((host_strategy(), rule_strategy()), 0..24),
        authority in prop_oneof![
            Just("a.example.com"), Just("A.example.com:443"), Just("b.example.com"), Just("x.a.example.com"),
            Just("y.a.example.com"), Just("b-1.example.com"), Just("bc.example.com"), Just("example.org"),
        ],
        path in prop_oneof![Just("/"), Just("/a"), Just("/a/"), Just("/a/b"), Just("/ab"), Just("/b"), Just("/abc"), Just("")],
    ) {
        let mut builder = Builder::new(Options::default());
        for (i, (host, rule)) in routes.iter().enumerate() {
            builder.add(host, rule.clone(), i).unwrap();
        }
        let t = builder.build();
        prop_assert_eq!(find(&t, authority, path), reference(&routes, authority, path));
    }
}
