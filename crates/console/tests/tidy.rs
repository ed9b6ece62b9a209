//! Every `console::*` diagnostic code is documented in `docs/diagnostics.md`, and every
//! documented one exists.

#[test]
fn every_console_code_is_documented_and_every_documented_code_exists() {
    test_support::tidy::assert_codes_documented("console", &["crates/console/src"], &["code(", "\""], 5);
}
