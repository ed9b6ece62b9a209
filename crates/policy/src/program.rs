//! The decision IR: a checked policy compiled for evaluation on every request.
//!
//! Compilation ([`Program::compile`]) does, each exactly preserving Pomerium's result:
//! - **constant folding**: `accept`/`reject` and blocks or actions made only of them become
//!   constants, and constants are merged into a block's starting state;
//! - **set merging**: in `or` and `not` blocks, criteria testing one string attribute with `is`,
//!   `in`, `starts_with`, `ends_with` or `contains` become one test: a hash set, prefix and suffix
//!   sets by length, and Aho–Corasick for substrings (1,000 allowed users cost one lookup); the
//!   same for `has` on one claim or on groups;
//! - **interval search** for `source_ip`: the networks become sorted, merged address ranges;
//! - **cheap first**: within a block, request criteria come before record lookups, and a
//!   criterion is skipped once the block's value is decided and every reason it could add is
//!   already present (the result cannot change);
//! - **one lookup per record**: the session, user and directory user are fetched at most once per
//!   decision.
//!
//! Evaluation ([`Program::evaluate`]) allocates nothing.

use crate::crypto::verify_ssh_user_certificate;
use crate::decision::{Decision, Merge, RuleResult};
use crate::input::Input;
use crate::reason::{Reason, ReasonSet};
use crate::records::{self, DirectoryUser, Principal, Records, User};
use crate::reference::{json_equals, unmapped};
use aho_corasick::AhoCorasick;
use ppl::ast::{Action, Operator};
use ppl::model::{CertificateMatcher, CriterionKind, ListOp, RecordMatcher, SshKey, StringMatcher, StringOp};
use ppl::value::Value;
use serde_json::Value as Json;
use std::collections::HashSet;
use std::net::IpAddr;

type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Program {
    allow: ActionIr,
    deny: ActionIr,
}

#[derive(Debug, Clone)]
struct ActionIr {
    /// No non-empty block: the action is `[false, {}]`.
    defined: bool,
    /// The constant blocks, already merged.
    initial: Merge<'static>,
    blocks: Box<[BlockIr]>,
}

#[derive(Debug, Clone)]
struct BlockIr {
    operator: Operator,
    /// The constant criteria, already merged (inverted for `not`/`nor`).
    initial: Merge<'static>,
    checks: Box<[Check]>,
    /// The reasons the block can give when true, and whether it can carry a device type.
    if_true: ReasonSet,
    has_device: bool,
}

#[derive(Debug, Clone)]
struct Check {
    test: Test,
    /// The reasons it can give when it holds, and when it does not.
    if_true: ReasonSet,
    if_false: ReasonSet,
    has_device: bool,
}

#[derive(Debug, Clone)]
enum Test {
    AuthenticatedUser,
    User(StrTest),
    Email(StrTest),
    Domain(StrTest),
    Claim(Box<str>, ListTest),
    Groups(ListTest),
    HttpMethod(StrTest),
    HttpPath(StrTest),
    Cors,
    SourceIp(IpRanges),
    ClientCertificate(Box<CertificateMatcher>),
    InvalidClientCertificate,
    Device(Box<DeviceTest>),
    McpTool(StrTest),
    SshUsername(StrTest),
    SshUsernameMatchesEmail,
    SshUsernameMatchesClaim(Box<str>),
    SshPublickey(Box<[Box<[u8]>]>),
    SshCa(Box<[SshKey]>),
    Date(Box<ppl::model::DateMatcher>),
    DayOfWeek(ppl::model::DaySet),
    TimeOfDay(Box<ppl::model::TimeOfDayMatcher>),
    Record(Box<RecordMatcher>),
}

/// Conditions on one string, all of which must hold; `None` is Rego's undefined.
#[derive(Debug, Clone)]
struct StrTest(Box<[StrCond]>);

#[derive(Debug, Clone)]
enum StrCond {
    /// `is` with a non-string value, or `contains`/... with one: never true.
    Never,
    /// `not` with a non-string value: true for any defined string.
    Defined,
    Is(Box<str>),
    Not(Box<str>),
    Contains(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    In(StrSet),
    NotIn(StrSet),
    /// Several OR-ed criteria on one attribute, merged.
    AnyOf(Box<AnyOf>),
}

#[derive(Debug, Clone, Default)]
struct AnyOf {
    exact: StrSet,
    prefixes: AffixSet,
    suffixes: AffixSet,
    substrings: Option<Substrings>,
}

#[derive(Debug, Clone)]
enum Substrings {
    Few(Box<[Box<str>]>),
    Many(AhoCorasick),
}

/// A set of strings: a short list is scanned, a long one hashed.
#[derive(Debug, Clone)]
enum StrSet {
    Few(Box<[Box<str>]>),
    Many(FastSet<Box<str>>),
}

impl Default for StrSet {
    fn default() -> StrSet {
        StrSet::Few(Box::default())
    }
}

/// Prefixes (or suffixes) grouped by length: one hash lookup per distinct length.
#[derive(Debug, Clone, Default)]
struct AffixSet(Box<[(usize, StrSet)]>);

#[derive(Debug, Clone)]
struct ListTest(Box<[ListCond]>);

#[derive(Debug, Clone)]
enum ListCond {
    Has(Value),
    Is(Value),
    Exclude(Value),
    /// Several OR-ed `has` of strings, merged.
    HasAny(StrSet),
}

#[derive(Debug, Clone, Default)]
struct IpRanges {
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
}

#[derive(Debug, Clone)]
struct DeviceTest {
    matcher: ppl::model::DeviceMatcher,
    device_type: Box<str>,
}

// ---------------------------------------------------------------------------------------------
// Compilation
// ---------------------------------------------------------------------------------------------

impl Program {
    /// Compiles a checked policy.
    pub fn compile(policy: &ppl::model::Policy) -> Program {
        Program { allow: compile_action(policy, Action::Allow), deny: compile_action(policy, Action::Deny) }
    }

