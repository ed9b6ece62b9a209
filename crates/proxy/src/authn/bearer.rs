//! Identity-provider tokens as bearer credentials (`bearer_token_format: idp_access_token` or
//! `idp_identity_token`, Pomerium's `config/session.go` `incomingIDPTokenSessionCreator`): how a
//! request's `Authorization: Bearer` is read, and the session id a token names. Checking a token
//! with the provider and keeping its session is the `authn` crate's (`authn::bearer`), reached
//! through [`super::SignIn::bearer_session`].
//!
//! A token the provider does not accept is a 403 and the policy is not evaluated; a provider
//! that cannot be reached is a 503.

use config::options::BearerTokenFormat;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use std::fmt::Write as _;

/// What a request's `Authorization: Bearer` means on its route.
#[derive(Debug, PartialEq, Eq)]
pub enum Bearer<'a> {
    /// Not a token to read here (no header, or the default format): the session, if any, comes
    /// from the session handle.
    NotRead,
    /// An identity provider's token, to be checked with the provider.
    IdpToken(TokenKind, &'a str),
    /// `bearer_token_format: jwt`, which needs `jwt_allowed_issuers` (not supported yet).
    UnsupportedJwt,
    /// `bearer_token_format: jwt` with both a session cookie and a bearer token: Pomerium answers
    /// 400, since a browser session and a machine credential must not mix.
    CookieBesideToken,
}

/// Which token the provider issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Identity,
}

/// Why a bearer token gave no session.
#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    /// The token is not accepted: 403, and the policy is not evaluated.
    #[error("{0}")]
    Refused(String),
    /// The identity provider or the databroker cannot be asked now: 503.
    #[error("{0}")]
    Unavailable(String),
}

/// Reads the request's bearer token as the route's `bearer_token_format` says.
pub fn read<'a>(headers: &'a HeaderMap, format: Option<BearerTokenFormat>, cookie_name: &str) -> Bearer<'a> {
    let kind = match format {
        Some(BearerTokenFormat::IdpAccessToken) => Some(TokenKind::Access),
        Some(BearerTokenFormat::IdpIdentityToken) => Some(TokenKind::Identity),
        Some(BearerTokenFormat::Jwt) => None,
        Some(BearerTokenFormat::Default) | None => return Bearer::NotRead,
    };
    let Some(token) = bearer_token(headers) else { return Bearer::NotRead };
    match kind {
        Some(kind) => Bearer::IdpToken(kind, token),
        None if authenticate::cookie::read_cookie(headers, cookie_name).is_some() => Bearer::CookieBesideToken,
        None => Bearer::UnsupportedJwt,
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case), if not empty. A
/// `Pomerium-…` token is a session handle of ours (in any case, to be safe): it is never taken
/// to the identity provider, where it would be disclosed.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let scheme = value.get(..7)?;
    let token = value.get(7..)?;
    let is_handle = token.get(..9).is_some_and(|prefix| prefix.eq_ignore_ascii_case("pomerium-"));
    (scheme.eq_ignore_ascii_case("bearer ") && !token.is_empty() && !is_handle).then_some(token)
}

/// Pomerium's session id for a token (`getAccessTokenSessionID`, `getIdentityTokenSessionID`):
/// a name-based UUID (version 5) of the token, in a namespace per token kind and per identity
/// provider, so that the same token always finds the same session and a token alone never
/// reveals it.
///
/// Beyond Pomerium: with `idp_access_token_allowed_audiences`, the audiences (sorted) are part of
/// the namespace too. Pomerium's ids leave them out, so a session made for a token on a route
/// without an audience list is then accepted on a route whose list the token fails; here each
/// list gets its own sessions, each checked against it.
pub fn session_id(kind: TokenKind, idp_id: Option<&str>, audiences: Option<&[String]>, token: &str) -> String {
    let mut namespace = match kind {
        TokenKind::Access => ACCESS_TOKEN_NAMESPACE,
        TokenKind::Identity => IDENTITY_TOKEN_NAMESPACE,
    };
    if let Some(idp_id) = idp_id {
        namespace = uuid_v5(&namespace, idp_id.as_bytes());
    }
    if let Some(audiences) = audiences {
        // A marker first, so that an empty list differs from no list.
        namespace = uuid_v5(&namespace, b"idp_access_token_allowed_audiences");
        let mut sorted: Vec<&String> = audiences.iter().collect();
        sorted.sort();
        for audience in sorted {
            namespace = uuid_v5(&namespace, audience.as_bytes());
        }
    }
    format_uuid(&uuid_v5(&namespace, token.as_bytes()))
}

/// Pomerium's namespaces: `0194f6f8-e760-76a0-8917-e28ac927a34d` and
/// `0194f6f9-aec0-704e-bb4a-51054f17ad17`.
const ACCESS_TOKEN_NAMESPACE: [u8; 16] =
    [0x01, 0x94, 0xf6, 0xf8, 0xe7, 0x60, 0x76, 0xa0, 0x89, 0x17, 0xe2, 0x8a, 0xc9, 0x27, 0xa3, 0x4d];
const IDENTITY_TOKEN_NAMESPACE: [u8; 16] =
    [0x01, 0x94, 0xf6, 0xf9, 0xae, 0xc0, 0x70, 0x4e, 0xbb, 0x4a, 0x51, 0x05, 0x4f, 0x17, 0xad, 0x17];

