//! Errors: everything that stops a policy from compiling.
//!
//! One public enum, [`Error`], whose variants each wrap a struct with private fields (the Cedar
//! convention): the message, code, labels and help come from `thiserror` and `miette::Diagnostic`.
//! Messages are lowercase without a final period; user input is in backticks. Every code is stable
//! and listed in `docs/diagnostics.md`, which a test keeps complete.
//!
//! Where Pomerium has an equivalent error, the struct's doc comment quotes it.

use crate::value::Kind;
use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

/// Defines a diagnostic enum whose variants wrap structs that all have a primary `span` field.
macro_rules! diagnostic_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
        #[non_exhaustive]
        pub enum $name {
            $(
                #[error(transparent)]
                #[diagnostic(transparent)]
                $variant($variant),
            )+
        }

        impl $name {
            /// The primary span: where the problem is.
            pub fn span(&self) -> $crate::span::Span {
                let span = match self { $($name::$variant(inner) => inner.span,)+ };
                $crate::span::Span::new(span.offset(), span.offset() + span.len())
            }

            /// The stable code, such as `ppl::criterion::unknown`.
            pub fn code_str(&self) -> String {
                Diagnostic::code(self).map(|code| code.to_string()).unwrap_or_default()
            }

            /// The same diagnostic with every span moved `delta` bytes to the right.
            pub fn shifted(mut self, delta: usize) -> Self {
                match &mut self { $($name::$variant(inner) => inner.shift(delta),)+ }
                self
            }
        }

        $(
            impl From<$variant> for $name {
                fn from(inner: $variant) -> $name {
                    $name::$variant(inner)
                }
            }
        )+
    };
}
pub(crate) use diagnostic_enum;

/// Moves a `SourceSpan` right by `delta` bytes.
pub(crate) fn shift(span: &mut SourceSpan, delta: usize) {
    *span = SourceSpan::new((span.offset() + delta).into(), span.len());
}

/// Implements `shift` for structs from the names of their span fields.
macro_rules! shiftable {
    ($($ty:ident { $($field:ident),* $(; $($opt:ident),*)? })+) => {
        $(impl $ty {
            fn shift(&mut self, delta: usize) {
                $(crate::error::shift(&mut self.$field, delta);)*
                $($(if let Some(span) = &mut self.$opt { crate::error::shift(span, delta); })*)?
            }
        })+
    };
}
pub(crate) use shiftable;

diagnostic_enum! {
    /// A reason the policy does not compile.
    pub enum Error {
        YamlSyntax, JsonSyntax, TextSyntax, EmptyPolicy, MultipleDocuments, DuplicateKey,
        NonStringKey, UnsupportedTag, InvalidNumber, TooDeep, TooLarge, AliasLimit,
        PolicyNotRules, RuleNotObject, UnknownAction, RuleBodyNotObject, UnknownOperator,
        OperatorNotList, CriterionNotObject, CriterionKeyCount,
        UnknownCriterion, UnknownMatcherOperator, ListRequired, WrongType, InvalidIpRange,
        InvalidFingerprint, InvalidSpkiHash, UnknownField, MissingField, InvalidSshKey,
        InvalidDate, InvalidDayOfWeek, InvalidTimeOfDay, UnknownTimeZone, EmptyValue,
    }
}

shiftable! {
    YamlSyntax { span } JsonSyntax { span } TextSyntax { span } EmptyPolicy { span }
    MultipleDocuments { span } DuplicateKey { span, first } NonStringKey { span }
    UnsupportedTag { span } InvalidNumber { span } TooDeep { span } TooLarge { span }
    AliasLimit { span } PolicyNotRules { span } RuleNotObject { span } UnknownAction { span }
    RuleBodyNotObject { span } UnknownOperator { span } OperatorNotList { span }
    CriterionNotObject { span } CriterionKeyCount { span } UnknownCriterion { span }
    UnknownMatcherOperator { span } ListRequired { span } WrongType { span }
    InvalidIpRange { span } InvalidFingerprint { span } InvalidSpkiHash { span }
    UnknownField { span } MissingField { span } InvalidSshKey { span } InvalidDate { span }
    InvalidDayOfWeek { span } InvalidTimeOfDay { span } UnknownTimeZone { span }
    EmptyValue { span }
}

// ---------------------------------------------------------------------------------------------
// Reading the document (YAML, JSON, text form)
// ---------------------------------------------------------------------------------------------