    /// How many tests evaluation may run (after folding and merging), for tests and `bench`.
    pub fn test_count(&self) -> usize {
        [&self.allow, &self.deny].iter().flat_map(|a| a.blocks.iter()).map(|b| b.checks.len()).sum()
    }
}

fn compile_action(policy: &ppl::model::Policy, action: Action) -> ActionIr {
    let mut initial = Merge::or();
    let mut blocks = Vec::new();
    let mut defined = false;
    for block in policy.rules.iter().filter(|r| r.action == action).flat_map(|r| &r.blocks) {
        if block.criteria.is_empty() {
            continue;
        }
        defined = true;
        let compiled = compile_block(block);
        if compiled.checks.is_empty() {
            initial.add(compiled.initial.finish());
        } else {
            blocks.push(compiled);
        }
    }
    blocks.sort_by_key(|b| b.checks.iter().map(|c| cost(&c.test)).sum::<u32>());
    ActionIr { defined, initial, blocks: blocks.into_boxed_slice() }
}

fn compile_block(block: &ppl::model::Block) -> BlockIr {
    let invert = matches!(block.operator, Operator::Not | Operator::Nor);
    let mut initial = match block.operator {
        Operator::And | Operator::Not => Merge::and(),
        Operator::Or | Operator::Nor => Merge::or(),
    };
    let mut checks = Vec::new();
    for criterion in &block.criteria {
        match &criterion.kind {
            CriterionKind::Accept | CriterionKind::Reject => {
                let accept = matches!(criterion.kind, CriterionKind::Accept);
                let result = RuleResult::new(accept, if accept { Reason::Accept } else { Reason::Reject });
                initial.add(if invert { result.inverted() } else { result });
            }
            kind => checks.extend(compile_check(kind)),
        }
    }
    if matches!(block.operator, Operator::Or | Operator::Not) {
        checks = merge_alternatives(checks);
    }
    checks.sort_by_key(|c| cost(&c.test));
    // A true block's reasons come from its true results (its false ones, inverted, for `not`
    // and `nor`); a superset is enough for deciding to skip.
    let if_true = checks
        .iter()
        .fold(ReasonSet::EMPTY, |set, c| set.union(if invert { c.if_false } else { c.if_true }))
        .union(initial_reasons(&block.criteria));
    let has_device = checks.iter().any(|c| c.has_device);
    BlockIr { operator: block.operator, initial, checks: checks.into_boxed_slice(), if_true, has_device }
}

fn initial_reasons(criteria: &[ppl::model::Criterion]) -> ReasonSet {
    criteria
        .iter()
        .filter_map(|c| match c.kind {
            CriterionKind::Accept => Some(Reason::Accept),
            CriterionKind::Reject => Some(Reason::Reject),
            _ => None,
        })
        .collect()
}

/// Relative cost: what is in the request first, then one record lookup, then several.
fn cost(test: &Test) -> u32 {
    match test {
        Test::HttpMethod(_) | Test::HttpPath(_) | Test::Cors | Test::SourceIp(_) | Test::InvalidClientCertificate => 1,
        Test::McpTool(_) | Test::SshUsername(_) | Test::SshPublickey(_) | Test::DayOfWeek(_) | Test::Date(_) => 1,
        Test::ClientCertificate(_) | Test::TimeOfDay(_) => 2,
        Test::AuthenticatedUser | Test::User(_) => 3,
        Test::Email(_) | Test::Domain(_) | Test::Claim(..) | Test::Groups(_) | Test::SshUsernameMatchesEmail => 4,
        Test::SshUsernameMatchesClaim(_) | Test::Record(_) => 4,
        Test::Device(_) => 6,
        Test::SshCa(_) => 8,
    }
}

/// The reasons of the Session template when true and when false.
fn session_reasons(pass: Reason, fail: Reason) -> (ReasonSet, ReasonSet) {
    (ReasonSet::of(pass), [fail, Reason::UserUnauthenticated].into_iter().collect())
}

/// The reasons of the Plain template when true and when false.
fn plain_reasons(pass: Reason, fail: Reason) -> (ReasonSet, ReasonSet) {
    (ReasonSet::of(pass), ReasonSet::of(fail))
}

/// The test for a criterion; `None` for the constants `accept` and `reject`, which the block
/// folds into its starting state.
fn compile_check(kind: &CriterionKind) -> Option<Check> {
    let (test, (if_true, if_false)) = match kind {
        CriterionKind::Accept | CriterionKind::Reject => return None,
        CriterionKind::AuthenticatedUser => {
            (Test::AuthenticatedUser, session_reasons(Reason::UserOk, Reason::UserUnauthorized))
        }
        CriterionKind::User(m) => (Test::User(str_test(m)), session_reasons(Reason::UserOk, Reason::UserUnauthorized)),
        CriterionKind::Email(m) => {
            (Test::Email(str_test(m)), session_reasons(Reason::EmailOk, Reason::EmailUnauthorized))
        }
        CriterionKind::Domain(m) => {
            (Test::Domain(str_test(m)), session_reasons(Reason::DomainOk, Reason::DomainUnauthorized))
        }
        CriterionKind::Claim { name, matcher } => (
            Test::Claim(name.as_str().into(), list_test(matcher)),
            session_reasons(Reason::ClaimOk, Reason::ClaimUnauthorized),
        ),
        CriterionKind::Groups(m) => {
            (Test::Groups(list_test(m)), session_reasons(Reason::GroupsOk, Reason::GroupsUnauthorized))
        }
        CriterionKind::HttpMethod(m) => {
            (Test::HttpMethod(str_test(m)), plain_reasons(Reason::HttpMethodOk, Reason::HttpMethodUnauthorized))
        }
        CriterionKind::HttpPath(m) => {
            (Test::HttpPath(str_test(m)), plain_reasons(Reason::HttpPathOk, Reason::HttpPathUnauthorized))
        }
        CriterionKind::CorsPreflight => (Test::Cors, plain_reasons(Reason::CorsRequest, Reason::NonCorsRequest)),
        CriterionKind::SourceIp(networks) => {
            (Test::SourceIp(ip_ranges(networks)), plain_reasons(Reason::SourceIpOk, Reason::SourceIpUnauthorized))
        }
        CriterionKind::ClientCertificate(m) => (
            Test::ClientCertificate(Box::new(m.clone())),
            plain_reasons(Reason::ClientCertificateOk, Reason::ClientCertificateUnauthorized),
        ),
        CriterionKind::InvalidClientCertificate => (
            Test::InvalidClientCertificate,
            (
                [Reason::ClientCertificateRequired, Reason::InvalidClientCertificate]
                    .into_iter()
                    .collect::<ReasonSet>(),
                ReasonSet::of(Reason::ValidClientCertificate),
            ),
        ),
        CriterionKind::Device(m) => {
            let device_type = m.device_type.as_deref().unwrap_or("any").into();
            let if_false = [Reason::DeviceUnauthorized, Reason::DeviceUnauthenticated, Reason::UserUnauthenticated];
            (
                Test::Device(Box::new(DeviceTest { matcher: m.clone(), device_type })),
                (ReasonSet::of(Reason::DeviceOk), if_false.into_iter().collect::<ReasonSet>()),
            )
        }
        CriterionKind::McpTool(m) => (
            Test::McpTool(str_test(m)),
            (
                ReasonSet::of(Reason::McpToolMatch),
                [Reason::McpNotAToolCall, Reason::McpToolNoMatch].into_iter().collect::<ReasonSet>(),
            ),
        ),
        CriterionKind::SshUsername(m) => {
            (Test::SshUsername(str_test(m)), plain_reasons(Reason::SshUsernameOk, Reason::SshUsernameUnauthorized))
        }
        CriterionKind::SshUsernameMatchesEmail => {
            (Test::SshUsernameMatchesEmail, session_reasons(Reason::SshUsernameOk, Reason::SshUsernameUnauthorized))
        }
        CriterionKind::SshUsernameMatchesClaim(name) => (
            Test::SshUsernameMatchesClaim(name.as_str().into()),
            session_reasons(Reason::SshUsernameOk, Reason::SshUsernameUnauthorized),
        ),
        CriterionKind::SshPublickey(keys) => (
            Test::SshPublickey(keys.iter().map(|k| k.blob.clone().into_boxed_slice()).collect()),
            plain_reasons(Reason::SshPublickeyOk, Reason::SshPublickeyUnauthorized),
        ),
        CriterionKind::SshCa(keys) => (
            Test::SshCa(keys.clone().into_boxed_slice()),
            plain_reasons(Reason::SshPublickeyOk, Reason::SshPublickeyUnauthorized),
        ),
        CriterionKind::Date(m) => {
            (Test::Date(Box::new(m.clone())), plain_reasons(Reason::DateOk, Reason::DateUnauthorized))
        }
        CriterionKind::DayOfWeek(days) => {
            (Test::DayOfWeek(*days), plain_reasons(Reason::DayOfWeekOk, Reason::DayOfWeekUnauthorized))
        }
        CriterionKind::TimeOfDay(m) => {
            (Test::TimeOfDay(Box::new(m.clone())), plain_reasons(Reason::TimeOfDayOk, Reason::TimeOfDayUnauthorized))
        }
        CriterionKind::Record(m) => {
            (Test::Record(Box::new(m.clone())), session_reasons(Reason::RecordOk, Reason::RecordUnauthorized))
        }
    };
    let has_device = matches!(test, Test::Device(_));
    Some(Check { test, if_true, if_false, has_device })
}

fn str_test(m: &StringMatcher) -> StrTest {
    StrTest(m.conditions.iter().map(|c| str_cond(c.op, &c.value)).collect())
}

fn str_cond(op: StringOp, value: &Value) -> StrCond {
    let text = value.as_str();
    let strings = || -> StrSet {
        let items = value.as_array().unwrap_or_default();
        str_set(items.iter().filter_map(Value::as_str).map(Into::into).collect())
    };
    match (op, text) {
        (StringOp::Is, Some(s)) => StrCond::Is(s.into()),
        (StringOp::Not, Some(s)) => StrCond::Not(s.into()),
        (StringOp::Not, None) => StrCond::Defined,
        (StringOp::Contains, Some(s)) => StrCond::Contains(s.into()),
        (StringOp::StartsWith, Some(s)) => StrCond::StartsWith(s.into()),
        (StringOp::EndsWith, Some(s)) => StrCond::EndsWith(s.into()),
        (StringOp::In, _) => StrCond::In(strings()),
        (StringOp::NotIn, _) => StrCond::NotIn(strings()),
        (StringOp::Is | StringOp::Contains | StringOp::StartsWith | StringOp::EndsWith, None) => StrCond::Never,
    }
}

/// Short lists are scanned; from this many entries on, hashed.
const HASH_FROM: usize = 8;

fn str_set(mut items: Vec<Box<str>>) -> StrSet {
    items.sort_unstable();
    items.dedup();
    if items.len() < HASH_FROM {
        StrSet::Few(items.into_boxed_slice())
    } else {
        StrSet::Many(items.into_iter().collect())
    }
}

fn list_test(m: &ppl::model::ListMatcher) -> ListTest {
    ListTest(
        m.conditions
            .iter()
            .map(|c| match c.op {
                ListOp::Has => match c.value.as_str() {
                    Some(s) => ListCond::HasAny(str_set(vec![s.into()])),
                    None => ListCond::Has(c.value.clone()),
                },
                ListOp::Is => ListCond::Is(c.value.clone()),
                ListOp::Exclude => ListCond::Exclude(c.value.clone()),
            })
            .collect(),
    )
}

/// Merges the OR-ed alternatives of one attribute (see the module documentation). Only
/// criteria with a single condition merge; their reasons and templates are identical, so the
/// merged test gives exactly the results the separate ones would have combined to.
fn merge_alternatives(checks: Vec<Check>) -> Vec<Check> {
    #[derive(PartialEq, Eq, Clone)]
    enum Key {
        Str(u8),
        Claim(Box<str>),
        Groups,
    }
    let key = |check: &Check| -> Option<Key> {
        let single = |t: &StrTest| {
            matches!(
                t.0.as_ref(),
                [StrCond::Is(_)
                    | StrCond::In(_)
                    | StrCond::StartsWith(_)
                    | StrCond::EndsWith(_)
                    | StrCond::Contains(_)]
            )
        };
        let has_string = |t: &ListTest| matches!(t.0.as_ref(), [ListCond::HasAny(_)]);
        match &check.test {
            Test::User(t) if single(t) => Some(Key::Str(0)),
            Test::Email(t) if single(t) => Some(Key::Str(1)),
            Test::Domain(t) if single(t) => Some(Key::Str(2)),
            Test::HttpMethod(t) if single(t) => Some(Key::Str(3)),
            Test::HttpPath(t) if single(t) => Some(Key::Str(4)),
            Test::McpTool(t) if single(t) => Some(Key::Str(5)),
            Test::SshUsername(t) if single(t) => Some(Key::Str(6)),
            Test::Claim(name, t) if has_string(t) => Some(Key::Claim(name.clone())),
            Test::Groups(t) if has_string(t) => Some(Key::Groups),
            _ => None,
        }
    };
    let mut out: Vec<Check> = Vec::new();
    let mut groups: Vec<(Key, Vec<Check>)> = Vec::new();
    for check in checks {
        match key(&check) {
            Some(k) => match groups.iter_mut().find(|(g, _)| *g == k) {
                Some((_, members)) => members.push(check),
                None => groups.push((k, vec![check])),
            },
            None => out.push(check),
        }
    }
    for (_, members) in groups {
        if members.len() == 1 {
            out.extend(members);
        } else {
            out.push(merge_group(members));
        }
    }
    out
}

fn merge_group(members: Vec<Check>) -> Check {
    let if_true = members.iter().fold(ReasonSet::EMPTY, |s, c| s.union(c.if_true));
    let if_false = members.iter().fold(ReasonSet::EMPTY, |s, c| s.union(c.if_false));
    let mut exact: Vec<Box<str>> = Vec::new();
    let mut prefixes: Vec<Box<str>> = Vec::new();
    let mut suffixes: Vec<Box<str>> = Vec::new();
    let mut substrings: Vec<Box<str>> = Vec::new();
    let mut groups: Vec<Box<str>> = Vec::new();
    let mut template: Option<Test> = None;
    for member in members {
        let conds: Vec<StrCond> = match &member.test {
            Test::User(t)
            | Test::Email(t)
            | Test::Domain(t)
            | Test::HttpMethod(t)
            | Test::HttpPath(t)
            | Test::McpTool(t)
            | Test::SshUsername(t) => t.0.to_vec(),
            Test::Claim(_, t) | Test::Groups(t) => {
                for cond in t.0.iter() {
                    if let ListCond::HasAny(set) = cond {
                        groups.extend(set.iter().map(Into::into));
                    }
                }
                Vec::new()
            }
            _ => Vec::new(),
        };
        for cond in conds {
            match cond {
                StrCond::Is(s) => exact.push(s),
                StrCond::In(set) => exact.extend(set.iter().map(Into::into)),
                StrCond::StartsWith(s) => prefixes.push(s),
                StrCond::EndsWith(s) => suffixes.push(s),
                StrCond::Contains(s) => substrings.push(s),
                _ => {}
            }
        }
        template.get_or_insert(member.test);
    }
    let any = StrTest(Box::new([StrCond::AnyOf(Box::new(AnyOf {
        exact: str_set(exact),
        prefixes: affix_set(prefixes),
        suffixes: affix_set(suffixes),
        substrings: substrings_test(substrings),
    }))]));
    let list = || ListTest(Box::new([ListCond::HasAny(str_set(groups.clone()))]));
    let test = match template {
        Some(Test::User(_)) => Test::User(any),
        Some(Test::Email(_)) => Test::Email(any),
        Some(Test::Domain(_)) => Test::Domain(any),
        Some(Test::HttpMethod(_)) => Test::HttpMethod(any),
        Some(Test::HttpPath(_)) => Test::HttpPath(any),
        Some(Test::McpTool(_)) => Test::McpTool(any),
        Some(Test::SshUsername(_)) => Test::SshUsername(any),
        Some(Test::Claim(name, _)) => Test::Claim(name, list()),
        _ => Test::Groups(list()),
    };
    Check { test, if_true, if_false, has_device: false }
}

fn affix_set(items: Vec<Box<str>>) -> AffixSet {
    let mut by_length: Vec<(usize, Vec<Box<str>>)> = Vec::new();
    for item in items {
        match by_length.iter_mut().find(|(len, _)| *len == item.len()) {
            Some((_, list)) => list.push(item),
            None => by_length.push((item.len(), vec![item])),
        }
    }
    by_length.sort_by_key(|(len, _)| *len);
    AffixSet(by_length.into_iter().map(|(len, items)| (len, str_set(items))).collect())
}

fn substrings_test(items: Vec<Box<str>>) -> Option<Substrings> {
    if items.is_empty() {
        return None;
    }
    if items.len() < 4 {
        return Some(Substrings::Few(items.into_boxed_slice()));
    }
    match AhoCorasick::new(items.iter().map(|s| s.as_bytes())) {
        Ok(automaton) => Some(Substrings::Many(automaton)),
        Err(_) => Some(Substrings::Few(items.into_boxed_slice())),
    }
}

fn ip_ranges(networks: &[ipnet::IpNet]) -> IpRanges {
    let mut v4: Vec<(u32, u32)> = Vec::new();
    let mut v6: Vec<(u128, u128)> = Vec::new();
    for network in networks {
        match network {
            ipnet::IpNet::V4(n) => v4.push((n.network().into(), n.broadcast().into())),
            ipnet::IpNet::V6(n) => v6.push((n.network().into(), n.broadcast().into())),
        }
    }
    IpRanges { v4: merge_ranges(v4), v6: merge_ranges(v6) }
}

/// Sorts ranges and joins the overlapping and adjacent ones, for binary search.
fn merge_ranges<T: Ord + Copy + num_step::Step>(mut ranges: Vec<(T, T)>) -> Box<[(T, T)]> {
    ranges.sort_unstable();
    let mut merged: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1.next_or_max() => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged.into_boxed_slice()
}

mod num_step {
    pub trait Step {
        fn next_or_max(self) -> Self;
    }
    impl Step for u32 {
        fn next_or_max(self) -> u32 {
            self.saturating_add(1)
        }
    }
    impl Step for u128 {
        fn next_or_max(self) -> u128 {
            self.saturating_add(1)
        }
    }
}

impl StrSet {
    fn contains(&self, s: &str) -> bool {
        match self {
            StrSet::Few(items) => items.iter().any(|i| i.as_ref() == s),
            StrSet::Many(set) => set.contains(s),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            StrSet::Few(items) => Box::new(items.iter().map(AsRef::as_ref)),
            StrSet::Many(set) => Box::new(set.iter().map(AsRef::as_ref)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// Per-decision state: the input, and the records looked up so far (each at most once).
struct Cx<'a, 'r> {
    input: &'a Input<'a>,
    records: &'r dyn Records,
    principal: Option<Option<Principal<'r>>>,
    user: Option<Option<&'r User>>,
    directory_user: Option<Option<&'r DirectoryUser>>,
    email: Option<&'r str>,
}

impl<'a, 'r> Cx<'a, 'r> {
    fn principal(&mut self) -> Option<Principal<'r>> {
        let (records, input) = (self.records, self.input);
        *self.principal.get_or_insert_with(|| records::resolve_session(records, input.session_id, input.now))
    }

    fn user(&mut self) -> Option<&'r User> {
        if let Some(user) = self.user {
            return user;
        }
        let records = self.records;
        let user = self.principal().and_then(|p| p.user_id()).and_then(|id| records.user(id));
        self.user = Some(user);
        user
    }

    fn directory_user(&mut self) -> Option<&'r DirectoryUser> {
        if let Some(directory_user) = self.directory_user {
            return directory_user;
        }
        let records = self.records;
        let directory_user = self.principal().and_then(|p| p.user_id()).and_then(|id| records.directory_user(id));
        self.directory_user = Some(directory_user);
        directory_user
    }

    fn email(&mut self) -> &'r str {
        if let Some(email) = self.email {
            return email;
        }
        let email = records::user_email(self.user(), self.directory_user());
        self.email = Some(email);
        email
    }

