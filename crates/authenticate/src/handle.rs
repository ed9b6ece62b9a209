//! The session handle: what the `_pomerium` cookie holds (system.md §3.4), an HS256 JWT under the
//! shared secret naming the session, its user, and the databroker versions it was written at.

use crate::aead::Aead;
use crate::jws::{self, JwsError};
use base64::Engine as _;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHandle {
    /// `jti`: the session id.
    pub id: String,
    /// `sub`: the user id.
    pub user_id: String,
    pub idp_id: Option<String>,
    pub issuer: String,
    pub audience: Vec<String>,
    pub issued_at: i64,
    pub databroker_server_version: u64,
    pub databroker_record_version: u64,
}

/// Why a handle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    #[error("the session handle: {0}")]
    Token(#[from] JwsError),
    #[error("the session handle has no session id")]
    NoId,
    #[error("the sealed session handle cannot be opened")]
    Sealed,
}

impl SessionHandle {
    pub fn to_jwt(&self, shared_key: &[u8]) -> String {
        let mut claims = Map::new();
        claims.insert("jti".into(), Value::String(self.id.clone()));
        claims.insert("sub".into(), Value::String(self.user_id.clone()));
        claims.insert("iss".into(), Value::String(self.issuer.clone()));
        claims.insert("aud".into(), Value::Array(self.audience.iter().cloned().map(Value::String).collect()));
        claims.insert("iat".into(), Value::from(self.issued_at));
        if let Some(idp_id) = &self.idp_id {
            claims.insert("idp_id".into(), Value::String(idp_id.clone()));
        }
        // protojson's uint64: a decimal string.
        claims.insert("databroker_server_version".into(), Value::String(self.databroker_server_version.to_string()));
        claims.insert("databroker_record_version".into(), Value::String(self.databroker_record_version.to_string()));
        jws::sign_hs256(&claims, shared_key)
    }

    pub fn from_jwt(token: &str, shared_key: &[u8]) -> Result<SessionHandle, HandleError> {
        let claims = jws::verify_hs256(token, shared_key)?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let number = |name: &str| match claims.get(name) {
            Some(Value::Number(n)) => n.as_u64().unwrap_or_default(),
            Some(Value::String(s)) => s.parse().unwrap_or_default(),
            _ => 0,
        };
        let audience = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let handle = SessionHandle {
            id: text("jti"),
            user_id: text("sub"),
            idp_id: claims.get("idp_id").and_then(Value::as_str).map(str::to_owned),
            issuer: text("iss"),
            audience,
            issued_at: claims.get("iat").and_then(Value::as_i64).unwrap_or_default(),
            databroker_server_version: number("databroker_server_version"),
            databroker_record_version: number("databroker_record_version"),
        };
        if handle.id.is_empty() {
            return Err(HandleError::NoId);
        }
        Ok(handle)
    }
}

/// `pomerium_session_encrypted` (§3.3 step 4): the handle's JWT sealed under the shared key,
/// base64url.
pub fn seal_for_callback(handle_jwt: &str, aead: &Aead) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(aead.seal(handle_jwt.as_bytes(), b""))
}

pub fn open_from_callback(value: &str, aead: &Aead) -> Result<String, HandleError> {
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| HandleError::Sealed)?;
    let opened = aead.open(&sealed, b"").map_err(|_| HandleError::Sealed)?;
    String::from_utf8(opened).map_err(|_| HandleError::Sealed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn handle() -> SessionHandle {
        SessionHandle {
            id: "s1".into(),
            user_id: "u1".into(),
            idp_id: Some("idp".into()),
            issuer: "authenticate.example.com".into(),
            audience: vec!["authenticate.example.com".into(), "app.example.com".into()],
            issued_at: 1000,
            databroker_server_version: u64::MAX,
            databroker_record_version: 42,
        }
    }

    #[test]
    fn handles_round_trip_and_refuse_other_keys() {
        let jwt = handle().to_jwt(b"key");
        assert_eq!(SessionHandle::from_jwt(&jwt, b"key").unwrap(), handle());
        assert!(SessionHandle::from_jwt(&jwt, b"other").is_err());
        let empty = SessionHandle { id: String::new(), ..handle() }.to_jwt(b"key");
        assert_eq!(SessionHandle::from_jwt(&empty, b"key"), Err(HandleError::NoId));
    }

    #[test]
    fn sealed_handles_open_only_with_the_key() {
        let aead = Aead::new(&[3; 32]).unwrap();
        let sealed = seal_for_callback("a.b.c", &aead);
        assert_eq!(open_from_callback(&sealed, &aead).unwrap(), "a.b.c");
        assert_eq!(open_from_callback(&sealed, &Aead::new(&[4; 32]).unwrap()), Err(HandleError::Sealed));
        assert_eq!(open_from_callback("!!", &aead), Err(HandleError::Sealed));
    }
}
