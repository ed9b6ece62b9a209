//! `pomerium-policy eval`: one decision, through the evaluation contract.

use crate::report::{Format, Reporter};
use crate::{Exit, SyntaxArg, load};
use policy::Program;
use policy::contract::render;
use policy::decision::{Decision, Verdict, wants_html};

#[derive(Debug, clap::Args)]
#[group(id = "decision")]
pub struct Args {
    /// The policy (.yaml, .json or .ppl); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub policy: String,
    /// The input document (JSON, see the evaluation contract); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub input: String,
    /// The syntax of the policy, when its extension does not say.
    #[arg(long, value_enum)]
    pub syntax: Option<SyntaxArg>,
}

pub fn run(args: &Args, reporter: &Reporter) -> Exit {
    if args.policy == "-" && args.input == "-" {
        reporter.message(
            miette::Severity::Error,
            "<stdin>",
            "only one of --policy and --input can read standard input",
        );
        return Exit::Usage;
    }
    let loaded = match load::policy(&args.policy, args.syntax, reporter) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let owned = match load::input(&args.input, reporter) {
        Ok(owned) => owned,
        Err(exit) => return exit,
    };
    let program = Program::compile(&loaded.model);
    let input = owned.input(load::now());
    let decision = program.evaluate(&input, &owned.records);
    let verdict = decision.verdict(wants_html(owned.accept()));
    match reporter.format {
        Format::Json => print!("{}", render(&decision, verdict)),
        Format::Human | Format::Plain => print!("{}", human(&decision, verdict)),
    }
    exit_for(verdict)
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