    fn claim(&mut self, name: &str) -> Option<&'r Json> {
        let session = self.principal().and_then(|p| p.claims());
        let user = self.user().map(|u| &u.claims);
        records::claim(session, user, name)
    }

    /// The Session template (ppl.md §2.2).
    fn session_rule(&mut self, body: bool, pass: Reason, fail: Reason) -> RuleResult<'static> {
        if body {
            RuleResult::new(true, pass)
        } else if self.principal().is_some() {
            RuleResult::new(false, fail)
        } else {
            RuleResult::new(false, Reason::UserUnauthenticated)
        }
    }
}

fn plain(body: bool, pass: Reason, fail: Reason) -> RuleResult<'static> {
    RuleResult::new(body, if body { pass } else { fail })
}

impl Program {
    /// The decision for `input`.
    pub fn evaluate<'p>(&'p self, input: &Input<'_>, records: &dyn Records) -> Decision<'p> {
        let mut cx = Cx { input, records, principal: None, user: None, directory_user: None, email: None };
        Decision { allow: self.allow.evaluate(&mut cx), deny: self.deny.evaluate(&mut cx) }
    }
}

impl ActionIr {
    fn evaluate<'p>(&'p self, cx: &mut Cx<'_, '_>) -> RuleResult<'p> {
        if !self.defined {
            return RuleResult { value: false, reasons: ReasonSet::EMPTY, device_type: None };
        }
        let mut merge = self.initial;
        for block in self.blocks.iter() {
            // The action is an `or`: once true, only a true block could add reasons.
            if merge.settled_with(block.if_true, ReasonSet::EMPTY, block.has_device) {
                continue;
            }
            merge.add(block.evaluate(cx));
        }
        merge.finish()
    }
}

