//! The claims of `X-Pomerium-Jwt-Assertion` (system.md §3.6) and the `X-Pomerium-Claim-*`
//! headers made from them (§3.7).

use policy::records::{DirectoryUser, Session, User};
use serde_json::{Map, Value};

/// How `iss` is written (`jwt_issuer_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerFormat {
    /// `app.example.com`
    Hostname,
    /// `https://app.example.com/`
    Uri,
}

/// Whose identity the assertion states.
#[derive(Debug, Clone, Copy)]
pub struct AssertionSubject<'a> {
    /// The session id the request carried (`sid`).
    pub session_id: &'a str,
    /// The session whose claims are read: the one named, or the one it impersonates; none for a
    /// service account.
    pub session: Option<&'a Session>,
    /// The user id (`sub`, `user`): the session's, or the service account's.
    pub user_id: &'a str,
    pub user: Option<&'a User>,
    pub directory_user: Option<&'a DirectoryUser>,
}

/// Lifetime of an assertion.
pub const ASSERTION_LIFETIME: i64 = 300;

/// A claim's values: session claims first, then the user's.
fn claim<'a>(subject: &AssertionSubject<'a>, name: &str) -> Option<&'a Value> {
    subject
        .session
        .and_then(|s| s.claims.get(name))
        .filter(|v| !is_empty(v))
        .or_else(|| subject.user.and_then(|u| u.claims.get(name)).filter(|v| !is_empty(v)))
}

fn is_empty(value: &Value) -> bool {
    matches!(value, Value::Null) || value.as_array().is_some_and(Vec::is_empty)
}

fn first_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// A claim's values as one text, comma-joined (Pomerium's `getClaimStringSlice` joined): text,
/// numbers and booleans; nulls, objects and nested lists left out.
fn joined(value: &Value) -> String {
    let one = |item: &Value| match item {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    };
    match value {
        Value::Array(items) => items.iter().filter_map(one).collect::<Vec<_>>().join(","),
        other => one(other).unwrap_or_default(),
    }
}

/// The assertion's claims for a request to `hostname` at `now`.
pub fn assertion_claims(
    subject: &AssertionSubject<'_>,
    hostname: &str,
    issuer_format: IssuerFormat,
    extra_claims: &[&str],
    now: i64,
) -> Map<String, Value> {
    let mut claims = Map::new();
    let issuer = match issuer_format {
        IssuerFormat::Hostname => hostname.to_owned(),
        IssuerFormat::Uri => format!("https://{hostname}/"),
    };
    claims.insert("iss".into(), Value::String(issuer));
    claims.insert("aud".into(), Value::String(hostname.to_owned()));
    claims.insert("jti".into(), Value::String(uuid_v4()));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now.saturating_add(ASSERTION_LIFETIME)));
    claims.insert("sub".into(), Value::String(subject.user_id.to_owned()));
    claims.insert("user".into(), Value::String(subject.user_id.to_owned()));
    let email = subject
        .directory_user
        .and_then(|d| d.email.clone())
        .or_else(|| subject.user.and_then(|u| u.email.clone()))
        .or_else(|| first_text(claim(subject, "email")))
        .unwrap_or_default();
    claims.insert("email".into(), Value::String(email));
    let groups: Vec<Value> = match subject.directory_user.and_then(|d| d.group_ids.clone()) {
        Some(ids) => ids,
        None => match claim(subject, "groups") {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::String(one)) => vec![Value::String(one.clone())],
            _ => Vec::new(),
        },
    };
    claims.insert("groups".into(), Value::Array(groups));
    claims.insert("sid".into(), Value::String(subject.session_id.to_owned()));
    // Always there, empty when unknown (`getJWTPayloadName`).
    claims.insert("name".into(), Value::String(claim(subject, "name").map(joined).unwrap_or_default()));
    for name in extra_claims {
        if claims.contains_key(*name) {
            continue;
        }
        if let Some(value) = claim(subject, name) {
            claims.insert((*name).to_owned(), Value::String(joined(value)));
        }
    }
    claims
}

/// `(header, claim)` pairs rendered from `claims`: text as is, lists comma-joined, a missing
/// claim as an empty value.
pub fn claim_headers(claims: &Map<String, Value>, headers: &[(String, String)]) -> Vec<(String, String)> {
    headers.iter().map(|(header, name)| (header.clone(), claims.get(name).map(render).unwrap_or_default())).collect()
}

fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(render).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A random version 4 UUID, `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx` (one allocation).
fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (index, byte) in b.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        for nibble in [byte >> 4, byte & 0x0f] {
            // A nibble is always a hex digit.
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_follow_pomeriums_table() {
        let mut session = Session { id: "s1".into(), user_id: Some("u1".into()), ..Session::default() };
        session.claims = json!({"groups": ["a", "b"], "name": ["Alice"], "department": ["eng", "ops", 7, null, true]})
            .as_object()
            .unwrap()
            .clone();
        let user = User { id: "u1".into(), email: Some("alice@example.com".into()), claims: Map::new(), revision: 0 };
        let subject = AssertionSubject {
            session_id: "s1",
            session: Some(&session),
            user_id: "u1",
            user: Some(&user),
            directory_user: None,
        };
        let claims = assertion_claims(&subject, "app.example.com", IssuerFormat::Uri, &["department", "missing"], 1000);
        assert_eq!(claims["iss"], "https://app.example.com/");
        assert_eq!(claims["aud"], "app.example.com");
        assert_eq!(claims["exp"], 1300);
        assert_eq!(claims["sub"], "u1");
        assert_eq!(claims["user"], "u1");
        assert_eq!(claims["email"], "alice@example.com");
        assert_eq!(claims["groups"], json!(["a", "b"]));
        assert_eq!(claims["name"], "Alice");
        assert_eq!(claims["department"], "eng,ops,7,true", "extra claims are comma-joined text, as Pomerium's");
        assert_eq!(claims["sid"], "s1");
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(jti.len(), 36);
        let groups: Vec<usize> = jti.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert!(jti.chars().all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(jti.as_bytes()[14], b'4', "version 4");
        assert!(matches!(jti.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "RFC 4122 variant");
        assert_ne!(assertion_claims(&subject, "h", IssuerFormat::Uri, &[], 0)["jti"], claims["jti"]);
        let headers = claim_headers(
            &claims,
            &[("x-pomerium-claim-groups".into(), "groups".into()), ("x-a".into(), "missing".into())],
        );
        assert_eq!(headers, vec![("x-pomerium-claim-groups".into(), "a,b".into()), ("x-a".into(), String::new())]);
        let anonymous =
            AssertionSubject { session_id: "", session: None, user_id: "", user: None, directory_user: None };
        let claims = assertion_claims(&anonymous, "h", IssuerFormat::Hostname, &[], 0);
        assert_eq!(claims["groups"], json!([]));
        assert_eq!(claims["name"], "", "always there, as Pomerium's");
    }
}
