//! One Ingress into routes (`pomerium/ingress_to_route.go`): a template route from the
//! annotations (or, for a cert-manager HTTP-01 solver, a public one), then one route per rule path
//! and one for the default backend, each with its `from`, path matcher, `to`, `id` and `name`.
//!
//! Every problem is collected rather than stopping at the first: an Ingress with a bad annotation
//! and a rule without a `pathType` reports both.

use crate::annotations::{self, Flag, Kind};
use crate::backend;
use crate::deps::{Dependencies, ObjectKey};
use crate::doc::{Node, RouteDoc, Rule, Source};
use crate::error::{
    DefaultBackendHost, Invalid, InvalidParts, MissingHost, MissingHttp, MissingPathType, NotBoolean, Place,
    RemovedAnnotation, TranslateError, TranslateWarning, TunnelPath, UnknownAnnotation, UnknownPathType,
    UnsupportedAnnotation,
};
use crate::naming;
use crate::secrets;
use crate::{Certificate, Translation, output, validate};
use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressBackend, IngressSpec};
use miette::{Diagnostic, NamedSource, Severity};
use std::collections::{BTreeMap, BTreeSet};

/// cert-manager labels the Ingresses it creates to answer HTTP-01 challenges.
const HTTP01_SOLVER_LABEL: &str = "acme.cert-manager.io/http01-solver";

/// The state of one translation: the Ingress, what it refers to, and what was found wrong.
pub(crate) struct Cx<'a> {
    pub ingress: &'a Ingress,
    pub deps: &'a Dependencies,
    pub key: ObjectKey,
    /// `namespace/name`, for messages.
    pub label: String,
    pub flags: BTreeSet<Flag>,
    /// The annotations under the prefix, by name after the prefix.
    pub annotations: BTreeMap<String, String>,
    pub errors: Vec<TranslateError>,
    pub warnings: Vec<TranslateWarning>,
}

/// What translating one Ingress gave: routes and certificates when there are no errors, and
/// every warning either way.
pub(crate) struct Translated {
    pub result: Result<Translation, Vec<TranslateError>>,
    pub warnings: Vec<TranslateWarning>,
}

/// Translates an Ingress into routes, or says everything that is wrong with it.
pub(crate) fn translate(ingress: &Ingress, deps: &Dependencies) -> Translated {
    if ingress.metadata.name.as_deref().is_none_or(str::is_empty) {
        return Translated { result: Err(vec![crate::error::MissingName {}.into()]), warnings: Vec::new() };
    }
    let mut cx = Cx::new(ingress, deps);
    let template = if is_http01_solver(ingress) { solver_template() } else { cx.template() };
    let mut routes = cx.routes(&template);
    output::sort_docs(&mut routes);
    let certificates: Vec<Certificate> = secrets::certificates(&mut cx);
    validate::validate(&mut cx, &routes, &template);
    if !cx.errors.is_empty() {
        // What `config::load` warns about an Ingress with errors is mostly their echo (a policy
        // that could not be read leaves a route that "allows nobody"); the translation's own
        // warnings stay.
        let warnings = cx.warnings.into_iter().filter(|w| !matches!(w, TranslateWarning::Invalid(_))).collect();
        return Translated { result: Err(cx.errors), warnings };
    }
    let warnings = cx.warnings.clone();
    let routes = routes.iter().map(RouteDoc::to_json).collect();
    Translated { result: Ok(Translation { routes, certificates, warnings: cx.warnings }), warnings }
}

/// Whether cert-manager made this Ingress to answer an HTTP-01 challenge (`isHTTP01Solver`).
fn is_http01_solver(ingress: &Ingress) -> bool {
    ingress
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(HTTP01_SOLVER_LABEL))
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

/// The challenge must be answerable by anyone, at the host it was issued for; the solver's own
/// annotations are not read.
fn solver_template() -> Vec<(String, Node)> {
    vec![
        ("allow_public_unauthenticated_access".to_owned(), Node::bool(true, Source::Solver)),
        ("preserve_host_header".to_owned(), Node::bool(true, Source::Solver)),
    ]
}

