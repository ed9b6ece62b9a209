//! The process's environment as the configuration reads it: variables and files.

use config::env::MAX_FILE_BYTES;
use std::io::Read as _;
use std::path::Path;

pub struct ProcessEnvironment;

impl config::Environment for ProcessEnvironment {
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
