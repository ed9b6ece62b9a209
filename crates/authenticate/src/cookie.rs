//! Cookies as Pomerium writes and reads them (system.md §3.4): `Path=/`, `Secure` always,
//! `HttpOnly` and `SameSite` per settings, `Expires` and `Max-Age`; values over 3800 bytes split
//! into chunks (`name`, `name_1`, … up to 16, as Pomerium's `CookieChunker`); and the other places
//! a session handle may come from.

use http::{HeaderMap, HeaderValue};
use std::borrow::Cow;
use std::time::Duration;

const CHUNK: usize = 3800;
const MAX_CHUNKS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub domain: Option<String>,
    pub http_only: bool,
    pub same_site: Option<SameSite>,
    pub expire: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("the cookie is too large ({0} bytes; at most {max})", max = CHUNK * MAX_CHUNKS)]
    TooLarge(usize),
    #[error("the cookie value is not valid header text")]
    Invalid,
}

fn chunk_name(name: &str, index: usize) -> String {
    if index == 0 { name.to_owned() } else { format!("{name}_{index}") }
}

fn attributes(settings: &CookieSettings, max_age: i64, now: i64) -> String {
    let mut text = String::from("; Path=/");
    if let Some(domain) = settings.domain.as_deref().filter(|d| !d.is_empty()) {
        text.push_str("; Domain=");
        text.push_str(domain);
    }
    let expires = jiff::Timestamp::from_second(now.saturating_add(max_age)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    text.push_str(&format!("; Expires={}", expires.strftime("%a, %d %b %Y %H:%M:%S GMT")));
    text.push_str(&format!("; Max-Age={}", max_age.max(0)));
    text.push_str("; Secure");
    if settings.http_only {
        text.push_str("; HttpOnly");
    }
    match settings.same_site {
        Some(SameSite::Strict) => text.push_str("; SameSite=Strict"),
        Some(SameSite::Lax) => text.push_str("; SameSite=Lax"),
        Some(SameSite::None) => text.push_str("; SameSite=None"),
        None => {}
    }
    text
}

/// `Set-Cookie` values for `name=value`, chunked when large.
pub fn set_cookies(
    settings: &CookieSettings,
    name: &str,
    value: &str,
    now: i64,
) -> Result<Vec<HeaderValue>, CookieError> {
    let bytes = value.as_bytes();
    if bytes.len() > CHUNK * MAX_CHUNKS {
        return Err(CookieError::TooLarge(bytes.len()));
    }
    let max_age = i64::try_from(settings.expire.as_secs()).unwrap_or(i64::MAX / 2);
    let tail = attributes(settings, max_age, now);
    let chunks: Vec<&[u8]> = if bytes.is_empty() { vec![bytes] } else { bytes.chunks(CHUNK).collect() };
    let mut out = Vec::with_capacity(chunks.len());
    for (index, chunk) in chunks.iter().enumerate() {
        let text = std::str::from_utf8(chunk).map_err(|_| CookieError::Invalid)?;
        let line = format!("{}={text}{tail}", chunk_name(name, index));
        out.push(HeaderValue::from_str(&line).map_err(|_| CookieError::Invalid)?);
    }
    Ok(out)
}

/// `Set-Cookie` values that delete the cookie and every chunk name.
pub fn clear_cookies(settings: &CookieSettings, name: &str) -> Vec<HeaderValue> {
    let tail = attributes(settings, 0, 0);
    (0..MAX_CHUNKS)
        .filter_map(|index| HeaderValue::from_str(&format!("{}={tail}", chunk_name(name, index))).ok())
        .collect()
}

/// The cookie pairs of every `Cookie` header, trimmed.
fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
}

/// Whether `key` is chunk `index` (≥ 1) of the cookie `name`: `name_index`.
fn is_chunk(key: &str, name: &str, index: usize) -> bool {
    key.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|number| number.parse::<usize>().ok() == Some(index) && !number.starts_with('0'))
}

/// The cookie `name` from every `Cookie` header, with its chunks joined. Borrowed from the
/// headers unless it came in chunks (the request path reads it on every request).
pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<Cow<'a, str>> {
    let first = cookie_pairs(headers).find(|(k, _)| *k == name).map(|(_, v)| v).filter(|v| !v.is_empty())?;
    if !cookie_pairs(headers).any(|(k, _)| is_chunk(k, name, 1)) {
        return Some(Cow::Borrowed(first));
    }
    let mut value = first.to_owned();
    for index in 1..MAX_CHUNKS {
        match cookie_pairs(headers).find(|(k, _)| is_chunk(k, name, index)) {
            Some((_, part)) => value.push_str(part),
            None => break,
        }
    }
    Some(Cow::Owned(value))
}

