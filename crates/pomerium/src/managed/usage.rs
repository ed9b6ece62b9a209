//! Usage reports: every minute the replica holding the `zero-ctrl` lease tells the control plane
//! which users signed in since its last report (`POST /reportUsage`), from the databroker's
//! session and user records, ids and emails pseudonymised (`zero::usage`).

use databroker::client::Broker;
use databroker::record::Record;
use serde_json::Value;
use std::collections::BTreeMap;
use zero::api::{ReportUsageRequest, ReportUsageUser};

pub const SESSION_TYPE: &str = "type.googleapis.com/session.Session";
pub const USER_TYPE: &str = "type.googleapis.com/user.User";

/// What is known of a user: the latest sign-in (RFC 3339) and the email.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seen {
    pub last_signed_in_at: String,
    pub email: Option<String>,
}

/// Users by id, from session records (`user_id`, `issued_at`) and user records (`email`).
pub fn users(sessions: &[Record], users: &[Record]) -> BTreeMap<String, Seen> {
    let mut out: BTreeMap<String, Seen> = BTreeMap::new();
    for session in sessions.iter().filter(|r| !r.is_deleted()) {
        let text = |key: &str| session.data.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
        let (Some(user), Some(issued)) = (text("user_id"), text("issued_at")) else { continue };
        let Ok(issued_at) = issued.parse::<jiff::Timestamp>() else { continue };
        let entry = out.entry(user.to_owned()).or_default();
        let newer = entry.last_signed_in_at.parse::<jiff::Timestamp>().map_or(true, |seen| issued_at > seen);
        if newer {
            entry.last_signed_in_at = issued_at.to_string();
        }
    }
    for user in users.iter().filter(|r| !r.is_deleted()) {
        if let Some(entry) = out.get_mut(&user.id) {
            entry.email = user.data.get("email").and_then(Value::as_str).map(str::to_owned);
        }
    }
    out
}

/// The users whose state changed since `reported`, as a report.
pub fn changes(key: &[u8], now: &BTreeMap<String, Seen>, reported: &BTreeMap<String, Seen>) -> Vec<ReportUsageUser> {
    now.iter()
        .filter(|(id, seen)| reported.get(*id) != Some(*seen))
        .map(|(id, seen)| zero::usage::user(key, id, seen.email.as_deref(), &seen.last_signed_in_at))
        .collect()
}

/// Reports what changed; on success `reported` becomes the current state.
pub async fn report(
    managed: &super::Managed,
    broker: &Broker,
    reported: &mut BTreeMap<String, Seen>,
) -> Result<usize, String> {
    let sessions = broker.latest(Some(SESSION_TYPE)).await.map_err(|s| s.message().to_owned())?.records;
    let user_records = broker.latest(Some(USER_TYPE)).await.map_err(|s| s.message().to_owned())?.records;
    let now = users(&sessions, &user_records);
    let key = managed.pseudonymization_key();
    let changed = changes(&key, &now, reported);
    if changed.is_empty() {
        return Ok(0);
    }
    let count = changed.len();
    managed.client.report_usage(&ReportUsageRequest { users: changed }).await.map_err(|e| e.to_string())?;
    *reported = now;
    Ok(count)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use serde_json::json;

    fn record(record_type: &str, id: &str, data: Value) -> Record {
        Record::new(record_type, id, data.as_object().unwrap().clone())
    }

    #[test]
    fn the_latest_sign_in_per_user_with_the_email_and_only_changes_reported() {
        let sessions = [
            record(SESSION_TYPE, "s1", json!({"id": "s1", "user_id": "u1", "issued_at": "2026-01-01T00:00:00Z"})),
            record(SESSION_TYPE, "s2", json!({"id": "s2", "user_id": "u1", "issued_at": "2026-01-02T00:00:00Z"})),
            record(SESSION_TYPE, "s3", json!({"id": "s3", "user_id": "u2", "issued_at": "2026-01-01T00:00:00Z"})),
            record(SESSION_TYPE, "s4", json!({"id": "s4", "issued_at": "2026-01-01T00:00:00Z"})),
            record(SESSION_TYPE, "s5", json!({"id": "s5", "user_id": "u3", "issued_at": "not a time"})),
        ];
        let user_records = [record(USER_TYPE, "u1", json!({"id": "u1", "email": "one@example.com"}))];
        let now = users(&sessions, &user_records);
        assert_eq!(now.len(), 2);
        assert_eq!(now["u1"].last_signed_in_at, "2026-01-02T00:00:00Z");
        assert_eq!(now["u1"].email.as_deref(), Some("one@example.com"));
        assert_eq!(now["u2"].email, None);

        let report = changes(b"key", &now, &BTreeMap::new());
        assert_eq!(report.len(), 2);
        assert!(report.iter().all(|u| !u.pseudonymous_id.contains("u1") && !u.pseudonymous_id.contains("u2")));
        assert!(report.iter().all(|u| !u.pseudonymous_email.contains('@')));
        assert!(changes(b"key", &now, &now).is_empty(), "nothing new, nothing reported");
        let mut later = now.clone();
        later.get_mut("u2").unwrap().last_signed_in_at = "2026-01-03T00:00:00Z".into();
        let report = changes(b"key", &later, &now);
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].pseudonymous_id, zero::usage::pseudonymize(b"key", "u2"));
    }
}
