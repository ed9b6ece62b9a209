//! The session refresher (Pomerium's identity manager, system.md §3.5): one replica at a time,
//! under the databroker lease `identity_manager`, refreshes the OAuth tokens of sessions about to
//! expire, deletes sessions whose refresh is refused or whose time is up, and updates users'
//! claims from the refreshed identity. Every ten minutes it also asks the provider's userinfo
//! about each user (with each of their sessions' access tokens), so that a change at the provider
//! (a group, an email) reaches policies without a new sign-in, and a session whose token the
//! provider no longer accepts ends.
//!
//! While it holds the lease it keeps every session in memory, loaded once (`SyncLatest`) and
//! then followed through the databroker's change stream (`Sync`), so that each tick looks at
//! memory rather than asking the databroker for every session again. It starts over from a new
//! snapshot when the stream fails or the lease is lost.

use crate::{SessionStore, SignInState};
use authenticate::session::{SESSION_TYPE, StoredIdToken, StoredOAuthToken, StoredSession, StoredUser};
use databroker::client::ChangeFeed;
use oidc::ProviderSettings;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The lease's name and life (Pomerium's).
pub const LEASE_NAME: &str = "identity_manager";
const LEASE_DURATION: Duration = Duration::from_secs(30);
/// Tokens are refreshed this long before they expire.
const GRACE: i64 = 60;
/// A session is not refreshed again sooner than this.
const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// Where the refresher reads the current provider settings (they change on reload).
pub type CurrentProvider = Arc<dyn Fn() -> Option<ProviderSettings> + Send + Sync>;

/// How often the refresher works.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    /// How often it looks for due work (and renews the lease).
    pub tick: Duration,
    /// How often each user's info is asked of the provider (Pomerium: 10 minutes).
    pub user_info: Duration,
}

impl Default for Intervals {
    fn default() -> Intervals {
        Intervals { tick: Duration::from_secs(10), user_info: Duration::from_secs(600) }
    }
}

/// Runs until the task is dropped: take the lease (trying again every tick), then follow the
/// sessions and refresh what is due every tick while the lease is kept.
pub async fn run(authn: Arc<SignInState>, current: CurrentProvider, intervals: Intervals) {
    let Some(store) = authn.store.clone() else { return };
    let mut ticker = tokio::time::interval(intervals.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let lease = match store.acquire_lease(LEASE_NAME, LEASE_DURATION).await {
            Ok(Some(lease)) => lease,
            Ok(None) => continue,
            Err(error) => {
                tracing::debug!(%error, "the session refresher could not take the lease");
                continue;
            }
        };
        tracing::info!("the session refresher holds the lease");
        if let Err(reason) = hold(&authn, &store, &current, &lease, &mut ticker, intervals.user_info).await {
            tracing::info!(%reason, "the session refresher stops following sessions");
        }
    }
}

/// While the lease is kept: the sessions, followed, and refreshed when due. Returns why it
/// stopped (the lease lost, the stream broken), after which the caller starts over.
async fn hold(
    authn: &SignInState,
    store: &SessionStore,
    current: &CurrentProvider,
    lease: &str,
    ticker: &mut tokio::time::Interval,
    user_info_interval: Duration,
) -> Result<(), String> {
    let (snapshot, versions) = store.session_snapshot().await.map_err(|e| e.to_string())?;
    let mut sessions: HashMap<String, StoredSession> = snapshot.into_iter().map(|s| (s.id.clone(), s)).collect();
    let mut feed: ChangeFeed = store.session_changes(versions).await.map_err(|e| e.to_string())?;
    let mut attempts: HashMap<String, Instant> = HashMap::new();
    // Each user's first update comes one interval after the lease is taken (or the user is first
    // seen), rather than every user's at once.
    let mut user_info = UserInfoSchedule { interval: user_info_interval, due: HashMap::new() };
    for session in sessions.values() {
        user_info.track(&session.user_id);
    }
    loop {
        tokio::select! {
            change = feed.next() => {
                let record = change.map_err(|status| format!("the change stream failed: {}", status.message()))?;
                if record.record_type != SESSION_TYPE {
                    continue;
                }
                if record.is_deleted() {
                    sessions.remove(&record.id);
                    attempts.remove(&record.id);
                } else if let Ok(session) = StoredSession::from_data(&record.data) {
                    user_info.track(&session.user_id);
                    sessions.insert(record.id.clone(), session);
                }
            }
            _ = ticker.tick() => {
                match store.renew_lease(LEASE_NAME, lease, LEASE_DURATION).await {
                    Ok(true) => {}
                    Ok(false) => return Err("another replica holds the lease now".to_owned()),
                    Err(error) => return Err(format!("renewing the lease: {error}")),
                }
                refresh_due(authn, store, current, &sessions, &mut attempts, &mut user_info).await;
                update_user_info(authn, store, current, &sessions, &mut user_info).await;
            }
        }
    }
}