/// The YAML scanner or parser rejected the text.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("invalid yaml: {detail}")]
#[diagnostic(code(ppl::syntax::yaml))]
pub struct YamlSyntax {
    pub(crate) detail: String,
    #[label("here")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// The JSON text is malformed. Pomerium: `unsupported json delimiter`, `unexpected additional
/// json value: offset=<n>`, `unexpected EOF`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("invalid json: {detail}")]
#[diagnostic(code(ppl::syntax::json))]
pub struct JsonSyntax {
    pub(crate) detail: String,
    #[label("here")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// The text form does not follow `grammar/ppl.pest`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("invalid policy text: {detail}")]
#[diagnostic(code(ppl::syntax::text))]
pub struct TextSyntax {
    pub(crate) detail: String,
    #[label("here")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `EOF` / `unexpected EOF` on an empty document.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("the policy is empty")]
#[diagnostic(
    code(ppl::syntax::empty),
    help("write `{{}}` for a policy without rules, or start a rule with `allow:` or `deny:`")
)]
pub struct EmptyPolicy {
    #[label("nothing here")]
    pub(crate) span: SourceSpan,
}

/// Pomerium reads only the first YAML document and silently drops the others.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("a policy must be a single yaml document, found a second one")]
#[diagnostic(
    code(ppl::syntax::multiple_documents),
    help(
        "pomerium would silently ignore everything after the first document; remove the `---` \
         line and put all rules in one list"
    )
)]
pub struct MultipleDocuments {
    #[label("the second document starts here")]
    pub(crate) span: SourceSpan,
}

/// Pomerium keeps the last of duplicate JSON keys without a word.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("duplicate key `{key}`")]
#[diagnostic(
    code(ppl::syntax::duplicate_key),
    help("pomerium would silently keep only the last one; merge the two or remove one")
)]
pub struct DuplicateKey {
    pub(crate) key: String,
    #[label("defined again here")]
    pub(crate) span: SourceSpan,
    #[label("first defined here")]
    pub(crate) first: SourceSpan,
}

/// Pomerium: `unsupported object key type`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("object keys must be strings, found {found}")]
#[diagnostic(code(ppl::syntax::non_string_key), help("quote the key to make it a string"))]
pub struct NonStringKey {
    pub(crate) found: Kind,
    #[label("this key")]
    pub(crate) span: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("unsupported yaml tag `{tag}`")]
#[diagnostic(
    code(ppl::syntax::unsupported_tag),
    help("policies hold plain values; remove the tag (`!!str` is the only tag that changes a value)")
)]
pub struct UnsupportedTag {
    pub(crate) tag: String,
    #[label("this tag")]
    pub(crate) span: SourceSpan,
}

/// A YAML number that JSON cannot hold (`.nan`, `.inf`); Pomerium fails to re-marshal it.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{text}` is not a number a policy can hold")]
#[diagnostic(
    code(ppl::syntax::invalid_number),
    help("policies are json values, which have no infinity or not-a-number; quote it to make it a string")
)]
pub struct InvalidNumber {
    pub(crate) text: String,
    #[label("this number")]
    pub(crate) span: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("the policy nests deeper than {limit} levels")]
#[diagnostic(code(ppl::syntax::too_deep), help("no policy needs this much nesting; flatten the data"))]
pub struct TooDeep {
    pub(crate) limit: usize,
    #[label("too deep here")]
    pub(crate) span: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("the policy is larger than the limit of {limit} bytes")]
#[diagnostic(
    code(ppl::syntax::too_large),
    help("no policy needs this much text; split it, or look for a file given by mistake")
)]
pub struct TooLarge {
    pub(crate) limit: usize,
    #[label("the policy starts here")]
    pub(crate) span: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("yaml aliases expand to more than {limit} values")]
#[diagnostic(
    code(ppl::syntax::alias_limit),
    help("aliases are copied where they are used; this many copies looks like an attack, not a policy")
)]
pub struct AliasLimit {
    pub(crate) limit: usize,
    #[label("the limit is reached here")]
    pub(crate) span: SourceSpan,
}

// ---------------------------------------------------------------------------------------------
// The shape of a policy: rules, actions, operators, criteria (ppl.md §1.2, §1.3)
// ---------------------------------------------------------------------------------------------

