//! `pomerium-policy explain`: the decision as a tree of rules, blocks and criteria, each with its
//! result, what it read and where it is; then, when the request is not allowed, the nearest miss
//! and a one-line remediation. Built on the reference interpreter, which evaluates every
//! criterion (the compiled program skips those that cannot change the result).

use crate::eval::exit_for;
use crate::load::Target;
use crate::report::{Format, Reporter};
use crate::{Exit, load};
use policy::decision::{Verdict, wants_html};
use policy::explain::{self, Miss};
use policy::reason::Reason;
use policy::reference::{self, CriterionTrace, Trace};
use ppl::LineIndex;
use ppl::ast::{Action, Operator};

pub fn run(args: &crate::eval::Args, reporter: &Reporter) -> Exit {
    let (target, owned) = match load::target_and_input(args, reporter) {
        Ok(both) => both,
        Err(exit) => return exit,
    };
    let Target::Policy(loaded) = target else {
        // No route, so no policy ran: an empty trace with Pomerium's `route-not-found` decision.
        let nothing = load::LoadedPolicy {
            name: String::new(),
            source: String::new(),
            ast: ppl::ast::Policy { rules: Vec::new(), span: ppl::Span::default() },
            model: ppl::model::Policy::empty(),
        };
        let trace = Trace { rules: Vec::new(), decision: crate::eval::not_found() };
        return print(&Explanation::new(&nothing, &trace, Verdict::NotFound), reporter);
    };
    let input = owned.input(load::now());
    let trace = reference::evaluate(&loaded.model, &input, &owned.records);
    let verdict = trace.decision.verdict(wants_html(owned.accept()));
    print(&Explanation::new(&loaded, &trace, verdict), reporter)
}

fn print(explanation: &Explanation<'_>, reporter: &Reporter) -> Exit {
    let verdict = explanation.verdict;
    match reporter.format {
        Format::Json => println!("{}", explanation.json()),
        Format::Human | Format::Plain => print!("{}", explanation.human()),
    }
    exit_for(verdict)
}

struct Explanation<'a> {
    loaded: &'a load::LoadedPolicy,
    trace: &'a Trace<'a>,
    verdict: Verdict,
    index: LineIndex<'a>,
}

impl<'a> Explanation<'a> {
    fn new(loaded: &'a load::LoadedPolicy, trace: &'a Trace<'a>, verdict: Verdict) -> Explanation<'a> {
        Explanation { loaded, trace, verdict, index: LineIndex::new(&loaded.source) }
    }

    /// The criterion as text, from the AST node at the same place.
    fn criterion_text(&self, trace: &CriterionTrace<'_>) -> String {
        self.loaded
            .ast
            .criteria()
            .find(|(_, _, c)| c.span == trace.criterion.span)
            .map(|(_, _, c)| ppl::format::criterion_text(c))
            .unwrap_or_default()
    }

    fn location(&self, span: ppl::Span) -> ppl::LineCol {
        self.index.line_col(span.start())
    }

    /// The criteria that decide the verdict against the request: matching deny blocks, or the
    /// allow block closest to allowing.
    fn misses(&self) -> Vec<Miss<'a>> {
        explain::misses(self.trace, self.verdict)
    }

    fn remediation(&self) -> String {
        let decision = self.trace.decision;
        let either = decision.allow.reasons.union(decision.deny.reasons);
        match self.verdict {
            Verdict::Allow => "none: the request is allowed".to_owned(),
            Verdict::ClientCertificateRequired => {
                if decision.deny.reasons.contains(Reason::ClientCertificateRequired) {
                    "present a client certificate signed by the configured certificate authority".to_owned()
                } else {
                    "the client certificate presented is not valid for this route; present one the configured authority signed".to_owned()
                }
            }
            Verdict::Login { .. } => {
                let who = self.first_reading("session").unwrap_or_default();
                if who.is_empty() {
                    "sign in: the request has no session (or it has expired), and the policy needs to know who the user is".to_owned()
                } else {
                    format!("sign in again: the session `{who}` was not found or has expired")
                }
            }
            Verdict::DeviceEnroll => {
                let device_type = decision.allow.device_type.or(decision.deny.device_type).unwrap_or("any");
                format!("enroll a device of type `{device_type}`; the policy requires one and the session has none")
            }
            Verdict::NotFound => "no route matches the request".to_owned(),
            Verdict::Deny { .. } if either.contains(Reason::DeviceUnauthorized) => {
                "the user's device is registered but not approved (or not the one required); have it approved"
                    .to_owned()
            }
            Verdict::Deny { .. } => match self.misses().first() {
                Some(miss) if miss.action == Action::Deny => {
                    let what = miss.failing.first().map(|c| self.describe(c)).unwrap_or_default();
                    format!("denied by the deny rule at line {}: {what}", self.location(miss.block.block.span).line)
                }
                Some(miss) => match miss.failing.as_slice() {
                    [] => "the policy allows nothing".to_owned(),
                    [one] => format!("to be allowed, {} would have to hold: {}", self.quoted(one), self.readings(one)),
                    many => format!(
                        "to be allowed by the block at line {}, {} of its criteria would have to change",
                        self.location(miss.block.block.span).line,
                        if matches!(miss.block.block.operator, Operator::Or | Operator::Nor) { 1 } else { many.len() }
                    ),
                },
                None => "the policy has no allow rule, so it allows nothing".to_owned(),
            },
        }
    }

    fn first_reading(&self, what: &str) -> Option<String> {
        self.trace
            .rules
            .iter()
            .flat_map(|r| &r.blocks)
            .flat_map(|b| &b.criteria)
            .flat_map(|c| &c.observed)
            .find(|(name, _)| *name == what)
            .and_then(|(_, value)| value.clone())
    }

