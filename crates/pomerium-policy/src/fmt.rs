//! `pomerium-policy fmt`: the canonical layout of a policy, or its conversion to another syntax.

use crate::check::report_read_error;
use crate::inputs::{self, Input};
use crate::report::Reporter;
use crate::{Exit, SyntaxArg};
use miette::Severity;
use ppl::format::{FormatError, Formatted, format_source};
use std::io::Write as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy files or directories; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
    /// Print nothing; list the files that are not formatted and exit 3 if there are any.
    #[arg(long, conflicts_with = "write")]
    check: bool,
    /// Rewrite the files in place.
    #[arg(long)]
    write: bool,
    /// Print a unified diff of the changes instead of the formatted policy.
    #[arg(long, conflicts_with = "write")]
    diff: bool,
    /// Convert to this syntax (text is the compact form of `grammar/ppl.pest`).
    #[arg(long, value_enum, conflicts_with = "write")]
    to: Option<SyntaxArg>,
    /// The syntax of standard input, or of every file regardless of its extension.
    #[arg(long, value_enum)]
    syntax: Option<SyntaxArg>,
}

pub fn run(args: &Args, reporter: &Reporter) -> Exit {
    if args.write && args.files.iter().any(|f| f == "-") {
        reporter.message(Severity::Error, "<stdin>", "--write cannot rewrite standard input");
        return Exit::Usage;
    }
    let names = match inputs::expand(&args.files) {
        Ok(names) => names,
        Err(error) => {
            report_read_error(reporter, &error);
            return Exit::Usage;
        }
    };
    let mut exit = Exit::Ok;
    let mut unformatted = 0;
    for name in &names {
        let input = match inputs::read(name, args.syntax.map(Into::into)) {
            Ok(input) => input,
            Err(error) => {
                exit =
                    exit.max(if matches!(error, inputs::ReadError::Io { .. }) { Exit::Usage } else { Exit::Invalid });
                report_read_error(reporter, &error);
                continue;
            }
        };
        let to = args.to.map_or(input.syntax, Into::into);
        let formatted = match format_source(&input.source, input.syntax, to) {
            Ok(formatted) => formatted,
            Err(FormatError::Parse(errors)) => {
                reporter.policy(&input.name, &input.source, &errors, &[]);
                exit = exit.max(Exit::Invalid);
                continue;
            }
            Err(FormatError::Unrepresentable { reason }) => {
                reporter.message(
                    Severity::Error,
                    &input.name,
                    &format!("cannot write this policy as {}: {reason}", to.name()),
                );
                exit = exit.max(Exit::Invalid);
                continue;
            }
            Err(FormatError::Unsound { output }) => {
                reporter.message(
                    Severity::Error,
                    &input.name,
                    &format!(
                        "the formatter produced text that does not mean the same as the input; this is a bug, \
                         please report it with the file. Nothing was written. The output was:\n{output}"
                    ),
                );
                exit = Exit::Usage;
                continue;
            }
        };
        if formatted.dropped_comments > 0 {
            reporter.message(
                Severity::Warning,
                &input.name,
                &format!("json has no comments; {} comment(s) were left out", formatted.dropped_comments),
            );
        }
        if formatted.expanded_aliases > 0 {
            reporter.message(
                Severity::Warning,
                &input.name,
                &format!(
                    "the formatted policy writes out the values of {} yaml alias(es) in full; anchors and aliases are not kept",
                    formatted.expanded_aliases
                ),
            );
        }
        let changed = formatted.text != input.source;
        unformatted += usize::from(changed);
        match emit(args, reporter, &input, &formatted, names.len() > 1, changed) {
            Ok(()) => {}
            Err(message) => {
                reporter.message(Severity::Error, &input.name, &message);
                exit = Exit::Usage;
            }
        }
    }
    if args.check && unformatted > 0 {
        exit = exit.max(Exit::Invalid);
    }
    exit
}

fn emit(
    args: &Args,
    reporter: &Reporter,
    input: &Input,
    formatted: &Formatted,
    several: bool,
    changed: bool,
) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    let write =
        |out: &mut std::io::StdoutLock<'_>, text: &str| out.write_all(text.as_bytes()).map_err(|e| e.to_string());
    if args.diff {
        if changed {
            let diff = similar::TextDiff::from_lines(&input.source, &formatted.text);
            let text = diff.unified_diff().header(&input.name, &format!("{} (formatted)", input.name)).to_string();
            write(&mut stdout, &text)?;
        }
    } else if args.check {
        if changed {
            reporter.summary(&format!("not formatted: {}", input.name));
        }
    } else if args.write {
        if changed && let Some(path) = &input.path {
            write_atomically(path, &formatted.text)?;
            reporter.summary(&format!("formatted: {}", input.name));
        }
    } else {
        if several {
            write(&mut stdout, &format!("==> {} <==\n", input.name))?;
        }
        write(&mut stdout, &formatted.text)?;
    }
    Ok(())
}

/// Writes through a temporary file in the same directory and renames it over the original, so
/// that an interrupted write never leaves half a policy behind.
fn write_atomically(path: &std::path::Path, text: &str) -> Result<(), String> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("policy");
    let temp = path.with_file_name(format!(".{file_name}.fmt-tmp"));
    std::fs::write(&temp, text).map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
    if let Ok(metadata) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&temp, metadata.permissions());
    }
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        format!("cannot replace {}: {e}", path.display())
    })
}
