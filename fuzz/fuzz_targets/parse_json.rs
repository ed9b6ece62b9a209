//! Any input: the json parser, the checker and the formatter must not panic, and whatever parses
//! must format soundly (to the same AST) in all three syntaxes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ppl::Syntax;
use ppl::format::{FormatError, format_source};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let compiled = ppl::compile(text, Syntax::Json);
    if compiled.ast.is_none() || !compiled.errors.iter().all(|e| e.code_str().starts_with("ppl::criterion")) {
        return;
    }
    for to in [Syntax::Yaml, Syntax::Json, Syntax::Text] {
        if let Err(FormatError::Unsound { output }) = format_source(text, Syntax::Json, to) {
            panic!("unsound formatting to {to:?}:\n{text}\n---\n{output}");
        }
    }
});
