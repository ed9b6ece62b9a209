//! The identity profile of the stateless flow (`pomerium.identity.Profile`, sent sealed as
//! `pomerium_identity_profile`): the provider id, the raw ID token, the OAuth token as Go's
//! `oauth2.Token` JSON, and the claims, in protojson (`providerId`, `idToken` and `oauthToken`
//! as standard base64 of their bytes, `claims` a JSON object). A cluster turns it into its own
//! session and user records (`newSessionHandleFromProfile`, `populateSessionFromProfile`).

use crate::session::{StoredIdToken, StoredOAuthToken, StoredSession, StoredUser, claims_from};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};

/// An identity profile.
#[derive(Clone, PartialEq)]
pub struct Profile {
    pub provider_id: String,
    /// The raw ID token (a JWT), empty when there is none.
    pub id_token: String,
    pub oauth_token: Option<StoredOAuthToken>,
    pub claims: Map<String, Value>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile").field("provider_id", &self.provider_id).finish_non_exhaustive()
    }
}

/// Why a profile was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the identity profile is not valid: {0}")]
pub struct ProfileError(String);

fn bytes_field(object: &Map<String, Value>, camel: &str, snake: &str) -> Result<Vec<u8>, ProfileError> {
    let Some(value) = object.get(camel).or_else(|| object.get(snake)) else { return Ok(Vec::new()) };
    let text = value.as_str().ok_or_else(|| ProfileError(format!("`{camel}` is not a string")))?;
    // protojson reads bytes in either base64 alphabet, padded or not.
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or_else(|| ProfileError(format!("`{camel}` is not base64")))
}

impl Profile {
    /// The profile of a stored session (what the authenticate service seals back). The refresh
    /// token is left out: a cluster cannot refresh at a provider it has no client for, and the
    /// token would be one more secret in a browser's URL.
    pub fn from_session(session: &StoredSession, provider_id: &str, claims: Map<String, Value>) -> Profile {
        Profile {
            provider_id: provider_id.to_owned(),
            id_token: session.id_token.as_ref().map(|t| t.raw.clone()).unwrap_or_default(),
            oauth_token: session.oauth_token.as_ref().map(|t| StoredOAuthToken { refresh_token: None, ..t.clone() }),
            claims,
        }
    }

    /// protojson.
    pub fn to_json(&self) -> String {
        let mut object = Map::new();
        if !self.provider_id.is_empty() {
            object.insert("providerId".into(), Value::String(self.provider_id.clone()));
        }
        if !self.id_token.is_empty() {
            object.insert("idToken".into(), Value::String(STANDARD.encode(&self.id_token)));
        }
        if let Some(token) = &self.oauth_token {
            let mut go = Map::new();
            go.insert("access_token".into(), Value::String(token.access_token.clone()));
            go.insert("token_type".into(), Value::String(token.token_type.clone()));
            if let Some(refresh) = &token.refresh_token {
                go.insert("refresh_token".into(), Value::String(refresh.clone()));
            }
            let expiry = token.expires_at.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), |t| t.to_string());
            go.insert("expiry".into(), Value::String(expiry));
            object.insert("oauthToken".into(), Value::String(STANDARD.encode(Value::Object(go).to_string())));
        }
        object.insert("claims".into(), Value::Object(self.claims.clone()));
        Value::Object(object).to_string()
    }

    /// Reads protojson (either field naming, as protojson accepts).
    pub fn from_json(text: &str) -> Result<Profile, ProfileError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ProfileError(format!("not JSON: {e}")))?;
        let Value::Object(object) = value else { return Err(ProfileError("not a JSON object".into())) };
        let provider_id = match object.get("providerId").or_else(|| object.get("provider_id")) {
            None => String::new(),
            Some(Value::String(id)) => id.clone(),
            Some(_) => return Err(ProfileError("`providerId` is not a string".into())),
        };
        let id_token = String::from_utf8(bytes_field(&object, "idToken", "id_token")?)
            .map_err(|_| ProfileError("`idToken` is not text".into()))?;
        let raw_token = bytes_field(&object, "oauthToken", "oauth_token")?;
        let oauth_token = if raw_token.is_empty() { None } else { Some(go_oauth_token(&raw_token)?) };
        let claims = match object.get("claims") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(claims)) => claims.clone(),
            Some(_) => return Err(ProfileError("`claims` is not an object".into())),
        };
        Ok(Profile { provider_id, id_token, oauth_token, claims })
    }

    /// The user id: `sub`, else `user`; an Azure `oid` wins (`newSessionHandleFromProfile`).
    pub fn user_id(&self) -> Option<String> {
        let text = |name: &str| {
            self.claims.get(name).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        text("oid").or_else(|| text("sub")).or_else(|| text("user")).filter(|id| !id.is_empty())
    }

    /// The session and user records a cluster writes for this profile (`populateSessionFromProfile`,
    /// `User.PopulateFromClaims`): a new session id, issued now, valid for `lifetime`.
    pub fn to_records(
        &self,
        session_id: String,
        user_id: String,
        now: jiff::Timestamp,
        lifetime: std::time::Duration,
        audience: Vec<String>,
    ) -> (StoredSession, StoredUser) {
        let lifetime = jiff::SignedDuration::try_from(lifetime).unwrap_or(jiff::SignedDuration::from_hours(14));
        let claims = claims_from(&self.claims);
        let text_claim = |name: &str| self.claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let session = StoredSession {
            id: session_id,
            user_id: user_id.clone(),
            idp_id: Some(self.provider_id.clone()).filter(|id| !id.is_empty()),
            issued_at: Some(now),
            expires_at: now.checked_add(lifetime).ok(),
            accessed_at: Some(now),
            id_token: (!self.id_token.is_empty()).then(|| id_token_record(&self.id_token)),
            oauth_token: self.oauth_token.clone(),
            claims: claims.clone(),
            audience,
            refresh_disabled: false,
        };
        let user = StoredUser { id: user_id, name: text_claim("name"), email: text_claim("email"), claims };
        (session, user)
    }
}

