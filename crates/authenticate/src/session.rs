//! The databroker records a sign-in writes (system.md §3.3 `PersistSession`, §5.4): a
//! `session.Session` and a `user.User`, as protojson-shaped JSON (RFC 3339 times, claims as a map
//! of lists), and Pomerium's rule for when a session is no longer valid (§3.5).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const SESSION_TYPE: &str = "type.googleapis.com/session.Session";
pub const USER_TYPE: &str = "type.googleapis.com/user.User";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredIdToken {
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<jiff::Timestamp>,
    #[serde(default)]
    pub raw: String,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredOAuthToken {
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for StoredOAuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredOAuthToken")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSession {
    pub id: String,
    #[serde(default)]
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accessed_at: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<StoredIdToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_token: Option<StoredOAuthToken>,
    /// Claim name → list of values.
    #[serde(default)]
    pub claims: Map<String, Value>,
    #[serde(default)]
    pub audience: Vec<String>,
    #[serde(default)]
    pub refresh_disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredUser {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default)]
    pub claims: Map<String, Value>,
}

/// A record whose data is not a session or user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the record is not a {kind}: {reason}")]
pub struct RecordError {
    kind: &'static str,
    reason: String,
}

/// Why a session no longer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionInvalid {
    #[error("the session has expired")]
    Expired,
    #[error("the session's access token has expired and cannot be refreshed")]
    TokenExpired,
}

fn to_map<T: Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

impl StoredSession {
    pub fn to_data(&self) -> Map<String, Value> {
        to_map(self)
    }

    pub fn from_data(data: &Map<String, Value>) -> Result<StoredSession, RecordError> {
        serde_json::from_value(Value::Object(data.clone()))
            .map_err(|e| RecordError { kind: "session", reason: e.to_string() })
    }

    /// Pomerium's `Session.Validate`.
    pub fn validate(&self, now: jiff::Timestamp) -> Result<(), SessionInvalid> {
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(SessionInvalid::Expired);
        }
        if let Some(token) = &self.oauth_token
            && token.expires_at.is_some_and(|at| at <= now)
            && (token.refresh_token.is_none() || self.refresh_disabled)
        {
            return Err(SessionInvalid::TokenExpired);
        }
        Ok(())
    }
}

impl StoredUser {
    pub fn to_data(&self) -> Map<String, Value> {
        to_map(self)
    }

    pub fn from_data(data: &Map<String, Value>) -> Result<StoredUser, RecordError> {
        serde_json::from_value(Value::Object(data.clone()))
            .map_err(|e| RecordError { kind: "user", reason: e.to_string() })
    }
}

/// An IdP's claims as Pomerium keeps them: every value a list.
pub fn claims_from(claims: &Map<String, Value>) -> Map<String, Value> {
    claims
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let list = match v {
                Value::Array(_) => v.clone(),
                other => Value::Array(vec![other.clone()]),
            };
            (k.clone(), list)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use serde_json::json;

    fn session() -> StoredSession {
        StoredSession {
            id: "s1".into(),
            user_id: "u1".into(),
            idp_id: None,
            issued_at: Some("2026-01-01T00:00:00Z".parse().unwrap()),
            expires_at: Some("2026-01-01T14:00:00Z".parse().unwrap()),
            accessed_at: None,
            id_token: Some(StoredIdToken {
                issuer: "i".into(),
                subject: "u1".into(),
                expires_at: None,
                issued_at: None,
                raw: "id.tok.en".into(),
            }),
            oauth_token: Some(StoredOAuthToken {
                access_token: "at".into(),
                token_type: "Bearer".into(),
                expires_at: Some("2026-01-01T01:00:00Z".parse().unwrap()),
                refresh_token: None,
            }),
            claims: claims_from(json!({"email": "a@example.com", "groups": ["x"]}).as_object().unwrap()),
            audience: vec!["a".into()],
            refresh_disabled: false,
        }
    }

    #[test]
    fn records_round_trip_and_the_policy_reads_them() {
        let data = session().to_data();
        assert_eq!(StoredSession::from_data(&data).unwrap(), session());
        let mut records = policy::records::MemoryRecords::default();
        records.upsert(SESSION_TYPE, "s1", &data).unwrap();
        let read = &records.sessions["s1"];
        assert_eq!(read.user_id.as_deref(), Some("u1"));
        assert_eq!(read.claims["email"], json!(["a@example.com"]));
        assert_eq!(read.expires_at, session().expires_at);
        assert_eq!(read.id_token.as_ref().unwrap().0, "id.tok.en");
        assert_eq!(read.access_token.as_ref().unwrap().0, "at");
        let user = StoredUser { id: "u1".into(), name: None, email: Some("a@example.com".into()), claims: Map::new() };
        records.upsert(USER_TYPE, "u1", &user.to_data()).unwrap();
        assert_eq!(records.users["u1"].email.as_deref(), Some("a@example.com"));
        assert!(StoredSession::from_data(json!({"id": 5}).as_object().unwrap()).is_err());
    }

    #[test]
    fn validity_follows_pomerium() {
        let at = |t: &str| -> jiff::Timestamp { t.parse().unwrap() };
        assert_eq!(session().validate(at("2026-01-01T00:30:00Z")), Ok(()));
        assert_eq!(session().validate(at("2026-01-01T02:00:00Z")), Err(SessionInvalid::TokenExpired));
        let mut refreshable = session();
        refreshable.oauth_token.as_mut().unwrap().refresh_token = Some("rt".into());
        assert_eq!(refreshable.validate(at("2026-01-01T02:00:00Z")), Ok(()));
        assert_eq!(refreshable.validate(at("2026-01-01T15:00:00Z")), Err(SessionInvalid::Expired));
    }
}
