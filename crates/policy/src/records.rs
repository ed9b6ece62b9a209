//! The databroker records a decision may read, the trait to look them up, and Pomerium's data
//! helpers over them (ppl.md §2.3).
//!
//! Policies read sessions, users, directory users, service accounts, device credentials and
//! enrollments, and external records (the `record` criterion). The databroker's synced cache
//! implements [`Records`]; [`MemoryRecords`] is the simple map the command line and tests use.
//! Field conventions follow Pomerium's: an empty string is the same as an absent field (records
//! reach its policies as JSON with empty fields omitted).

use serde_json::{Map, Value};

/// Maps keyed by record id. Ids come from requests (a session cookie), so the hash is seeded per
/// process; foldhash is several times faster than SipHash on short keys.
pub type IdMap<V> = std::collections::HashMap<String, V, foldhash::fast::RandomState>;

/// A `type.googleapis.com/session.Session` record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Session {
    pub id: String,
    pub user_id: Option<String>,
    /// Claim name to a list of values.
    pub claims: Map<String, Value>,
    pub impersonate_session_id: Option<String>,
    pub device_credentials: Vec<SessionDeviceCredential>,
    pub expires_at: Option<jiff::Timestamp>,
    /// The raw ID token (`id_token.raw`), for `${pomerium.id_token}`; policies never read it.
    pub id_token: Option<Token>,
    /// The OAuth access token (`oauth_token.access_token`), for `${pomerium.access_token}`.
    pub access_token: Option<Token>,
    /// Which write of the record this is ([`next_revision`]): what is made from a record (a
    /// signed assertion) is reused only while the revision is the same.
    pub revision: u64,
}

/// A bearer token kept in a record: its `Debug` never shows it, so records can be logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// An entry of a session's `device_credentials`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionDeviceCredential {
    pub type_id: Option<String>,
    /// `Credential.Id` in Pomerium's JSON.
    pub id: Option<String>,
}

/// A `type.googleapis.com/user.ServiceAccount` record: it stands in for a session.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceAccount {
    pub id: String,
    pub user_id: Option<String>,
    pub expires_at: Option<jiff::Timestamp>,
}

/// A `type.googleapis.com/user.User` record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct User {
    pub id: String,
    pub email: Option<String>,
    pub claims: Map<String, Value>,
    /// Which write of the record this is ([`next_revision`]).
    pub revision: u64,
}

/// A number no record read in this process has had before: every session and user read into
/// any [`MemoryRecords`] gets the next one.
pub fn next_revision() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    LAST.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

/// A `pomerium.io/DirectoryUser` record (from directory sync).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DirectoryUser {
    pub id: String,
    pub email: Option<String>,
    /// Absent reads as an empty list.
    pub group_ids: Option<Vec<Value>>,
}

/// A `type.googleapis.com/pomerium.device.Credential` record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceCredential {
    pub id: String,
    pub type_id: Option<String>,
    pub enrollment_id: Option<String>,
}

/// A `type.googleapis.com/pomerium.device.Enrollment` record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceEnrollment {
    pub id: String,
    pub approved_by: Option<String>,
}

/// Looks records up by id. Implementations return records as stored, expired or not: the
/// evaluator treats a record whose `expires_at` is before the input's clock as absent.
pub trait Records {
    fn session(&self, id: &str) -> Option<&Session>;
    fn service_account(&self, id: &str) -> Option<&ServiceAccount>;
    fn user(&self, id: &str) -> Option<&User>;
    fn directory_user(&self, id: &str) -> Option<&DirectoryUser>;
    fn device_credential(&self, id: &str) -> Option<&DeviceCredential>;
    fn device_enrollment(&self, id: &str) -> Option<&DeviceEnrollment>;
    /// An external data record of `record_type` (the `record` criterion), by the user's id.
    fn external(&self, record_type: &str, id: &str) -> Option<&Value>;
}

/// No records at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRecords;

impl Records for NoRecords {
    fn session(&self, _: &str) -> Option<&Session> {
        None
    }
    fn service_account(&self, _: &str) -> Option<&ServiceAccount> {
        None
    }
    fn user(&self, _: &str) -> Option<&User> {
        None
    }
    fn directory_user(&self, _: &str) -> Option<&DirectoryUser> {
        None
    }
    fn device_credential(&self, _: &str) -> Option<&DeviceCredential> {
        None
    }
    fn device_enrollment(&self, _: &str) -> Option<&DeviceEnrollment> {
        None
    }
    fn external(&self, _: &str, _: &str) -> Option<&Value> {
        None
    }
}

