//! Configuration files (`config.yaml`): telling them from policies, loading them in the process's
//! environment, and finding a route for `eval --config --route`.

use crate::inputs::Input;
use config::env::{Environment, MAX_FILE_BYTES};
use std::io::Read as _;
use std::path::Path;

/// The process's environment: its variables and files, as Pomerium reads them.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let limit = u64::try_from(MAX_FILE_BYTES + 1).unwrap_or(u64::MAX);
        let mut bytes = Vec::new();
        std::fs::File::open(path)?.take(limit).read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

fn format_of(input: &Input) -> config::Format {
    if input.syntax == ppl::Syntax::Json { config::Format::Json } else { config::Format::Yaml }
}

/// Whether an input is a configuration: `--config` says so, or it is a YAML or JSON object with a
/// top-level key that is a global option (see [`config::looks_like_config`]).
pub fn is_config(input: &Input, forced: bool) -> bool {
    forced || (input.syntax != ppl::Syntax::Text && config::looks_like_config(&input.source, format_of(input)))
}

/// Loads a configuration read as an input.
pub fn load(input: &Input) -> config::Loaded {
    config::load(&input.source, format_of(input), &ProcessEnv)
}
