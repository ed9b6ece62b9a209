//! Finding and reading policy files.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// A policy to work on: its name for messages, its path (none for standard input), its text.
pub struct Input {
    pub name: String,
    pub path: Option<PathBuf>,
    pub syntax: ppl::Syntax,
    pub source: String,
}

/// Why an input could not be read.
pub enum ReadError {
    /// The file could not be opened or read: a usage or I/O error.
    Io { name: String, message: String },
    /// The bytes are not UTF-8: a problem in the policy, at a byte offset.
    NotUtf8 { name: String, offset: usize, bytes: Vec<u8> },
}

/// Expands the command-line arguments: files as given, directories searched recursively for
/// policy files (skipping hidden entries and `*.test.yaml` test files), `-` for standard input.
pub fn expand(args: &[String]) -> Result<Vec<String>, ReadError> {
    let mut out = Vec::new();
    for arg in args {
        let path = Path::new(arg);
        if arg != "-" && path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found).map_err(|e| ReadError::Io { name: arg.clone(), message: e.to_string() })?;
            found.sort();
            out.extend(found.into_iter().map(|p| p.display().to_string()));
        } else {
            out.push(arg.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, found)?;
        } else if is_policy_file(name) {
            found.push(path);
        }
    }
    Ok(())
}

/// Policy files by extension; test files (`*.test.yaml`) hold test cases, not policies.
pub fn is_policy_file(name: &str) -> bool {
    let is_test = name.ends_with(".test.yaml") || name.ends_with(".test.yml");
    let syntax = name.rsplit_once('.').and_then(|(_, ext)| ppl::Syntax::from_extension(ext));
    syntax.is_some() && !is_test
}

/// Reads one input. The syntax comes from `forced`, else the extension, else the text itself.
pub fn read(name: &str, forced: Option<ppl::Syntax>) -> Result<Input, ReadError> {
    // Read one byte past the limit, so that a huge file is refused without being read whole.
    let limit = u64::try_from(ppl::syntax::MAX_POLICY_BYTES + 1).unwrap_or(u64::MAX);
    let io_error = |e: std::io::Error| ReadError::Io {
        name: if name == "-" { "<stdin>".to_owned() } else { name.to_owned() },
        message: e.to_string(),
    };
    let mut bytes = Vec::new();
    let path = if name == "-" {
        std::io::stdin().take(limit).read_to_end(&mut bytes).map_err(io_error)?;
        None
    } else {
        std::fs::File::open(name).and_then(|file| file.take(limit).read_to_end(&mut bytes)).map_err(io_error)?;
        Some(PathBuf::from(name))
    };
    let display = if name == "-" { "<stdin>".to_owned() } else { name.to_owned() };
    let source = String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 {
        name: display.clone(),
        offset: e.utf8_error().valid_up_to(),
        bytes: e.into_bytes(),
    })?;
    let extension =
        path.as_ref().and_then(|p| p.extension()).and_then(|e| e.to_str()).and_then(ppl::Syntax::from_extension);
    let syntax = forced.or(extension).unwrap_or_else(|| ppl::Syntax::sniff(&source));
    Ok(Input { name: display, path, syntax, source })
}