/// Deletes the sessions whose time is up and refreshes those whose tokens expire soon. What it
/// writes comes back through the change stream.
async fn refresh_due(
    authn: &SignInState,
    store: &SessionStore,
    current: &CurrentProvider,
    sessions: &HashMap<String, StoredSession>,
    attempts: &mut HashMap<String, Instant>,
    user_info: &mut UserInfoSchedule,
) {
    let now = jiff::Timestamp::now();
    let mut provider = None;
    for session in sessions.values() {
        match due(session, now) {
            Due::Expired => {
                if let Err(error) = store.delete(&session.id).await {
                    tracing::warn!(%error, "the session refresher could not delete an expired session");
                }
            }
            Due::Refresh(refresh_token) => {
                if attempts.get(&session.id).is_some_and(|at| at.elapsed() < MIN_INTERVAL) {
                    continue;
                }
                if provider.is_none() {
                    let Some(settings) = current() else { return };
                    match authn.provider(&settings).await {
                        Ok(found) => provider = Some(found),
                        Err(error) => {
                            tracing::warn!(%error, "the session refresher cannot reach the identity provider");
                            return;
                        }
                    }
                }
                let Some(provider) = &provider else { return };
                attempts.insert(session.id.clone(), Instant::now());
                if refresh(store, provider, session.clone(), &refresh_token).await {
                    // A refresh updates the user too: no need to ask again soon.
                    user_info.updated(&session.user_id);
                }
            }
            Due::NotYet => {}
        }
    }
}

enum Due {
    Expired,
    Refresh(String),
    NotYet,
}

fn due(session: &StoredSession, now: jiff::Timestamp) -> Due {
    if session.expires_at.is_some_and(|at| at <= now) {
        return Due::Expired;
    }
    let Some(token) = &session.oauth_token else { return Due::NotYet };
    let Some(refresh_token) = token.refresh_token.clone().filter(|_| !session.refresh_disabled) else {
        return Due::NotYet;
    };
    let soon =
        |at: Option<jiff::Timestamp>| at.is_some_and(|at| at.as_second().saturating_sub(GRACE) <= now.as_second());
    let id_token_expiry = session.id_token.as_ref().and_then(|t| t.expires_at);
    if soon(token.expires_at) || soon(id_token_expiry) { Due::Refresh(refresh_token) } else { Due::NotYet }
}

/// Refreshes one session's tokens; whether its user was updated.
///
/// What comes back is checked before it is kept: an identity for another subject than the
/// session's ends the session (its refresh token now speaks for someone else), and the user
/// record is updated claim by claim, so that a partial answer never empties it. Only a refusal
/// by the provider ends a session; its being unreachable, failing or slow never does.
async fn refresh(
    store: &SessionStore,
    provider: &oidc::Provider,
    mut session: StoredSession,
    refresh_token: &str,
) -> bool {
    let identity = match provider.refresh(refresh_token).await {
        Ok(identity) => identity,
        Err(error) if error.is_permanent() => {
            tracing::info!(session = %session.id, %error, "the identity provider refused the refresh; the session ends");
            end(store, &session.id).await;
            return false;
        }
        Err(error) => {
            tracing::warn!(session = %session.id, %error, "refreshing the session failed; will retry");
            return false;
        }
    };
    if identity.subject != session.user_id {
        tracing::warn!(
            session = %session.id,
            "the refreshed identity is another user's than the session's; the session ends"
        );
        end(store, &session.id).await;
        return false;
    }
    session.oauth_token = Some(StoredOAuthToken {
        access_token: identity.access_token.clone(),
        token_type: identity.token_type.clone(),
        expires_at: identity.expires_at,
        refresh_token: identity.refresh_token.clone().or_else(|| Some(refresh_token.to_owned())),
    });
    if let Some(token) = &identity.id_token {
        session.id_token = Some(StoredIdToken {
            issuer: token.issuer.clone(),
            subject: token.subject.clone(),
            expires_at: Some(token.expires_at),
            issued_at: Some(token.issued_at),
            raw: token.raw.clone(),
        });
    }
    for (name, value) in authenticate::session::claims_from(&identity.claims) {
        session.claims.insert(name, value);
    }
    let user = match store.load_user(&session.user_id).await {
        Ok(user) => {
            let mut user = user.unwrap_or_else(|| StoredUser {
                id: session.user_id.clone(),
                name: None,
                email: None,
                claims: serde_json::Map::new(),
            });
            crate::store::apply_claims(&mut user, &identity.claims);
            Some(user)
        }
        Err(error) => {
            tracing::warn!(%error, "the session refresher could not read the user; only the session is updated");
            None
        }
    };
    match store.update(&session, user.as_ref()).await {
        Ok(()) => {
            tracing::info!(session = %session.id, "session refreshed");
            user.is_some()
        }
        Err(error) => {
            tracing::warn!(%error, "the refreshed session could not be saved");
            false
        }
    }
}

