//! Loading what the evaluating commands need: a policy that compiles, and an input document.

use crate::check::report_read_error;
use crate::inputs;
use crate::report::Reporter;
use crate::{Exit, SyntaxArg};
use miette::Severity;

/// A policy that compiled, with its source for showing spans.
pub struct LoadedPolicy {
    pub name: String,
    pub source: String,
    pub ast: ppl::ast::Policy,
    pub model: ppl::model::Policy,
}

/// Reads and compiles a policy; reports problems and says how to exit when it does not compile.
pub fn policy(name: &str, syntax: Option<SyntaxArg>, reporter: &Reporter) -> Result<LoadedPolicy, Exit> {
    let input = inputs::read(name, syntax.map(Into::into)).map_err(|error| {
        report_read_error(reporter, &error);
        if matches!(error, inputs::ReadError::Io { .. }) { Exit::Usage } else { Exit::Invalid }
    })?;
    let compiled = ppl::compile(&input.source, input.syntax);
    match (compiled.ast, compiled.policy) {
        (Some(ast), Some(model)) => Ok(LoadedPolicy { name: input.name, source: input.source, ast, model }),
        _ => {
            reporter.policy(&input.name, &input.source, &compiled.errors, &[]);
            Err(Exit::Invalid)
        }
    }
}

/// Reads an input document (`-` for standard input).
pub fn input(name: &str, reporter: &Reporter) -> Result<policy::contract::OwnedInput, Exit> {
    let text = if name == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| {
            reporter.message(Severity::Error, "<stdin>", &e.to_string());
            Exit::Usage
        })?;
        text
    } else {
        std::fs::read_to_string(name).map_err(|e| {
            reporter.message(Severity::Error, name, &e.to_string());
            Exit::Usage
        })?
    };
    policy::contract::OwnedInput::parse(&text).map_err(|e| {
        reporter.message(Severity::Error, name, &format!("invalid input document: {e}"));
        Exit::Usage
    })
}

/// The clock for inputs without `now`: the real one.
pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}
