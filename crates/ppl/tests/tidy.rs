//! Repository invariants that are not code: kept true by tests, as rust-analyzer does.

use test_support::tidy::{assert_codes_documented, workspace};

#[test]
fn every_diagnostic_code_is_documented_and_every_documented_code_exists() {
    assert_codes_documented("ppl", &["crates"], &["code("], 50);
}

#[test]
fn the_grammar_the_parser_uses_is_the_one_in_grammar_dir() {
    let text = std::fs::read_to_string(workspace().join("crates/ppl/src/syntax/text.rs")).unwrap_or_default();
    assert!(text.contains("#[grammar = \"../../../grammar/ppl.pest\"]"));
    assert!(workspace().join("grammar/ppl.pest").exists());
}