/// Ends a session (a tombstone every replica follows), logging a failure to.
async fn end(store: &SessionStore, id: &str) {
    if let Err(error) = store.delete(id).await {
        tracing::warn!(%error, "the session could not be deleted");
    }
}

/// When each user's info is next asked of the provider.
struct UserInfoSchedule {
    interval: Duration,
    due: HashMap<String, Instant>,
}

/// Users whose info is asked in one tick at most; the others stay due for the next ticks, so
/// that a crowd of users due together never keeps the refresher from renewing its lease.
const USER_INFO_PER_TICK: usize = 200;

impl UserInfoSchedule {
    /// A user seen for the first time is due between half an interval and one interval from now
    /// (spread, so that the users loaded with the lease do not all fall due together).
    fn track(&mut self, user_id: &str) {
        if !user_id.is_empty() && !self.due.contains_key(user_id) {
            let mut byte = [0u8; 1];
            let _ = aws_lc_rs::rand::fill(&mut byte);
            let spread = self.interval / 2 + self.interval / 2 * u32::from(byte[0]) / 255;
            self.due.insert(user_id.to_owned(), Instant::now() + spread);
        }
    }

    /// The user was just updated: due again one interval from now.
    fn updated(&mut self, user_id: &str) {
        self.due.insert(user_id.to_owned(), Instant::now() + self.interval);
    }

    /// The users due now (at most [`USER_INFO_PER_TICK`], the longest due first), each then
    /// scheduled one interval on.
    fn take_due(&mut self) -> Vec<String> {
        let now = Instant::now();
        let mut due: Vec<(Instant, String)> =
            self.due.iter().filter(|(_, at)| **at <= now).map(|(user, at)| (*at, user.clone())).collect();
        due.sort();
        due.truncate(USER_INFO_PER_TICK);
        let due: Vec<String> = due.into_iter().map(|(_, user)| user).collect();
        for user in &due {
            self.due.insert(user.clone(), now + self.interval);
        }
        due
    }
}

/// Pomerium's `updateUserInfo`: for each user due, each of their sessions' access tokens is
/// taken to the provider's userinfo; the answer updates the user's record, and a session whose
/// token the provider refuses is deleted.
async fn update_user_info(
    authn: &SignInState,
    store: &SessionStore,
    current: &CurrentProvider,
    sessions: &HashMap<String, StoredSession>,
    schedule: &mut UserInfoSchedule,
) {
    let due = schedule.take_due();
    if due.is_empty() {
        return;
    }
    let Some(settings) = current() else { return };
    let provider = match authn.provider(&settings).await {
        Ok(provider) => provider,
        Err(error) => {
            tracing::warn!(%error, "the session refresher cannot reach the identity provider");
            return;
        }
    };
    for user_id in due {
        let tokens: Vec<(&str, &str)> = sessions
            .values()
            .filter(|s| s.user_id == user_id)
            .filter_map(|s| s.oauth_token.as_ref().map(|t| (s.id.as_str(), t.access_token.as_str())))
            .collect();
        if tokens.is_empty() {
            // No session left to ask with: forget the user until one appears.
            schedule.due.remove(&user_id);
            continue;
        }
        update_one_user(store, &provider, &user_id, &tokens).await;
    }
}

