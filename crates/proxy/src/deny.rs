//! Why a request was denied, for the deny page of a route with `show_error_details`: Pomerium's
//! policy evaluation traces (each sub-policy's `explanation` and `remediation`, and whether it
//! allowed or denied), the decision's reasons, and, beyond Pomerium, what about the request fell
//! short and what the user can do ([`policy::explain::ForUser`]).
//!
//! Computed only for a denied request on such a route, off the allow path: the reference
//! interpreter runs the route's policy again to see which criteria decided.
//!
//! Invariant: nothing here carries a value from the policy (another user's email in an `in` list,
//! an allowed network); only the request's own values, and the texts the route's author wrote for
//! users (explanation, remediation).

use policy::Decision;
use policy::decision::Verdict;
use policy::explain::ForUser;
use policy::input::Input;
use policy::records::Records;
use policy::reference;

/// What a route with `show_error_details` keeps to explain a denial: its policy as checked (the
/// compiled program cannot say which criteria decided), and its sub-policies.
#[derive(Debug)]
pub(crate) struct Explainer {
    model: ppl::model::Policy,
    sub_policies: Vec<SubPolicy>,
}

#[derive(Debug)]
struct SubPolicy {
    id: String,
    name: String,
    explanation: String,
    remediation: String,
    model: Option<ppl::model::Policy>,
}

/// Pomerium's `PolicyEvaluationTrace`: one per sub-policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTrace {
    pub id: String,
    pub name: String,
    pub explanation: String,
    pub remediation: String,
    pub allow: bool,
    pub deny: bool,
}

/// A denial explained: what the deny page shows below its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The denial in the user's terms.
    pub for_user: ForUser,
    /// Each sub-policy's result with its author's explanation and remediation.
    pub traces: Vec<PolicyTrace>,
    /// The decision's values and reason names, e.g. `allow: false (email-unauthorized)`.
    pub reasons: String,
}

impl Explainer {
    pub(crate) fn new(route: &config::Route) -> Explainer {
        let sub_policies = route
            .sub_policies
            .iter()
            .map(|sub| SubPolicy {
                id: sub.id.clone(),
                name: sub.name.clone(),
                explanation: sub.explanation.clone(),
                remediation: sub.remediation.clone(),
                model: sub.model.clone(),
            })
            .collect();
        Explainer { model: route.policy().clone(), sub_policies }
    }

    /// Explains `decision`, which denied `input` with `verdict`.
    pub(crate) fn explain(
        &self,
        input: &Input<'_>,
        records: &dyn Records,
        decision: &Decision<'_>,
        verdict: Verdict,
    ) -> Explanation {
        let trace = reference::evaluate(&self.model, input, records);
        let traces = self
            .sub_policies
            .iter()
            .map(|sub| {
                let decided = sub.model.as_ref().map(|model| reference::evaluate(model, input, records).decision);
                PolicyTrace {
                    id: sub.id.clone(),
                    name: sub.name.clone(),
                    explanation: sub.explanation.clone(),
                    remediation: sub.remediation.clone(),
                    allow: decided.is_some_and(|d| d.allow.value),
                    deny: decided.is_some_and(|d| d.deny.value),
                }
            })
            .collect();
        let reasons = format!(
            "allow: {} ({}); deny: {} ({})",
            decision.allow.value,
            decision.allow.reasons.names().join(", "),
            decision.deny.value,
            decision.deny.reasons.names().join(", "),
        );
        Explanation { for_user: ForUser::new(&trace, verdict), traces, reasons }
    }
}
