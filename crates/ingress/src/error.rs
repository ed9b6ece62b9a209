//! Why an Ingress cannot be translated, and what is probably not meant: one enum of structs, each
//! with a stable code, a lowercase message naming the Ingress (`namespace/name`) and the annotation
//! or rule, and help (thiserror + miette, as `ppl` and `config` do).
//!
//! Problems `config::load` finds in the route documents are [`Invalid`]: they keep the code of the
//! `config::*` or `ppl::*` diagnostic, and when they come from an annotation's value they carry
//! that value as their source with the span inside it, so a policy error is shown in the policy
//! as written.

use crate::doc::Rule;
use miette::{Diagnostic, LabeledSpan, NamedSource, Severity, SourceCode, SourceSpan};
use std::fmt;
use thiserror::Error;

/// A reason an Ingress cannot be translated.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[non_exhaustive]
pub enum TranslateError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    MissingName(MissingName),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownAnnotation(UnknownAnnotation),
    #[error(transparent)]
    #[diagnostic(transparent)]
    RemovedAnnotation(RemovedAnnotation),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnsupportedAnnotation(UnsupportedAnnotation),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(Invalid),
    #[error(transparent)]
    #[diagnostic(transparent)]
    MissingSecret(MissingSecret),
    #[error(transparent)]
    #[diagnostic(transparent)]
    MissingSecretKey(MissingSecretKey),
    #[error(transparent)]
    #[diagnostic(transparent)]
    WrongSecretType(WrongSecretType),
    #[error(transparent)]
    #[diagnostic(transparent)]
    SecretNotUtf8(SecretNotUtf8),
    #[error(transparent)]
    #[diagnostic(transparent)]
    HeaderConflict(HeaderConflict),
    #[error(transparent)]
    #[diagnostic(transparent)]
    MissingHost(MissingHost),
    #[error(transparent)]
    #[diagnostic(transparent)]
    MissingHttp(MissingHttp),
    #[error(transparent)]
    #[diagnostic(transparent)]
    MissingPathType(MissingPathType),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownPathType(UnknownPathType),
    #[error(transparent)]
    #[diagnostic(transparent)]
    TunnelPath(TunnelPath),
    #[error(transparent)]
    #[diagnostic(transparent)]
    NoService(NoService),
    #[error(transparent)]
    #[diagnostic(transparent)]
    MissingService(MissingService),
    #[error(transparent)]
    #[diagnostic(transparent)]
    MissingServicePort(MissingServicePort),
    #[error(transparent)]
    #[diagnostic(transparent)]
    NoPort(NoPort),
    #[error(transparent)]
    #[diagnostic(transparent)]
    DefaultBackendHost(DefaultBackendHost),
    #[error(transparent)]
    #[diagnostic(transparent)]
    DuplicateIngress(DuplicateIngress),
}

/// Something that translates, but is probably not what was meant.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[non_exhaustive]
pub enum TranslateWarning {
    /// A warning of `config::load` (or `ppl`) about a route, traced back to its source.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(Invalid),
    #[error(transparent)]
    #[diagnostic(transparent)]
    NotBoolean(NotBoolean),
    #[error(transparent)]
    #[diagnostic(transparent)]
    NotManaged(NotManaged),
}

macro_rules! from_variants {
    ($enum:ident: $($variant:ident),+ $(,)?) => {
        $(impl From<$variant> for $enum {
            fn from(inner: $variant) -> $enum {
                $enum::$variant(inner)
            }
        })+
    };
}

from_variants!(TranslateError: MissingName, UnknownAnnotation, RemovedAnnotation, UnsupportedAnnotation, Invalid, MissingSecret,
    MissingSecretKey, WrongSecretType, SecretNotUtf8, HeaderConflict, MissingHost, MissingHttp, MissingPathType,
    UnknownPathType, TunnelPath, NoService, MissingService, MissingServicePort, NoPort, DefaultBackendHost, DuplicateIngress);
from_variants!(TranslateWarning: NotBoolean, NotManaged);

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("an ingress has no `metadata.name`")]
#[diagnostic(code(ingress::metadata::missing_name), help("every kubernetes object is named by `metadata.name`"))]
pub struct MissingName {}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: unknown annotation `{annotation}`")]
#[diagnostic(code(ingress::annotation::unknown))]
pub struct UnknownAnnotation {
    pub(crate) ingress: String,
    pub(crate) annotation: String,
    #[help]
    pub(crate) help: String,
}

/// Pomerium: `<prefix>/allowed_groups no longer supported, see <link>`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: annotation `{annotation}` is no longer supported")]
#[diagnostic(code(ingress::annotation::removed))]
pub struct RemovedAnnotation {
    pub(crate) ingress: String,
    pub(crate) annotation: String,
    #[help]
    pub(crate) help: String,
}

