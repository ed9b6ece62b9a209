//! Results: a criterion's, a block's and an action's, combined as Pomerium combines them
//! (ppl.md §1.4), and the outcome of a decision (ppl.md §3.3).

use crate::reason::{Reason, ReasonSet};

/// A criterion's, block's or action's result, `[value, reasons, additional_data]`. The only
/// additional data criteria produce is the device criterion's `device_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleResult<'a> {
    pub value: bool,
    pub reasons: ReasonSet,
    pub device_type: Option<&'a str>,
}

impl<'a> RuleResult<'a> {
    pub const fn new(value: bool, reason: Reason) -> RuleResult<'a> {
        RuleResult { value, reasons: ReasonSet::of(reason), device_type: None }
    }

    /// The same result with its value flipped: `not` and `nor` invert their criteria's results,
    /// keeping reasons and additional data.
    pub fn inverted(self) -> RuleResult<'a> {
        RuleResult { value: !self.value, ..self }
    }
}

/// Accumulates results into one, with the merge rules of `and` (`all`) and `or` (`!all`):
/// the reasons and data of the results that decide the value.
///
/// For `and`: all true → everything; else only the false ones. For `or`: any true → only the
/// true ones; else everything. Additional data objects are merged as Rego's `object_union` over a
/// set: the set is ordered, so the greatest `device_type` wins.
#[derive(Clone, Copy, Debug)]
pub struct Merge<'a> {
    all: bool,
    count: usize,
    true_count: usize,
    true_part: (ReasonSet, Option<&'a str>),
    false_part: (ReasonSet, Option<&'a str>),
}

impl<'a> Merge<'a> {
    pub fn and() -> Merge<'a> {
        Merge::new(true)
    }

    pub fn or() -> Merge<'a> {
        Merge::new(false)
    }

    fn new(all: bool) -> Merge<'a> {
        Merge {
            all,
            count: 0,
            true_count: 0,
            true_part: (ReasonSet::EMPTY, None),
            false_part: (ReasonSet::EMPTY, None),
        }
    }

    pub fn add(&mut self, result: RuleResult<'a>) {
        self.count += 1;
        let part = if result.value {
            self.true_count += 1;
            &mut self.true_part
        } else {
            &mut self.false_part
        };
        part.0 = part.0.union(result.reasons);
        part.1 = max_device_type(part.1, result.device_type);
    }

    /// Whether the value is decided and a further result, whose reasons would be `if_true` when
    /// it is true and `if_false` when it is false, could no longer change the merged result: lets
    /// the evaluator skip a criterion that cannot matter.
    pub fn settled_with(&self, if_true: ReasonSet, if_false: ReasonSet, carries_data: bool) -> bool {
        if carries_data {
            return false;
        }
        if self.all {
            // `and` is false once one result is false; a later false result adds its reasons, a
            // later true one adds nothing.
            self.true_count < self.count && self.false_part.0.covers(if_false)
        } else {
            // `or` is true once one result is true; only later true results add reasons.
            self.true_count > 0 && self.true_part.0.covers(if_true)
        }
    }

    pub fn finish(self) -> RuleResult<'a> {
        let value = if self.all { self.true_count == self.count } else { self.true_count > 0 };
        let (reasons, device_type) = match (self.all, value) {
            // and-true and or-false take every result, which are all of one value.
            (true, true) => self.true_part,
            (false, false) => self.false_part,
            (true, false) => self.false_part,
            (false, true) => self.true_part,
        };
        RuleResult { value, reasons, device_type }
    }
}

fn max_device_type<'a>(a: Option<&'a str>, b: Option<&'a str>) -> Option<&'a str> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The allow and deny results of a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    pub allow: RuleResult<'a>,
    pub deny: RuleResult<'a>,
}

/// What happens to the request (ppl.md §3.3, eval-contract.md "outcome").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 495: the client certificate is missing or invalid.
    ClientCertificateRequired,
    /// Sign in: 302 to the authenticate service, or 401 for clients that do not want HTML.
    Login {
        redirect: bool,
    },
    /// 302 to the device enrolment flow.
    DeviceEnroll,
    /// 403, or 450 when a device is not authorized.
    Deny {
        device_unauthorized: bool,
    },
    /// 404: no route (decided outside the policy).
    NotFound,
    Allow,
}

