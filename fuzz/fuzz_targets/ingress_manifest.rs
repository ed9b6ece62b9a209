//! Ingress manifests (what `pomerium-ingress-controller translate` reads, and what the controller
//! gets from the API server): every document of a YAML stream read (`ingress::manifest::read`),
//! then translated (`ingress::translate_all`: annotations, policies, backends, TLS secrets,
//! IngressClasses), and the routes emitted as YAML. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let read = ingress::manifest::read("fuzz.yaml", text);
    for error in &read.errors {
        let _ = error.to_string();
    }
    let outcome = ingress::translate_all(&read.objects, &ingress::Options::default());
    for error in &outcome.errors {
        let _ = error.to_string();
    }
    let _ = ingress::routes_yaml(&outcome.routes, &outcome.certificates);
});
