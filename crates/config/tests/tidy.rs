//! Every `config::*` diagnostic code is documented in `docs/diagnostics.md`, and every documented
//! one exists (the check is `test_support::tidy`'s, shared with the other crates' codes).

#[test]
fn every_config_code_is_documented_and_every_documented_code_exists() {
    test_support::tidy::assert_codes_documented("config", &["crates"], &["code("], 30);
}