impl BlockIr {
    fn evaluate<'p>(&'p self, cx: &mut Cx<'_, '_>) -> RuleResult<'p> {
        let invert = matches!(self.operator, Operator::Not | Operator::Nor);
        let mut merge = self.initial;
        for check in self.checks.iter() {
            let (if_true, if_false) =
                if invert { (check.if_false, check.if_true) } else { (check.if_true, check.if_false) };
            if merge.settled_with(if_true, if_false, check.has_device) {
                continue;
            }
            let result = check.test.evaluate(cx);
            merge.add(if invert { result.inverted() } else { result });
        }
        merge.finish()
    }
}

impl Test {
    fn evaluate<'p>(&'p self, cx: &mut Cx<'_, '_>) -> RuleResult<'p> {
        let input = cx.input;
        match self {
            Test::AuthenticatedUser => {
                let body = cx.principal().and_then(|p| p.user_id()).is_some();
                cx.session_rule(body, Reason::UserOk, Reason::UserUnauthorized)
            }
            Test::User(t) => {
                // `user_id := session.user_id` binds first: no user id fails the body.
                let body = cx.principal().and_then(|p| p.user_id()).is_some_and(|id| t.matches(Some(id)));
                cx.session_rule(body, Reason::UserOk, Reason::UserUnauthorized)
            }
            Test::Email(t) => {
                let body = t.matches(Some(cx.email()));
                cx.session_rule(body, Reason::EmailOk, Reason::EmailUnauthorized)
            }
            Test::Domain(t) => {
                let body = cx.email().split('@').nth(1).is_some_and(|d| t.matches(Some(d)));
                cx.session_rule(body, Reason::DomainOk, Reason::DomainUnauthorized)
            }
            Test::Claim(name, t) => {
                let values = cx.claim(name);
                let list = Some(values.and_then(Json::as_array).map_or(&[][..], Vec::as_slice));
                cx.session_rule(t.matches(list), Reason::ClaimOk, Reason::ClaimUnauthorized)
            }
            Test::Groups(t) => {
                let groups = cx.directory_user().map(|d| d.group_ids.as_deref().unwrap_or_default());
                cx.session_rule(t.matches(groups), Reason::GroupsOk, Reason::GroupsUnauthorized)
            }
            Test::HttpMethod(t) => {
                plain(t.matches(input.http.method), Reason::HttpMethodOk, Reason::HttpMethodUnauthorized)
            }
            Test::HttpPath(t) => plain(t.matches(input.http.path), Reason::HttpPathOk, Reason::HttpPathUnauthorized),
            Test::Cors => {
                let body = input.http.method == Some("OPTIONS")
                    && input.http.header("Access-Control-Request-Method").is_some_and(|v| !v.is_empty())
                    && input.http.header("Origin").is_some_and(|v| !v.is_empty());
                plain(body, Reason::CorsRequest, Reason::NonCorsRequest)
            }
            Test::SourceIp(ranges) => {
                let body = input.http.ip.is_some_and(|ip| ranges.contains(unmapped(ip)));
                plain(body, Reason::SourceIpOk, Reason::SourceIpUnauthorized)
            }
            Test::ClientCertificate(m) => {
                let body = input.http.client_certificate.leaf.is_some_and(|facts| certificate_matches(m, facts));
                plain(body, Reason::ClientCertificateOk, Reason::ClientCertificateUnauthorized)
            }
            Test::InvalidClientCertificate => {
                if input.is_valid_client_certificate == Some(true) {
                    RuleResult::new(false, Reason::ValidClientCertificate)
                } else if input.http.client_certificate.presented == Some(false) {
                    RuleResult::new(true, Reason::ClientCertificateRequired)
                } else {
                    RuleResult::new(true, Reason::InvalidClientCertificate)
                }
            }
            Test::Device(test) => test.evaluate(cx),
            Test::McpTool(t) => {
                if input.mcp.method != Some("tools/call") {
                    RuleResult::new(false, Reason::McpNotAToolCall)
                } else if t.matches(input.mcp.tool_name) {
                    RuleResult::new(true, Reason::McpToolMatch)
                } else {
                    RuleResult::new(false, Reason::McpToolNoMatch)
                }
            }
            Test::SshUsername(t) => {
                plain(t.matches(input.ssh.username), Reason::SshUsernameOk, Reason::SshUsernameUnauthorized)
            }
            Test::SshUsernameMatchesEmail => {
                let local = cx.email().split('@').next().unwrap_or_default();
                let body = input.ssh.username == Some(local);
                cx.session_rule(body, Reason::SshUsernameOk, Reason::SshUsernameUnauthorized)
            }
            Test::SshUsernameMatchesClaim(name) => {
                let values = cx.claim(name);
                let body = input.ssh.username.is_some_and(|username| {
                    values
                        .and_then(Json::as_array)
                        .is_some_and(|list| list.iter().any(|v| v.as_str() == Some(username)))
                });
                cx.session_rule(body, Reason::SshUsernameOk, Reason::SshUsernameUnauthorized)
            }
            Test::SshPublickey(keys) => {
                let body = input.ssh.publickey.is_some_and(|key| keys.iter().any(|k| k.as_ref() == key));
                plain(body, Reason::SshPublickeyOk, Reason::SshPublickeyUnauthorized)
            }
            Test::SshCa(authorities) => {
                let body = match (input.ssh.username, input.ssh.publickey) {
                    (Some(username), Some(key)) => verify_ssh_user_certificate(key, username, authorities, input.now),
                    _ => false,
                };
                plain(body, Reason::SshPublickeyOk, Reason::SshPublickeyUnauthorized)
            }
            Test::Date(m) => plain(crate::time::date_matches(m, input.now), Reason::DateOk, Reason::DateUnauthorized),
            Test::DayOfWeek(days) => {
                plain(crate::time::day_matches(*days, input.now), Reason::DayOfWeekOk, Reason::DayOfWeekUnauthorized)
            }
            Test::TimeOfDay(m) => plain(
                crate::time::time_of_day_matches(m, input.now),
                Reason::TimeOfDayOk,
                Reason::TimeOfDayUnauthorized,
            ),
            Test::Record(m) => {
                let records = cx.records;
                let user_id = cx.principal().and_then(|p| p.user_id());
                let body =
                    user_id.is_some_and(|id| crate::reference::record_matches(m, records.external(&m.record_type, id)));
                cx.session_rule(body, Reason::RecordOk, Reason::RecordUnauthorized)
            }
        }
    }
}