/// Records held in maps by id.
#[derive(Clone, Debug, Default)]
pub struct MemoryRecords {
    pub sessions: IdMap<Session>,
    pub service_accounts: IdMap<ServiceAccount>,
    pub users: IdMap<User>,
    pub directory_users: IdMap<DirectoryUser>,
    pub device_credentials: IdMap<DeviceCredential>,
    pub device_enrollments: IdMap<DeviceEnrollment>,
    /// By record type, then id.
    pub external: IdMap<IdMap<Value>>,
}

impl Records for MemoryRecords {
    fn session(&self, id: &str) -> Option<&Session> {
        self.sessions.get(id)
    }
    fn service_account(&self, id: &str) -> Option<&ServiceAccount> {
        self.service_accounts.get(id)
    }
    fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }
    fn directory_user(&self, id: &str) -> Option<&DirectoryUser> {
        self.directory_users.get(id)
    }
    fn device_credential(&self, id: &str) -> Option<&DeviceCredential> {
        self.device_credentials.get(id)
    }
    fn device_enrollment(&self, id: &str) -> Option<&DeviceEnrollment> {
        self.device_enrollments.get(id)
    }
    fn external(&self, record_type: &str, id: &str) -> Option<&Value> {
        self.external.get(record_type)?.get(id)
    }
}

/// Who a request's session resolves to (`get_session`): a service account, or a session (after
/// following impersonation).
#[derive(Clone, Copy, Debug)]
pub enum Principal<'r> {
    ServiceAccount(&'r ServiceAccount),
    Session(&'r Session),
}

impl<'r> Principal<'r> {
    pub fn id(&self) -> &'r str {
        match self {
            Principal::ServiceAccount(sa) => &sa.id,
            Principal::Session(session) => &session.id,
        }
    }

    pub fn user_id(&self) -> Option<&'r str> {
        let user_id = match self {
            Principal::ServiceAccount(sa) => sa.user_id.as_deref(),
            Principal::Session(session) => session.user_id.as_deref(),
        };
        user_id.filter(|id| !id.is_empty())
    }

    pub fn claims(&self) -> Option<&'r Map<String, Value>> {
        match self {
            Principal::ServiceAccount(_) => None,
            Principal::Session(session) => Some(&session.claims),
        }
    }

    pub fn device_credentials(&self) -> &'r [SessionDeviceCredential] {
        match self {
            Principal::ServiceAccount(_) => &[],
            Principal::Session(session) => &session.device_credentials,
        }
    }
}

fn live(expires_at: Option<jiff::Timestamp>, now: jiff::Timestamp) -> bool {
    expires_at.is_none_or(|at| at >= now)
}

/// `get_session(id)`: a live service account with that id; else the session, following a
/// non-empty `impersonate_session_id` (a missing target resolves to nothing); else nothing.
pub fn resolve_session<'r>(records: &'r dyn Records, id: Option<&str>, now: jiff::Timestamp) -> Option<Principal<'r>> {
    let id = id?;
    if let Some(sa) = records.service_account(id).filter(|sa| live(sa.expires_at, now)) {
        return Some(Principal::ServiceAccount(sa));
    }
    let session = records.session(id).filter(|s| live(s.expires_at, now))?;
    match session.impersonate_session_id.as_deref().filter(|i| !i.is_empty()) {
        Some(target) => records.session(target).filter(|s| live(s.expires_at, now)).map(Principal::Session),
        None => Some(Principal::Session(session)),
    }
}

/// `get_user_email`: the directory user's email if non-empty, else the user's, else `""`.
pub fn user_email<'r>(user: Option<&'r User>, directory_user: Option<&'r DirectoryUser>) -> &'r str {
    directory_user
        .and_then(|d| d.email.as_deref())
        .filter(|e| !e.is_empty())
        .or_else(|| user.and_then(|u| u.email.as_deref()))
        .unwrap_or("")
}

/// `object_get(claims, path, [])` over the session's claims merged with the user's (the user's
/// win): the verbatim key, else the path split at `/` (with `.` read as `/`) through nested
/// objects, two to five segments deep.
pub fn claim<'r>(
    session: Option<&'r Map<String, Value>>,
    user: Option<&'r Map<String, Value>>,
    path: &str,
) -> Option<&'r Value> {
    let lookup = |key: &str| user.and_then(|u| u.get(key)).or_else(|| session.and_then(|s| s.get(key)));
    if let Some(value) = lookup(path) {
        return Some(value);
    }
    // `replace(key, ".", "/")` then `split(_, "/")`, without allocating.
    let segments = || path.split(['.', '/']);
    if !(2..=5).contains(&segments().count()) {
        return None;
    }
    let mut parts = segments();
    let mut current = lookup(parts.next()?)?;
    for segment in parts {
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
}
