//! Benchmark B1, wall time: one decision of every case and probe of `bench_peers::b1`, in each
//! engine. Only the decision is timed: compiling, loading and building the input happen once per
//! case (see `bench_peers::ours`, `regorus_peer`, `regorus_vm`, `cedar_peer`).
//!
//! `cargo bench -p bench-peers --bench b1` (about 5 minutes); a filter selects cases, such as
//! `-- 'b1_email_in_100_allowed/'`. Results land in `target/criterion/b1_<family>_<size>_<probe>/<engine>/`,
//! which `benches/b1.sh --wall` reads.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: it fails loudly on cases it knows")]

use bench_peers::b1;
use bench_peers::cedar_peer::CedarPeer;
use bench_peers::ours::Ours;
use bench_peers::regorus_peer::{PomeriumInput, RegorusPeer};
use bench_peers::regorus_vm::{RegorusVm, VmMode};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn decisions(c: &mut Criterion) {
    for case in b1::cases() {
        let module = policy::rego::emit(&ppl::compile(&case.ppl, ppl::Syntax::Yaml).ast.unwrap()).unwrap();
        for probe in &case.probes {
            let mut group = c.benchmark_group(format!("b1_{}_{}_{}", case.family, case.size, probe.label));
            group.warm_up_time(Duration::from_millis(150)).measurement_time(Duration::from_millis(400)).sample_size(20);

            let ours = Ours::new(&case.ppl, &probe.facts).unwrap();
            let input = ours.input();
            group
                .bench_function("ours", |b| b.iter(|| ours.program.evaluate(black_box(&input), &ours.request.records)));

            let rego_input =
                PomeriumInput::from_contract(&probe.facts.contract_input(), b1::NOW.parse().unwrap()).unwrap();
            let mut peer = RegorusPeer::new(&module).unwrap();
            let prepared = peer.prepare(&rego_input);
            group.bench_function("regorus", |b| b.iter(|| peer.evaluate_prepared(black_box(&prepared)).unwrap()));

            for (name, mode) in [("rvm", VmMode::Suspendable), ("rvm_preloaded", VmMode::Preloaded)] {
                let mut vm = RegorusVm::new(&module, mode).unwrap();
                let prepared = vm.prepare(&rego_input).unwrap();
                group.bench_function(name, |b| b.iter(|| vm.evaluate_prepared(black_box(&prepared)).unwrap()));
            }

            let cedar = CedarPeer::new(&case.cedar, &probe.facts).unwrap();
            group.bench_function("cedar", |b| b.iter(|| cedar.decide()));
            group.finish();
        }
    }
}

criterion_group!(b1_group, decisions);
criterion_main!(b1_group);