impl DeviceTest {
    fn evaluate<'p>(&'p self, cx: &mut Cx<'_, '_>) -> RuleResult<'p> {
        let records = cx.records;
        let principal = cx.principal();
        let device_type: &str = &self.device_type;
        let credential = principal
            .and_then(|p| p.device_credentials().iter().find(|c| c.type_id.as_deref() == Some(device_type)))
            .and_then(|c| c.id.as_deref())
            .and_then(|id| records.device_credential(id));
        let enrollment =
            credential.and_then(|c| c.enrollment_id.as_deref()).and_then(|id| records.device_enrollment(id));
        let approved = enrollment.and_then(|e| e.approved_by.as_deref()).is_some_and(|by| !by.is_empty());
        let m = &self.matcher;
        let body = m.approved.is_none_or(|wanted| wanted == approved)
            && m.id.as_deref().is_none_or(|id| credential.is_some_and(|c| c.id == id))
            && (m.device_type.is_none() || credential.is_some());
        let reason = if body {
            Reason::DeviceOk
        } else if principal.is_some() && credential.is_some() && enrollment.is_some() {
            Reason::DeviceUnauthorized
        } else if principal.is_some() {
            Reason::DeviceUnauthenticated
        } else {
            Reason::UserUnauthenticated
        };
        RuleResult { value: body, reasons: ReasonSet::of(reason), device_type: Some(&self.device_type) }
    }
}

