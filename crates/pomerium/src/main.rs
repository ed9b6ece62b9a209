//! `pomerium`: the server. `pomerium --config config.yaml` runs the proxy with authorization in
//! process ("all-in-one"): TLS termination, route matching, the routes' compiled policies, and
//! forwarding. The configuration file is watched; a valid edit replaces the running
//! configuration atomically, an invalid one is logged and ignored.

mod app;
mod autocert;
mod databroker;
mod diagnostics;
mod dynamic;
mod environment;
mod grpc;
mod managed;
mod metrics;
mod telemetry;
mod tuning;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: pomerium [--config FILE]

Runs the Pomerium-compatible access proxy. Settings come from FILE (YAML or JSON) and from
environment variables named after the options (AUTHENTICATE_SERVICE_URL, POLICY, ...).

Managed mode: with POMERIUM_ZERO_TOKEN (or pomerium_zero_token in FILE) the control plane at
CLUSTER_API_ENDPOINT and CONNECT_SERVER_ENDPOINT sends the configuration; no FILE is needed.

  -c, --config FILE   the configuration file (watched for changes)
  -V, --version       print the version
  -h, --help          print this help

Logs: RUST_LOG overrides the configured log_level; POMERIUM_LOG_FORMAT=json writes JSON lines.";

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run { config }) => config,
        Ok(Command::Print(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("pomerium: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let tuning = match tuning::Tuning::read(|name| std::env::var(name).ok()) {
        Ok(tuning) => tuning,
        Err(errors) => {
            for error in errors {
                eprintln!("pomerium: {error}");
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pomerium: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(app::run(config, tuning))
}

enum Command {
    Run { config: Option<PathBuf> },
    Print(String),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Print(USAGE.to_owned())),
            "-V" | "--version" => return Ok(Command::Print(format!("pomerium {}", env!("CARGO_PKG_VERSION")))),
            "-c" | "--config" | "-config" => {
                if arg == "-config" {
                    eprintln!("pomerium: `-config` is deprecated; use `--config`");
                }
                config = Some(PathBuf::from(args.next().ok_or("`--config` needs a file")?));
            }
            other => match other.strip_prefix("--config=").or_else(|| other.strip_prefix("-config=")) {
                Some(path) => config = Some(PathBuf::from(path)),
                None => return Err(format!("unknown argument `{other}`")),
            },
        }
    }
    Ok(Command::Run { config })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn every_spelling_of_the_config_flag_is_read() {
        for args in [&["--config", "a.yaml"][..], &["-c", "a.yaml"], &["-config", "a.yaml"], &["--config=a.yaml"]] {
            match parse(args).unwrap() {
                Command::Run { config } => assert_eq!(config, Some(PathBuf::from("a.yaml")), "{args:?}"),
                Command::Print(_) => panic!("{args:?}"),
            }
        }
        assert!(matches!(parse(&[]).unwrap(), Command::Run { config: None }));
        assert!(parse(&["--config"]).is_err());
        assert!(parse(&["--nope"]).is_err());
        assert!(matches!(parse(&["--version"]).unwrap(), Command::Print(v) if v.starts_with("pomerium ")));
    }
}