/// Go's `oauth2.Token` JSON.
fn go_oauth_token(raw: &[u8]) -> Result<StoredOAuthToken, ProfileError> {
    let value: Value = serde_json::from_slice(raw).map_err(|_| ProfileError("`oauthToken` is not JSON".into()))?;
    let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let expires_at =
        text("expiry").and_then(|t| t.parse::<jiff::Timestamp>().ok()).filter(|t| *t > jiff::Timestamp::UNIX_EPOCH);
    Ok(StoredOAuthToken {
        access_token: text("access_token").unwrap_or_default(),
        token_type: text("token_type").unwrap_or_default(),
        expires_at,
        refresh_token: text("refresh_token").filter(|t| !t.is_empty()),
    })
}

/// The ID token as the session record keeps it: issuer, subject and times read from its payload
/// (the authenticate service checked the token; the sealed profile vouches for it).
fn id_token_record(raw: &str) -> StoredIdToken {
    let payload = raw
        .split('.')
        .nth(1)
        .and_then(|part| URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok())
        .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
        .unwrap_or_default();
    let text = |name: &str| payload.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let time =
        |name: &str| payload.get(name).and_then(Value::as_i64).and_then(|s| jiff::Timestamp::from_second(s).ok());
    StoredIdToken {
        issuer: text("iss"),
        subject: text("sub"),
        expires_at: time("exp"),
        issued_at: time("iat"),
        raw: raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_profile_as_go_writes_it_is_read() {
        // protojson.Marshal of an identity.Profile built by buildIdentityProfile.
        let id_token = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lkcCIsInN1YiI6ImFsaWNlIiwiZXhwIjoyMDAwMDAwMDAwfQ.";
        let oauth = r#"{"access_token":"at","token_type":"Bearer","refresh_token":"rt","expiry":"2030-01-01T00:00:00.5Z","expires_in":3600}"#;
        let text = json!({
            "providerId": "idp1",
            "idToken": STANDARD.encode(id_token),
            "oauthToken": STANDARD.encode(oauth),
            "claims": {"sub": "alice", "email": "alice@example.com", "groups": ["a", "b"], "name": "Alice"}
        })
        .to_string();
        let profile = Profile::from_json(&text).unwrap();
        assert_eq!(profile.provider_id, "idp1");
        assert_eq!(profile.id_token, id_token);
        let token = profile.oauth_token.clone().unwrap();
        assert_eq!((token.access_token.as_str(), token.refresh_token.as_deref()), ("at", Some("rt")));
        assert_eq!(token.expires_at.unwrap().to_string(), "2030-01-01T00:00:00.5Z");
        assert_eq!(profile.user_id().as_deref(), Some("alice"));
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let (session, user) = profile.to_records(
            "s1".into(),
            "alice".into(),
            now,
            std::time::Duration::from_secs(3600),
            vec!["cluster".into()],
        );
        assert_eq!(session.expires_at.unwrap().to_string(), "2026-01-01T01:00:00Z");
        assert_eq!(session.claims["groups"], json!(["a", "b"]));
        let id = session.id_token.unwrap();
        assert_eq!((id.issuer.as_str(), id.subject.as_str()), ("https://idp", "alice"));
        assert_eq!(user.email.as_deref(), Some("alice@example.com"));
        // Round trip through our own writer.
        assert_eq!(Profile::from_json(&profile.to_json()).unwrap(), profile);
    }

    #[test]
    fn oid_wins_and_bad_profiles_are_errors() {
        let profile = Profile::from_json(r#"{"claims":{"sub":"s","oid":"o"}}"#).unwrap();
        assert_eq!(profile.user_id().as_deref(), Some("o"));
        assert!(Profile::from_json(r#"{"claims":{}}"#).unwrap().user_id().is_none());
        for bad in ["", "[]", r#"{"idToken":5}"#, r#"{"oauthToken":"!!"}"#, r#"{"claims":[]}"#] {
            assert!(Profile::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_refresh_token_stays_home() {
        let session = StoredSession {
            id: "s".into(),
            user_id: "u".into(),
            idp_id: None,
            issued_at: None,
            expires_at: None,
            accessed_at: None,
            id_token: None,
            oauth_token: Some(StoredOAuthToken {
                access_token: "at".into(),
                token_type: "Bearer".into(),
                expires_at: None,
                refresh_token: Some("rt".into()),
            }),
            claims: Map::new(),
            audience: Vec::new(),
            refresh_disabled: false,
        };
        let profile = Profile::from_session(&session, "idp", Map::new());
        let sent: Value = serde_json::from_str(&profile.to_json()).unwrap();
        let token = STANDARD.decode(sent["oauthToken"].as_str().unwrap()).unwrap();
        let token: Value = serde_json::from_slice(&token).unwrap();
        assert_eq!(token["access_token"], "at");
        assert!(token.get("refresh_token").is_none());
    }
}