/// Pomerium: `invalid rules in policy: unsupported type for rule: parser.Number`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("a policy must be an object of rules or a list of them, found {found}")]
#[diagnostic(
    code(ppl::shape::policy),
    help("start the policy with `allow:` or `deny:`, e.g. `allow: {{or: [{{email: {{is: user@example.com}}}}]}}`")
)]
pub struct PolicyNotRules {
    pub(crate) found: Kind,
    #[label("expected an object or a list")]
    pub(crate) span: SourceSpan,
}

/// Pomerium: `invalid rules in policy: unsupported type for rules array: parser.Number`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("each rule must be an object with `allow` or `deny`, found {found}")]
#[diagnostic(code(ppl::shape::rule), help("write each list item as `- allow: {{...}}` or `- deny: {{...}}`"))]
pub struct RuleNotObject {
    pub(crate) found: Kind,
    #[label("expected an object")]
    pub(crate) span: SourceSpan,
}

/// Pomerium: `invalid rules in policy: invalid action in rule: unsupported action: <name>`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("unknown action `{action}`")]
#[diagnostic(code(ppl::shape::unknown_action))]
pub struct UnknownAction {
    pub(crate) action: String,
    #[label("expected `allow` or `deny`")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `invalid value for action in rule, expected Object, got parser.Array`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("the body of `{action}` must be an object of operators, found {found}")]
#[diagnostic(code(ppl::shape::rule_body))]
pub struct RuleBodyNotObject {
    pub(crate) action: &'static str,
    pub(crate) found: Kind,
    #[label("expected an object such as `{{or: [...]}}`")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `unsupported conditional "maybe", only and, or, not, nor and action are allowed`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("unknown operator `{operator}`")]
#[diagnostic(code(ppl::shape::unknown_operator))]
pub struct UnknownOperator {
    pub(crate) operator: String,
    #[label("expected `and`, `or`, `not` or `nor`")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `invalid criteria in "and"): unsupported type for criteria: parser.Object`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{operator}` must be a list of criteria, found {found}")]
#[diagnostic(
    code(ppl::shape::operator_list),
    help("write each criterion as a list item, e.g. `- email: {{is: user@example.com}}`")
)]
pub struct OperatorNotList {
    pub(crate) operator: &'static str,
    pub(crate) found: Kind,
    #[label("expected a list")]
    pub(crate) span: SourceSpan,
}

/// Pomerium: `invalid criteria in "and"): unsupported type for criteria array: parser.Number`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("each criterion must be an object with one key, found {found}")]
#[diagnostic(code(ppl::shape::criterion))]
pub struct CriterionNotObject {
    pub(crate) found: Kind,
    #[label("expected `name: data`")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `each criteria may only contain a single key and value`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("a criterion must have exactly one key, found {count}")]
#[diagnostic(code(ppl::shape::criterion_keys))]
pub struct CriterionKeyCount {
    pub(crate) count: usize,
    #[label("this criterion")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Criteria and their data (ppl.md §2)
// ---------------------------------------------------------------------------------------------

/// Pomerium: `unknown policy criterion: <name>`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("unknown criterion `{name}`")]
#[diagnostic(code(ppl::criterion::unknown))]
pub struct UnknownCriterion {
    pub(crate) name: String,
    #[label("not a criterion")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `unknown string matcher operator: <op>`, `unknown string list matcher operator: <op>`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("unknown {matcher} operator `{operator}`")]
#[diagnostic(code(ppl::criterion::unknown_operator))]
pub struct UnknownMatcherOperator {
    pub(crate) matcher: &'static str,
    pub(crate) operator: String,
    #[label("not an operator of `{criterion}`")]
    pub(crate) span: SourceSpan,
    pub(crate) criterion: String,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `in matcher requires an array of strings`, `not_in matcher requires an array of strings`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{operator}` needs a list of values, found {found}")]
#[diagnostic(code(ppl::criterion::list_required))]
pub struct ListRequired {
    pub(crate) operator: &'static str,
    pub(crate) found: Kind,
    #[label("expected a list such as `[\"a\", \"b\"]`")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// A value of the wrong kind. Pomerium: `expected object for certificate matcher, got: %T`,
/// `expected string or array of strings, got: %T`, `expected string value, got: %T`,
/// `expected object for device criterion, got: %T`, `expected string for device criterion is
/// operator, got %T`, `certificate fingerprint must be a string (was <v>)`, and the like.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("{what} must be {expected}, found {found}")]
#[diagnostic(code(ppl::criterion::wrong_type))]
pub struct WrongType {
    pub(crate) what: String,
    pub(crate) expected: &'static str,
    pub(crate) found: Kind,
    #[label("{found}")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `expected IP or CIDR range, got: "<v>"`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{text}` is not an ip address or cidr range")]
#[diagnostic(
    code(ppl::criterion::invalid_ip),
    help("write an address such as `192.0.2.7` or `2001:db8::1`, or a range such as `10.0.0.0/8`")
)]
pub struct InvalidIpRange {
    pub(crate) text: String,
    #[label("{reason}")]
    pub(crate) span: SourceSpan,
    pub(crate) reason: String,
}

/// Pomerium: `unsupported certificate fingerprint format (<v>)`, `certificate fingerprint must not
/// be empty`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{text}` is not a sha-256 certificate fingerprint")]
#[diagnostic(
    code(ppl::criterion::invalid_fingerprint),
    help(
        "write 64 hex digits (`openssl x509 -outform DER | sha256sum`) or 32 hex pairs separated \
         by `:` (`openssl x509 -noout -fingerprint -sha256`)"
    )
)]
pub struct InvalidFingerprint {
    pub(crate) text: String,
    #[label("{reason}")]
    pub(crate) span: SourceSpan,
    pub(crate) reason: String,
}

/// Pomerium: `certificate SPKI hash must be a base64-encoded SHA-256 hash (was <v>)`,
/// `certificate SPKI hash must not be empty`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{text}` is not a base64 sha-256 spki hash")]
#[diagnostic(
    code(ppl::criterion::invalid_spki_hash),
    help(
        "compute it with `openssl x509 -noout -pubkey | openssl pkey -pubin -outform DER | \
         openssl dgst -sha256 -binary | openssl enc -base64`"
    )
)]
pub struct InvalidSpkiHash {
    pub(crate) text: String,
    #[label("{reason}")]
    pub(crate) span: SourceSpan,
    pub(crate) reason: String,
}

