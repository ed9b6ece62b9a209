//! `pomerium-policy compile --emit rego`: the Rego module Pomerium would generate for a policy.

use crate::report::Reporter;
use crate::{Exit, SyntaxArg, load};
use miette::Severity;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Emit {
    /// The Rego v1 module of Pomerium's generator.
    Rego,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy; `-` reads standard input.
    #[arg(value_name = "FILE")]
    file: String,
    /// What to print.
    #[arg(long, value_enum, default_value = "rego")]
    emit: Emit,
    #[arg(long, value_enum)]
    syntax: Option<SyntaxArg>,
}

pub fn run(args: &Args, reporter: &Reporter) -> Exit {
    let loaded = match load::policy(&args.file, args.syntax, reporter) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    match args.emit {
        Emit::Rego => match policy::rego::emit(&loaded.ast) {
            Ok(module) => {
                print!("{module}");
                Exit::Ok
            }
            Err(error) => {
                reporter.message(Severity::Error, &loaded.name, &format!("cannot emit rego: {error}"));
                Exit::Invalid
            }
        },
    }
}
