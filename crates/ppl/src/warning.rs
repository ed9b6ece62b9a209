//! Warnings: policies that compile, and that Pomerium accepts, but that almost certainly do not
//! mean what their author wanted. `pomerium-policy check` prints them; `--deny-warnings` makes
//! them fail the check.

use crate::error::{diagnostic_enum, shiftable};
use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

diagnostic_enum! {
    /// A lint: a likely mistake in a policy that compiles.
    pub enum Warning {
        ArrayIsNotIn, HasList, NonStringOperand, NeverMatches, OperatorsAreOred,
        PublicAllowIdentityDeny, EmptyRule, EmptyBlock, EmptyPolicy, RepeatedCriterion,
        ConflictingCriteria, IgnoredSubpath, IgnoredActionKey, RedundantCriteria, DenyEverything,
        TruthyString, CidrHostBits, SuspiciousUnicode, IgnoredData, LowercaseMethod,
    }
}

shiftable! {
    ArrayIsNotIn { span } HasList { span } NonStringOperand { span } NeverMatches { span }
    OperatorsAreOred { span; second } PublicAllowIdentityDeny { span, deny } EmptyRule { span }
    EmptyBlock { span } EmptyPolicy { span } RepeatedCriterion { span, first }
    ConflictingCriteria { span, first } IgnoredSubpath { span } IgnoredActionKey { span }
    RedundantCriteria { span } DenyEverything { span } TruthyString { span } CidrHostBits { span }
    SuspiciousUnicode { span } IgnoredData { span } LowercaseMethod { span }
}

/// `email: [a, b]` compares the email with the whole list (ppl.md §2.1 "Pitfall").
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{criterion}` is compared with the whole list, so it never matches")]
#[diagnostic(code(ppl::lint::array_is_not_in), severity(Warning))]
pub struct ArrayIsNotIn {
    pub(crate) criterion: String,
    #[label("a list where one value was expected")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// `has: [a, b]` compares each element with the whole list (ppl.md §2.1).
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{operator}` with a list compares each of the user's values with the whole list, so it never matches")]
#[diagnostic(code(ppl::lint::has_list), severity(Warning))]
pub struct HasList {
    pub(crate) operator: &'static str,
    #[label("a list where one value was expected")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// A string operator given a number, boolean, null or object.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{operator}` compares a string with {found}, so it {outcome}")]
#[diagnostic(code(ppl::lint::non_string_operand), severity(Warning), help("quote the value to compare with a string"))]
pub struct NonStringOperand {
    pub(crate) operator: &'static str,
    pub(crate) found: crate::value::Kind,
    pub(crate) outcome: &'static str,
    #[label("not a string")]
    pub(crate) span: SourceSpan,
}

/// A criterion that can never be true, for a reason specific to it.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("this `{criterion}` criterion never matches: {reason}")]
#[diagnostic(code(ppl::lint::never_matches), severity(Warning))]
pub struct NeverMatches {
    pub(crate) criterion: String,
    pub(crate) reason: String,
    #[label("here")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Several operators under one action are OR-ed (ppl.md §1.4 "Multiple Operators in a Rule").
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("the {operators} blocks of this `{action}` rule are combined with or, not and")]
#[diagnostic(
    code(ppl::lint::operators_are_ored),
    severity(Warning),
    help(
        "the rule matches when any one block matches; if every condition must hold, put them all \
         in one `and` list; if either block may match, write one rule per block to say so"
    )
)]
pub struct OperatorsAreOred {
    pub(crate) action: &'static str,
    pub(crate) operators: String,
    #[label("this block")]
    pub(crate) span: SourceSpan,
    #[label("or this one")]
    pub(crate) second: Option<SourceSpan>,
}

/// `accept` beside an identity-dependent deny: anonymous users are sent to sign in (ppl.md §3.3).
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("anonymous users will be sent to sign in, although `accept` allows everyone")]
#[diagnostic(
    code(ppl::lint::public_allow_identity_deny),
    severity(Warning),
    help(
        "to decide the deny rule pomerium must know who the user is, so it redirects anonymous \
         users to the login page; if the route must stay public, make the deny rule independent \
         of identity, or move the identity check into the allow rule"
    )
)]
pub struct PublicAllowIdentityDeny {
    #[label("allows everyone")]
    pub(crate) span: SourceSpan,
    #[label("needs a signed-in user")]
    pub(crate) deny: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("this `{action}` rule has no criteria, so it never matches")]
#[diagnostic(
    code(ppl::lint::empty_rule),
    severity(Warning),
    help("add a block such as `or: [...]`, or remove the rule")
)]
pub struct EmptyRule {
    pub(crate) action: &'static str,
    #[label("empty")]
    pub(crate) span: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("this `{operator}` block is empty, so it is ignored")]