/// The session handle a request carries, where Pomerium looks for one: `X-Pomerium-Authorization`,
/// `Authorization: Pomerium …`, `Authorization: Bearer Pomerium-…`, `?pomerium_session=`, then
/// the session cookie.
pub fn session_token<'a>(headers: &'a HeaderMap, query: Option<&'a str>, cookie_name: &str) -> Option<Cow<'a, str>> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(token) = header("x-pomerium-authorization").filter(|t| !t.is_empty()) {
        return Some(Cow::Borrowed(token));
    }
    if let Some(value) = header("authorization") {
        if let Some(token) = value.get(..9).filter(|p| p.eq_ignore_ascii_case("pomerium ")).and(value.get(9..)) {
            return Some(Cow::Borrowed(token.trim())).filter(|t| !t.is_empty());
        }
        if let Some(token) = value.strip_prefix("Bearer Pomerium-") {
            return Some(Cow::Borrowed(token.trim())).filter(|t| !t.is_empty());
        }
    }
    if let Some(query) = query
        && let Some((_, token)) = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "pomerium_session")
        && !token.is_empty()
    {
        return Some(token);
    }
    read_cookie(headers, cookie_name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn settings() -> CookieSettings {
        CookieSettings {
            domain: Some("example.com".into()),
            http_only: true,
            same_site: Some(SameSite::Lax),
            expire: Duration::from_secs(60),
        }
    }

    #[test]
    fn cookies_carry_pomerium_attributes() {
        let cookies = set_cookies(&settings(), "_pomerium", "abc", 0).unwrap();
        assert_eq!(
            cookies[0].to_str().unwrap(),
            "_pomerium=abc; Path=/; Domain=example.com; Expires=Thu, 01 Jan 1970 00:01:00 GMT; Max-Age=60; Secure; HttpOnly; SameSite=Lax"
        );
        let cleared = clear_cookies(&settings(), "_pomerium");
        assert!(cleared[0].to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn large_values_are_chunked_and_joined() {
        let value = "x".repeat(CHUNK * 2 + 10);
        let cookies = set_cookies(&settings(), "_pomerium", &value, 0).unwrap();
        assert_eq!(cookies.len(), 3);
        let mut headers = HeaderMap::new();
        let pairs: Vec<String> =
            cookies.iter().map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned()).collect();
        headers.insert(http::header::COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
        assert_eq!(read_cookie(&headers, "_pomerium").unwrap(), value);
        // A chunk name is `name_N`: other cookies that start with the name are not chunks.
        let mut other = HeaderMap::new();
        other.insert(http::header::COOKIE, HeaderValue::from_static("_pomerium=a; _pomerium_csrf=b; _pomerium_01=c"));
        assert!(matches!(read_cookie(&other, "_pomerium"), Some(Cow::Borrowed("a"))));
        assert!(matches!(set_cookies(&settings(), "c", &"x".repeat(CHUNK * 17), 0), Err(CookieError::TooLarge(_))));
    }

    #[test]
    fn session_tokens_come_from_headers_query_and_cookie_in_order() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, HeaderValue::from_static("a=1; _pomerium=cookie"));
        assert_eq!(session_token(&headers, None, "_pomerium").as_deref(), Some("cookie"));
        assert_eq!(session_token(&headers, Some("pomerium_session=query"), "_pomerium").as_deref(), Some("query"));
        headers.insert("authorization", HeaderValue::from_static("Bearer Pomerium-bearer"));
        assert_eq!(session_token(&headers, Some("pomerium_session=query"), "_pomerium").as_deref(), Some("bearer"));
        headers.insert("authorization", HeaderValue::from_static("Pomerium plain"));
        assert_eq!(session_token(&headers, None, "_pomerium").as_deref(), Some("plain"));
        headers.insert("x-pomerium-authorization", HeaderValue::from_static("x"));
        assert_eq!(session_token(&headers, None, "_pomerium").as_deref(), Some("x"));
        headers.insert("authorization", HeaderValue::from_static("Bearer upstream"));
        headers.remove("x-pomerium-authorization");
        assert_eq!(session_token(&headers, None, "_pomerium").as_deref(), Some("cookie"));
    }
}
