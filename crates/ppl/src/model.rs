//! The checked policy: the AST with every criterion's data parsed into what it means.
//!
//! "Parse, don't validate": a [`Policy`] here can only be built by [`crate::check`], so the
//! decision engine never sees a malformed CIDR, fingerprint, key or time zone. Spans are kept so
//! that an explanation of a decision can point back at the source.

use crate::ast::{Action, Operator};
use crate::span::Span;
use crate::value::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

impl Policy {
    /// The policy with no rules, which allows nothing: what a route without a `policy` runs. The one
    /// `Policy` built outside [`crate::check`]; it is valid because it holds no criterion.
    pub fn empty() -> Policy {
        Policy { rules: Vec::new() }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub action: Action,
    pub blocks: Vec<Block>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub operator: Operator,
    pub criteria: Vec<Criterion>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Criterion {
    pub kind: CriterionKind,
    /// The key, e.g. `claim/groups`.
    pub key_span: Span,
    /// The whole criterion, key and data.
    pub span: Span,
}

/// What a criterion tests (ppl.md §2.4; the last four are Pomerium Enterprise's, ours in the open).
#[derive(Clone, Debug, PartialEq)]
pub enum CriterionKind {
    Accept,
    Reject,
    AuthenticatedUser,
    /// The user id (the identity provider's subject).
    User(StringMatcher),
    Email(StringMatcher),
    Domain(StringMatcher),
    /// A claim of the session or user, by name (the sub-path).
    Claim {
        name: String,
        matcher: ListMatcher,
    },
    Groups(ListMatcher),
    HttpMethod(StringMatcher),
    HttpPath(StringMatcher),
    CorsPreflight,
    /// Networks, IPv4-mapped IPv6 ranges already converted to IPv4.
    SourceIp(Vec<ipnet::IpNet>),
    ClientCertificate(CertificateMatcher),
    InvalidClientCertificate,
    Device(DeviceMatcher),
    McpTool(StringMatcher),
    SshUsername(StringMatcher),
    SshUsernameMatchesEmail,
    SshUsernameMatchesClaim(String),
    SshPublickey(Vec<SshKey>),
    SshCa(Vec<SshKey>),
    Date(DateMatcher),
    DayOfWeek(DaySet),
    TimeOfDay(TimeOfDayMatcher),
    Record(RecordMatcher),
}

/// Conditions on one string, all of which must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct StringMatcher {
    pub conditions: Vec<StringCondition>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StringCondition {
    pub op: StringOp,
    /// The right-hand side; a list for `in` and `not_in`, any JSON value for the others.
    pub value: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StringOp {
    Is,
    Not,
    Contains,
    StartsWith,
    EndsWith,
    In,
    NotIn,
}

impl StringOp {
    pub const ALL: [StringOp; 7] = [
        StringOp::Is,
        StringOp::Not,
        StringOp::Contains,
        StringOp::StartsWith,
        StringOp::EndsWith,
        StringOp::In,
        StringOp::NotIn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StringOp::Is => "is",
            StringOp::Not => "not",
            StringOp::Contains => "contains",
            StringOp::StartsWith => "starts_with",
            StringOp::EndsWith => "ends_with",
            StringOp::In => "in",
            StringOp::NotIn => "not_in",
        }
    }

    pub fn from_name(name: &str) -> Option<StringOp> {
        StringOp::ALL.into_iter().find(|op| op.as_str() == name)
    }
}

/// Conditions on a list of values (a claim, the groups), all of which must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct ListMatcher {
    pub conditions: Vec<ListCondition>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListCondition {
    pub op: ListOp,
    pub value: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListOp {
    /// Some element equals the value.
    Has,
    /// The list is exactly `[value]`.
    Is,
    /// No element equals the value.
    Exclude,
}

impl ListOp {
    pub const ALL: [ListOp; 3] = [ListOp::Has, ListOp::Is, ListOp::Exclude];

    pub fn as_str(self) -> &'static str {
        match self {
            ListOp::Has => "has",
            ListOp::Is => "is",
            ListOp::Exclude => "exclude",
        }
    }

    pub fn from_name(name: &str) -> Option<ListOp> {
        ListOp::ALL.into_iter().find(|op| op.as_str() == name)
    }
}

/// `client_certificate`: every present field must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CertificateMatcher {
    /// SHA-256 of the DER certificate; one must equal the certificate's.
    pub fingerprints: Option<Vec<[u8; 32]>>,
    /// SHA-256 of the SubjectPublicKeyInfo; one must equal the certificate's.
    pub spki_hashes: Option<Vec<[u8; 32]>>,
    pub san_email: Option<StringMatcher>,
    pub san_dns: Option<StringMatcher>,
    pub san_uri: Option<StringMatcher>,
}

/// `device`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceMatcher {
    /// The device credential id must equal this.
    pub id: Option<String>,
    /// The enrollment must be approved (true) or not (false).
    pub approved: Option<bool>,
    /// The credential type; `any` when absent.
    pub device_type: Option<String>,
}

/// An SSH public key in the wire format, as `input.ssh.publickey` carries it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SshKey {
    pub algorithm: String,
    pub blob: Vec<u8>,
}

/// `date`: the request time is at or after `after` and before `before` (a half-open interval).
#[derive(Clone, Debug, PartialEq)]
pub struct DateMatcher {
    pub after: Option<jiff::Timestamp>,
    pub before: Option<jiff::Timestamp>,
}

/// `day_of_week`: a set of weekdays, Monday = bit 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DaySet(pub u8);

impl DaySet {
    pub const ALL: DaySet = DaySet(0b111_1111);

    pub fn contains(self, weekday: jiff::civil::Weekday) -> bool {
        self.0 & (1 << weekday.to_monday_zero_offset()) != 0
    }
}

/// `time_of_day`: the wall-clock time in `zone` is after `after` and before `before`. When
/// `after` is later than `before` the window wraps past midnight.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeOfDayMatcher {
    pub zone_name: String,
    pub zone: jiff::tz::TimeZone,
    pub after: Option<jiff::civil::Time>,
    pub before: Option<jiff::civil::Time>,
}

/// `record`: a field of an external data record.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordMatcher {
    pub record_type: String,
    pub field: Option<String>,
    pub conditions: Vec<RecordCondition>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RecordCondition {
    pub op: RecordOp,
    pub value: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordOp {
    String(StringOp),
    /// `has` and `exclude` (`is` is read as the string operator, and also matches a one-element list).
    List(ListOp),
    Exists,
    Less,
    LessOrEqual,
    Equal,
    Greater,
    GreaterOrEqual,
}
