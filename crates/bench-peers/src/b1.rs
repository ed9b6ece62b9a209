//! Benchmark B1 (`shared/spec/benchmarks.md`): one decision, on twelve policies of the shapes
//! routes use, each with 1, 10 and 100 values per list, in three engines: ours (PPL compiled to
//! the decision IR), regorus on the Rego Pomerium would generate (interpreter and bytecode VM), and
//! cedar-policy on a hand-written Cedar equivalent.
//!
//! A [`Case`] is a policy family at one list size: its PPL (YAML), its Cedar, and the requests it
//! is probed with ([`Probe`]), each the [`Facts`] of one request (the HTTP request, and the
//! signed-in user's session, user and directory records) and the outcome it must get. The facts
//! are turned into each engine's input here, so that every engine sees the same request:
//! [`Facts::contract_input`] is the input document of our evaluation contract (read by ours and,
//! through `PomeriumInput::from_contract`, by regorus), [`Facts::cedar_entities`] and
//! [`Facts::cedar_context`] the Cedar side.
//!
//! The value that makes a request match is always the last of its list, so that no engine can
//! decide on the first item; the denied probes miss every item (or hit a deny rule's last one).

use serde_json::{Value as Json, json};
use std::fmt::Write as _;

/// The list sizes every family is generated with.
pub const SIZES: [usize; 3] = [1, 10, 100];

/// The clock of every probe.
pub const NOW: &str = "2026-01-01T00:00:00Z";

/// The signed-in user of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct UserFacts {
    pub email: String,
    /// Directory group ids.
    pub groups: Vec<String>,
    /// The `department` claim's values (on the user record).
    pub departments: Vec<String>,
}

/// One request: what the proxy knows when it asks for a decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    pub method: String,
    pub path: String,
    pub ip: String,
    /// `None`: no session.
    pub user: Option<UserFacts>,
}

/// The session and user ids of every probe with a user.
pub const SESSION_ID: &str = "s1";
pub const USER_ID: &str = "u1";

impl Facts {
    /// The input document of the evaluation contract: the request, the session id, and the
    /// session, user and directory user records.
    pub fn contract_input(&self) -> Json {
        let mut doc = json!({
            "http": {"method": self.method, "path": self.path, "ip": self.ip, "headers": {"Accept": "text/html"}},
            "now": NOW,
        });
        if let (Some(user), Json::Object(object)) = (&self.user, &mut doc) {
            object.insert("session".to_owned(), json!({"id": SESSION_ID}));
            object.insert(
                "records".to_owned(),
                json!([
                    {"type": "session", "id": SESSION_ID, "data": {"user_id": USER_ID, "expires_at": "2026-01-02T00:00:00Z"}},
                    {"type": "user", "id": USER_ID, "data": {"email": user.email, "claims": {"department": user.departments}}},
                    {"type": "directory_user", "id": USER_ID, "data": {"group_ids": user.groups}},
                ]),
            );
        }
        doc
    }

    /// The Cedar principal: the user, or an anonymous principal without attributes.
    pub fn cedar_principal(&self) -> &'static str {
        if self.user.is_some() { r#"User::"u1""# } else { r#"User::"anonymous""# }
    }

    /// Cedar's entities: the user, with `email` and `claims` attributes and its directory groups
    /// as parents, and the groups.
    pub fn cedar_entities(&self) -> Json {
        let Some(user) = &self.user else {
            return json!([{"uid": {"type": "User", "id": "anonymous"}, "attrs": {}, "parents": []}]);
        };
        let parents: Vec<Json> = user.groups.iter().map(|g| json!({"type": "Group", "id": g})).collect();
        let mut entities = vec![json!({
            "uid": {"type": "User", "id": USER_ID},
            "attrs": {"email": user.email, "claims": {"department": user.departments}},
            "parents": parents,
        })];
        entities
            .extend(user.groups.iter().map(|g| json!({"uid": {"type": "Group", "id": g}, "attrs": {}, "parents": []})));
        Json::Array(entities)
    }

    /// Cedar's context: the method, the path, and the address as an `ipaddr` value.
    pub fn cedar_context(&self) -> Json {
        json!({
            "method": self.method,
            "path": self.path,
            "ip": {"__extn": {"fn": "ip", "arg": self.ip}},
        })
    }
}

/// A request a case is probed with, and the outcome it must get.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// `allowed` or `denied`.
    pub label: &'static str,
    pub facts: Facts,
    pub allowed: bool,
}

