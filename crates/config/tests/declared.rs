//! An option is declared once (`declare!` in `options.rs` and `route.rs`: field, type, default,
//! keys, reader). These tests hold the rest of the crate to it: the key lists are the
//! declarations' (none kept by hand in `keys.rs`), a key written with no value reads as the
//! declared default (one defaulting rule, global and per route), and the unknown-key suggestions
//! come from the declared keys.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking, on fixtures they know"
)]

use config::{Format, keys};
use miette::Diagnostic;
use std::collections::BTreeSet;

fn load(source: &str) -> config::Loaded {
    config::load(source, Format::Yaml, &config::env::Empty)
}

#[test]
fn keys_rs_lists_no_declared_key_by_hand() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/keys.rs");
    let text = std::fs::read_to_string(path).unwrap();
    for list in ["GLOBAL_TYPED", "ROUTE", "DOWNSTREAM_MTLS"] {
        assert!(!text.contains(&format!("const {list}")), "keys.rs defines `{list}` by hand; it comes from `declare!`");
    }
    // A declared key may be named in keys.rs only where it also belongs to a list of another kind
    // (kept as written, an Envoy field, removed).
    let elsewhere: BTreeSet<&str> = keys::GLOBAL_RAW
        .iter()
        .chain(keys::ENVOY_CLUSTER)
        .copied()
        .chain(keys::REMOVED_GLOBAL.iter().chain(keys::REMOVED_ROUTE).map(|(key, _)| *key))
        .collect();
    for key in keys::GLOBAL_TYPED.iter().chain(keys::ROUTE).chain(keys::DOWNSTREAM_MTLS) {
        if !elsewhere.contains(key) {
            assert!(!text.contains(&format!("\"{key}\"")), "keys.rs names the declared key `{key}` by hand");
        }
    }
}

#[test]
fn each_key_is_declared_once() {
    for (name, list) in
        [("GLOBAL_TYPED", keys::GLOBAL_TYPED), ("ROUTE", keys::ROUTE), ("DOWNSTREAM_MTLS", keys::DOWNSTREAM_MTLS)]
    {
        let mut seen = BTreeSet::new();
        for key in list {
            assert!(seen.insert(key), "`{key}` is declared twice in {name}");
        }
    }
    let raw: BTreeSet<&str> = keys::GLOBAL_RAW.iter().copied().collect();
    for key in keys::GLOBAL_TYPED {
        assert!(!raw.contains(key), "`{key}` is both declared typed and kept as written");
    }
}

/// Every declared default is what an empty file reads as, and `key:` with no value (YAML's null,
/// "not set" for Pomerium) leaves that default, whatever the reader.
#[test]
fn a_key_without_a_value_reads_as_its_declared_default() {
    let empty = load("").config.unwrap().options;
    assert_eq!(empty, config::Options::default());
    for key in keys::GLOBAL_TYPED {
        let loaded = load(&format!("{key}:\n"));
        assert!(loaded.errors.is_empty(), "`{key}:` with no value: {:?}", loaded.errors);
        assert_eq!(loaded.config.unwrap().options, empty, "`{key}:` with no value changed the options");
    }
    for key in keys::DOWNSTREAM_MTLS {
        let loaded = load(&format!("downstream_mtls:\n  {key}:\n"));
        assert!(loaded.errors.is_empty(), "`downstream_mtls.{key}:` with no value: {:?}", loaded.errors);
        assert_eq!(loaded.config.unwrap().options, empty, "`downstream_mtls.{key}:` with no value changed the options");
    }
    let route = "routes:\n  - from: https://a.example.com\n    to: http://a\n    allow_any_authenticated_user: true\n";
    let base = load(route).config.unwrap().routes.remove(0);
    for key in keys::ROUTE.iter().filter(|key| !["from", "to", "allow_any_authenticated_user"].contains(key)) {
        let loaded = load(&format!("{route}    {key}:\n"));
        assert!(loaded.errors.is_empty(), "route `{key}:` with no value: {:?}", loaded.errors);
        let mut read = loaded.config.unwrap().routes.remove(0);
        // The route's own span (and the policy pointing at it) covers the extra line.
        read.span = base.span;
        read.policy = base.policy.clone();
        assert_eq!(read, base, "route `{key}:` with no value changed the route");
    }
}

/// A misspelt key is suggested a declared one.
#[test]
fn suggestions_come_from_the_declared_keys() {
    let known: BTreeSet<&str> = keys::GLOBAL_TYPED.iter().chain(keys::GLOBAL_RAW).copied().collect();
    for key in keys::GLOBAL_TYPED.iter().filter(|key| key.len() > 6) {
        let loaded = load(&format!("{key}x: 1\n"));
        let help = loaded.warnings.iter().find_map(|w| w.diagnostic.help()).map(|h| h.to_string());
        let help = help.unwrap_or_else(|| panic!("no suggestion for `{key}x`: {:?}", loaded.warnings));
        assert!(known.iter().any(|k| help.contains(&format!("`{k}`"))), "`{key}x`: {help}");
    }
    let known: BTreeSet<&str> = keys::ROUTE.iter().copied().collect();
    for key in keys::ROUTE.iter().filter(|key| key.len() > 6) {
        let source = format!("routes:\n  - from: https://a.example.com\n    to: http://a\n    {key}x: 1\n");
        let loaded = load(&source);
        let help = loaded
            .warnings
            .iter()
            .filter(|w| w.diagnostic.to_string().contains(&format!("{key}x")))
            .find_map(|w| w.diagnostic.help())
            .map(|h| h.to_string());
        let help = help.unwrap_or_else(|| panic!("no suggestion for route `{key}x`: {:?}", loaded.warnings));
        assert!(known.iter().any(|k| help.contains(&format!("`{k}`"))), "route `{key}x`: {help}");
    }
}