/// An annotation Pomerium's controller accepts, for something this server does not serve.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: annotation `{annotation}` is not supported here: {reason}")]
#[diagnostic(
    code(ingress::annotation::not_supported),
    help("remove the annotation; this server would otherwise serve the route without what it asks for")
)]
pub struct UnsupportedAnnotation {
    pub(crate) ingress: String,
    pub(crate) annotation: String,
    pub(crate) reason: &'static str,
}

/// What a problem found by `config::load` is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// An annotation (the full key, prefix included).
    Annotation(String),
    /// A Secret named by an annotation.
    Secret { annotation: String, secret: String },
    /// The rule (or default backend) a route was made from.
    Rule(Rule),
    /// The template of a cert-manager HTTP-01 solver Ingress.
    Solver,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Annotation(annotation) => write!(f, "annotation `{annotation}`"),
            Place::Secret { annotation, secret } => write!(f, "annotation `{annotation}`: secret `{secret}`"),
            Place::Rule(rule) => write!(f, "{rule}"),
            Place::Solver => f.write_str("http-01 solver route"),
        }
    }
}

/// A problem `config::load` (or `ppl`) found in a route made from the Ingress: the route field
/// was invalid as a `config.yaml` route would be. The code is the inner diagnostic's. (Boxed: it
/// carries the annotation's value, and errors travel in `Result`s.)
#[derive(Debug, Clone, Error, PartialEq)]
#[error("ingress `{}`: {}: {}", .0.ingress, .0.place, .0.message)]
pub struct Invalid(pub(crate) Box<InvalidParts>);

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InvalidParts {
    pub ingress: String,
    pub place: Place,
    pub message: String,
    pub code: String,
    pub help: Option<String>,
    pub label: Option<String>,
    pub severity: Severity,
    /// The annotation's value, when the problem is inside it.
    pub value: Option<NamedSource<String>>,
    pub span: Option<SourceSpan>,
}

impl Invalid {
    pub fn place(&self) -> &Place {
        &self.0.place
    }

    /// The annotation's value and the span inside it, when the problem is inside an annotation.
    pub fn value_span(&self) -> Option<(&str, SourceSpan)> {
        Some((self.0.value.as_ref()?.inner().as_str(), self.0.span?))
    }
}

impl Diagnostic for Invalid {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.0.code))
    }

    fn severity(&self) -> Option<Severity> {
        Some(self.0.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.help.as_ref().map(|help| Box::new(help) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.0.value.as_ref().filter(|_| self.0.span.is_some()).map(|value| value as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.0.span.filter(|_| self.0.value.is_some())?;
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(self.0.label.clone(), span))))
    }
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: {user}: secret `{secret}` not found")]
#[diagnostic(code(ingress::secret::missing), help("the secret must be in the ingress's namespace"))]
pub struct MissingSecret {
    pub(crate) ingress: String,
    /// `annotation `…`` or `spec.tls`.
    pub(crate) user: String,
    pub(crate) secret: String,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: {user}: secret `{secret}` has no `{key}` key")]
#[diagnostic(code(ingress::secret::missing_key))]
pub struct MissingSecretKey {
    pub(crate) ingress: String,
    pub(crate) user: String,
    pub(crate) secret: String,
    pub(crate) key: String,
    #[help]
    pub(crate) help: Option<String>,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: {user}: secret `{secret}` is of type `{found}`, expected `{expected}`")]
#[diagnostic(code(ingress::secret::wrong_type))]
pub struct WrongSecretType {
    pub(crate) ingress: String,
    pub(crate) user: String,
    pub(crate) secret: String,
    pub(crate) expected: &'static str,
    pub(crate) found: String,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: {user}: secret `{secret}` key `{key}` is not utf-8 text")]
#[diagnostic(code(ingress::secret::not_utf8))]
pub struct SecretNotUtf8 {
    pub(crate) ingress: String,
    pub(crate) user: String,
    pub(crate) secret: String,
    pub(crate) key: String,
}

/// Pomerium: `secret contains key <k> that was already specified by a non-secret rule`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: {user}: secret `{secret}` sets header `{header}`, which `{annotation}` also sets")]
#[diagnostic(code(ingress::secret::header_conflict), help("set each header in one place"))]
pub struct HeaderConflict {
    pub(crate) ingress: String,
    pub(crate) user: String,
    pub(crate) secret: String,
    pub(crate) header: String,
    pub(crate) annotation: String,
}

/// Pomerium: `ingress rule has empty host; if this is intentional, set the annotation ...`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: a rule has no `host`")]
#[diagnostic(code(ingress::rule::missing_host))]
pub struct MissingHost {
    pub(crate) ingress: String,
    #[help]
    pub(crate) help: String,
}

/// Pomerium: `rules.http is required`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: rule `{host}` has no `http`")]
#[diagnostic(code(ingress::rule::missing_http), help("give the rule `http: {{paths: [...]}}`"))]
pub struct MissingHttp {
    pub(crate) ingress: String,
    pub(crate) host: String,
}

/// Pomerium: `pathType is required`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: {rule}: `pathType` is required")]
#[diagnostic(
    code(ingress::rule::missing_path_type),
    help("set `pathType` to `Prefix`, `Exact` or `ImplementationSpecific`")
)]
pub struct MissingPathType {
    pub(crate) ingress: String,
    pub(crate) rule: Box<Rule>,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: {rule}: unknown `pathType` `{path_type}`")]
#[diagnostic(code(ingress::rule::unknown_path_type))]
pub struct UnknownPathType {
    pub(crate) ingress: String,
    pub(crate) rule: Box<Rule>,
    pub(crate) path_type: String,
    #[help]
    pub(crate) help: String,
}

/// Pomerium: `tcp services must have ImplementationSpecific path type`, `... must not specify path`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: {rule}: {protocol} routes {problem}")]
#[diagnostic(
    code(ingress::rule::tunnel_path),
    help(
        "a {protocol} route is the host and the service port: omit `path` and set `pathType: ImplementationSpecific`"
    )
)]
pub struct TunnelPath {
    pub(crate) ingress: String,
    pub(crate) rule: Box<Rule>,
    pub(crate) protocol: &'static str,
    pub(crate) problem: &'static str,
}

