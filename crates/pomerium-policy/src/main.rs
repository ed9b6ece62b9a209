//! `pomerium-policy`: check, format and (in later issues) evaluate Pomerium policies offline.
//!
//! Exit codes (shared/spec/eval-contract.md): 0 success; 1 usage or I/O error; 2 evaluated to
//! anything but allow; 3 the policy does not compile, or `check`/`fmt --check` found problems;
//! 4 a test of `pomerium-policy test` failed.
//! Diagnostics go to standard error; results to standard output.

mod bench;
mod check;
mod compile;
mod configs;
mod eval;
mod explain;
mod fmt;
mod inputs;
mod load;
mod report;
mod testing;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "pomerium-policy", version, about = "Check, format and explain Pomerium policies (PPL) offline.")]
struct Cli {
    /// How to print diagnostics.
    #[arg(long, global = true, value_enum, default_value_t = report::Format::Human, env = "POMERIUM_POLICY_FORMAT")]
    format: report::Format,
    /// When to color output (human format only).
    #[arg(long, global = true, value_enum, default_value_t = report::Color::Auto)]
    color: report::Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check policies and configurations: report every error and warning with its location.
    ///
    /// FILE may be a policy (.yaml, .yml, .json, or .ppl for the text form), a Pomerium
    /// configuration (config.yaml; read with the process's environment, like Pomerium), a directory
    /// (searched recursively; `*.test.yaml` files are skipped), or `-` for standard input.
    Check(check::Args),
    /// Format policies, or convert them between YAML, JSON and the text form.
    Fmt(fmt::Args),
    /// Evaluate a policy for one input document; print the decision (exit 0 allow, 2 not).
    Eval(eval::Args),
    /// Evaluate and explain: every rule, block and criterion with what it read, the nearest miss
    /// and a remediation.
    Explain(eval::Args),
    /// Run the test files beside the policies (`<policy>.test.yaml`).
    Test(testing::Args),
    /// Time decisions for a policy and an input.
    Bench(bench::Args),
    /// Print the Rego module Pomerium would generate for a policy.
    Compile(compile::Args),
    /// List every criterion and the data it takes.
    Criteria,
}

/// The syntax of a policy given on standard input, or overriding a file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SyntaxArg {
    Yaml,
    Json,
    Text,
}

impl From<SyntaxArg> for ppl::Syntax {
    fn from(arg: SyntaxArg) -> ppl::Syntax {
        match arg {
            SyntaxArg::Yaml => ppl::Syntax::Yaml,
            SyntaxArg::Json => ppl::Syntax::Json,
            SyntaxArg::Text => ppl::Syntax::Text,
        }
    }
}

/// The process exit codes of the evaluation contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Ok = 0,
    Usage = 1,
    /// Evaluated, and the outcome is not allow.
    NotAllowed = 2,
    Invalid = 3,
    /// A test of `pomerium-policy test` failed.
    TestFailed = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            let help =
                matches!(error.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion);
            return if help { Exit::Ok } else { Exit::Usage }.into();
        }
    };
    let reporter = report::Reporter::new(cli.format, cli.color);
    match cli.command {
        Command::Check(args) => check::run(&args, &reporter),
        Command::Fmt(args) => fmt::run(&args, &reporter),
        Command::Eval(args) => eval::run(&args, &reporter),
        Command::Explain(args) => explain::run(&args, &reporter),
        Command::Test(args) => testing::run(&args, &reporter),
        Command::Bench(args) => bench::run(&args, &reporter),
        Command::Compile(args) => compile::run(&args, &reporter),
        Command::Criteria => criteria(),
    }
    .into()
}

fn criteria() -> Exit {
    let mut out = String::new();
    for info in ppl::criteria::CRITERIA {
        let note = if info.enterprise { "  (pomerium documents it for enterprise only)" } else { "" };
        out.push_str(&format!("{:<28} {}{note}\n", info.name, info.data));
    }
    print!("{out}");
    Exit::Ok
}