async fn update_one_user(store: &SessionStore, provider: &oidc::Provider, user_id: &str, tokens: &[(&str, &str)]) {
    let mut user = match store.load_user(user_id).await {
        Ok(user) => user.unwrap_or_else(|| StoredUser {
            id: user_id.to_owned(),
            name: None,
            email: None,
            claims: serde_json::Map::new(),
        }),
        Err(error) => return tracing::warn!(%error, "the session refresher could not read a user"),
    };
    let mut changed = false;
    for (session_id, access_token) in tokens {
        match provider.user_info(access_token).await {
            Ok(Some(info)) => {
                if info.get("sub").and_then(|v| v.as_str()).is_some_and(|sub| sub != user_id) {
                    tracing::warn!(session = %session_id, "userinfo answered for another subject; ignored");
                    continue;
                }
                crate::store::apply_claims(&mut user, &info);
                changed = true;
            }
            Ok(None) => return,
            Err(error) if error.is_permanent() => {
                tracing::info!(session = %session_id, %error, "the identity provider no longer accepts the session's token; the session ends");
                if let Err(error) = store.delete(session_id).await {
                    tracing::warn!(%error, "the session could not be deleted");
                }
            }
            Err(error) => tracing::warn!(session = %session_id, %error, "updating user info failed; will retry"),
        }
    }
    if changed {
        match store.update_user(&user).await {
            Ok(()) => tracing::info!(user = %user_id, "user info updated"),
            Err(error) => tracing::warn!(%error, "the updated user could not be saved"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn users_fall_due_spread_out_and_a_crowd_over_several_ticks() {
        let interval = Duration::from_secs(600);
        let mut schedule = UserInfoSchedule { interval, due: HashMap::new() };
        for user in 0..1000 {
            schedule.track(&format!("u{user}"));
        }
        let soonest = schedule.due.values().min().unwrap().saturating_duration_since(Instant::now());
        let latest = schedule.due.values().max().unwrap().saturating_duration_since(Instant::now());
        assert!(soonest >= interval / 2 - Duration::from_secs(1), "{soonest:?}");
        assert!(latest <= interval && latest > soonest + Duration::from_secs(60), "spread: {soonest:?}..{latest:?}");
        assert!(schedule.take_due().is_empty(), "nobody due yet");
        // All due at once (as after a long pause): taken a tick's worth at a time.
        for at in schedule.due.values_mut() {
            *at = Instant::now();
        }
        assert_eq!(schedule.take_due().len(), USER_INFO_PER_TICK);
        assert_eq!(schedule.take_due().len(), USER_INFO_PER_TICK);
        let before = schedule.due.len();
        schedule.track("u1");
        assert_eq!(schedule.due.len(), before, "a user is tracked once");
    }

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    fn session(token_expiry: &str, refresh: Option<&str>) -> StoredSession {
        StoredSession {
            id: "s".into(),
            user_id: "u".into(),
            idp_id: None,
            issued_at: None,
            expires_at: Some(at("2026-01-01T14:00:00Z")),
            accessed_at: None,
            id_token: None,
            oauth_token: Some(StoredOAuthToken {
                access_token: "at".into(),
                token_type: "Bearer".into(),
                expires_at: Some(at(token_expiry)),
                refresh_token: refresh.map(str::to_owned),
            }),
            claims: serde_json::Map::new(),
            audience: vec![],
            refresh_disabled: false,
        }
    }

    #[test]
    fn sessions_are_refreshed_a_minute_before_their_token_expires_and_deleted_when_over() {
        let s = session("2026-01-01T01:00:00Z", Some("rt"));
        assert!(matches!(due(&s, at("2026-01-01T00:58:59Z")), Due::NotYet));
        assert!(matches!(due(&s, at("2026-01-01T00:59:00Z")), Due::Refresh(token) if token == "rt"));
        assert!(matches!(due(&s, at("2026-01-01T14:00:00Z")), Due::Expired), "the session's own end");
        // Nothing to refresh with: left alone (Session.Validate refuses it once the token expires).
        assert!(matches!(due(&session("2026-01-01T01:00:00Z", None), at("2026-01-01T02:00:00Z")), Due::NotYet));
        let disabled = StoredSession { refresh_disabled: true, ..s.clone() };
        assert!(matches!(due(&disabled, at("2026-01-01T00:59:30Z")), Due::NotYet));
        // An ID token about to expire is a reason too.
        let mut by_id_token = session("2026-01-01T05:00:00Z", Some("rt"));
        by_id_token.id_token = Some(StoredIdToken {
            issuer: "i".into(),
            subject: "u".into(),
            expires_at: Some(at("2026-01-01T01:00:00Z")),
            issued_at: None,
            raw: String::new(),
        });
        assert!(matches!(due(&by_id_token, at("2026-01-01T00:59:30Z")), Due::Refresh(_)));
    }
}
