//! Benchmark B1 compares the same work: on every case and probe, ours, regorus (interpreter and
//! VM, on the emitted Rego) and cedar-policy (on the hand-written Cedar) reach the probe's
//! outcome, and the Rego engines give exactly our `allow` and `deny` (values and reasons), which
//! are Pomerium's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use bench_peers::b1::{self, Case, Probe};
use bench_peers::cedar_peer::CedarPeer;
use bench_peers::ours::{Ours, action_result};
use bench_peers::regorus_peer::{PeerDecision, PomeriumInput, RegorusPeer};
use bench_peers::regorus_vm::{RegorusVm, VmMode};

fn check(case: &Case, probe: &Probe) -> Result<(), String> {
    let name = format!("{} ({})", case.name(), probe.label);
    let ours = Ours::new(&case.ppl, &probe.facts).map_err(|e| format!("{name}: ours: {e}"))?;
    let decision = ours.decide();
    let expected = PeerDecision { allow: action_result(&decision.allow), deny: action_result(&decision.deny) };
    if ours.allowed() != probe.allowed {
        return Err(format!("{name}: ours decides {:?}", decision.verdict(true)));
    }
    let ast = ppl::compile(&case.ppl, ppl::Syntax::Yaml).ast.unwrap();
    let module = policy::rego::emit(&ast).unwrap();
    let input = PomeriumInput::from_contract(&probe.facts.contract_input(), b1::NOW.parse().unwrap())
        .map_err(|e| format!("{name}: {e}"))?;
    let interpreted = RegorusPeer::new(&module).and_then(|mut peer| peer.evaluate(&input));
    let interpreted = interpreted.map_err(|e| format!("{name}: regorus: {e}"))?;
    if interpreted != expected {
        return Err(format!("{name}: regorus {:?}, ours {:?}", interpreted.to_json(), expected.to_json()));
    }
    for mode in [VmMode::Suspendable, VmMode::Preloaded] {
        let vm = RegorusVm::new(&module, mode).and_then(|mut vm| vm.evaluate(&input));
        let vm = vm.map_err(|e| format!("{name}: regorus VM ({mode:?}): {e}"))?;
        if vm != expected {
            return Err(format!("{name}: regorus VM ({mode:?}) {:?}, ours {:?}", vm.to_json(), expected.to_json()));
        }
    }
    let cedar = CedarPeer::new(&case.cedar, &probe.facts).and_then(|peer| peer.allowed());
    let cedar = cedar.map_err(|e| format!("{name}: cedar: {e}\n{}", case.cedar))?;
    if cedar != probe.allowed {
        return Err(format!("{name}: cedar says allowed = {cedar}\n{}", case.cedar));
    }
    Ok(())
}

#[test]
fn every_engine_agrees_on_every_case() {
    // Cedar's evaluator recurses once per `||` of a chain and gives up with "recursion limit
    // reached" when less than 100 KiB of stack is left: a 100-term chain needs more than a test
    // thread's 2 MiB in a debug build (a release build on the main thread, as the benches run, is
    // fine).
    std::thread::Builder::new().stack_size(256 << 20).spawn(agree).unwrap().join().unwrap();
}

fn agree() {
    let cases = b1::cases();
    assert_eq!(cases.len(), b1::FAMILIES.len() * b1::SIZES.len());
    let failures: Vec<String> = cases
        .iter()
        .flat_map(|case| case.probes.iter().map(move |probe| (case, probe)))
        .filter_map(|(case, probe)| check(case, probe).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_family_has_an_allowed_and_a_denied_probe() {
    for case in b1::cases() {
        assert_eq!(case.probe("allowed").map(|p| p.allowed), Some(true), "{}", case.name());
        assert_eq!(case.probe("denied").map(|p| p.allowed), Some(false), "{}", case.name());
        assert_eq!(b1::find(&case.name()).as_ref(), Some(&case));
    }
}

#[test]
fn lists_have_the_case_size() {
    // The policy text grows with the size: a 100-value case lists 100 values.
    for family in b1::FAMILIES {
        let one = b1::find(&format!("{family}/1")).unwrap();
        let hundred = b1::find(&format!("{family}/100")).unwrap();
        assert!(hundred.ppl.len() > one.ppl.len() + 99 * 5, "{family}");
        assert!(hundred.cedar.len() > one.cedar.len() + 99 * 5, "{family}");
    }
}