    fn quoted(&self, criterion: &CriterionTrace<'_>) -> String {
        format!("`{}` (line {})", self.criterion_text(criterion), self.location(criterion.criterion.span).line)
    }

    fn readings(&self, criterion: &CriterionTrace<'_>) -> String {
        if criterion.observed.is_empty() {
            return "it reads nothing from the request".to_owned();
        }
        let parts: Vec<String> = criterion
            .observed
            .iter()
            .map(|(what, value)| match value {
                Some(value) => format!("{what} is `{value}`"),
                None => format!("{what} is absent"),
            })
            .collect();
        ppl::suggest::join_and(&parts)
    }

    fn describe(&self, criterion: &CriterionTrace<'_>) -> String {
        format!("{} matched ({})", self.quoted(criterion), self.readings(criterion))
    }

    fn human(&self) -> String {
        let decision = self.trace.decision;
        let mut out = crate::eval::human(&decision, self.verdict);
        out.push('\n');
        for rule in &self.trace.rules {
            let at = self.location(rule.rule.span);
            out.push_str(&format!("{} {}  (line {})\n", mark(rule_value(rule)), rule.rule.action, at.line));
            if rule.blocks.is_empty() {
                out.push_str("    (no criteria)\n");
            }
            for block in &rule.blocks {
                let at = self.location(block.block.span);
                let inverted = matches!(block.block.operator, Operator::Not | Operator::Nor);
                out.push_str(&format!(
                    "  {} {}  → {} {}  (line {})\n",
                    mark(block.result.value),
                    block.block.operator,
                    block.result.value,
                    reasons(&block.result.reasons),
                    at.line
                ));
                for criterion in &block.criteria {
                    let at = self.location(criterion.criterion.span);
                    let note = if inverted { ", inverted by the block" } else { "" };
                    out.push_str(&format!(
                        "    {} {}  → {} {}  ({at}{note})\n",
                        mark(criterion.result.value),
                        self.criterion_text(criterion),
                        criterion.result.value,
                        reasons(&criterion.result.reasons),
                    ));
                    if !criterion.observed.is_empty() {
                        out.push_str(&format!("        read: {}\n", self.readings(criterion)));
                    }
                }
            }
        }
        for miss in self.misses() {
            let at = self.location(miss.block.block.span);
            let heading = if miss.action == Action::Deny { "matching deny" } else { "nearest miss" };
            out.push_str(&format!("\n{heading}: the `{}` block at line {}\n", miss.block.block.operator, at.line));
            for criterion in &miss.failing {
                out.push_str(&format!("  - {}: {}\n", self.quoted(criterion), self.readings(criterion)));
            }
        }
        out.push_str(&format!("\nremediation: {}\n", self.remediation()));
        out
    }

    fn json(&self) -> String {
        use serde_json::{Value, json};
        let decision = self.trace.decision;
        let result = |r: &policy::RuleResult<'_>| {
            let mut value = serde_json::Map::new();
            value.insert("value".to_owned(), json!(r.value));
            value.insert("reasons".to_owned(), json!(r.reasons.names()));
            if let Some(device_type) = r.device_type {
                value.insert("additional_data".to_owned(), json!({"device_type": device_type}));
            }
            Value::Object(value)
        };
        let criterion_json = |c: &CriterionTrace<'_>| {
            let at = self.location(c.criterion.span);
            let read: serde_json::Map<String, Value> =
                c.observed.iter().map(|(what, value)| ((*what).to_owned(), json!(value))).collect();
            json!({
                "criterion": self.criterion_text(c),
                "line": at.line,
                "column": at.column,
                "value": c.result.value,
                "reasons": c.result.reasons.names(),
                "read": read,
            })
        };
        let trace: Vec<Value> = self
            .trace
            .rules
            .iter()
            .map(|rule| {
                let blocks: Vec<Value> = rule
                    .blocks
                    .iter()
                    .map(|b| {
                        json!({
                            "operator": b.block.operator.as_str(),
                            "line": self.location(b.block.span).line,
                            "value": b.result.value,
                            "reasons": b.result.reasons.names(),
                            "criteria": b.criteria.iter().map(criterion_json).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({"action": rule.rule.action.as_str(), "line": self.location(rule.rule.span).line, "blocks": blocks})
            })
            .collect();
        let misses: Vec<Value> = self
            .misses()
            .iter()
            .map(|m| {
                json!({
                    "kind": if m.action == Action::Deny { "matching_deny" } else { "nearest_miss" },
                    "line": self.location(m.block.block.span).line,
                    "criteria": m.failing.iter().map(|c| criterion_json(c)).collect::<Vec<_>>(),
                })
            })
            .collect();
        let document = json!({
            "allow": result(&decision.allow),
            "deny": result(&decision.deny),
            "outcome": {"action": self.verdict.action(), "status": self.verdict.status()},
            "trace": trace,
            "misses": misses,
            "remediation": self.remediation(),
        });
        serde_json::to_string_pretty(&document).unwrap_or_default()
    }
}

fn rule_value(rule: &reference::RuleTrace<'_>) -> bool {
    rule.blocks.iter().any(|b| b.result.value && !b.block.criteria.is_empty())
}

fn mark(value: bool) -> &'static str {
    if value { "✓" } else { "✗" }
}

fn reasons(set: &policy::ReasonSet) -> String {
    if set.is_empty() { "{}".to_owned() } else { format!("{{{}}}", set.names().join(", ")) }
}
