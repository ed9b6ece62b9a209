//! cedar-policy on a hand-written Cedar equivalent of a PPL policy: the policies, the entities
//! and the request are built once; [`CedarPeer::decide`] is `Authorizer::is_authorized`, the part
//! benchmark B1 times.

use crate::b1::Facts;
use crate::regorus_peer::PeerError;
use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, Response};
use std::fmt;
use std::str::FromStr;

/// A policy set, entities and one request.
pub struct CedarPeer {
    authorizer: Authorizer,
    policies: PolicySet,
    entities: Entities,
    request: Request,
}

impl fmt::Debug for CedarPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CedarPeer").finish_non_exhaustive()
    }
}

fn error(context: &str, e: impl fmt::Display) -> PeerError {
    PeerError(format!("{context}: {e}"))
}

fn uid(text: &str) -> Result<EntityUid, PeerError> {
    EntityUid::from_str(text).map_err(|e| error("not an entity uid", e))
}

impl CedarPeer {
    /// Parses `policies` and builds the entities and request of `facts`: principal the user (or
    /// `User::"anonymous"`), action `Action::"request"`, resource `Route::"route"`.
    pub fn new(policies: &str, facts: &Facts) -> Result<CedarPeer, PeerError> {
        let policies = PolicySet::from_str(policies).map_err(|e| error("cedar does not parse the policies", e))?;
        let entities = Entities::from_json_value(facts.cedar_entities(), None)
            .map_err(|e| error("cedar does not read the entities", e))?;
        let context = Context::from_json_value(facts.cedar_context(), None)
            .map_err(|e| error("cedar does not read the context", e))?;
        let request = Request::new(
            uid(facts.cedar_principal())?,
            uid(r#"Action::"request""#)?,
            uid(r#"Route::"route""#)?,
            context,
            None,
        )
        .map_err(|e| error("cedar refuses the request", e))?;
        Ok(CedarPeer { authorizer: Authorizer::new(), policies, entities, request })
    }

    /// `is_authorized`.
    pub fn decide(&self) -> Response {
        self.authorizer.is_authorized(&self.request, &self.policies, &self.entities)
    }

    /// Whether the request is allowed; an evaluation error (a policy that errs is skipped by
    /// Cedar) is an error here, so that a mistyped policy cannot pass for a deny.
    pub fn allowed(&self) -> Result<bool, PeerError> {
        let response = self.decide();
        if let Some(e) = response.diagnostics().errors().next() {
            return Err(error("a cedar policy fails", e));
        }
        Ok(response.decision() == Decision::Allow)
    }
}
