//! The decision's [`Outcome`] as an answer to the client: the one place a decision becomes
//! status, headers and body. The pipeline sends the [`Answer`] as its HTTP response; the
//! authorize service sends it in an ext_authz denial; the benchmark entry returns it.

use crate::authn::identity::Identity;
use crate::decision::Outcome;
use crate::error::{Answer, ErrorPage, ResponseFormat};
use http::StatusCode;

/// An allowed outcome's identity, or the answer that ends the request.
pub(crate) fn outcome(
    outcome: Outcome,
    request_id: &str,
    format: ResponseFormat,
) -> Result<Option<Identity>, Box<Answer>> {
    let page = match outcome {
        Outcome::Allow { identity } => return Ok(identity),
        Outcome::SignIn { location } | Outcome::DeviceEnrollment { location } => {
            return Err(Box::new(Answer::redirect(StatusCode::FOUND, location.as_str())));
        }
        Outcome::Unauthenticated => {
            ErrorPage::new(StatusCode::UNAUTHORIZED, request_id).with_message("Unauthenticated")
        }
        // Pomerium's `show_error_details`: the policy evaluation traces and the reasons, and what
        // about the request fell short (computed by the decision only on such routes).
        Outcome::Deny { status, explanation } => ErrorPage { explanation, ..ErrorPage::new(status, request_id) },
        Outcome::Refused { status, message } => ErrorPage::new(status, request_id).with_message(message),
        Outcome::Unavailable { why } => {
            tracing::debug!(request_id, error = %why, "request failed");
            why.page(request_id)
        }
    };
    Err(Box::new(page.answer(format)))
}
