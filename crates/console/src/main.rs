//! `pomerium-console --config console.yaml`: the self-hosted control plane.

use std::process::ExitCode;

const USAGE: &str = "usage: pomerium-console --config FILE

Runs the control plane that managed `pomerium` clusters join (POMERIUM_ZERO_TOKEN) and that Zero
API scripts and Terraform talk to (/api/v0).

  -c, --config FILE   the settings (YAML): address, certificate_file, certificate_key_file,
                      insecure_server, storage_type, storage_connection_string, base_domain,
                      api_tokens
  -V, --version       print the version
  -h, --help          print this help

Logs: RUST_LOG sets the level; POMERIUM_LOG_FORMAT=json writes JSON lines.";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!("pomerium-console {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "-c" | "--config" => match args.next() {
                Some(value) => path = Some(value),
                None => return usage("`--config` needs a file"),
            },
            other => match other.strip_prefix("--config=") {
                Some(value) => path = Some(value.to_owned()),
                None => return usage(&format!("unknown argument `{other}`")),
            },
        }
    }
    let Some(path) = path else { return usage("`--config` is required") };
    init_logging();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("pomerium-console: cannot read `{path}`: {error}");
            return ExitCode::FAILURE;
        }
    };
    let loaded = console::settings::load(&text);
    for problem in &loaded.problems {
        let line = problem.line(&path, &text);
        if problem.is_warning() {
            tracing::warn!("{line}");
        } else {
            tracing::error!("{line}");
        }
    }
    let Some(settings) = loaded.settings else {
        eprintln!("pomerium-console: `{path}` has errors; fix them and start again");
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pomerium-console: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(console::run(settings, shutdown())) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("pomerium-console: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("pomerium-console: {message}\n\n{USAGE}");
    ExitCode::from(2)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("POMERIUM_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