/// Pomerium: `unsupported certificate matcher condition: <k>`, `unexpected field in device
/// criterion: <k>`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("unknown field `{field}` in `{criterion}`")]
#[diagnostic(code(ppl::criterion::unknown_field))]
pub struct UnknownField {
    pub(crate) criterion: String,
    pub(crate) field: String,
    #[label("not a field of `{criterion}`")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{criterion}` needs {field}")]
#[diagnostic(code(ppl::criterion::missing_field))]
pub struct MissingField {
    pub(crate) criterion: String,
    pub(crate) field: &'static str,
    #[label("{field} is missing here")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: the errors of Go's `ssh.ParseAuthorizedKey`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("invalid ssh public key: {reason}")]
#[diagnostic(
    code(ppl::criterion::invalid_ssh_key),
    help("use a line of an `authorized_keys` file, such as `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... user@host`")
)]
pub struct InvalidSshKey {
    pub(crate) reason: String,
    #[label("this key")]
    pub(crate) span: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{text}` is not a date and time")]
#[diagnostic(
    code(ppl::criterion::invalid_date),
    help(
        "write an iso 8601 date-time such as `2026-01-31T17:00:00Z` or `2026-01-31T17:00:00-05:00` \
         (a time without an offset is read as utc), or a date such as `2026-01-31`"
    )
)]
pub struct InvalidDate {
    pub(crate) text: String,
    #[label("{reason}")]
    pub(crate) span: SourceSpan,
    pub(crate) reason: String,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{text}` is not a day of the week")]
#[diagnostic(code(ppl::criterion::invalid_day))]
pub struct InvalidDayOfWeek {
    pub(crate) text: String,
    #[label("{reason}")]
    pub(crate) span: SourceSpan,
    pub(crate) reason: String,
    #[help]
    pub(crate) help: Option<String>,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{text}` is not a time of day")]
#[diagnostic(
    code(ppl::criterion::invalid_time),
    help("write the time as `15:04`, `15:04:05`, `15:04:05.999`, `3:04 PM`, `3:04PM`, `3 PM` or `3PM`")
)]
pub struct InvalidTimeOfDay {
    pub(crate) text: String,
    #[label("not a time")]
    pub(crate) span: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("unknown time zone `{zone}`")]
#[diagnostic(code(ppl::criterion::unknown_time_zone))]
pub struct UnknownTimeZone {
    pub(crate) zone: String,
    #[label("not an iana time zone")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `certificate fingerprint must not be empty`, `certificate SPKI hash must not be empty`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("{what} must not be empty")]
#[diagnostic(code(ppl::criterion::empty_value))]
pub struct EmptyValue {
    pub(crate) what: String,
    #[label("empty")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}
