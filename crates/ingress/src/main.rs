//! `pomerium-ingress-controller`: Pomerium's Kubernetes ingress controller.
//!
//! `controller [FLAGS]` runs the controller: it reads the Kubernetes client configuration from the
//! environment (in the cluster, or `KUBECONFIG` / `~/.kube/config`), watches the API server and
//! writes the routes to the databroker until SIGTERM or Ctrl-C. `translate MANIFEST...` is a dry
//! run: it reads manifest files, translates every Ingress as the controller would, and prints the
//! routes as a `config.yaml` document. Each subcommand is a function from its arguments to an exit
//! code.
//!
//! Exit codes: 0 success (for `controller`, a clean shutdown); 1 a file cannot be read, or the
//! controller cannot start or stops on an error; 2 bad arguments; 3 an Ingress or manifest has
//! errors. Diagnostics and logs go to standard error; routes to standard output.

use clap::{Parser, Subcommand};
use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "pomerium-ingress-controller", version, about = "Pomerium's Kubernetes ingress controller.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the ingress controller: watch Ingresses and write their routes to the databroker.
    ///
    /// Every flag can also be given as an environment variable (shown in brackets), except
    /// `--name` and `--prefix`. Logs go to standard error (`RUST_LOG` filters them).
    Controller(Box<ingress::controller::ControllerArgs>),
    /// Translate the Ingresses of manifest files into routes and print them as `config.yaml`.
    ///
    /// Reads Ingress, IngressClass, Service, Endpoints and Secret objects (multi-document YAML);
    /// other kinds are skipped with a warning. When the files hold IngressClasses, only the
    /// Ingresses of this controller's classes are translated.
    Translate(TranslateArgs),
}

#[derive(Debug, clap::Args)]
struct TranslateArgs {
    /// Manifest files (`-` for standard input).
    #[arg(required = true, value_name = "MANIFEST")]
    manifests: Vec<PathBuf>,
    /// The prefix of Pomerium's annotations.
    #[arg(long, default_value = ingress::DEFAULT_ANNOTATION_PREFIX)]
    annotation_prefix: String,
    /// The controller name IngressClasses give in `spec.controller`.
    #[arg(long, default_value = ingress::classes::DEFAULT_CONTROLLER_NAME)]
    controller_name: String,
}

const EXIT_IO: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INVALID: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Controller(args) => controller(&args),
        Command::Translate(args) => translate(&args),
    }
}

fn controller(args: &ingress::controller::ControllerArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,tower=warn,hyper=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let settings = match args.settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprint_str(&format!("error: {error}\n"));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprint_str(&format!("error: starting the runtime: {error}\n"));
            return ExitCode::from(EXIT_IO);
        }
    };
    let result = runtime.block_on(async move {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| ingress::controller::ControllerError::KubeConfig(Box::new(e)))?;
        let broker = ingress::controller::connect_databroker(&settings)?;
        tracing::info!(?settings, "starting the ingress controller");
        ingress::controller::Controller::new(settings, client, broker).run(shutdown_signal()).await
    });
    // The watches' connections may still be open: do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprint_str(&format!("error: {error}\n"));
            ExitCode::from(EXIT_IO)
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn translate(args: &TranslateArgs) -> ExitCode {
    let reporter = Reporter::new();
    let mut objects = ingress::manifest::Objects::default();
    let mut manifest_errors = 0;
    for path in &args.manifests {
        let (name, text) = match read_input(path) {
            Ok(input) => input,
            Err(message) => {
                eprint_str(&format!("error: {message}\n"));
                return ExitCode::from(EXIT_IO);
            }
        };
        let read = ingress::manifest::read(&name, &text);
        read.errors.iter().for_each(|e| reporter.report(e));
        read.warnings.iter().for_each(|w| reporter.report(w));
        manifest_errors += read.errors.len();
        objects.extend(read.objects);
    }
    let options = ingress::Options {
        annotation_prefix: args.annotation_prefix.clone(),
        controller_name: args.controller_name.clone(),
    };
    let outcome = ingress::translate_all(&objects, &options);
    outcome.errors.iter().for_each(|e| reporter.report(e));
    outcome.warnings.iter().for_each(|w| reporter.report(w));
    let count = manifest_errors + outcome.errors.len();
    if count > 0 {
        eprint_str(&format!("no routes printed: {count} error{}\n", if count == 1 { "" } else { "s" }));
        return ExitCode::from(EXIT_INVALID);
    }
    let yaml = ingress::routes_yaml(&outcome.routes, &outcome.certificates);
    let _ = std::io::stdout().lock().write_all(yaml.as_bytes());
    ExitCode::SUCCESS
}

/// A file's name (for messages) and text; `-` is standard input.
fn read_input(path: &PathBuf) -> Result<(String, String), String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| format!("<stdin>: {e}"))?;
        return Ok(("<stdin>".to_owned(), text));
    }
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    Ok((name, text))
}

/// Renders diagnostics with miette's graphical handler: the source and the span when there is
/// one (a manifest file, or an annotation's value), the message and help otherwise.
struct Reporter {
    handler: GraphicalReportHandler,
}

impl Reporter {
    fn new() -> Reporter {
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        Reporter { handler: GraphicalReportHandler::new_themed(theme).with_width(100) }
    }

    fn report(&self, diagnostic: &dyn Diagnostic) {
        let mut text = String::new();
        if self.handler.render_report(&mut text, diagnostic).is_err() {
            text = format!("{diagnostic}\n");
        }
        text.push('\n');
        eprint_str(&text);
    }
}

fn eprint_str(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
