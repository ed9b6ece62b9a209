//! `console.yaml`: the control plane's own settings, with keys named as Pomerium names its own
//! (`address`, `certificate_file`, `insecure_server`, `storage_type`, ...).
//!
//! Read with `ppl`'s YAML reader, so every problem has a line and column; an unknown key is a
//! warning (with "did you mean"), as in `pomerium`; a wrong type or value is an error, and the
//! console does not start.

use miette::{Diagnostic, SourceSpan};
use ppl::value::{Value, ValueKind};
use ppl::{LineIndex, Span};
use thiserror::Error;

/// The keys `console.yaml` knows.
pub const KEYS: &[&str] = &[
    "address",
    "certificate_file",
    "certificate_key_file",
    "insecure_server",
    "storage_type",
    "storage_connection_string",
    "base_domain",
    "api_tokens",
    "web_console_jwks_url",
];

/// Where data lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Storage {
    Memory,
    /// A libpq connection string.
    Postgres(String),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Memory => f.write_str("Memory"),
            // The connection string may carry a password.
            Storage::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

/// An API user's refresh token from `api_tokens`.
#[derive(Clone)]
pub struct ApiToken {
    pub name: String,
    pub token: String,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken").field("name", &self.name).field("token", &"<redacted>").finish()
    }
}

/// The settings of one console.
#[derive(Clone, Debug)]
pub struct Settings {
    pub address: String,
    pub certificate_file: Option<String>,
    pub certificate_key_file: Option<String>,
    pub insecure_server: bool,
    pub storage: Storage,
    pub base_domain: String,
    pub api_tokens: Vec<ApiToken>,
    /// The JWKS of the Pomerium route in front of the web console; `None`: no web console.
    pub web_console_jwks_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            address: ":8443".to_owned(),
            certificate_file: None,
            certificate_key_file: None,
            insecure_server: false,
            storage: Storage::Memory,
            base_domain: "localhost.pomerium.io".to_owned(),
            api_tokens: Vec::new(),
            web_console_jwks_url: None,
        }
    }
}

/// A problem in `console.yaml`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
pub enum Problem {
    #[error("cannot read the settings: {message}")]
    #[diagnostic(code(console::config::syntax), help("console.yaml is a YAML object of settings"))]
    Syntax {
        message: String,
        #[label("here")]
        span: SourceSpan,
    },
    #[error("the settings must be an object of keys, found {found}")]
    #[diagnostic(code(console::config::not_object), help("write `key: value` lines, such as `address: :8443`"))]
    NotObject {
        found: String,
        #[label("this")]
        span: SourceSpan,
    },
    #[error("unknown key `{key}`")]
    #[diagnostic(code(console::config::unknown), severity(Warning), help("{help}"))]
    Unknown {
        key: String,
        help: String,
        #[label("not a console setting; ignored")]
        span: SourceSpan,
    },
    #[error("`{key}` must be {expected}, found {found}")]
    #[diagnostic(code(console::config::invalid), help("{help}"))]
    Invalid {
        key: String,
        expected: String,
        found: String,
        help: String,
        #[label("here")]
        span: SourceSpan,
    },
}

impl Problem {
    pub fn is_warning(&self) -> bool {
        matches!(self, Problem::Unknown { .. })
    }

    fn span(&self) -> Span {
        let span = match self {
            Problem::Syntax { span, .. }
            | Problem::NotObject { span, .. }
            | Problem::Unknown { span, .. }
            | Problem::Invalid { span, .. } => span,
        };
        Span::new(span.offset(), span.offset() + span.len())
    }

    /// One line: `file:line:column: [code] message (help: ...)`, as `pomerium` logs its own.
    pub fn line(&self, file: &str, text: &str) -> String {
        let at = LineIndex::new(text).line_col(self.span().start());
        let code = Diagnostic::code(self).map(|c| c.to_string()).unwrap_or_default();
        let mut line = format!("{file}:{}:{}: [{code}] {self}", at.line, at.column);
        if let Some(help) = Diagnostic::help(self) {
            line.push_str(&format!(" (help: {help})"));
        }
        line
    }
}

/// The settings and every problem; `settings` is `None` when there is an error.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Option<Settings>,
    pub problems: Vec<Problem>,
}

