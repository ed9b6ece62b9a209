//! What loading needs from the outside world: environment variables and files. The library does
//! no I/O; the binaries implement [`Environment`] over `std::env` and `std::fs`, tests over maps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Files named by `*_file` options are refused beyond this size: no certificate bundle or secret
/// is this big, and a path given by mistake (a disk image, `/dev/zero`) must not be read whole.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// The environment a configuration is loaded in.
pub trait Environment {
    /// The value of an environment variable, if it is set (and is UTF-8).
    fn var(&self, name: &str) -> Option<String>;

    /// The contents of a file named by a `*_file` option. Implementations should stop reading after
    /// [`MAX_FILE_BYTES`] + 1 bytes; loading refuses anything longer.
    fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>>;
}

/// An environment with no variables and no files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Empty;

impl Environment for Empty {
    fn var(&self, _name: &str) -> Option<String> {
        None
    }

    fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no file `{}`", path.display())))
    }
}

/// An environment held in memory: for tests, and for callers that gather variables themselves.
#[derive(Debug, Clone, Default)]
pub struct MapEnvironment {
    pub vars: BTreeMap<String, String>,
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

impl MapEnvironment {
    pub fn new() -> MapEnvironment {
        MapEnvironment::default()
    }

    pub fn with_var(mut self, name: &str, value: &str) -> MapEnvironment {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn with_file(mut self, path: &str, contents: &[u8]) -> MapEnvironment {
        self.files.insert(PathBuf::from(path), contents.to_vec());
        self
    }
}

impl Environment for MapEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)"))
    }
}
