//! `pomerium-policy eval`: one decision, through the evaluation contract.

use crate::load::Target;
use crate::report::{Format, Reporter};
use crate::{Exit, SyntaxArg, load};
use policy::contract::render;
use policy::decision::{Decision, Verdict, wants_html};
use policy::{Program, Reason, ReasonSet, RuleResult};

#[derive(Debug, clap::Args)]
#[group(id = "decision")]
pub struct Args {
    /// The policy (.yaml, .json or .ppl); `-` reads standard input.
    #[arg(long, value_name = "FILE", required_unless_present = "config", conflicts_with = "config")]
    pub policy: Option<String>,
    /// A Pomerium configuration (config.yaml): evaluate the policy of the route `--route` names
    /// (its legacy `allow_*` options, its `policy`, and the default client-certificate rule).
    #[arg(long, value_name = "CONFIG", requires = "route")]
    pub config: Option<String>,
    /// The route of `--config`: its `id`, its `name`, or its `from` URL (with its `path` or
    /// `prefix`, as in `https://app.example.com/admin`, when several routes share a `from`).
    #[arg(long, value_name = "ROUTE", requires = "config")]
    pub route: Option<String>,
    /// The input document (JSON, see the evaluation contract); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub input: String,
    /// The syntax of the policy, when its extension does not say.
    #[arg(long, value_enum)]
    pub syntax: Option<SyntaxArg>,
}

pub fn run(args: &Args, reporter: &Reporter) -> Exit {
    let (target, owned) = match load::target_and_input(args, reporter) {
        Ok(both) => both,
        Err(exit) => return exit,
    };
    let Target::Policy(loaded) = target else {
        return print_decision(&not_found(), Verdict::NotFound, reporter);
    };
    let program = Program::compile(&loaded.model);
    let input = owned.input(load::now());
    let decision = program.evaluate(&input, &owned.records);
    let verdict = decision.verdict(wants_html(owned.accept()));
    print_decision(&decision, verdict, reporter)
}

fn print_decision(decision: &Decision<'_>, verdict: Verdict, reporter: &Reporter) -> Exit {
    match reporter.format {
        Format::Json => print!("{}", render(decision, verdict)),
        Format::Human | Format::Plain => print!("{}", human(decision, verdict)),
    }
    exit_for(verdict)
}

/// Pomerium's decision when no route matches: deny with `route-not-found`, 404 (ppl.md §3.4).
pub fn not_found() -> Decision<'static> {
    Decision {
        allow: RuleResult { value: false, reasons: ReasonSet::EMPTY, device_type: None },
        deny: RuleResult::new(true, Reason::RouteNotFound),
    }
}

/// Exit 0 for allow, 2 for anything else (eval-contract.md).
pub fn exit_for(verdict: Verdict) -> Exit {
    if verdict == Verdict::Allow { Exit::Ok } else { Exit::NotAllowed }
}

pub fn human(decision: &Decision<'_>, verdict: Verdict) -> String {
    let line = |name: &str, result: &policy::RuleResult<'_>| {
        let reasons = result.reasons.names().join(", ");
        let data = result.device_type.map(|t| format!("  (device_type: {t})")).unwrap_or_default();
        format!("{}\n", format!("{name:<8}{:<6} {reasons}{data}", result.value).trim_end())
    };
    format!(
        "{}{}outcome {} {}\n",
        line("allow", &decision.allow),
        line("deny", &decision.deny),
        verdict.action(),
        verdict.status()
    )
}
