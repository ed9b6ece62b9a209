//! The Kubernetes ingress controller (system.md §6): the translation of an Ingress, with the
//! Services, Endpoints and Secrets it refers to, into Pomerium routes and certificates; and the
//! [`controller`] that watches the API server and writes those routes to the databroker.
//!
//! ```text
//! manifests ──manifest::read──► Objects ──translate_all──► Outcome { routes (sorted), certificates, errors }
//!                                           │ per Ingress: classes::managed, then
//!                                           ▼
//! Ingress + Dependencies ──translate──► annotations → template route → one route per rule path
//!                                       → validated as config.yaml routes (config::load)
//! ```
//!
//! Invariant: the translation does no I/O and never panics; [`translate`] is a pure function of
//! the Ingress and its dependencies, so the [`controller`] (which watches them on the API server)
//! and the `translate` dry run (which reads manifest files) share it. Every route it returns loads
//! through `config::load` without errors, because that is how it was validated. All the I/O of
//! the crate (API server, databroker, listeners) is in the [`controller`] module, which never
//! panics either.
//!
//! ```
//! let manifest = "
//! apiVersion: networking.k8s.io/v1
//! kind: Ingress
//! metadata: {name: app, namespace: default, annotations: {ingress.pomerium.io/allowed_domains: '[example.com]'}}
//! spec:
//!   rules:
//!     - host: app.example.com
//!       http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}]}
//! ---
//! apiVersion: v1
//! kind: Service
//! metadata: {name: app, namespace: default}
//! spec: {ports: [{port: 80}]}
//! ";
//! let read = ingress::manifest::read("manifest.yaml", manifest);
//! let outcome = ingress::translate_all(&read.objects, &ingress::Options::default());
//! assert!(outcome.errors.is_empty());
//! assert_eq!(outcome.routes[0]["to"][0], "http://app.default.svc.cluster.local:80");
//! ```

pub mod annotations;
mod backend;
pub mod classes;
pub mod controller;
pub mod deps;
mod doc;
mod emit;
pub mod error;
pub mod manifest;
mod naming;
pub mod output;
mod secrets;
mod translate;
mod validate;

pub use deps::{DEFAULT_ANNOTATION_PREFIX, Dependencies, ObjectKey};
pub use doc::Rule;
pub use error::{Invalid, Place, TranslateError, TranslateWarning};
pub use output::{routes_yaml, sort_routes};

use k8s_openapi::api::networking::v1::Ingress;
use std::fmt;

/// The routes of one Ingress and the certificates of its `spec.tls`.
#[derive(Debug, Clone)]
pub struct Translation {
    /// Route documents: JSON objects with `config.yaml` route keys (`from`, `to`, `prefix`, `id`,
    /// `name`, `policy`, ...), in the order they apply in.
    pub routes: Vec<serde_json::Value>,
    pub certificates: Vec<Certificate>,
    pub warnings: Vec<TranslateWarning>,
}

/// A `kubernetes.io/tls` Secret named in `spec.tls`.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    pub secret: ObjectKey,
    /// The hosts the `spec.tls` entry lists.
    pub hosts: Vec<String>,
    /// `tls.crt` (PEM).
    pub cert: Vec<u8>,
    /// `tls.key` (PEM); never printed by `Debug`.
    pub key: Vec<u8>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("secret", &self.secret)
            .field("hosts", &self.hosts)
            .field("cert", &format_args!("{} bytes", self.cert.len()))
            .field("key", &format_args!("<{} bytes, redacted>", self.key.len()))
            .finish()
    }
}

/// Translates one Ingress: a route per rule path (and one for the default backend), sorted, with
/// the certificates of `spec.tls`; or every problem found. Pure: `deps` holds everything it reads.
pub fn translate(ingress: &Ingress, deps: &Dependencies) -> Result<Translation, Vec<TranslateError>> {
    translate::translate(ingress, deps).result
}

/// How a set of objects is translated.
#[derive(Debug, Clone)]
pub struct Options {
    pub annotation_prefix: String,
    /// The controller IngressClasses name in `spec.controller`.
    pub controller_name: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            annotation_prefix: DEFAULT_ANNOTATION_PREFIX.to_owned(),
            controller_name: classes::DEFAULT_CONTROLLER_NAME.to_owned(),
        }
    }
}

/// The routes of every Ingress, merged and sorted, and every problem.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub routes: Vec<serde_json::Value>,
    pub certificates: Vec<Certificate>,
    pub errors: Vec<TranslateError>,
    pub warnings: Vec<TranslateWarning>,
}

/// Translates every Ingress of `objects` that this controller manages (all of them when there
/// are no IngressClasses to tell), as the controller would put them in its one configuration.
pub fn translate_all(objects: &manifest::Objects, options: &Options) -> Outcome {
    let mut deps = Dependencies::new(&options.annotation_prefix);
    objects.services.iter().cloned().for_each(|s| deps.add_service(s));
    objects.endpoints.iter().cloned().for_each(|e| deps.add_endpoints(e));
    objects.secrets.iter().cloned().for_each(|s| deps.add_secret(s));
    let mut outcome = Outcome::default();
    let mut seen = std::collections::BTreeSet::new();
    for ingress in &objects.ingresses {
        let key = ObjectKey::of(&ingress.metadata);
        if ingress.metadata.name.is_some() && !seen.insert(key.clone()) {
            outcome.errors.push(error::DuplicateIngress { ingress: key.to_string() }.into());
            continue;
        }
        let managed = match objects.ingress_classes.as_slice() {
            [] => Ok(()),
            classes => classes::managed(ingress, classes, &options.controller_name),
        };
        if let Err(reason) = managed {
            outcome.warnings.push(error::NotManaged { ingress: key.to_string(), reason }.into());
            continue;
        }
        let translated = translate::translate(ingress, &deps);
        outcome.warnings.extend(translated.warnings);
        match translated.result {
            Ok(translation) => {
                outcome.routes.extend(translation.routes);
                outcome.certificates.extend(translation.certificates);
            }
            Err(errors) => outcome.errors.extend(errors),
        }
    }
    sort_routes(&mut outcome.routes);
    outcome
}
