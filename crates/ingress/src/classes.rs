//! Which Ingresses are Pomerium's (`controllers/ingress/ingress_class.go`): those whose class, by
//! `spec.ingressClassName` or the deprecated `kubernetes.io/ingress.class` annotation, is an
//! IngressClass of this controller; and, without a class, all of them when one of this
//! controller's classes is marked `ingressclass.kubernetes.io/is-default-class`.

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// The controller name IngressClasses give in `spec.controller` (`--name`).
pub const DEFAULT_CONTROLLER_NAME: &str = "pomerium.io/ingress-controller";

const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// `Ok` when `controller` manages the Ingress; otherwise why not.
pub fn managed(ingress: &Ingress, classes: &[IngressClass], controller: &str) -> Result<(), String> {
    let ours: Vec<&IngressClass> =
        classes.iter().filter(|c| c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(controller)).collect();
    let named = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.clone())
        .or_else(|| ingress.metadata.annotations.as_ref().and_then(|a| a.get(CLASS_ANNOTATION)).cloned());
    match named.filter(|n| !n.is_empty()) {
        Some(name) if ours.iter().any(|c| c.metadata.name.as_deref() == Some(name.as_str())) => Ok(()),
        Some(name) => Err(format!("its class `{name}` is not an ingress class of `{controller}`")),
        None if ours.iter().any(|c| is_default(c)) => Ok(()),
        None => Err(format!("it names no class, and no ingress class of `{controller}` is the default")),
    }
}

/// Go's `strconv.ParseBool` of the default-class annotation.
fn is_default(class: &IngressClass) -> bool {
    let value = class.metadata.annotations.as_ref().and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION));
    matches!(value.map(String::as_str), Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
}
