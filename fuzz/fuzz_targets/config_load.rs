//! The configuration loader: `config.yaml` or `config.json`, the environment variables that
//! override or extend it (base64 policies, JSON and `key=value` maps), and the files its `*_file`
//! options read. `config::load` must report every problem without panicking, and a configuration
//! it accepts must build a proxy runtime (or refuse with an error) without panicking.
#![no_main]

use std::sync::{Arc, OnceLock};

use authn::{Authenticator, SignInState};
use libfuzzer_sys::fuzz_target;
use proxy::authn::Authn;
use proxy::runtime::{Environment, Runtime, SharedRecords};
use proxy::upstream::{ClientOptions, UpstreamClients};

/// The input: a format byte (`j`: JSON, else YAML), the configuration text, then, after a blank
/// separator (`\0\0`), `NAME=value` lines (the environment), then after another one the bytes of
/// the file `/f` (which `*_file` options may name). `fuzz/seed.sh` writes the test corpus's cases
/// in this form.
struct Input<'a> {
    json: bool,
    text: &'a str,
    env: config::env::MapEnvironment,
}

fn input(data: &[u8]) -> Option<Input<'_>> {
    let (&format, rest) = data.split_first()?;
    let mut sections = std::str::from_utf8(rest).ok()?.splitn(3, "\0\0");
    let text = sections.next().unwrap_or_default();
    let mut env = config::env::MapEnvironment::new();
    for line in sections.next().unwrap_or_default().lines() {
        if let Some((name, value)) = line.split_once('=') {
            env.vars.insert(name.to_owned(), value.to_owned());
        }
    }
    env.files.insert("/f".into(), sections.next().unwrap_or_default().as_bytes().to_vec());
    Some(Input { json: format == b'j', text, env })
}

fn tokio() -> &'static tokio::runtime::Runtime {
    static TOKIO: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    TOKIO.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Some(Input { json, text, env }) = input(data) else { return };
    let format = if json { config::Format::Json } else { config::Format::Yaml };
    let loaded = config::load(text, format, &env);
    for error in &loaded.errors {
        let _ = error.diagnostic.to_string();
    }
    let Some(config) = loaded.config.filter(|_| loaded.errors.is_empty()) else { return };
    tokio().block_on(async {
        let environment = Environment {
            fallback_shared_key: vec![7; 32],
            fallback_cookie_key: vec![8; 32],
            records: SharedRecords::default(),
            authn: Arc::new(Authn::new(Arc::new(Authenticator(Arc::new(SignInState::new(None)))))),
            remote_authorize: None,
            clients: Arc::new(UpstreamClients::new(ClientOptions::default())),
        };
        let _ = Runtime::build(&config, &environment);
    });
});