/// Pomerium: `service must be specified`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: {rule}: the backend is not a service")]
#[diagnostic(code(ingress::backend::no_service), help("pomerium routes to services: set `backend.service`"))]
pub struct NoService {
    pub(crate) ingress: String,
    pub(crate) rule: Box<Rule>,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: {rule}: service `{service}` not found")]
#[diagnostic(code(ingress::backend::missing_service), help("the service must be in the ingress's namespace"))]
pub struct MissingService {
    pub(crate) ingress: String,
    pub(crate) rule: Box<Rule>,
    pub(crate) service: String,
}

/// Pomerium: `could not find port <name> on service <ns/name>`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: {rule}: service `{service}` has no port named `{port}`")]
#[diagnostic(code(ingress::backend::missing_port))]
pub struct MissingServicePort {
    pub(crate) ingress: String,
    pub(crate) rule: Box<Rule>,
    pub(crate) service: String,
    pub(crate) port: String,
    #[help]
    pub(crate) help: Option<String>,
}

/// The API server requires one of the two; upstream would route to port 0.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: {rule}: the backend names no port of service `{service}`")]
#[diagnostic(code(ingress::backend::no_port), help("set `backend.service.port.name` or `backend.service.port.number`"))]
pub struct NoPort {
    pub(crate) ingress: String,
    pub(crate) rule: Box<Rule>,
    pub(crate) service: String,
}

/// Pomerium: `defaultBackend: deriving host: expected one TLS spec, got <n>`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: default backend: {reason}")]
#[diagnostic(
    code(ingress::default_backend::host),
    help(
        "the default backend's host is taken from `spec.tls`, which must have exactly one entry with exactly one host"
    )
)]
pub struct DefaultBackendHost {
    pub(crate) ingress: String,
    pub(crate) reason: String,
}

/// Pomerium reads a flag as on when it is `true` in any case, and as off otherwise.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}`: annotation `{annotation}` is `{value}`, which is read as `false`")]
#[diagnostic(code(ingress::annotation::not_boolean), severity(Warning), help("write `\"true\"` or `\"false\"`"))]
pub struct NotBoolean {
    pub(crate) ingress: String,
    pub(crate) annotation: String,
    pub(crate) value: String,
}

/// An Ingress of another controller's class, which Pomerium's controller does not watch.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}` is not translated: {reason}")]
#[diagnostic(
    code(ingress::class::not_managed),
    severity(Warning),
    help("set `spec.ingressClassName` to an ingress class whose `spec.controller` is this controller")
)]
pub struct NotManaged {
    pub(crate) ingress: String,
    pub(crate) reason: String,
}

/// Two Ingresses of the same namespace and name in the input: their routes would have the same ids.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("ingress `{ingress}` is given twice")]
#[diagnostic(
    code(ingress::manifest::duplicate),
    help("the API server keeps one object per name; remove one of the two")
)]
pub struct DuplicateIngress {
    pub(crate) ingress: String,
}
