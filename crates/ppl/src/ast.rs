//! The abstract syntax tree shared by the three syntaxes. Every node carries its span.
//!
//! The AST is exactly what the author wrote, minus syntax: rules in order, each rule's blocks in
//! the canonical order `and`, `or`, `not`, `nor`, each criterion with its raw data. What the data
//! means is decided later, by [`crate::check`].

use crate::span::Span;
use crate::value::Value;
use std::fmt;

/// A policy: rules, in order. A policy with no rules is valid (and allows nothing).
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub span: Span,
}

/// One `allow` or `deny` rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub action: Action,
    /// The `allow`/`deny` keyword or key.
    pub action_span: Span,
    /// At most one block per operator, in the order `and`, `or`, `not`, `nor`.
    pub blocks: Vec<Block>,
    /// Where the body had an `action:` key, which Pomerium tolerates and ignores.
    pub ignored_action_key: Option<Span>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    pub const ALL: [Action; 2] = [Action::Allow, Action::Deny];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One operator with its list of criteria.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub operator: Operator,
    pub operator_span: Span,
    pub criteria: Vec<Criterion>,
    pub span: Span,
}

/// How a block combines its criteria (ppl.md §1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// All criteria hold.
    And,
    /// At least one criterion holds.
    Or,
    /// No criterion holds (¬A ∧ ¬B, traditionally NOR).
    Not,
    /// At least one criterion fails (¬A ∨ ¬B, traditionally NAND).
    Nor,
}

impl Operator {
    pub const ALL: [Operator; 4] = [Operator::And, Operator::Or, Operator::Not, Operator::Nor];

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::And => "and",
            Operator::Or => "or",
            Operator::Not => "not",
            Operator::Nor => "nor",
        }
    }

    pub fn from_name(name: &str) -> Option<Operator> {
        Operator::ALL.into_iter().find(|op| op.as_str() == name)
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A criterion as written: `name` or `name/subpath`, and its data.
#[derive(Clone, Debug, PartialEq)]
pub struct Criterion {
    pub name: String,
    /// The text after the first `/` of the key, when there is a `/`.
    pub subpath: Option<String>,
    /// The key (`claim/groups`), or the name in the text form.
    pub key_span: Span,
    pub data: Value,
    pub span: Span,
}

impl Criterion {
    /// The key as written in YAML or JSON: `name` or `name/subpath`.
    pub fn key(&self) -> String {
        match &self.subpath {
            Some(subpath) => format!("{}/{}", self.name, subpath),
            None => self.name.clone(),
        }
    }

    /// Splits a key at its first `/`, as Pomerium does (`claim/example.com/key` → `claim`,
    /// `example.com/key`).
    pub fn split_key(key: &str) -> (String, Option<String>) {
        match key.split_once('/') {
            Some((name, subpath)) => (name.to_owned(), Some(subpath.to_owned())),
            None => (key.to_owned(), None),
        }
    }
}

impl Policy {
    /// A copy with every span reset, so that policies read from different syntaxes compare equal
    /// when they say the same thing. Used by the formatter's soundness check and by tests.
    pub fn without_spans(&self) -> Policy {
        Policy {
            rules: self
                .rules
                .iter()
                .map(|rule| Rule {
                    action: rule.action,
                    action_span: Span::default(),
                    blocks: rule
                        .blocks
                        .iter()
                        .map(|block| Block {
                            operator: block.operator,
                            operator_span: Span::default(),
                            criteria: block
                                .criteria
                                .iter()
                                .map(|c| Criterion {
                                    name: c.name.clone(),
                                    subpath: c.subpath.clone(),
                                    key_span: Span::default(),
                                    data: c.data.without_spans(),
                                    span: Span::default(),
                                })
                                .collect(),
                            span: Span::default(),
                        })
                        .collect(),
                    ignored_action_key: None,
                    span: Span::default(),
                })
                .collect(),
            span: Span::default(),
        }
    }

    /// Every criterion with the rule and block it belongs to, in order.
    pub fn criteria(&self) -> impl Iterator<Item = (&Rule, &Block, &Criterion)> {
        self.rules.iter().flat_map(|rule| {
            rule.blocks.iter().flat_map(move |block| block.criteria.iter().map(move |c| (rule, block, c)))
        })
    }
}