impl StrTest {
    fn matches(&self, left: Option<&str>) -> bool {
        self.0.iter().all(|c| c.matches(left))
    }
}

impl StrCond {
    fn matches(&self, left: Option<&str>) -> bool {
        let Some(l) = left else {
            // Undefined: only a negation holds.
            return matches!(self, StrCond::NotIn(_));
        };
        match self {
            StrCond::Never => false,
            StrCond::Defined => true,
            StrCond::Is(s) => l == s.as_ref(),
            StrCond::Not(s) => l != s.as_ref(),
            StrCond::Contains(s) => l.contains(s.as_ref()),
            StrCond::StartsWith(s) => l.starts_with(s.as_ref()),
            StrCond::EndsWith(s) => l.ends_with(s.as_ref()),
            StrCond::In(set) => set.contains(l),
            StrCond::NotIn(set) => !set.contains(l),
            StrCond::AnyOf(any) => any.matches(l),
        }
    }
}

impl AnyOf {
    fn matches(&self, s: &str) -> bool {
        self.exact.contains(s)
            || self.prefixes.0.iter().any(|(len, set)| s.get(..*len).is_some_and(|p| set.contains(p)))
            || self.suffixes.0.iter().any(|(len, set)| {
                s.len().checked_sub(*len).and_then(|start| s.get(start..)).is_some_and(|p| set.contains(p))
            })
            || match &self.substrings {
                None => false,
                Some(Substrings::Few(items)) => items.iter().any(|i| s.contains(i.as_ref())),
                Some(Substrings::Many(automaton)) => automaton.is_match(s),
            }
    }
}

