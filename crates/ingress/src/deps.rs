//! What a translation reads besides the Ingress: the Services, Endpoints and Secrets it refers to,
//! by namespace and name (upstream's `model.IngressConfig`), and the annotation prefix.
//!
//! The controller fills this from the API server; the `translate` dry run from manifest files. A
//! missing object is not an error here: the translation reports it where it is needed, naming the
//! rule or annotation that refers to it.

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::fmt;

/// The annotation prefix of Pomerium's controller (`--prefix`).
pub const DEFAULT_ANNOTATION_PREFIX: &str = "ingress.pomerium.io";

/// A namespaced object name, written `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey { namespace: namespace.to_owned(), name: name.to_owned() }
    }

    /// The key of an object from its metadata; an object without a namespace is in `default`, as
    /// `kubectl apply` would put it.
    pub fn of(meta: &ObjectMeta) -> ObjectKey {
        ObjectKey::new(namespace_of(meta), meta.name.as_deref().unwrap_or_default())
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An object's namespace, `default` when it has none.
pub fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().filter(|ns| !ns.is_empty()).unwrap_or("default")
}

/// The objects an Ingress may refer to, and the annotation prefix it is read with.
#[derive(Debug, Clone)]
pub struct Dependencies {
    /// Annotations are `<prefix>/<option>`; the default is [`DEFAULT_ANNOTATION_PREFIX`].
    pub annotation_prefix: String,
    pub services: BTreeMap<ObjectKey, Service>,
    pub endpoints: BTreeMap<ObjectKey, Endpoints>,
    pub secrets: BTreeMap<ObjectKey, Secret>,
}

impl Default for Dependencies {
    fn default() -> Dependencies {
        Dependencies::new(DEFAULT_ANNOTATION_PREFIX)
    }
}

impl Dependencies {
    pub fn new(annotation_prefix: &str) -> Dependencies {
        Dependencies {
            annotation_prefix: annotation_prefix.to_owned(),
            services: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }

    /// Adds a Service under its namespace and name (replacing one of the same key).
    pub fn add_service(&mut self, service: Service) {
        self.services.insert(ObjectKey::of(&service.metadata), service);
    }

    pub fn add_endpoints(&mut self, endpoints: Endpoints) {
        self.endpoints.insert(ObjectKey::of(&endpoints.metadata), endpoints);
    }

    pub fn add_secret(&mut self, secret: Secret) {
        self.secrets.insert(ObjectKey::of(&secret.metadata), secret);
    }
}

/// A Secret's type; the API server defaults a missing one to `Opaque`.
pub(crate) fn secret_type(secret: &Secret) -> &str {
    secret.type_.as_deref().filter(|t| !t.is_empty()).unwrap_or("Opaque")
}

/// A Secret's data with `stringData` merged over `data`, as the API server stores it (a manifest
/// may use either).
pub(crate) fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> =
        secret.data.iter().flatten().map(|(key, bytes)| (key.clone(), bytes.0.clone())).collect();
    for (key, text) in secret.string_data.iter().flatten() {
        data.insert(key.clone(), text.as_bytes().to_vec());
    }
    data
}
