//! The Pomerium Policy Language: parsing, checking and formatting policies.
//!
//! ```text
//! text ──parse──► ast::Policy ──check──► model::Policy ──(policy crate)──► decision IR
//!   YAML / JSON: syntax::{yaml,json} → value::Value → lower
//!   text form:   syntax::text (grammar/ppl.pest)
//! ```
//!
//! Invariant: this crate does no I/O and never panics; every problem is a value with a span, and
//! every problem in a policy is reported, not only the first.
//!
//! ```
//! let compiled = ppl::compile("allow:\n  or:\n    - email: {is: alice@example.com}\n", ppl::Syntax::Yaml);
//! assert!(compiled.errors.is_empty());
//! let policy = compiled.policy.unwrap();
//! assert_eq!(policy.rules.len(), 1);
//! ```

#![cfg_attr(test, allow(clippy::string_slice, reason = "tests slice fixtures at offsets they know"))]

pub mod ast;
mod check;
pub mod comments;
pub mod criteria;
pub mod error;
pub mod format;
mod lint;
pub mod lower;
pub mod model;
pub mod span;
pub mod suggest;
pub mod syntax;
pub mod value;
pub mod warning;

pub use check::{Checked, check};
pub use error::Error;
pub use span::{LineCol, LineIndex, Span};
pub use syntax::Syntax;
pub use warning::Warning;

/// The outcome of parsing: the AST (when the text could be read at all) and every error.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub policy: Option<ast::Policy>,
    pub errors: Vec<Error>,
}

/// Parses a policy written in `syntax`. Shape errors (ppl.md §1.3) are reported here; what the
/// criteria's data means is checked by [`check`].
pub fn parse(source: &str, syntax: Syntax) -> Parsed {
    if source.len() > syntax::MAX_POLICY_BYTES {
        let error = error::TooLarge { limit: syntax::MAX_POLICY_BYTES, span: Span::empty_at(0).into() };
        return Parsed { policy: None, errors: vec![error.into()] };
    }
    let (policy, mut errors) = match syntax {
        Syntax::Yaml => lower_value(syntax::yaml::parse(source)),
        Syntax::Json => lower_value(syntax::json::parse(source)),
        Syntax::Text => syntax::text::parse(source),
    };
    check::sort_by_position(&mut errors, Error::span);
    Parsed { policy, errors }
}

fn lower_value((value, mut errors): (Option<value::Value>, Vec<Error>)) -> (Option<ast::Policy>, Vec<Error>) {
    let policy = value.map(|value| lower::policy(&value, &mut errors));
    (policy, errors)
}

/// Lowers a policy that was read as part of a larger document (a route's `policy:` in a config
/// file), reporting shape errors with spans into that document.
pub fn parse_value(value: &value::Value) -> Parsed {
    let mut errors = Vec::new();
    let policy = lower::policy(value, &mut errors);
    Parsed { policy: Some(policy), errors }
}

/// Everything `pomerium-policy check` needs to know about a policy.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The AST, when the text could be read.
    pub ast: Option<ast::Policy>,
    /// The checked policy, when there are no errors.
    pub policy: Option<model::Policy>,
    /// Errors, in source order; parse errors and check errors together.
    pub errors: Vec<Error>,
    /// Warnings, in source order.
    pub warnings: Vec<Warning>,
}

/// Parses and checks a policy.
pub fn compile(source: &str, syntax: Syntax) -> Compiled {
    let Parsed { policy: ast, mut errors } = parse(source, syntax);
    let Some(ast) = ast else {
        return Compiled { ast: None, policy: None, errors, warnings: Vec::new() };
    };
    let checked = check(&ast);
    let clean = errors.is_empty();
    errors.extend(checked.errors);
    check::sort_by_position(&mut errors, Error::span);
    let policy = checked.policy.filter(|_| clean);
    // Lints over a policy whose shape is broken would describe the holes the errors left.
    let warnings = if clean { checked.warnings } else { Vec::new() };
    Compiled { ast: Some(ast), policy, errors, warnings }
}