/// RFC 9562 §5.5: SHA-1 of the namespace and the name, with the version and variant bits set.
fn uuid_v5(namespace: &[u8; 16], name: &[u8]) -> [u8; 16] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(namespace);
    context.update(name);
    let digest = context.finish();
    let mut uuid = [0u8; 16];
    for (byte, digested) in uuid.iter_mut().zip(digest.as_ref()) {
        *byte = *digested;
    }
    uuid[6] = (uuid[6] & 0x0f) | 0x50;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
fn format_uuid(uuid: &[u8; 16]) -> String {
    let mut text = String::with_capacity(36);
    for (index, byte) in uuid.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use http::HeaderValue;

    #[test]
    fn session_ids_are_pomeriums() {
        // The values Pomerium's own tests pin (config/session_test.go `Test_getTokenSessionID`), so
        // that a Go Pomerium and this server sharing a databroker find the same session.
        assert_eq!(session_id(TokenKind::Access, None, None, "TOKEN"), "532b0a3d-b413-50a0-8c9f-e6eb340a05d3");
        assert_eq!(session_id(TokenKind::Identity, None, None, "TOKEN"), "e0b8096c-54dd-5623-8098-5488f9c302db");
        assert_eq!(session_id(TokenKind::Access, Some("IDP1"), None, "TOKEN"), "9c99d1d0-805e-51cb-b808-772ab654268b");
        assert_eq!(
            session_id(TokenKind::Identity, Some("IDP1"), None, "TOKEN"),
            "0fe0e289-40bb-5ffe-b328-e290e043a652"
        );
    }

    #[test]
    fn each_audience_list_has_its_own_sessions() {
        let list = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let plain = session_id(TokenKind::Access, None, None, "TOKEN");
        let empty = session_id(TokenKind::Access, None, Some(&list(&[])), "TOKEN");
        let ab = session_id(TokenKind::Access, None, Some(&list(&["a", "b"])), "TOKEN");
        let ba = session_id(TokenKind::Access, None, Some(&list(&["b", "a"])), "TOKEN");
        let a = session_id(TokenKind::Access, None, Some(&list(&["a"])), "TOKEN");
        assert_ne!(plain, empty, "an empty list is not no list");
        assert_eq!(ab, ba, "the order does not matter");
        assert_ne!(ab, a);
        assert_ne!(plain, a);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_format_decides_whether_a_bearer_token_is_read() {
        let bearer = headers(&[("authorization", "Bearer abc.def")]);
        assert_eq!(read(&bearer, None, "_pomerium"), Bearer::NotRead);
        assert_eq!(read(&bearer, Some(BearerTokenFormat::Default), "_pomerium"), Bearer::NotRead);
        assert_eq!(
            read(&bearer, Some(BearerTokenFormat::IdpAccessToken), "_pomerium"),
            Bearer::IdpToken(TokenKind::Access, "abc.def")
        );
        assert_eq!(
            read(&headers(&[("authorization", "bearer abc")]), Some(BearerTokenFormat::IdpIdentityToken), "_pomerium"),
            Bearer::IdpToken(TokenKind::Identity, "abc")
        );
        for other in ["Basic abc", "Bearer ", "Pomerium abc", "Bearer", "Bearer Pomerium-handle", "bearer pomerium-x"] {
            let map = headers(&[("authorization", other)]);
            assert_eq!(read(&map, Some(BearerTokenFormat::IdpAccessToken), "_pomerium"), Bearer::NotRead, "{other}");
        }
        assert_eq!(read(&HeaderMap::new(), Some(BearerTokenFormat::IdpAccessToken), "_pomerium"), Bearer::NotRead);
    }

    proptest::proptest! {
        /// Any header bytes: a token is read only from a `Bearer` value, never a panic.
        #[test]
        fn any_authorization_header_is_read_without_panicking(value in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut map = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                map.insert(AUTHORIZATION, value);
            }
            for format in [BearerTokenFormat::IdpAccessToken, BearerTokenFormat::IdpIdentityToken, BearerTokenFormat::Jwt] {
                if let Bearer::IdpToken(_, token) = read(&map, Some(format), "_pomerium") {
                    proptest::prop_assert!(!token.is_empty());
                    proptest::prop_assert!(map[AUTHORIZATION].to_str().unwrap().to_ascii_lowercase().starts_with("bearer "));
                }
            }
        }
    }

    #[test]
    fn a_jwt_route_refuses_a_cookie_with_a_bearer_token() {
        let both = headers(&[("authorization", "Bearer x"), ("cookie", "_pomerium=h")]);
        assert_eq!(read(&both, Some(BearerTokenFormat::Jwt), "_pomerium"), Bearer::CookieBesideToken);
        let other_cookie = headers(&[("authorization", "Bearer x"), ("cookie", "theme=dark")]);
        assert_eq!(read(&other_cookie, Some(BearerTokenFormat::Jwt), "_pomerium"), Bearer::UnsupportedJwt);
        assert_eq!(
            read(&headers(&[("cookie", "_pomerium=h")]), Some(BearerTokenFormat::Jwt), "_pomerium"),
            Bearer::NotRead
        );
    }
}