impl<'a> Cx<'a> {
    fn new(ingress: &'a Ingress, deps: &'a Dependencies) -> Cx<'a> {
        let key = ObjectKey::of(&ingress.metadata);
        let prefix = format!("{}/", deps.annotation_prefix);
        let annotations: BTreeMap<String, String> = ingress
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|name| (name.to_owned(), v.clone())))
            .collect();
        let mut cx = Cx {
            ingress,
            deps,
            label: key.to_string(),
            key,
            flags: BTreeSet::new(),
            annotations,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        cx.read_flags();
        cx
    }

    /// The full annotation key for a name after the prefix.
    pub fn annotation(&self, name: &str) -> String {
        format!("{}/{name}", self.deps.annotation_prefix)
    }

    pub fn flag(&self, flag: Flag) -> bool {
        self.flags.contains(&flag)
    }

    /// `IsAnnotationSet`: `true` in any case is on; anything else is off (with a warning unless
    /// it is `false`).
    fn read_flags(&mut self) {
        for (name, value) in &self.annotations {
            let Some(Kind::Flag(flag)) = annotations::kind(name) else { continue };
            let text = value.trim();
            if text.eq_ignore_ascii_case("true") {
                self.flags.insert(flag);
            } else if !text.eq_ignore_ascii_case("false") {
                let warning =
                    NotBoolean { ingress: self.label.clone(), annotation: self.annotation(name), value: value.clone() };
                self.warnings.push(warning.into());
            }
        }
    }

    /// The fields every route of this Ingress starts with (`applyAnnotations`): route options
    /// first, then what the Secrets supply (which may merge into the options' header maps).
    fn template(&mut self) -> Vec<(String, Node)> {
        let mut fields = Vec::new();
        let mut secret_uses = Vec::new();
        for (name, value) in self.annotations.clone() {
            match annotations::kind(&name) {
                Some(Kind::Option) if let Some(support) = config::support::lookup(&format!("routes.{name}")) => {
                    let (config::support::Support::Warned(reason) | config::support::Support::Refused(reason)) =
                        support;
                    self.unsupported_annotation(&name, reason);
                }
                Some(Kind::Unsupported(reason)) => self.unsupported_annotation(&name, reason),
                Some(Kind::Option) => {
                    if let Some(node) = self.option_value(&name, &value) {
                        fields.push((name, node));
                    }
                }
                Some(Kind::Secret(secret_use)) => secret_uses.push((name, value, secret_use)),
                Some(Kind::Flag(_)) => {}
                Some(Kind::Removed(help)) => {
                    let error = RemovedAnnotation {
                        ingress: self.label.clone(),
                        annotation: self.annotation(&name),
                        help: help.to_owned(),
                    };
                    self.errors.push(error.into());
                }
                None => self.unknown_annotation(&name),
            }
        }
        for (name, value, secret_use) in secret_uses {
            secrets::apply(self, &name, value.trim(), secret_use, &mut fields);
        }
        fields
    }

    fn unsupported_annotation(&mut self, name: &str, reason: &'static str) {
        let error = UnsupportedAnnotation { ingress: self.label.clone(), annotation: self.annotation(name), reason };
        self.errors.push(error.into());
    }

    fn unknown_annotation(&mut self, name: &str) {
        let prefix = &self.deps.annotation_prefix;
        let help = ppl::suggest::closest(name, &annotations::names()).map_or_else(
            || {
                format!(
                    "`{prefix}/` annotations are pomerium's; another tool's annotations need that tool's own prefix"
                )
            },
            |known| format!("did you mean `{prefix}/{known}`?"),
        );
        let error = UnknownAnnotation { ingress: self.label.clone(), annotation: self.annotation(name), help };
        self.errors.push(error.into());
    }

    /// A route option's value, read as YAML; an empty value is no value.
    fn option_value(&mut self, name: &str, text: &str) -> Option<Node> {
        if text.trim().is_empty() {
            return None;
        }
        let (value, errors) = ppl::syntax::yaml::parse(text);
        let empty = errors.iter().any(|e| e.code_str() == "ppl::syntax::empty");
        if empty {
            return None;
        }
        let clean = errors.is_empty();
        for error in errors {
            let span = error.span();
            self.errors.push(self.invalid(Place::Annotation(self.annotation(name)), &error, Some((name, span))).into());
        }
        value.filter(|_| clean).map(|value| Node::from_annotation(&value, name))
    }

    /// A problem found in a route field, as an [`Invalid`] about `place`; with `at`, inside the
    /// value of the annotation `at.0`, at `at.1`.
    pub fn invalid(&self, place: Place, diagnostic: &dyn Diagnostic, at: Option<(&str, ppl::Span)>) -> Invalid {
        let label = diagnostic.labels().and_then(|mut labels| labels.next()).and_then(|l| l.label().map(str::to_owned));
        let value = at.and_then(|(name, _)| {
            let text = self.annotations.get(name)?;
            Some(NamedSource::new(self.annotation(name), text.clone()))
        });
        Invalid(Box::new(InvalidParts {
            ingress: self.label.clone(),
            place,
            message: diagnostic.to_string(),
            code: diagnostic.code().map(|c| c.to_string()).unwrap_or_default(),
            help: diagnostic.help().map(|h| h.to_string()),
            label,
            severity: diagnostic.severity().unwrap_or(Severity::Error),
            span: at.filter(|_| value.is_some()).map(|(_, span)| span.into()),
            value,
        }))
    }

    /// The routes of the default backend and of every rule path.
    fn routes(&mut self, template: &[(String, Node)]) -> Vec<RouteDoc> {
        let Some(spec) = self.ingress.spec.as_ref() else { return Vec::new() };
        let mut routes = Vec::new();
        if let Some(backend) = &spec.default_backend {
            routes.extend(self.default_backend(spec, backend, template));
        }
        for rule in spec.rules.iter().flatten() {
            let host = match rule.host.as_deref().filter(|h| !h.is_empty()) {
                Some(host) => host.to_owned(),
                None if self.flag(Flag::SubtleAllowEmptyHost) => "*".to_owned(),
                None => {
                    self.missing_host();
                    continue;
                }
            };
            let Some(http) = &rule.http else {
                self.errors.push(MissingHttp { ingress: self.label.clone(), host }.into());
                continue;
            };
            for path in &http.paths {
                routes.extend(self.path_route(template, &host, path, false));
            }
        }
        routes
    }

    fn missing_host(&mut self) {
        let flag = self.annotation(annotations::flag_name(Flag::SubtleAllowEmptyHost));
        let help =
            format!("give the rule a `host`; to match every host on purpose, set the annotation `{flag}: \"true\"`");
        self.errors.push(MissingHost { ingress: self.label.clone(), help }.into());
    }

    /// `defaultBackend`: a `Prefix /` route on the one host of the one `spec.tls` entry.
    fn default_backend(
        &mut self,
        spec: &IngressSpec,
        backend: &IngressBackend,
        template: &[(String, Node)],
    ) -> Option<RouteDoc> {
        let tls = spec.tls.as_deref().unwrap_or_default();
        let reason = match tls {
            [one] => match one.hosts.as_deref().unwrap_or_default() {
                [host] => {
                    let path = HTTPIngressPath {
                        backend: backend.clone(),
                        path: Some("/".to_owned()),
                        path_type: "Prefix".to_owned(),
                    };
                    return self.path_route(template, &host.clone(), &path, true);
                }
                hosts => format!("expected exactly one host in the tls spec, got {}", hosts.len()),
            },
            _ => format!("expected one tls spec, got {}", tls.len()),
        };
        self.errors.push(DefaultBackendHost { ingress: self.label.clone(), reason }.into());
        None
    }

    /// One route for one rule path (`pathToRoute`).
    fn path_route(
        &mut self,
        template: &[(String, Node)],
        host: &str,
        path: &HTTPIngressPath,
        default_backend: bool,
    ) -> Option<RouteDoc> {
        let path_text = path.path.clone().unwrap_or_default();
        let rule = Rule { host: host.to_owned(), path: path_text.clone(), default_backend };
        let mut doc = RouteDoc { fields: template.to_vec(), rule: rule.clone() };
        let matcher_ok = self.set_matcher(&mut doc, path);
        let resolved = backend::resolve(self, &rule, &path.backend);
        let resolved = match resolved {
            Ok(resolved) => resolved,
            Err(error) => {
                self.errors.push(error);
                return None;
            }
        };
        self.set_from(&mut doc, host, resolved.port);
        self.set_name_id(&mut doc, host, &path_text);
        self.set_upstreams(&mut doc, &resolved);
        matcher_ok.then_some(doc)
    }

    /// `setRoutePath`: the path matcher from the path type. Tunnels match the host and port only.
    fn set_matcher(&mut self, doc: &mut RouteDoc, path: &HTTPIngressPath) -> bool {
        let rule = doc.rule.clone();
        let text = path.path.clone().unwrap_or_default();
        let path_type = path.path_type.as_str();
        if path_type.is_empty() {
            self.errors.push(MissingPathType { ingress: self.label.clone(), rule: Box::new(rule) }.into());
            return false;
        }
        if let Some(protocol) = self.tunnel() {
            let problem = if path_type != "ImplementationSpecific" {
                "must have `pathType: ImplementationSpecific`"
            } else if !text.is_empty() {
                "must not have a `path`"
            } else {
                return true;
            };
            self.errors
                .push(TunnelPath { ingress: self.label.clone(), rule: Box::new(rule), protocol, problem }.into());
            return false;
        }
        let key = match path_type {
            "Exact" => "path",
            "Prefix" => "prefix",
            "ImplementationSpecific" if self.flag(Flag::PathRegex) => "regex",
            "ImplementationSpecific" => "prefix",
            other => {
                let help = ppl::suggest::help(other, &["Exact", "Prefix", "ImplementationSpecific"], "path types");
                self.errors.push(
                    UnknownPathType {
                        ingress: self.label.clone(),
                        rule: Box::new(rule),
                        path_type: other.to_owned(),
                        help,
                    }
                    .into(),
                );
                return false;
            }
        };
        if !text.is_empty() {
            doc.set(key, Node::string(text, Source::Rule));
        }
        true
    }

    /// `tcp` or `udp` when the route is a tunnel.
    pub fn tunnel(&self) -> Option<&'static str> {
        if self.flag(Flag::TcpUpstream) { Some("tcp") } else { None }
    }

    /// `setRouteFrom`: `https://host`, or `tcp+https://host:port` for a tunnel to the service port.
    fn set_from(&self, doc: &mut RouteDoc, host: &str, port: i32) {
        let from = match self.tunnel() {
            Some(protocol) => format!("{protocol}+https://{host}:{port}"),
            None => format!("https://{host}"),
        };
        doc.set("from", Node::string(from, Source::Rule));
    }

    /// `setRouteNameID`; a `name` annotation replaces the generated name.
    fn set_name_id(&self, doc: &mut RouteDoc, host: &str, path: &str) {
        let name = self.ingress.metadata.name.as_deref().unwrap_or_default();
        let namespace = &self.key.namespace;
        doc.set("id", Node::string(naming::route_id(name, namespace, host, path), Source::Rule));
        if doc.get("name").is_none() {
            doc.set("name", Node::string(naming::route_name(name, namespace, host, path), Source::Rule));
        }
    }

    /// `setServiceURLs`: one URL per upstream, sorted; with endpoints and `secure_upstream`, the
    /// service's DNS name is the TLS server name unless an annotation set one.
    fn set_upstreams(&self, doc: &mut RouteDoc, resolved: &backend::Resolved) {
        let scheme = match self.tunnel() {
            Some(protocol) => protocol,
            None if self.flag(Flag::SecureUpstream) => "https",
            None => "http",
        };
        let mut urls: Vec<String> = resolved.hosts.iter().map(|host| format!("{scheme}://{host}")).collect();
        urls.sort();
        doc.set("to", Node::strings(&urls, Source::Rule));
        if resolved.endpoints && self.flag(Flag::SecureUpstream) && doc.get("tls_server_name").is_none() {
            doc.set("tls_server_name", Node::string(resolved.service_dns.clone(), Source::Rule));
        }
    }
}