impl ListTest {
    fn matches(&self, list: Option<&[Json]>) -> bool {
        let Some(list) = list else { return false };
        self.0.iter().all(|c| match c {
            ListCond::HasAny(set) => list.iter().any(|item| item.as_str().is_some_and(|s| set.contains(s))),
            ListCond::Has(v) => list.iter().any(|item| json_equals(v, item)),
            ListCond::Is(v) => list.len() == 1 && list.iter().any(|item| json_equals(v, item)),
            ListCond::Exclude(v) => !list.iter().any(|item| json_equals(v, item)),
        })
    }
}

impl IpRanges {
    fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => in_ranges(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => in_ranges(&self.v6, u128::from(v6)),
        }
    }
}

fn in_ranges<T: Ord + Copy>(ranges: &[(T, T)], value: T) -> bool {
    let after = ranges.partition_point(|(start, _)| *start <= value);
    after.checked_sub(1).and_then(|i| ranges.get(i)).is_some_and(|(_, end)| value <= *end)
}

fn certificate_matches(m: &CertificateMatcher, facts: &crate::crypto::CertificateFacts) -> bool {
    let sans = |matcher: &Option<StringMatcher>, entries: &[String]| {
        matcher.as_ref().is_none_or(|matcher| {
            matcher
                .conditions
                .iter()
                .all(|c| entries.iter().any(|entry| crate::reference::string_condition(c.op, &c.value, Some(entry))))
        })
    };
    m.fingerprints.as_ref().is_none_or(|list| list.contains(&facts.fingerprint))
        && m.spki_hashes.as_ref().is_none_or(|list| list.contains(&facts.spki_hash))
        && sans(&m.san_email, &facts.san_emails)
        && sans(&m.san_dns, &facts.san_dns)
        && sans(&m.san_uri, &facts.san_uris)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_search() {
        let merged = merge_ranges(vec![(10u32, 20), (21, 30), (5, 8), (100, 200), (150, 160)]);
        assert_eq!(merged.as_ref(), &[(5, 8), (10, 30), (100, 200)]);
        assert!(in_ranges(&merged, 10));
        assert!(in_ranges(&merged, 30));
        assert!(!in_ranges(&merged, 31));
        assert!(!in_ranges(&merged, 9));
        assert!(in_ranges(&merged, 150));
        assert!(!in_ranges(&merged, 4));
        assert!(!in_ranges(&[] as &[(u32, u32)], 4));
    }

    #[test]
    fn affix_sets_find_any_length() {
        let set = affix_set(vec!["/api/".into(), "/admin".into(), "/a".into()]);
        let any = AnyOf { prefixes: set, ..AnyOf::default() };
        assert!(any.matches("/api/users"));
        assert!(any.matches("/admin/x"));
        assert!(any.matches("/about"));
        assert!(!any.matches("/b"));
        assert!(!any.matches("é"), "a prefix length inside a character is no match, not a panic");
    }
}
