//! Our engine on a B1 case: the policy compiled once (`ppl::compile`, then `Program::compile`),
//! the request read once into an [`OwnedInput`]; [`Ours::decide`] is `Program::evaluate`, the part
//! benchmark B1 times.

use crate::b1::{Facts, NOW};
use crate::regorus_peer::{ActionResult, PeerError};
use policy::contract::OwnedInput;
use policy::{Decision, Input, Program, RuleResult, Verdict};

/// A compiled policy and one request.
#[derive(Debug)]
pub struct Ours {
    pub program: Program,
    pub request: OwnedInput,
    pub now: jiff::Timestamp,
}

impl Ours {
    /// Compiles the YAML policy `ppl` and reads the request of `facts`.
    pub fn new(ppl: &str, facts: &Facts) -> Result<Ours, PeerError> {
        let program = compile(ppl)?;
        let request = OwnedInput::parse(&facts.contract_input().to_string())
            .map_err(|e| PeerError(format!("the input document is refused: {e}")))?;
        let now = NOW.parse().map_err(|e| PeerError(format!("bad clock: {e}")))?;
        Ok(Ours { program, request, now })
    }

    /// The input, borrowing from the request.
    pub fn input(&self) -> Input<'_> {
        self.request.input(self.now)
    }

    /// `Program::evaluate`.
    pub fn decide(&self) -> Decision<'_> {
        self.program.evaluate(&self.input(), &self.request.records)
    }

    /// Whether the request is allowed (Pomerium's precedence: deny first).
    pub fn allowed(&self) -> bool {
        self.decide().verdict(true) == Verdict::Allow
    }
}

/// `ppl::compile` and `Program::compile` of a YAML policy; errors are refused.
pub fn compile(ppl: &str) -> Result<Program, PeerError> {
    let compiled = ppl::compile(ppl, ppl::Syntax::Yaml);
    let model =
        compiled.policy.ok_or_else(|| PeerError(format!("the policy does not compile: {:?}", compiled.errors)))?;
    Ok(Program::compile(&model))
}

/// One action's result as the Rego peers report it.
pub fn action_result(result: &RuleResult<'_>) -> ActionResult {
    let mut reasons: Vec<String> = result.reasons.names().into_iter().map(str::to_owned).collect();
    reasons.sort();
    let additional_data = result.device_type.map(|device_type| {
        let mut data = serde_json::Map::new();
        data.insert("device_type".to_owned(), serde_json::Value::from(device_type));
        data
    });
    ActionResult { value: result.value, reasons, additional_data }
}
