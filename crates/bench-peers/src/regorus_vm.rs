//! The same Rego module as [`crate::regorus_peer`], run by regorus's bytecode VM (RVM, the `rvm`
//! feature of regorus 0.14.1) instead of its tree-walking interpreter.
//!
//! The RVM compiler does not know the interpreter's extensions (`Engine::add_extension`): a call
//! to `get_databroker_record` fails to compile with "unknown function". What it offers instead is
//! the *host-await* builtin: a function name registered with
//! `Compiler::compile_from_policy_with_host_await` compiles to a `HostAwait` instruction, and in
//! the VM's suspendable mode execution stops there, hands the host the call's arguments, and
//! resumes with the host's answer. Every extension of [`crate::regorus_peer`] is registered so,
//! and answered by the same function; this is the only way the VM can run the emitted module
//! unchanged. Registering `net.cidr_contains` also replaces regorus's own (absent here: its `net`
//! feature needs `arc`).
//!
//! Records are converted to Rego values once, in [`RegorusVm::prepare`] (as for the interpreter),
//! and handed out by reference count: a look-up costs a map probe and a suspension.
//!
//! Suspending is not free: the VM's suspendable mode clones rule metadata on every rule call and
//! keeps an explicit frame stack. [`VmMode::Preloaded`] measures the VM without it: the host's
//! answers are recorded by one suspendable run in [`RegorusVm::prepare`], queued before each entry
//! point (`RegoVM::set_host_await_responses`), and the VM runs to completion, taking them in
//! order. A real host cannot know its answers in advance; this is the VM's floor, not a way to run
//! Pomerium's policies.

use crate::regorus_peer::{
    ALLOW, DENY, EXTENSIONS, PeerDecision, PeerError, PomeriumInput, State, action_result, new_engine,
};
use regorus::Value as RegoValue;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::{ExecutionMode, ExecutionState, RegoVM};
use std::fmt;

/// How the VM gets the host's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmMode {
    /// Suspends at each host call and resumes with the answer.
    Suspendable,
    /// Runs to completion with the answers queued in advance.
    Preloaded,
}

/// A module compiled to RVM bytecode, with `allow` and `deny` as entry points.
pub struct RegorusVm {
    vm: RegoVM,
    state: State,
    mode: VmMode,
    /// In [`VmMode::Preloaded`]: each entry point's host calls, (name, answer) in call order.
    answers: [Vec<(RegoValue, RegoValue)>; 2],
}

impl fmt::Debug for RegorusVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegorusVm").finish_non_exhaustive()
    }
}

fn error(context: &str, e: impl fmt::Display) -> PeerError {
    PeerError(format!("{context}: {e}"))
}

impl RegorusVm {
    /// Compiles a Rego module (package `pomerium.policy`) to bytecode.
    pub fn new(module: &str, mode: VmMode) -> Result<RegorusVm, PeerError> {
        let mut engine = new_engine();
        engine
            .add_policy("pomerium.rego".to_owned(), module.to_owned())
            .map_err(|e| error("regorus does not load the module", e))?;
        let compiled = engine
            .compile_with_entrypoint(&ALLOW.into())
            .map_err(|e| error("regorus does not compile the module", e))?;
        let host: Vec<(&str, usize)> = EXTENSIONS.iter().map(|(name, arity, _)| (*name, usize::from(*arity))).collect();
        let program = Compiler::compile_from_policy_with_host_await(&compiled, &[ALLOW, DENY], &host)
            .map_err(|e| error("the RVM compiler refuses the module", e))?;
        let mut vm = RegoVM::new();
        vm.load_program(program);
        vm.set_execution_mode(ExecutionMode::Suspendable);
        vm.set_strict_builtin_errors(false);
        // The VM stops after 25,000 instructions by default; a 100-value list takes more.
        vm.set_max_instructions(usize::MAX);
        Ok(RegorusVm { vm, state: State::new(), mode, answers: [Vec::new(), Vec::new()] })
    }