#[diagnostic(code(ppl::lint::empty_block), severity(Warning), help("add criteria to it, or remove it"))]
pub struct EmptyBlock {
    pub(crate) operator: &'static str,
    #[label("empty")]
    pub(crate) span: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("the policy has no rules, so it denies every request")]
#[diagnostic(code(ppl::lint::empty_policy), severity(Warning), help("add an `allow` rule"))]
pub struct EmptyPolicy {
    #[label("no rules")]
    pub(crate) span: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{criterion}` is repeated in this block")]
#[diagnostic(code(ppl::lint::repeated_criterion), severity(Warning), help("remove one of them"))]
pub struct RepeatedCriterion {
    pub(crate) criterion: String,
    #[label("repeated here")]
    pub(crate) span: SourceSpan,
    #[label("first here")]
    pub(crate) first: SourceSpan,
}

/// Two `is` conditions on one single-valued attribute in an `and` block.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{criterion}` cannot be both {first_value} and {second_value}, so this `and` block never matches")]
#[diagnostic(
    code(ppl::lint::conflicting_criteria),
    severity(Warning),
    help("to allow either value, use an `or` block or `{criterion}: {{in: [...]}}`")
)]
pub struct ConflictingCriteria {
    pub(crate) criterion: String,
    pub(crate) first_value: String,
    pub(crate) second_value: String,
    #[label("conflicts with the first")]
    pub(crate) span: SourceSpan,
    #[label("first")]
    pub(crate) first: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("the sub-path `{subpath}` is ignored by `{criterion}`")]
#[diagnostic(
    code(ppl::lint::ignored_subpath),
    severity(Warning),
    help("only `claim` reads a sub-path (`claim/groups`); write `{criterion}` alone")
)]
pub struct IgnoredSubpath {
    pub(crate) criterion: String,
    pub(crate) subpath: String,
    #[label("ignored")]
    pub(crate) span: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("the `action` key is ignored")]
#[diagnostic(
    code(ppl::lint::ignored_action_key),
    severity(Warning),
    help("the action of a rule is its `allow` or `deny` key; remove `action`")
)]
pub struct IgnoredActionKey {
    #[label("ignored")]
    pub(crate) span: SourceSpan,
}

/// `accept` in an `or` block makes the other criteria irrelevant; `reject` in an `and` block
/// makes the block false.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("{message}")]
#[diagnostic(code(ppl::lint::redundant_criteria), severity(Warning))]
pub struct RedundantCriteria {
    pub(crate) message: String,
    #[label("here")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("this deny rule matches every request, so the policy denies everything")]
#[diagnostic(
    code(ppl::lint::deny_everything),
    severity(Warning),
    help("deny takes precedence over allow; remove the rule or make it specific")
)]
pub struct DenyEverything {
    #[label("always true")]
    pub(crate) span: SourceSpan,
}

/// `approved: "no"` is a non-empty string, which counts as true.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{text}` is a non-empty string, so it counts as true")]
#[diagnostic(code(ppl::lint::truthy_string), severity(Warning))]
pub struct TruthyString {
    pub(crate) text: String,
    #[label("true, not false")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{text}` has host bits set; it matches all of `{network}`")]
#[diagnostic(
    code(ppl::lint::cidr_host_bits),
    severity(Warning),
    help("write `{network}` to say so, or `/32` (`/128`) for one address")
)]
pub struct CidrHostBits {
    pub(crate) text: String,
    pub(crate) network: String,
    #[label("host bits set")]
    pub(crate) span: SourceSpan,
}

/// Bidirectional controls or invisible characters in a value that is compared with identities.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("this string contains {what} (U+{code_point:04X})")]
#[diagnostic(
    code(ppl::lint::suspicious_unicode),
    severity(Warning),
    help("such characters make text look different from what it is; retype the value")
)]
pub struct SuspiciousUnicode {
    pub(crate) what: &'static str,
    pub(crate) code_point: u32,
    #[label("here")]
    pub(crate) span: SourceSpan,
}

/// `accept: false` still accepts: flag criteria ignore their data (ppl.md §2.4).
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{criterion}` ignores its data, so this value does not turn it off")]
#[diagnostic(
    code(ppl::lint::ignored_data),
    severity(Warning),
    help("to turn `{criterion}` off, remove it; to keep it, write `{criterion}: true`")
)]
pub struct IgnoredData {
    pub(crate) criterion: &'static str,
    #[label("ignored")]
    pub(crate) span: SourceSpan,
}

/// `http_method: get`: methods are compared case-sensitively and arrive upper case.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("http methods are upper case, so `{method}` never matches")]
#[diagnostic(code(ppl::lint::lowercase_method), severity(Warning), help("write `{upper}`"))]
pub struct LowercaseMethod {
    pub(crate) method: String,
    pub(crate) upper: String,
    #[label("not upper case")]
    pub(crate) span: SourceSpan,
}
