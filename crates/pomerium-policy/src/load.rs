//! Loading what the evaluating commands need: a policy that compiles (given as a file, or as a
//! route of a configuration), and an input document.

use crate::check::report_read_error;
use crate::report::Reporter;
use crate::{Exit, SyntaxArg};
use crate::{configs, eval, inputs};
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

/// What `--policy` or `--config` with `--route` names.
pub enum Target {
    Policy(LoadedPolicy),
    /// `--route` names no route of the configuration: the decision is `not_found`.
    RouteNotFound,
}

/// The policy to evaluate and the input document, or how to exit.
pub fn target_and_input(
    args: &eval::Args,
    reporter: &Reporter,
) -> Result<(Target, policy::contract::OwnedInput), Exit> {
    let stdin_twice = [&args.policy, &args.config].into_iter().flatten().any(|name| name == "-") && args.input == "-";
    if stdin_twice {
        reporter.message(
            Severity::Error,
            "<stdin>",
            "only one of --policy/--config and --input can read standard input",
        );
        return Err(Exit::Usage);
    }
    let target = target(args, reporter)?;
    let input = input(&args.input, reporter)?;
    Ok((target, input))
}

pub fn target(args: &eval::Args, reporter: &Reporter) -> Result<Target, Exit> {
    match (&args.policy, &args.config, &args.route) {
        (Some(name), _, _) => policy(name, args.syntax, reporter).map(Target::Policy),
        (None, Some(config), Some(route)) => route_policy(config, route, reporter),
        _ => {
            reporter.message(
                Severity::Error,
                "<arguments>",
                "give --policy FILE, or --config CONFIG with --route ROUTE",
            );
            Err(Exit::Usage)
        }
    }
}

/// The assembled policy of one route of a configuration. A configuration with errors does not
/// compile (exit 3); warnings are for `check`.
fn route_policy(name: &str, selector: &str, reporter: &Reporter) -> Result<Target, Exit> {
    let input = inputs::read(name, None).map_err(|error| {
        report_read_error(reporter, &error);
        if matches!(error, inputs::ReadError::Io { .. }) { Exit::Usage } else { Exit::Invalid }
    })?;
    let loaded = configs::load(&input);
    let Some(config) = &loaded.config else {
        reporter.config(&input.name, &input.source, &loaded, false);
        return Err(Exit::Invalid);
    };
    match config.find_route(selector) {
        Ok(route) => {
            let source = loaded.source_text(&route.origin, &input.source).to_owned();
            let name = route.origin.variable().map_or_else(|| input.name.clone(), |var| format!("${var}"));
            let (ast, model) = (route.policy.ast.clone(), route.policy.model.clone());
            Ok(Target::Policy(LoadedPolicy { name, source, ast, model }))
        }
        Err(config::FindRouteError::NotFound) => {
            let routes: Vec<String> = config.routes.iter().take(20).map(config::describe).collect();
            let known = if routes.is_empty() {
                "it has no routes".to_owned()
            } else {
                format!("its routes: {}", routes.join("; "))
            };
            reporter.message(Severity::Warning, &input.name, &format!("no route `{selector}`; {known}"));
            Ok(Target::RouteNotFound)
        }
        Err(config::FindRouteError::Ambiguous(routes)) => {
            let message = format!("`{selector}` names several routes ({}); name one by its id", routes.join("; "));
            reporter.message(Severity::Error, &input.name, &message);
            Err(Exit::Usage)
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
