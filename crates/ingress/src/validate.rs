//! Checking the routes as `config.yaml` routes: they are written as a `routes:` document and read
//! by `config::load`, so that every field (durations, URLs, header maps, PEM, the policy in PPL)
//! is validated exactly as Pomerium's own configuration is. Each diagnostic is traced back, through
//! the span it points at, to the annotation value (and the span inside it), the Secret or the rule
//! that produced the field.
//!
//! An Ingress without routes is checked through a probe route carrying the annotations alone, so
//! that a bad annotation is reported even before the Ingress has rules.

use crate::doc::{Node, RouteDoc, Source};
use crate::emit::{self, Emitted, Recorded};
use crate::error::{Invalid, Place, TranslateError, TranslateWarning};
use crate::translate::Cx;
use miette::Diagnostic;
use ppl::Span;

pub(crate) fn validate(cx: &mut Cx<'_>, routes: &[RouteDoc], template: &[(String, Node)]) {
    let probe = routes.is_empty();
    let documents: Vec<Vec<(String, Node)>> =
        if probe { vec![probe_route(template)] } else { routes.iter().map(|route| route.fields.clone()).collect() };
    let emitted = emit::routes(&documents);
    let loaded = config::load(&emitted.text, config::Format::Yaml, &config::env::Empty);
    // A problem in an annotation is found once per route that carries it: report it once.
    for error in &loaded.errors {
        let traced = trace(cx, routes, &emitted, &error.diagnostic, error.diagnostic.span(), probe);
        if let Some(invalid) = traced.map(TranslateError::Invalid).filter(|e| !cx.errors.contains(e)) {
            cx.errors.push(invalid);
        }
    }
    for warning in &loaded.warnings {
        let traced = trace(cx, routes, &emitted, &warning.diagnostic, warning.diagnostic.span(), probe);
        if let Some(invalid) = traced.map(TranslateWarning::Invalid).filter(|w| !cx.warnings.contains(w)) {
            cx.warnings.push(invalid);
        }
    }
}

/// The annotations' fields on a route that is otherwise valid.
fn probe_route(template: &[(String, Node)]) -> Vec<(String, Node)> {
    let mut fields = template.to_vec();
    fields.push(("from".to_owned(), Node::string("https://probe.invalid", Source::Rule)));
    fields.push(("to".to_owned(), Node::string("http://probe.invalid", Source::Rule)));
    fields
}

/// The diagnostic as an [`Invalid`] about where its span came from; `None` for a problem of the
/// probe route's own fields.
fn trace(
    cx: &Cx<'_>,
    routes: &[RouteDoc],
    emitted: &Emitted,
    diagnostic: &dyn Diagnostic,
    span: Span,
    probe: bool,
) -> Option<Invalid> {
    let Some(recorded) = innermost(&emitted.nodes, span) else {
        let rule = routes.first().map(|r| r.rule.clone())?;
        return Some(cx.invalid(Place::Rule(rule), diagnostic, None));
    };
    match &recorded.source {
        Source::Rule if probe => None,
        Source::Rule => {
            let rule = routes.get(recorded.route).map(|r| r.rule.clone())?;
            Some(cx.invalid(Place::Rule(rule), diagnostic, None))
        }
        Source::Solver => Some(cx.invalid(Place::Solver, diagnostic, None)),
        Source::Annotation { name, span } => {
            let place = Place::Annotation(cx.annotation(name));
            Some(cx.invalid(place, diagnostic, span.map(|span| (name.as_str(), span))))
        }
        Source::Secret { annotation, secret } => {
            let place = Place::Secret { annotation: cx.annotation(annotation), secret: secret.clone() };
            Some(cx.invalid(place, diagnostic, None))
        }
    }
}

/// The smallest recorded node that holds the whole span.
fn innermost(nodes: &[Recorded], span: Span) -> Option<&Recorded> {
    nodes
        .iter()
        .filter(|node| node.span.start() <= span.start() && span.end() <= node.span.end())
        .min_by_key(|node| node.span.len())
}
