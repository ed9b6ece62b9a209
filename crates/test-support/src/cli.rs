//! A command-line program run as users run it: its exit code, stdout and stderr; and the files it
//! is given.

use std::path::{Path, PathBuf};

/// What a run left: the exit code (-1 when killed by a signal), stdout and stderr as text.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to its end.
pub fn run(command: &mut assert_cmd::Command) -> Run {
    let output = command.output().expect("runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Writes `text` to `name` in `dir`; its path.
pub fn file(dir: impl AsRef<Path>, name: &str, text: &str) -> PathBuf {
    let path = dir.as_ref().join(name);
    std::fs::write(&path, text).expect("write");
    path
}