/// A policy family at one list size.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub family: &'static str,
    pub size: usize,
    /// The policy, in YAML.
    pub ppl: String,
    /// The same policy in Cedar.
    pub cedar: String,
    /// The allowed probe first, then the denied one.
    pub probes: Vec<Probe>,
}

impl Case {
    /// `family/size`, the name benches and scripts select a case by.
    pub fn name(&self) -> String {
        format!("{}/{}", self.family, self.size)
    }

    /// The probe labelled `label`.
    pub fn probe(&self, label: &str) -> Option<&Probe> {
        self.probes.iter().find(|p| p.label == label)
    }
}

/// The twelve families, in the order tables list them.
pub const FAMILIES: [&str; 12] = [
    "email_in",
    "allowed_users",
    "domain",
    "groups",
    "claim",
    "http_method",
    "http_path",
    "source_ip",
    "admin_panel",
    "public_blocklist",
    "not",
    "nor",
];

/// Every case: each family at each size.
pub fn cases() -> Vec<Case> {
    FAMILIES.iter().flat_map(|family| SIZES.iter().filter_map(move |&size| case(family, size))).collect()
}

/// The case `family/size` (`email_in/10`).
pub fn find(name: &str) -> Option<Case> {
    let (family, size) = name.split_once('/')?;
    let family = FAMILIES.iter().find(|f| **f == family)?;
    case(family, size.parse().ok()?)
}

fn user(email: &str) -> UserFacts {
    UserFacts {
        email: email.to_owned(),
        groups: (0..9).map(|i| format!("team{i}")).collect(),
        departments: vec!["sales".to_owned(), "support".to_owned()],
    }
}

fn request(method: &str, path: &str, ip: &str, user: Option<UserFacts>) -> Facts {
    Facts { method: method.to_owned(), path: path.to_owned(), ip: ip.to_owned(), user }
}

fn probe(label: &'static str, facts: Facts, allowed: bool) -> Probe {
    Probe { label, facts, allowed }
}

/// A YAML flow list of strings: `["a", "b"]`.
fn yaml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A Cedar set literal of strings.
fn cedar_set(items: &[String]) -> String {
    yaml_list(items)
}

/// `- <criterion>` lines, one per item, indented for a block's list.
fn criteria_lines(items: &[String], criterion: impl Fn(&str) -> String) -> String {
    items.iter().fold(String::new(), |mut out, item| {
        let _ = writeln!(out, "    - {}", criterion(item));
        out
    })
}

/// `a || b || ...` over the items.
fn cedar_any(items: &[String], test: impl Fn(&str) -> String) -> String {
    items.iter().map(|item| test(item)).collect::<Vec<_>>().join(" || ")
}

fn emails(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@example.com")).collect()
}

/// `n - 1` other values, then `last`.
fn ending_with(n: usize, other: impl Fn(usize) -> String, last: &str) -> Vec<String> {
    let mut items: Vec<String> = (0..n.saturating_sub(1)).map(other).collect();
    items.push(last.to_owned());
    items
}

/// `n` /24 networks in 10.0.0.0/8 (the last is 10.0.<n-1>.0/24 when n ≤ 256).
fn cidrs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256)).collect()
}

/// An address in the last of [`cidrs`]`(n)`.
fn address_in_last(n: usize) -> String {
    let i = n.saturating_sub(1);
    format!("10.{}.{}.7", i / 256, i % 256)
}

fn cedar_in_ranges(ranges: &[String]) -> String {
    cedar_any(ranges, |r| format!("context.ip.isInRange(ip(\"{r}\"))"))
}

