//! Pomerium's order for routes that arrive unordered (system.md §2.2).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]

use config::route::sort_routes;

fn ids_after_sorting(routes: &str) -> Vec<String> {
    let loaded = config::load(&format!("routes:\n{routes}"), config::Format::Yaml, &config::env::Empty);
    let mut routes = loaded.config.expect("the config loads").routes;
    sort_routes(&mut routes);
    routes.into_iter().map(|route| route.id).collect()
}

#[test]
fn from_ascending_then_narrower_paths_regexes_and_prefixes_first() {
    let routes = "
  - {id: b-root, from: https://b.example.com, to: http://u}
  - {id: a-prefix-short, from: https://a.example.com, prefix: /api/, to: http://u}
  - {id: a-prefix-long, from: https://a.example.com, prefix: /api/v1/, to: http://u}
  - {id: a-root, from: https://a.example.com, to: http://u}
  - {id: a-path, from: https://a.example.com, path: /health, to: http://u}
  - {id: a-regex, from: https://a.example.com, regex: '^/x/.*', to: http://u}
";
    assert_eq!(ids_after_sorting(routes), ["a-path", "a-regex", "a-prefix-long", "a-prefix-short", "a-root", "b-root"]);
}

#[test]
fn regex_priority_order_descending_with_unset_last() {
    let routes = "
  - {id: r-unset, from: https://a.example.com, regex: '^/z', to: http://u}
  - {id: r-low, from: https://a.example.com, regex: '^/a', regex_priority_order: 1, to: http://u}
  - {id: r-high, from: https://a.example.com, regex: '^/b', regex_priority_order: 5, to: http://u}
";
    assert_eq!(ids_after_sorting(routes), ["r-high", "r-low", "r-unset"]);
}

#[test]
fn equal_matchers_fall_back_to_the_id() {
    let routes = "
  - {id: second, from: https://a.example.com, prefix: /p/, to: http://u1}
  - {id: first, from: https://a.example.com, prefix: /p/, to: http://u2}
";
    assert_eq!(ids_after_sorting(routes), ["first", "second"]);
}
