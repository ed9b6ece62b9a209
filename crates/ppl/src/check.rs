//! AST → checked model: every criterion is validated; every problem is reported.

use crate::ast;
use crate::criteria;
use crate::error::Error;
use crate::lint;
use crate::model;
use crate::warning::Warning;

/// The outcome of checking a policy.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The checked policy, when there are no errors.
    pub policy: Option<model::Policy>,
    /// Errors, in source order.
    pub errors: Vec<Error>,
    /// Warnings, in source order.
    pub warnings: Vec<Warning>,
}

/// Validates every criterion of `policy` and runs the lints.
pub fn check(policy: &ast::Policy) -> Checked {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let rules = policy
        .rules
        .iter()
        .map(|rule| model::Rule {
            action: rule.action,
            blocks: rule
                .blocks
                .iter()
                .map(|block| model::Block {
                    operator: block.operator,
                    criteria: block
                        .criteria
                        .iter()
                        .filter_map(|criterion| {
                            let kind = criteria::check(criterion, &mut errors, &mut warnings)?;
                            Some(model::Criterion { kind, key_span: criterion.key_span, span: criterion.span })
                        })
                        .collect(),
                    span: block.span,
                })
                .collect(),
            span: rule.span,
        })
        .collect();
    lint::lint(policy, &mut warnings);
    sort_by_position(&mut errors, Error::span);
    sort_by_position(&mut warnings, Warning::span);
    Checked { policy: errors.is_empty().then_some(model::Policy { rules }), errors, warnings }
}

/// Sorts diagnostics by where they start (stable, so one position keeps its reporting order).
pub(crate) fn sort_by_position<T>(items: &mut [T], span: fn(&T) -> crate::span::Span) {
    items.sort_by_key(|item| span(item).start());
}