fn case(family: &'static str, n: usize) -> Option<Case> {
    let list = emails(n);
    let last_email = list.last().cloned().unwrap_or_default();
    let stranger = "mallory@example.net";
    let (ppl, cedar, probes) = match family {
        // `email: {in: [...]}`: a set look-up.
        "email_in" => (
            format!("allow:\n  or:\n    - email: {{in: {}}}\n", yaml_list(&list)),
            format!("permit(principal, action, resource) when {{ {}.contains(principal.email) }};\n", cedar_set(&list)),
            vec![
                probe("allowed", request("GET", "/", "192.0.2.1", Some(user(&last_email))), true),
                probe("denied", request("GET", "/", "192.0.2.1", Some(user(stranger))), false),
            ],
        ),
        // `allowed_users` as Pomerium writes it: one `email: {is: ...}` per user, OR-ed.
        "allowed_users" => (
            format!("allow:\n  or:\n{}", criteria_lines(&list, |e| format!("email: {{is: \"{e}\"}}"))),
            format!(
                "permit(principal, action, resource) when {{ {} }};\n",
                cedar_any(&list, |e| format!("principal.email == \"{e}\""))
            ),
            vec![
                probe("allowed", request("GET", "/", "192.0.2.1", Some(user(&last_email))), true),
                probe("denied", request("GET", "/", "192.0.2.1", Some(user(stranger))), false),
            ],
        ),
        // `allowed_domains`: one `domain: {is: ...}` per domain, OR-ed. Cedar has no `split`: the
        // domain is matched as an email suffix.
        "domain" => {
            let domains = ending_with(n, |i| format!("corp{i}.example.org"), "example.com");
            (
                format!("allow:\n  or:\n{}", criteria_lines(&domains, |d| format!("domain: {{is: \"{d}\"}}"))),
                format!(
                    "permit(principal, action, resource) when {{ {} }};\n",
                    cedar_any(&domains, |d| format!("principal.email like \"*@{d}\""))
                ),
                vec![
                    probe("allowed", request("GET", "/", "192.0.2.1", Some(user("alice@example.com"))), true),
                    probe("denied", request("GET", "/", "192.0.2.1", Some(user(stranger))), false),
                ],
            )
        }
        // Directory groups: one `groups: {has: ...}` per group, OR-ed; the user is in nine other
        // groups and the last listed one. Cedar: the groups are the user's parents.
        "groups" => {
            let groups = ending_with(n, |i| format!("group{i}"), "admins");
            let mut member = user("alice@example.com");
            member.groups.push("admins".to_owned());
            (
                format!("allow:\n  or:\n{}", criteria_lines(&groups, |g| format!("groups: {{has: \"{g}\"}}"))),
                format!(
                    "permit(principal, action, resource) when {{ principal in [{}] }};\n",
                    groups.iter().map(|g| format!("Group::\"{g}\"")).collect::<Vec<_>>().join(", ")
                ),
                vec![
                    probe("allowed", request("GET", "/", "192.0.2.1", Some(member)), true),
                    probe("denied", request("GET", "/", "192.0.2.1", Some(user("alice@example.com"))), false),
                ],
            )
        }
        // `allowed_idp_claims`: one `claim/department: <value>` per value, OR-ed.
        "claim" => {
            let departments = ending_with(n, |i| format!("dept{i}"), "engineering");
            let mut engineer = user("alice@example.com");
            engineer.departments.push("engineering".to_owned());
            (
                format!("allow:\n  or:\n{}", criteria_lines(&departments, |d| format!("claim/department: \"{d}\""))),
                format!(
                    "permit(principal, action, resource) when {{ principal.claims.department.containsAny({}) }};\n",
                    cedar_set(&departments)
                ),
                vec![
                    probe("allowed", request("GET", "/", "192.0.2.1", Some(engineer)), true),
                    probe("denied", request("GET", "/", "192.0.2.1", Some(user("alice@example.com"))), false),
                ],
            )
        }
        // `http_method: {in: [...]}`, no session needed.
        "http_method" => {
            let methods = ending_with(n, |i| format!("METHOD{i}"), "GET");
            (
                format!("allow:\n  and:\n    - http_method: {{in: {}}}\n", yaml_list(&methods)),
                format!(
                    "permit(principal, action, resource) when {{ {}.contains(context.method) }};\n",
                    cedar_set(&methods)
                ),
                vec![
                    probe("allowed", request("GET", "/", "192.0.2.1", None), true),
                    probe("denied", request("POST", "/", "192.0.2.1", None), false),
                ],
            )
        }
        // Path prefixes: one `http_path: {starts_with: ...}` per prefix, OR-ed.
        "http_path" => {
            let prefixes = ending_with(n, |i| format!("/app{i}/"), "/public/");
            (
                format!(
                    "allow:\n  or:\n{}",
                    criteria_lines(&prefixes, |p| format!("http_path: {{starts_with: \"{p}\"}}"))
                ),
                format!(
                    "permit(principal, action, resource) when {{ {} }};\n",
                    cedar_any(&prefixes, |p| format!("context.path like \"{p}*\""))
                ),
                vec![
                    probe("allowed", request("GET", "/public/index.html", "192.0.2.1", None), true),
                    probe("denied", request("GET", "/private/index.html", "192.0.2.1", None), false),
                ],
            )
        }
        // `source_ip` with a list of CIDRs.
        "source_ip" => {
            let ranges = cidrs(n);
            (
                format!("allow:\n  or:\n    - source_ip: {}\n", yaml_list(&ranges)),
                format!("permit(principal, action, resource) when {{ {} }};\n", cedar_in_ranges(&ranges)),
                vec![
                    probe("allowed", request("GET", "/", &address_in_last(n), None), true),
                    probe("denied", request("GET", "/", "192.168.1.1", None), false),
                ],
            )
        }
        // An admin panel: the company's admins may use it, except its internal paths (one deny
        // criterion per prefix) and destructive methods.
        "admin_panel" => {
            let prefixes: Vec<String> = (0..n).map(|i| format!("/internal{i}/")).collect();
            let mut admin = user("alice@example.com");
            admin.groups.push("admins".to_owned());
            let deny_paths = criteria_lines(&prefixes, |p| format!("http_path: {{starts_with: \"{p}\"}}"));
            (
                format!(
                    "allow:\n  and:\n    - domain: {{is: example.com}}\n    - groups: {{has: admins}}\n\
                     deny:\n  or:\n{deny_paths}    - http_method: {{in: [DELETE, PATCH]}}\n"
                ),
                format!(
                    "permit(principal, action, resource) when {{ principal.email like \"*@example.com\" && principal in Group::\"admins\" }};\n\
                     forbid(principal, action, resource) when {{ {} || [\"DELETE\", \"PATCH\"].contains(context.method) }};\n",
                    cedar_any(&prefixes, |p| format!("context.path like \"{p}*\""))
                ),
                vec![
                    probe("allowed", request("GET", "/dashboard", "192.0.2.1", Some(admin.clone())), true),
                    probe(
                        "denied",
                        request("GET", &format!("/internal{}/keys", n - 1), "192.0.2.1", Some(admin)),
                        false,
                    ),
                ],
            )
        }
        // A public route with a block list: `accept`, and a deny of `reject` (never) or the blocked
        // networks.
        "public_blocklist" => {
            let ranges = cidrs(n);
            (
                format!(
                    "allow:\n  or:\n    - accept: true\ndeny:\n  or:\n    - reject: true\n    - source_ip: {}\n",
                    yaml_list(&ranges)
                ),
                format!(
                    "permit(principal, action, resource);\nforbid(principal, action, resource) when {{ {} }};\n",
                    cedar_in_ranges(&ranges)
                ),
                vec![
                    probe("allowed", request("GET", "/", "192.168.1.1", None), true),
                    probe("denied", request("GET", "/", &address_in_last(n), None), false),
                ],
            )
        }
        // `not`: neither a blocked user nor a blocked network.
        "not" => {
            let ranges = cidrs(n);
            (
                format!(
                    "allow:\n  not:\n    - email: {{in: {}}}\n    - source_ip: {}\n",
                    yaml_list(&list),
                    yaml_list(&ranges)
                ),
                format!(
                    "permit(principal, action, resource) when {{ !{}.contains(principal.email) && !({}) }};\n",
                    cedar_set(&list),
                    cedar_in_ranges(&ranges)
                ),
                vec![
                    probe("allowed", request("GET", "/", "192.168.1.1", Some(user(stranger))), true),
                    probe("denied", request("GET", "/", "192.168.1.1", Some(user(&last_email))), false),
                ],
            )
        }
        // `nor` (NAND): listed users may not use the listed methods.
        "nor" => {
            let methods = ending_with(n, |i| format!("METHOD{i}"), "DELETE");
            (
                format!(
                    "allow:\n  nor:\n    - email: {{in: {}}}\n    - http_method: {{in: {}}}\n",
                    yaml_list(&list),
                    yaml_list(&methods)
                ),
                format!(
                    "permit(principal, action, resource) when {{ !{}.contains(principal.email) || !{}.contains(context.method) }};\n",
                    cedar_set(&list),
                    cedar_set(&methods)
                ),
                vec![
                    probe("allowed", request("GET", "/", "192.0.2.1", Some(user(&last_email))), true),
                    probe("denied", request("DELETE", "/", "192.0.2.1", Some(user(&last_email))), false),
                ],
            )
        }
        _ => return None,
    };
    Some(Case { family, size: n, ppl, cedar, probes })
}
