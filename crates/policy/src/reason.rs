//! Reasons: the strings Pomerium attaches to every criterion result, and sets of them.
//!
//! A [`ReasonSet`] is a bit set in one `u64`, so that combining results costs an `or` instruction
//! and no allocation. The variants are declared in the alphabetical order of their names, so
//! iterating the bits yields the sorted list the evaluation contract prints.

use std::fmt;

macro_rules! reasons {
    ($($variant:ident = $name:literal,)+) => {
        /// One reason (ppl.md §2.2). The last eight are ours, for the criteria Pomerium documents
        /// for its Enterprise edition without giving their reasons.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Reason {
            $($variant,)+
        }

        impl Reason {
            /// Every reason, in the order of its name.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)+
                }
            }

            pub fn from_name(name: &str) -> Option<Reason> {
                match name {
                    $($name => Some(Reason::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    Accept = "accept",
    ClaimOk = "claim-ok",
    ClaimUnauthorized = "claim-unauthorized",
    ClientCertificateOk = "client-certificate-ok",
    ClientCertificateRequired = "client-certificate-required",
    ClientCertificateUnauthorized = "client-certificate-unauthorized",
    CorsRequest = "cors-request",
    DateOk = "date-ok",
    DateUnauthorized = "date-unauthorized",
    DayOfWeekOk = "day-of-week-ok",
    DayOfWeekUnauthorized = "day-of-week-unauthorized",
    DeviceOk = "device-ok",
    DeviceUnauthenticated = "device-unauthenticated",
    DeviceUnauthorized = "device-unauthorized",
    DomainOk = "domain-ok",
    DomainUnauthorized = "domain-unauthorized",
    EmailOk = "email-ok",
    EmailUnauthorized = "email-unauthorized",
    GroupsOk = "groups-ok",
    GroupsUnauthorized = "groups-unauthorized",
    HttpMethodOk = "http-method-ok",
    HttpMethodUnauthorized = "http-method-unauthorized",
    HttpPathOk = "http-path-ok",
    HttpPathUnauthorized = "http-path-unauthorized",
    InvalidClientCertificate = "invalid-client-certificate",
    McpNotAToolCall = "mcp-not-a-tool-call",
    McpToolMatch = "mcp-tool-match",
    McpToolNoMatch = "mcp-tool-no-match",
    NonCorsRequest = "non-cors-request",
    NonPomeriumRoute = "non-pomerium-route",
    PomeriumRoute = "pomerium-route",
    RecordOk = "record-ok",
    RecordUnauthorized = "record-unauthorized",
    Reject = "reject",
    RouteNotFound = "route-not-found",
    SourceIpOk = "source-ip-ok",
    SourceIpUnauthorized = "source-ip-unauthorized",
    SshPublickeyOk = "ssh-publickey-ok",
    SshPublickeyUnauthorized = "ssh-publickey-unauthorized",
    SshUsernameOk = "ssh-username-ok",
    SshUsernameUnauthorized = "ssh-username-unauthorized",
    TimeOfDayOk = "time-of-day-ok",
    TimeOfDayUnauthorized = "time-of-day-unauthorized",
    UserOk = "user-ok",
    UserUnauthenticated = "user-unauthenticated",
    UserUnauthorized = "user-unauthorized",
    ValidClientCertificate = "valid-client-certificate",
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of reasons.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReasonSet(u64);

impl ReasonSet {
    pub const EMPTY: ReasonSet = ReasonSet(0);

    pub const fn of(reason: Reason) -> ReasonSet {
        ReasonSet(1 << reason as u8)
    }

    pub fn contains(self, reason: Reason) -> bool {
        self.0 & (1 << reason as u8) != 0
    }

    pub fn insert(&mut self, reason: Reason) {
        self.0 |= 1 << reason as u8;
    }

    pub fn union(self, other: ReasonSet) -> ReasonSet {
        ReasonSet(self.0 | other.0)
    }

    /// Whether every reason of `other` is already here.
    pub fn covers(self, other: ReasonSet) -> bool {
        other.0 & !self.0 == 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The reasons, sorted by name.
    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL.iter().copied().filter(move |r| self.contains(*r))
    }

    /// The names, sorted: what the evaluation contract prints.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Reason::as_str).collect()
    }
}

impl FromIterator<Reason> for ReasonSet {
    fn from_iter<I: IntoIterator<Item = Reason>>(iter: I) -> ReasonSet {
        let mut set = ReasonSet::EMPTY;
        for reason in iter {
            set.insert(reason);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_declared_in_name_order_and_fit_a_u64() {
        let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "iterating bits must give sorted names");
        assert!(Reason::ALL.len() <= 64);
        for reason in Reason::ALL {
            assert_eq!(Reason::from_name(reason.as_str()), Some(*reason));
        }
    }

    #[test]
    fn sets_combine_without_duplicates() {
        let a: ReasonSet = [Reason::EmailOk, Reason::Accept].into_iter().collect();
        let b = ReasonSet::of(Reason::EmailOk);
        assert_eq!(a.union(b).names(), vec!["accept", "email-ok"]);
        assert!(a.covers(b));
        assert!(!b.covers(a));
    }
}
