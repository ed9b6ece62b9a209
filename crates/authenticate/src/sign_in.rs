//! The sign-in redirect (system.md §3.3 step 1): where a route sends a browser whose request needs
//! a user: the authenticate service's `/.pomerium/sign_in`, carrying the original URL, signed.

use crate::signed_url;
use url::Url;

/// The signed `https://<authenticate>/.pomerium/sign_in?pomerium_redirect_uri=<original>` URL,
/// with `pomerium_idp_id` and, for routes that depend on other hosts, `pomerium_additional_hosts`.
pub fn sign_in_url(
    authenticate: &Url,
    original: &Url,
    idp_id: Option<&str>,
    additional_hosts: &[String],
    key: &[u8],
    now: u64,
) -> Url {
    let mut url = authenticate.clone();
    url.set_path("/.pomerium/sign_in");
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("pomerium_redirect_uri", original.as_str());
        if let Some(idp_id) = idp_id {
            query.append_pair("pomerium_idp_id", idp_id);
        }
        if !additional_hosts.is_empty() {
            query.append_pair("pomerium_additional_hosts", &additional_hosts.join(","));
        }
    }
    signed_url::sign(&url, key, now)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn the_sign_in_url_carries_the_original_url_and_verifies() {
        let key = [7u8; 32];
        let authenticate = Url::parse("https://authenticate.example.com/anything?x=1").unwrap();
        let original = Url::parse("https://app.example.com/a/b?q=1").unwrap();
        let url = sign_in_url(&authenticate, &original, Some("idp"), &["b.example.com".to_owned()], &key, 1000);
        assert_eq!(url.host_str(), Some("authenticate.example.com"));
        assert_eq!(url.path(), "/.pomerium/sign_in");
        let get = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        assert_eq!(get("pomerium_redirect_uri").as_deref(), Some("https://app.example.com/a/b?q=1"));
        assert_eq!(get("pomerium_idp_id").as_deref(), Some("idp"));
        assert_eq!(get("pomerium_additional_hosts").as_deref(), Some("b.example.com"));
        assert_eq!(get("x"), None);
        assert_eq!(signed_url::verify(&url, &key, 1000), Ok(()));
    }
}