    /// Evaluates `allow` and `deny`.
    pub fn evaluate(&mut self, input: &PomeriumInput) -> Result<PeerDecision, PeerError> {
        let prepared = self.prepare(input)?;
        let (allow, deny) = self.evaluate_prepared(&prepared)?;
        Ok(PeerDecision { allow: action_result(&allow)?, deny: action_result(&deny)? })
    }

    /// Takes `input`'s records and clock, and returns its input document as a Rego value, for
    /// [`RegorusVm::evaluate_prepared`].
    pub fn prepare(&mut self, input: &PomeriumInput) -> Result<RegoValue, PeerError> {
        self.state.load(input);
        let value = RegoValue::from(input.input.clone());
        if self.mode == VmMode::Preloaded {
            self.vm.set_execution_mode(ExecutionMode::Suspendable);
            self.vm.set_input(value.clone());
            for (answers, entry_point) in [(0, ALLOW), (1, DENY)] {
                let mut log = Vec::new();
                self.run(entry_point, Some(&mut log))?;
                if let Some(slot) = self.answers.get_mut(answers) {
                    *slot = log;
                }
            }
            self.vm.set_execution_mode(ExecutionMode::RunToCompletion);
        }
        Ok(value)
    }

    /// `allow` and `deny` for a prepared input, as the VM returns them: what benchmark B1 times
    /// (setting the input, running both entry points, answering their host calls).
    pub fn evaluate_prepared(&mut self, input: &RegoValue) -> Result<(RegoValue, RegoValue), PeerError> {
        self.vm.set_input(input.clone());
        match self.mode {
            VmMode::Suspendable => Ok((self.run(ALLOW, None)?, self.run(DENY, None)?)),
            VmMode::Preloaded => Ok((self.run_preloaded(0, ALLOW)?, self.run_preloaded(1, DENY)?)),
        }
    }

    /// Runs an entry point in suspendable mode, answering its host calls (and logging them).
    fn run(
        &mut self,
        entry_point: &str,
        mut log: Option<&mut Vec<(RegoValue, RegoValue)>>,
    ) -> Result<RegoValue, PeerError> {
        let mut value = self
            .vm
            .execute_entry_point_by_name(entry_point)
            .map_err(|e| error(&format!("the VM fails on `{entry_point}`"), e))?;
        while matches!(self.vm.execution_state(), ExecutionState::Suspended { .. }) {
            let answer = self.answer()?;
            if let (Some(log), Some(name)) = (log.as_deref_mut(), self.vm.get_host_await_identifier()) {
                log.push((name.clone(), answer.clone()));
            }
            value = self.vm.resume(Some(answer)).map_err(|e| error(&format!("the VM fails on `{entry_point}`"), e))?;
        }
        Ok(value)
    }

    /// Runs an entry point to completion with its recorded answers queued.
    fn run_preloaded(&mut self, answers: usize, entry_point: &str) -> Result<RegoValue, PeerError> {
        let queued =
            self.answers.get(answers).map(|log| log.iter().map(|(name, answer)| (name.clone(), [answer.clone()])));
        self.vm.set_host_await_responses(queued.into_iter().flatten());
        self.vm
            .execute_entry_point_by_name(entry_point)
            .map_err(|e| error(&format!("the VM fails on `{entry_point}`"), e))
    }

    /// The answer to the host call the VM is suspended on.
    fn answer(&self) -> Result<RegoValue, PeerError> {
        let (Some(RegoValue::String(name)), Some(argument)) =
            (self.vm.get_host_await_identifier(), self.vm.get_host_await_argument())
        else {
            return Err(PeerError(format!("the VM suspended for {:?}, not a host call", self.vm.suspend_reason())));
        };
        // The arguments as a list, as the interpreter hands them to an extension.
        let args = match argument {
            RegoValue::Array(items) => items.to_vec(),
            other => vec![other.clone()],
        };
        let (_, _, function) = EXTENSIONS
            .iter()
            .find(|(extension, _, _)| *extension == &**name)
            .ok_or_else(|| PeerError(format!("no host function `{name}`")))?;
        Ok(function(&self.state, &args).unwrap_or(RegoValue::Undefined))
    }
}
