//! Differential: the compiled decision program (`Program::evaluate`, the IR the proxy runs)
//! against the reference interpreter (`policy::reference::evaluate`, the semantics' definition)
//! on arbitrary policies and inputs. The input is a policy (YAML), `\0\0`, then an input document
//! of the evaluation contract (JSON); `fuzz/seed.sh` writes the evaluation corpus in this form.
//! Whenever both parse, the two decisions must be equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy::contract::OwnedInput;
use policy::{Program, reference};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some((policy_text, input_json)) = text.split_once("\0\0") else { return };
    let compiled = ppl::compile(policy_text, ppl::Syntax::Yaml);
    let Some(model) = compiled.policy else { return };
    let Ok(owned) = OwnedInput::parse(input_json) else { return };
    let program = Program::compile(&model);
    let input = owned.input("2026-01-01T00:00:00Z".parse().unwrap());
    let fast = program.evaluate(&input, &owned.records);
    let slow = reference::evaluate(&model, &input, &owned.records).decision;
    assert_eq!(fast, slow, "policy:\n{policy_text}\ninput: {input_json}");
});
