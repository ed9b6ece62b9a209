//! `pomerium-policy check`: compile policies, or load whole configurations, and report every
//! problem, like `nginx -t`. A file is a configuration when `--config` says so, or when it is a YAML
//! or JSON object with a top-level key that is a global option (`routes`, `address`, ...).

use crate::configs;
use crate::inputs::{self, ReadError};
use crate::report::{NotUtf8, Reporter, Tally};
use crate::{Exit, SyntaxArg};
use miette::{NamedSource, Severity};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy files or directories; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
    /// Fail (exit 3) on warnings too.
    #[arg(long)]
    deny_warnings: bool,
    /// The syntax of standard input, or of every file regardless of its extension.
    #[arg(long, value_enum)]
    syntax: Option<SyntaxArg>,
    /// Read every FILE as a Pomerium configuration (config.yaml), not a policy. Without it, a file
    /// is a configuration when its top level has a global option such as `routes` or `address`.
    #[arg(long)]
    config: bool,
}

pub fn run(args: &Args, reporter: &Reporter) -> Exit {
    let names = match inputs::expand(&args.files) {
        Ok(names) => names,
        Err(error) => {
            report_read_error(reporter, &error);
            return Exit::Usage;
        }
    };
    let mut tally = Tally::default();
    let mut unreadable = 0;
    let mut configs = 0;
    let mut routes = 0;
    for name in &names {
        match inputs::read(name, args.syntax.map(Into::into)) {
            Ok(input) if configs::is_config(&input, args.config) => {
                let loaded = configs::load(&input);
                configs += 1;
                routes += loaded.config.as_ref().map_or(0, |c| c.routes.len());
                tally.add(reporter.config(&input.name, &input.source, &loaded, true));
            }
            Ok(input) => {
                let compiled = ppl::compile(&input.source, input.syntax);
                tally.add(reporter.policy(&input.name, &input.source, &compiled.errors, &compiled.warnings));
            }
            Err(error) => {
                unreadable += usize::from(matches!(error, ReadError::Io { .. }));
                tally.errors += usize::from(matches!(error, ReadError::NotUtf8 { .. }));
                report_read_error(reporter, &error);
            }
        }
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let checked = names.len() - unreadable;
    let not_read =
        if unreadable > 0 { format!("; {} could not be read", plural(unreadable, "file")) } else { String::new() };
    if tally.errors + tally.warnings == 0 && unreadable == 0 {
        let policies = checked - configs;
        let what = match (policies, configs) {
            (_, 0) => plural(policies, "policy file"),
            (0, _) => format!("{} ({})", plural(configs, "config file"), plural(routes, "route")),
            _ => format!(
                "{} and {} ({})",
                plural(policies, "policy file"),
                plural(configs, "config file"),
                plural(routes, "route")
            ),
        };
        reporter.summary(&format!("ok: {what} checked"));
    } else {
        reporter.summary(&format!(
            "{} and {} in {} checked{not_read}",
            plural(tally.errors, "error"),
            plural(tally.warnings, "warning"),
            plural(checked, "file")
        ));
    }
    if unreadable > 0 {
        Exit::Usage
    } else if tally.errors > 0 || (args.deny_warnings && tally.warnings > 0) {
        Exit::Invalid
    } else {
        Exit::Ok
    }
}

/// Reports a file that could not be read; a non-UTF-8 file is shown at its first bad byte.
pub fn report_read_error(reporter: &Reporter, error: &ReadError) {
    match error {
        ReadError::Io { name, message } => reporter.message(Severity::Error, name, message),
        ReadError::NotUtf8 { name, offset, bytes } => {
            let lossy = String::from_utf8_lossy(bytes).into_owned();
            let index = ppl::LineIndex::new(&lossy);
            let source = NamedSource::new(name, lossy.clone());
            reporter.diagnostic(&source, &index, &NotUtf8 { span: (*offset, 1).into() });
        }
    }
}
