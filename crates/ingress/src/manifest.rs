//! Reading Kubernetes manifests (multi-document YAML, as `kubectl apply -f` takes) into the objects
//! a translation needs: Ingresses, IngressClasses, Services, Endpoints and Secrets. Other kinds are
//! skipped with a warning; `kind: List` is read item by item.
//!
//! Documents are split at `---` lines as kubectl's reader does, and each is read with `ppl`'s YAML
//! reader, so that problems point at a line and column of the file; then the value is decoded into
//! the `k8s-openapi` type through JSON, as the API server would decode it.

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use miette::{Diagnostic, NamedSource, SourceSpan};
use ppl::Span;
use ppl::value::{Value, ValueKind};
use std::sync::Arc;
use thiserror::Error;

/// The objects read from manifests.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub ingresses: Vec<Ingress>,
    pub ingress_classes: Vec<IngressClass>,
    pub services: Vec<Service>,
    pub endpoints: Vec<Endpoints>,
    pub secrets: Vec<Secret>,
}

impl Objects {
    pub fn extend(&mut self, other: Objects) {
        self.ingresses.extend(other.ingresses);
        self.ingress_classes.extend(other.ingress_classes);
        self.services.extend(other.services);
        self.endpoints.extend(other.endpoints);
        self.secrets.extend(other.secrets);
    }
}

/// What one file held, and what was wrong with it.
#[derive(Debug, Clone, Default)]
pub struct Read {
    pub objects: Objects,
    pub errors: Vec<ManifestError>,
    pub warnings: Vec<ManifestWarning>,
}

type Source = NamedSource<Arc<str>>;

/// A document or object that could not be read.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[non_exhaustive]
pub enum ManifestError {
    /// The YAML reader's own diagnostic, at its place in the file.
    #[error("{message}")]
    #[diagnostic(code(ingress::manifest::syntax))]
    Syntax {
        message: String,
        #[source_code]
        src: Source,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        #[help]
        help: Option<String>,
    },
    #[error("a manifest document must be an object with `apiVersion` and `kind`")]
    #[diagnostic(code(ingress::manifest::not_object))]
    NotObject {
        #[source_code]
        src: Source,
        #[label("not an object")]
        span: SourceSpan,
    },
    #[error("`{field}` must be a string")]
    #[diagnostic(
        code(ingress::manifest::not_string),
        help("kubernetes keeps annotation and label values as strings: quote it, e.g. `\"true\"`")
    )]
    NotString {
        field: String,
        #[source_code]
        src: Source,
        #[label("not a string")]
        span: SourceSpan,
    },
    /// The value does not decode as the Kubernetes type (`serde`'s message).
    #[error("{kind} `{name}` cannot be read: {message}")]
    #[diagnostic(code(ingress::manifest::decode))]
    Decode {
        kind: String,
        name: String,
        message: String,
        #[source_code]
        src: Source,
        #[label("this {kind}")]
        span: SourceSpan,
    },
}

/// Something in a manifest that is not translated.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("{what} is ignored: {why}")]
#[diagnostic(code(ingress::manifest::ignored), severity(Warning))]
pub struct ManifestWarning {
    what: String,
    why: String,
    #[source_code]
    src: Source,
    #[label("ignored")]
    span: SourceSpan,
}

/// Reads every document of a manifest file (`name` is for messages).
pub fn read(name: &str, text: &str) -> Read {
    let mut reader = Reader { src: NamedSource::new(name, Arc::from(text)), read: Read::default() };
    for (offset, document) in documents(text) {
        reader.document(offset, document);
    }
    reader.read
}

/// The documents of a stream and where each starts: text between lines that start with `---`
/// followed by nothing but spaces or a comment (kubectl's `YAMLReader`).
fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let rest = line.strip_prefix("---").map(str::trim);
        if rest.is_some_and(|rest| rest.is_empty() || rest.starts_with('#')) {
            out.push((start, text.get(start..offset).unwrap_or_default()));
            start = offset + line.len();
        }
        offset += line.len();
    }
    out.push((start, text.get(start..).unwrap_or_default()));
    out
}

struct Reader {
    src: Source,
    read: Read,
}

impl Reader {
    fn document(&mut self, offset: usize, text: &str) {
        let (value, errors) = ppl::syntax::yaml::parse(text);
        let empty = errors.iter().any(|e| e.code_str() == "ppl::syntax::empty");
        if empty {
            return;
        }
        let clean = errors.is_empty();
        for error in errors {
            self.syntax(&error, offset);
        }
        if let Some(value) = value.filter(|_| clean) {
            self.object(&shifted(&value, offset));
        }
    }

    fn syntax(&mut self, error: &ppl::Error, offset: usize) {
        let label = error.labels().and_then(|mut l| l.next()).and_then(|l| l.label().map(str::to_owned));
        self.read.errors.push(ManifestError::Syntax {
            message: error.to_string(),
            src: self.src.clone(),
            span: error.span().shifted(offset).into(),
            label: label.unwrap_or_default(),
            help: error.help().map(|h| h.to_string()),
        });
    }