impl Verdict {
    pub fn action(self) -> &'static str {
        match self {
            Verdict::ClientCertificateRequired => "client_certificate_required",
            Verdict::Login { .. } => "login",
            Verdict::DeviceEnroll => "device_enroll",
            Verdict::Deny { .. } => "deny",
            Verdict::NotFound => "not_found",
            Verdict::Allow => "allow",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Verdict::ClientCertificateRequired => 495,
            Verdict::Login { redirect: true } | Verdict::DeviceEnroll => 302,
            Verdict::Login { redirect: false } => 401,
            Verdict::Deny { device_unauthorized: true } => 450,
            Verdict::Deny { device_unauthorized: false } => 403,
            Verdict::NotFound => 404,
            Verdict::Allow => 200,
        }
    }
}

impl Decision<'_> {
    /// The precedence of Pomerium's `handleResult`: certificate problems, then sign-in, then device
    /// enrolment, then deny, then allow. `wants_html` decides between a redirect and a 401.
    pub fn verdict(&self, wants_html: bool) -> Verdict {
        let either = self.allow.reasons.union(self.deny.reasons);
        if self.deny.reasons.contains(Reason::ClientCertificateRequired)
            || self.deny.reasons.contains(Reason::InvalidClientCertificate)
        {
            Verdict::ClientCertificateRequired
        } else if either.contains(Reason::UserUnauthenticated) {
            Verdict::Login { redirect: wants_html }
        } else if either.contains(Reason::DeviceUnauthenticated) {
            Verdict::DeviceEnroll
        } else if self.deny.value {
            denied(self.deny.reasons)
        } else if self.allow.value {
            Verdict::Allow
        } else {
            denied(self.allow.reasons)
        }
    }
}

/// A denial's status, from the reasons it is given with (`handleResultDenied`).
fn denied(reasons: ReasonSet) -> Verdict {
    if reasons.contains(Reason::DeviceUnauthorized) {
        Verdict::Deny { device_unauthorized: true }
    } else if reasons.contains(Reason::RouteNotFound) {
        Verdict::NotFound
    } else {
        Verdict::Deny { device_unauthorized: false }
    }
}

/// Whether a request's `Accept` header prefers HTML (or is absent), as browsers' does: then a
/// sign-in is a redirect, otherwise a 401.
pub fn wants_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return true };
    let mut html = None;
    let mut best_other: f32 = 0.0;
    for part in accept.split(',') {
        let mut pieces = part.split(';');
        let media = pieces.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = pieces
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media == "text/html" {
            html = Some(html.map_or(quality, |h: f32| h.max(quality)));
        } else if media != "*/*" {
            best_other = best_other.max(quality);
        } else if html.is_none() && best_other == 0.0 {
            // Only a wildcard: a browser-like client.
            html = Some(quality.min(0.999));
        }
    }
    html.is_some_and(|h| h > 0.0 && h >= best_other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(value: bool, reason: Reason) -> RuleResult<'static> {
        RuleResult::new(value, reason)
    }

    #[test]
    fn and_or_merge_reasons_like_pomerium() {
        let mut and = Merge::and();
        and.add(r(true, Reason::EmailOk));
        and.add(r(false, Reason::HttpMethodUnauthorized));
        and.add(r(false, Reason::HttpPathUnauthorized));
        assert_eq!(and.finish().reasons.names(), vec!["http-method-unauthorized", "http-path-unauthorized"]);
        let mut or = Merge::or();
        or.add(r(false, Reason::EmailUnauthorized));
        or.add(r(true, Reason::DomainOk));
        let or = or.finish();
        assert!(or.value);
        assert_eq!(or.reasons.names(), vec!["domain-ok"]);
    }

    #[test]
    fn the_greatest_device_type_wins_the_merge() {
        let mut or = Merge::or();
        or.add(RuleResult { device_type: Some("any"), ..r(false, Reason::DeviceUnauthenticated) });
        or.add(RuleResult { device_type: Some("enclave_only"), ..r(false, Reason::DeviceUnauthenticated) });
        assert_eq!(or.finish().device_type, Some("enclave_only"));
    }

    #[test]
    fn accept_header_decides_redirect_or_401() {
        assert!(wants_html(None));
        assert!(wants_html(Some("text/html,application/xhtml+xml,*/*;q=0.8")));
        assert!(wants_html(Some("*/*")));
        assert!(!wants_html(Some("application/json")));
        assert!(!wants_html(Some("application/json, text/html;q=0.5")));
        assert!(!wants_html(Some("text/html;q=0")));
    }
}
