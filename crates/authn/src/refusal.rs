//! Why a sign-in endpoint refuses a request: one variant per reason, its message (lowercase, as
//! the user reads it on the error page) from `Display`, and its status from
//! [`Refusal::status`], the one place statuses are chosen. [`Refusal::respond`] logs it and
//! renders the error page in the format the client asked for.

use http::{Response, StatusCode};
use proxy::ProxyBody;
use proxy::authn::endpoints::ControlRequest;
use proxy::error::ErrorPage;

/// A refused sign-in endpoint request. Every refusal writes nothing: the databroker is written
/// only after every check passed.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    // ---- the request
    #[error("a request from another site may not change anything here")]
    CrossSite,
    /// `link`: `sign-in` or `callback`.
    #[error("the {link} link is not valid: {reason}")]
    InvalidLink { link: &'static str, reason: String },
    /// `what`: the sign-in link, the callback, the sign-in request.
    #[error("{what} has no valid pomerium_redirect_uri")]
    NoRedirectUri { what: &'static str },
    /// `parameter` names a URL or host outside this deployment.
    #[error("{parameter} names a host this server does not serve")]
    ForeignHost { parameter: &'static str },
    #[error("pomerium_additional_hosts names an invalid host")]
    InvalidAdditionalHost,
    #[error("pomerium_redirect_uri is required")]
    RedirectUriRequired,
    #[error("pomerium_redirect_uri is not in programmatic_redirect_domain_whitelist")]
    NotProgrammaticTarget,
    /// An XHR without a session: a script cannot follow a sign-in redirect.
    #[error("sign in first")]
    SignInFirst,

    // ---- the identity provider's answer
    #[error(
        "no identity provider is configured (set idp_provider, idp_provider_url, idp_client_id and idp_client_secret)"
    )]
    NoIdentityProvider,
    #[error("the identity provider is not available; try again later")]
    ProviderUnavailable,
    /// The provider's `error` parameter: `access_denied` and `unauthorized_client` are 401s.
    #[error("the identity provider refused the sign-in: {error} {description}")]
    ProviderRefused { error: String, description: String },
    /// `parameter`: `code` or `state`.
    #[error("the identity provider sent no {parameter}")]
    ProviderSentNo { parameter: &'static str },
    #[error("the sign-in state is not valid: {0}")]
    InvalidState(String),
    #[error("the sign-in state does not belong to this browser (CSRF check failed)")]
    CsrfMismatch,
    #[error("the sign-in state holds no valid URL")]
    StateWithoutUrl,
    #[error("the sign-in state points outside the authenticate service")]
    StateOutsideAuthenticate,
    #[error("the identity provider's answer was not accepted: {0}")]
    ExchangeRefused(String),

    // ---- the route host's callback
    #[error("the callback carries no session")]
    CallbackWithoutSession,
    #[error("the callback's session cannot be opened")]
    CallbackSessionSealed,
    #[error("the callback's session is not valid")]
    CallbackSessionInvalid,

    // ---- the stateless flow
    /// `what`: the sealed sign-in request, the callback.
    #[error("{what} cannot be opened: {reason}")]
    CannotOpen { what: &'static str, reason: String },
    /// The time parameters: `what` is the sign-in request or the callback.
    #[error("{what}: {reason}")]
    OutOfTime { what: &'static str, reason: String },
    #[error("the sign-in request's pomerium_callback_uri is not valid")]
    InvalidCallbackUri,
    #[error("the callback was not sealed by the authenticate service")]
    ForeignSealer,
    #[error("{0}")]
    InvalidProfile(String),
    #[error("the identity profile names no user (no sub claim)")]
    ProfileWithoutUser,
    #[error("this sign-in link was used already; sign in again")]
    CallbackReused,
    #[error("the authenticate service's key is not available; try again later")]
    AuthenticateKeyUnavailable,
    #[error("the authenticate service is not available; try again later")]
    AuthenticateUnavailable,

    // ---- this server
    #[error("no databroker to keep sessions in")]
    NoSessionStore,
    #[error("the session could not be saved; try again")]
    SessionNotSaved,
    #[error("the session store is not available")]
    SessionStoreUnavailable,
    #[error("the session cookie: {0}")]
    SessionCookie(String),
    #[error("the identity: {0}")]
    SealIdentity(String),
}

impl Refusal {
    /// The status of each refusal: the one place they are chosen.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::CrossSite => StatusCode::FORBIDDEN,
            Refusal::SignInFirst | Refusal::ExchangeRefused(_) => StatusCode::UNAUTHORIZED,
            Refusal::ProviderRefused { error, .. } => {
                if matches!(error.as_str(), "access_denied" | "unauthorized_client") {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::BAD_REQUEST
                }
            }
            Refusal::ProviderUnavailable | Refusal::AuthenticateKeyUnavailable | Refusal::AuthenticateUnavailable => {
                StatusCode::BAD_GATEWAY
            }
            Refusal::NoSessionStore | Refusal::SessionNotSaved | Refusal::SessionStoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Refusal::NoIdentityProvider | Refusal::SessionCookie(_) | Refusal::SealIdentity(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Refusal::InvalidLink { .. }
            | Refusal::NoRedirectUri { .. }
            | Refusal::ForeignHost { .. }
            | Refusal::InvalidAdditionalHost
            | Refusal::RedirectUriRequired
            | Refusal::NotProgrammaticTarget
            | Refusal::ProviderSentNo { .. }
            | Refusal::InvalidState(_)
            | Refusal::CsrfMismatch
            | Refusal::StateWithoutUrl
            | Refusal::StateOutsideAuthenticate
            | Refusal::CallbackWithoutSession
            | Refusal::CallbackSessionSealed
            | Refusal::CallbackSessionInvalid
            | Refusal::CannotOpen { .. }
            | Refusal::OutOfTime { .. }
            | Refusal::InvalidCallbackUri
            | Refusal::ForeignSealer
            | Refusal::InvalidProfile(_)
            | Refusal::ProfileWithoutUser
            | Refusal::CallbackReused => StatusCode::BAD_REQUEST,
        }
    }

    /// The answer: logged with its reason, rendered in the format the client asked for.
    pub fn respond(self, request: &ControlRequest<'_>) -> Response<ProxyBody> {
        let status = self.status();
        tracing::info!(request_id = request.request_id, path = request.url.path(), status = status.as_u16(), reason = %self, "refused");
        ErrorPage::new(status, request.request_id).with_message(self.to_string()).render_as(request.format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_statuses_are_errors() {
        let samples = [
            Refusal::CrossSite,
            Refusal::InvalidLink { link: "sign-in", reason: "expired".into() },
            Refusal::NoRedirectUri { what: "the callback" },
            Refusal::ForeignHost { parameter: "pomerium_redirect_uri" },
            Refusal::SignInFirst,
            Refusal::NoIdentityProvider,
            Refusal::ProviderUnavailable,
            Refusal::ProviderRefused { error: "access_denied".into(), description: String::new() },
            Refusal::ProviderRefused { error: "server_error".into(), description: String::new() },
            Refusal::CsrfMismatch,
            Refusal::ExchangeRefused("bad code".into()),
            Refusal::CannotOpen { what: "the callback", reason: "bad".into() },
            Refusal::CallbackReused,
            Refusal::AuthenticateUnavailable,
            Refusal::NoSessionStore,
            Refusal::SessionCookie("too long".into()),
        ];
        for refusal in samples {
            let message = refusal.to_string();
            assert!(message.chars().next().is_some_and(|c| !c.is_uppercase()), "{message}");
            assert!(refusal.status().is_client_error() || refusal.status().is_server_error(), "{message}");
        }
        let denied = Refusal::ProviderRefused { error: "access_denied".into(), description: "no".into() };
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(denied.to_string(), "the identity provider refused the sign-in: access_denied no");
        let other = Refusal::ProviderRefused { error: "server_error".into(), description: String::new() };
        assert_eq!(other.status(), StatusCode::BAD_REQUEST);
        assert_eq!(Refusal::CrossSite.status(), StatusCode::FORBIDDEN);
        assert_eq!(Refusal::SessionNotSaved.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Refusal::AuthenticateKeyUnavailable.status(), StatusCode::BAD_GATEWAY);
    }
}