    fn object(&mut self, value: &Value) {
        if matches!(value.kind, ValueKind::Null) {
            return;
        }
        let Some(kind) = value.get("kind").and_then(|e| e.value.as_str()) else {
            self.read.errors.push(ManifestError::NotObject { src: self.src.clone(), span: value.span.into() });
            return;
        };
        let api_version = value.get("apiVersion").and_then(|e| e.value.as_str()).unwrap_or_default();
        if kind == "List" {
            let items = value.get("items").and_then(|e| e.value.as_array()).unwrap_or_default();
            items.iter().for_each(|item| self.object(item));
            return;
        }
        if !self.strings_only(value) {
            return;
        }
        let json = to_json(value);
        let decoded = match (kind, api_version) {
            ("Ingress", "networking.k8s.io/v1") => decode(&json).map(|o| self.read.objects.ingresses.push(o)),
            ("IngressClass", "networking.k8s.io/v1") => {
                decode(&json).map(|o| self.read.objects.ingress_classes.push(o))
            }
            ("Service", "v1") => decode(&json).map(|o| self.read.objects.services.push(o)),
            ("Endpoints", "v1") => decode(&json).map(|o| self.read.objects.endpoints.push(o)),
            ("Secret", "v1") => decode(&json).map(|o| self.read.objects.secrets.push(o)),
            _ => {
                self.ignored(kind, api_version, value.span);
                Ok(())
            }
        };
        if let Err(error) = decoded {
            let name = json.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or("?").to_owned();
            let (src, span) = (self.src.clone(), value.span.into());
            let message = error.to_string();
            self.read.errors.push(ManifestError::Decode { kind: kind.to_owned(), name, message, src, span });
        }
    }

    fn ignored(&mut self, kind: &str, api_version: &str, span: Span) {
        let known = ["Ingress", "IngressClass", "Service", "Endpoints", "Secret"];
        let why = if known.contains(&kind) {
            format!("`{api_version}` is not a version the translation reads")
        } else {
            "only Ingress, IngressClass, Service, Endpoints and Secret objects are read".to_owned()
        };
        let what = format!("`{api_version}` `{kind}`");
        self.read.warnings.push(ManifestWarning { what, why, src: self.src.clone(), span: span.into() });
    }

    /// Annotation and label values must be strings (the API server refuses others; a YAML
    /// `true` left unquoted is the usual slip).
    fn strings_only(&mut self, value: &Value) -> bool {
        let metadata = value.get("metadata").map(|e| &e.value);
        let mut ok = true;
        for field in ["annotations", "labels"] {
            let entries = metadata.and_then(|m| m.get(field)).and_then(|e| e.value.as_object()).unwrap_or_default();
            for entry in entries.iter().filter(|e| !matches!(e.value.kind, ValueKind::String(_))) {
                let field = format!("metadata.{field}.{}", entry.key);
                self.read.errors.push(ManifestError::NotString {
                    field,
                    src: self.src.clone(),
                    span: entry.value.span.into(),
                });
                ok = false;
            }
        }
        ok
    }
}

/// Decodes a Kubernetes object from JSON, as the API server's decoder would.
fn decode<T: for<'de> k8s_openapi::serde::Deserialize<'de>>(json: &serde_json::Value) -> Result<T, serde_json::Error> {
    T::deserialize(json)
}

/// The value with every span moved `offset` bytes on (a document that starts inside the file).
fn shifted(value: &Value, offset: usize) -> Value {
    let kind = match &value.kind {
        ValueKind::Array(items) => ValueKind::Array(items.iter().map(|i| shifted(i, offset)).collect()),
        ValueKind::Object(entries) => ValueKind::Object(
            entries
                .iter()
                .map(|e| ppl::value::Entry {
                    key: e.key.clone(),
                    key_span: e.key_span.shifted(offset),
                    value: shifted(&e.value, offset),
                })
                .collect(),
        ),
        other => other.clone(),
    };
    Value::new(kind, value.span.shifted(offset))
}

fn to_json(value: &Value) -> serde_json::Value {
    match &value.kind {
        ValueKind::Null => serde_json::Value::Null,
        ValueKind::Bool(b) => serde_json::Value::Bool(*b),
        ValueKind::Number(n) => serde_json::from_str::<serde_json::Number>(n.as_str())
            .map_or_else(|_| serde_json::Value::String(n.as_str().to_owned()), serde_json::Value::Number),
        ValueKind::String(s) => serde_json::Value::String(s.clone()),
        ValueKind::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        ValueKind::Object(entries) => {
            serde_json::Value::Object(entries.iter().map(|e| (e.key.clone(), to_json(&e.value))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_separator_lines() {
        let text = "a: 1\n---\nb: 2\n--- # two\nc: 3\n---x: 4\n";
        let docs: Vec<&str> = documents(text).into_iter().map(|(_, d)| d).collect();
        assert_eq!(docs, vec!["a: 1\n", "b: 2\n", "c: 3\n---x: 4\n"]);
    }
}