/// Reads `console.yaml`'s text. Never panics.
pub fn load(text: &str) -> Loaded {
    let mut problems = Vec::new();
    let (value, errors) = ppl::syntax::yaml::parse(text);
    let empty = errors.iter().any(|e| e.code_str() == "ppl::syntax::empty");
    if empty {
        return Loaded { settings: Some(Settings::default()), problems };
    }
    for error in &errors {
        let span = error.span();
        problems.push(Problem::Syntax { message: error.to_string(), span: (span.start(), span.len()).into() });
    }
    let Some(value) = value.filter(|_| errors.is_empty()) else {
        return Loaded { settings: None, problems };
    };
    let Some(entries) = value.as_object() else {
        problems.push(Problem::NotObject { found: value.kind().to_string(), span: span_of(&value) });
        return Loaded { settings: None, problems };
    };
    let mut settings = Settings::default();
    let mut storage_type = None;
    let mut connection = None;
    for entry in entries {
        let value = &entry.value;
        match entry.key.as_str() {
            "address" => {
                if let Some(text) = string(entry, &mut problems, "an address such as `:8443` or `127.0.0.1:8443`") {
                    settings.address = text;
                }
            }
            "certificate_file" => settings.certificate_file = string(entry, &mut problems, "the path of a PEM file"),
            "certificate_key_file" => {
                settings.certificate_key_file = string(entry, &mut problems, "the path of a PEM file");
            }
            "insecure_server" => match value.as_bool() {
                Some(flag) => settings.insecure_server = flag,
                None => problems.push(invalid(entry, "`true` or `false`", "`insecure_server: true` serves plain HTTP")),
            },
            "storage_type" => match string(entry, &mut problems, "`memory` (the default) or `postgres`").as_deref() {
                Some("memory") => storage_type = Some(("memory", entry)),
                Some("postgres") => storage_type = Some(("postgres", entry)),
                Some(_) => problems.push(Problem::Invalid {
                    key: entry.key.clone(),
                    expected: "`memory` or `postgres`".to_owned(),
                    found: describe(value),
                    help: "`postgres` also needs `storage_connection_string`".to_owned(),
                    span: span_of(value),
                }),
                None => {}
            },
            "storage_connection_string" => {
                connection = string(entry, &mut problems, "a PostgreSQL connection string (`postgres://...`)");
            }
            "base_domain" => {
                if let Some(text) = string(entry, &mut problems, "a DNS name such as `clusters.example.com`") {
                    let name = text.trim_end_matches('.').to_ascii_lowercase();
                    if name.is_empty() || !name.split('.').all(valid_label) {
                        problems.push(Problem::Invalid {
                            key: entry.key.clone(),
                            expected: "a DNS name".to_owned(),
                            found: describe(value),
                            help: "starter domains are `<adjective>-<animal>-NNNN.<base_domain>`".to_owned(),
                            span: span_of(value),
                        });
                    } else {
                        settings.base_domain = name;
                    }
                }
            }
            "api_tokens" => settings.api_tokens = api_tokens(entry, &mut problems),
            "web_console_jwks_url" => {
                let expected =
                    "the URL of the route's JWKS, `https://<console route host>/.well-known/pomerium/jwks.json`";
                match string(entry, &mut problems, expected) {
                    Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                        settings.web_console_jwks_url = Some(url);
                    }
                    Some(_) => problems.push(invalid(
                        entry,
                        expected,
                        "the web console trusts assertions signed by this JWKS only",
                    )),
                    None => {}
                }
            }
            other => problems.push(Problem::Unknown {
                key: other.to_owned(),
                help: ppl::suggest::help(other, KEYS, "console settings"),
                span: (entry.key_span.start(), entry.key_span.len()).into(),
            }),
        }
    }
    match (storage_type, connection) {
        (Some(("postgres", _)), Some(connection)) => settings.storage = Storage::Postgres(connection),
        (Some(("postgres", entry)), None) => problems.push(Problem::Invalid {
            key: "storage_connection_string".to_owned(),
            expected: "set when `storage_type` is `postgres`".to_owned(),
            found: "nothing".to_owned(),
            help: "add `storage_connection_string: postgres://user:password@host/database`".to_owned(),
            span: span_of(&entry.value),
        }),
        _ => {}
    }
    if settings.certificate_file.is_some() != settings.certificate_key_file.is_some() {
        let entry = entries.iter().find(|e| e.key.starts_with("certificate"));
        problems.push(Problem::Invalid {
            key: "certificate_file".to_owned(),
            expected: "given with `certificate_key_file`".to_owned(),
            found: "only one of the two".to_owned(),
            help: "set both `certificate_file` and `certificate_key_file`, or neither (a self-signed certificate)"
                .to_owned(),
            span: entry.map_or_else(|| span_of(&value), |e| span_of(&e.value)),
        });
    }
    let failed = problems.iter().any(|p| !p.is_warning());
    Loaded { settings: (!failed).then_some(settings), problems }
}

fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn api_tokens(entry: &ppl::value::Entry, problems: &mut Vec<Problem>) -> Vec<ApiToken> {
    let expected = "a list of `{name, token}`";
    let Some(items) = entry.value.as_array() else {
        problems.push(invalid(entry, expected, "api_tokens:\n  - name: terraform\n    token: <a long random string>"));
        return Vec::new();
    };
    let mut tokens = Vec::new();
    for item in items {
        let name = item.get("name").and_then(|e| e.value.as_str());
        let token = item.get("token").and_then(|e| e.value.as_str());
        let unknown = item.as_object().and_then(|entries| entries.iter().find(|e| e.key != "name" && e.key != "token"));
        if let Some(unknown) = unknown {
            problems.push(Problem::Unknown {
                key: format!("api_tokens.{}", unknown.key),
                help: ppl::suggest::help(&unknown.key, &["name", "token"], "keys of an API token"),
                span: (unknown.key_span.start(), unknown.key_span.len()).into(),
            });
        }
        match (name, token) {
            (Some(name), Some(token)) if token.len() >= 16 => {
                tokens.push(ApiToken { name: name.to_owned(), token: token.to_owned() });
            }
            (Some(_), Some(_)) => problems.push(Problem::Invalid {
                key: "api_tokens.token".to_owned(),
                expected: "at least 16 characters".to_owned(),
                found: "a shorter token".to_owned(),
                help: "use a long random string, e.g. `openssl rand -base64 32`".to_owned(),
                span: span_of(item),
            }),
            _ => problems.push(Problem::Invalid {
                key: "api_tokens".to_owned(),
                expected: "`{name, token}` with both strings".to_owned(),
                found: describe(item),
                help: "each API token has a `name` (shown in logs) and a `token` (the refresh token)".to_owned(),
                span: span_of(item),
            }),
        }
    }
    tokens
}

fn string(entry: &ppl::value::Entry, problems: &mut Vec<Problem>, expected: &str) -> Option<String> {
    match &entry.value.kind {
        ValueKind::String(text) => Some(text.clone()),
        ValueKind::Number(number) => Some(number.as_str().to_owned()),
        _ => {
            problems.push(invalid(entry, expected, "write it as a string"));
            None
        }
    }
}

fn invalid(entry: &ppl::value::Entry, expected: &str, help: &str) -> Problem {
    Problem::Invalid {
        key: entry.key.clone(),
        expected: expected.to_owned(),
        found: describe(&entry.value),
        help: help.to_owned(),
        span: span_of(&entry.value),
    }
}

fn describe(value: &Value) -> String {
    value.kind().to_string()
}

fn span_of(value: &Value) -> SourceSpan {
    (value.span.start(), value.span.len()).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn reads_every_key() {
        let loaded = load(
            "address: 127.0.0.1:0\ninsecure_server: true\nstorage_type: postgres\nstorage_connection_string: postgres://x/y\nbase_domain: Clusters.Example.com.\napi_tokens:\n  - name: tf\n    token: 0123456789abcdef0\n",
        );
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let settings = loaded.settings.unwrap();
        assert_eq!(settings.address, "127.0.0.1:0");
        assert!(settings.insecure_server);
        assert_eq!(settings.storage, Storage::Postgres("postgres://x/y".to_owned()));
        assert_eq!(settings.base_domain, "clusters.example.com");
        assert_eq!(settings.api_tokens[0].name, "tf");
    }

    #[test]
    fn unknown_keys_are_warnings_with_a_place_and_a_suggestion() {
        let text = "address: :0\nbase_domian: x.example.com\n";
        let loaded = load(text);
        assert!(loaded.settings.is_some());
        let line = loaded.problems[0].line("console.yaml", text);
        assert_eq!(
            line,
            "console.yaml:2:1: [console::config::unknown] unknown key `base_domian` (help: did you mean `base_domain`?)"
        );
    }

    #[test]
    fn bad_values_are_errors() {
        for text in [
            "insecure_server: maybe\n",
            "storage_type: redis\n",
            "storage_type: postgres\n",
            "api_tokens: [{name: a, token: short}]\n",
            "certificate_file: a.pem\n",
            "- a\n",
            "address: [\n",
        ] {
            let loaded = load(text);
            assert!(loaded.settings.is_none(), "{text}");
            assert!(!loaded.problems.is_empty(), "{text}");
        }
    }
}
