//! The evaluation contract (shared/spec/eval-contract.md): the JSON input document, read into an
//! [`OwnedInput`] and [`MemoryRecords`], and the JSON output document.
//!
//! The input is read strictly: a field of the wrong type or an unknown field (a typo such as
//! `sesion`) is an error naming its path, so a test file cannot silently test something else.

use crate::crypto::CertificateFacts;
use crate::decision::{Decision, RuleResult, Verdict};
use crate::input::{ClientCertificate, Http, Input, Mcp, Ssh};
use crate::records::{
    DeviceCredential, DeviceEnrollment, DirectoryUser, MemoryRecords, ServiceAccount, Session, SessionDeviceCredential,
    User,
};
use base64::Engine as _;
use serde_json::{Map, Value};
use std::fmt;
use std::net::IpAddr;

/// A problem in an input document, at a path such as `http.method`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputError {
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "`{}`: {}", self.path, self.message)?;
        }
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputError {}

fn error(path: &str, message: impl Into<String>) -> InputError {
    InputError { path: path.to_owned(), message: message.into(), help: None }
}

/// An input document, owned, from which an [`Input`] borrows.
#[derive(Debug, Default)]
pub struct OwnedInput {
    pub method: Option<String>,
    pub host: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<String>,
    pub url: Option<String>,
    pub headers: Vec<(String, String)>,
    pub ip: Option<IpAddr>,
    pub presented: Option<bool>,
    pub leaf: Option<CertificateFacts>,
    pub is_valid_client_certificate: Option<bool>,
    pub session_id: Option<String>,
    pub ssh_username: Option<String>,
    pub ssh_publickey: Option<Vec<u8>>,
    pub mcp_method: Option<String>,
    pub mcp_tool: Option<String>,
    pub now: Option<jiff::Timestamp>,
    pub records: MemoryRecords,
}

impl OwnedInput {
    /// Reads an input document.
    pub fn parse(json: &str) -> Result<OwnedInput, InputError> {
        let value: Value = serde_json::from_str(json).map_err(|e| InputError {
            path: String::new(),
            message: format!("the input is not valid json: {e}"),
            help: None,
        })?;
        let top = object(&value, "")?;
        known(top, "", &["http", "is_valid_client_certificate", "session", "ssh", "mcp", "now", "records"])?;
        let mut input = OwnedInput::default();
        if let Some(http) = top.get("http") {
            input.read_http(http)?;
        }
        input.is_valid_client_certificate =
            boolean(top.get("is_valid_client_certificate"), "is_valid_client_certificate")?;
        if let Some(session) = top.get("session") {
            let session = object(session, "session")?;
            known(session, "session", &["id", "user_id"])?;
            input.session_id = string(session.get("id"), "session.id")?;
        }
        if let Some(ssh) = top.get("ssh") {
            let ssh = object(ssh, "ssh")?;
            known(ssh, "ssh", &["username", "publickey"])?;
            input.ssh_username = string(ssh.get("username"), "ssh.username")?;
            if let Some(key) = string(ssh.get("publickey"), "ssh.publickey")? {
                let bytes = base64::engine::general_purpose::STANDARD.decode(key.trim()).map_err(|_| {
                    error("ssh.publickey", "is not base64 (it is the key in ssh wire format, base64-encoded)")
                })?;
                input.ssh_publickey = Some(bytes);
            }
        }
        if let Some(mcp) = top.get("mcp") {
            let mcp = object(mcp, "mcp")?;
            known(mcp, "mcp", &["id", "method", "tool_call"])?;
            input.mcp_method = string(mcp.get("method"), "mcp.method")?;
            if let Some(call) = mcp.get("tool_call") {
                let call = object(call, "mcp.tool_call")?;
                known(call, "mcp.tool_call", &["name", "arguments"])?;
                input.mcp_tool = string(call.get("name"), "mcp.tool_call.name")?;
            }
        }
        if let Some(now) = string(top.get("now"), "now")? {
            input.now = Some(timestamp(&now, "now")?);
        }
        if let Some(records) = top.get("records") {
            let Value::Array(items) = records else {
                return Err(error("records", "expected a list of records"));
            };
            for (i, record) in items.iter().enumerate() {
                input.records.add(record, &format!("records[{i}]"))?;
            }
        }
        Ok(input)
    }

    fn read_http(&mut self, http: &Value) -> Result<(), InputError> {
        let http = object(http, "http")?;
        let fields = [
            "method",
            "host",
            "hostname",
            "path",
            "raw_path",
            "raw_query",
            "url",
            "headers",
            "ip",
            "client_certificate",
            "body",
        ];
        known(http, "http", &fields)?;
        self.method = string(http.get("method"), "http.method")?;
        self.host = string(http.get("host"), "http.host")?;
        self.hostname = string(http.get("hostname"), "http.hostname")?;
        self.path = string(http.get("path"), "http.path")?;
        self.url = string(http.get("url"), "http.url")?;
        if let Some(url) = &self.url {
            let parts = split_url(url)
                .ok_or_else(|| error("http.url", "is not an absolute url such as `https://app.example.com/path`"))?;
            self.path.get_or_insert(parts.path);
            self.host.get_or_insert(parts.host);
            self.hostname.get_or_insert(parts.hostname);
        }
        if let Some(headers) = http.get("headers") {
            for (name, value) in object(headers, "http.headers")? {
                let path = format!("http.headers.{name}");
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Array(list) => list.first().and_then(Value::as_str).unwrap_or_default().to_owned(),
                    _ => return Err(error(&path, "expected a string")),
                };
                self.headers.push((name.clone(), value));
            }
        }
        if let Some(ip) = string(http.get("ip"), "http.ip")? {
            self.ip = Some(ip.parse().map_err(|_| error("http.ip", format!("`{ip}` is not an ip address")))?);
        }
        if let Some(certificate) = http.get("client_certificate") {
            let certificate = object(certificate, "http.client_certificate")?;
            known(certificate, "http.client_certificate", &["presented", "leaf", "intermediates"])?;
            self.presented = boolean(certificate.get("presented"), "http.client_certificate.presented")?;
            // An unparseable certificate is data, not an error: the criteria see no certificate.
            self.leaf = string(certificate.get("leaf"), "http.client_certificate.leaf")?
                .and_then(|leaf| CertificateFacts::from_pem_or_base64(&leaf));
        }
        Ok(())
    }

    /// The input, borrowing from this document; `now` when the document has no clock.
    pub fn input(&self, now: jiff::Timestamp) -> Input<'_> {
        Input {
            http: Http {
                method: self.method.as_deref(),
                host: self.host.as_deref(),
                hostname: self.hostname.as_deref(),
                path: self.path.as_deref(),
                url: self.url.as_deref(),
                headers: &self.headers,
                ip: self.ip,
                client_certificate: ClientCertificate { presented: self.presented, leaf: self.leaf.as_ref() },
            },
            is_valid_client_certificate: self.is_valid_client_certificate,
            session_id: self.session_id.as_deref(),
            ssh: Ssh { username: self.ssh_username.as_deref(), publickey: self.ssh_publickey.as_deref() },
            mcp: Mcp { method: self.mcp_method.as_deref(), tool_name: self.mcp_tool.as_deref() },
            now: self.now.unwrap_or(now),
        }
    }

    /// The `Accept` header, which decides between a sign-in redirect and a 401.
    pub fn accept(&self) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("accept")).map(|(_, v)| v.as_str())
    }
}

struct UrlParts {
    host: String,
    hostname: String,
    path: String,
}

/// `scheme://host[:port]/path?query` → host, hostname, and the percent-decoded path.
fn split_url(url: &str) -> Option<UrlParts> {
    let (_, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest.get(..authority_end)?;
    if host.is_empty() {
        return None;
    }
    let after = rest.get(authority_end..)?;
    let raw_path = after.split(['?', '#']).next().unwrap_or_default();
    let hostname = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let path = if raw_path.is_empty() { "/".to_owned() } else { percent_decode(raw_path) };
    Some(UrlParts { host: host.to_owned(), hostname: hostname.to_ascii_lowercase(), path })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let decoded = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl MemoryRecords {
    /// Adds a record of the input document: `{type, id, data}`. The short type names of the
    /// contract and Pomerium's type URLs are both accepted; other types are external records.
    fn add(&mut self, record: &Value, path: &str) -> Result<(), InputError> {
        let fields = object(record, path)?;
        known(fields, path, &["type", "id", "data"])?;
        let record_type = string(fields.get("type"), &format!("{path}.type"))?
            .ok_or_else(|| error(path, "a record needs a `type`"))?;
        let id =
            string(fields.get("id"), &format!("{path}.id"))?.ok_or_else(|| error(path, "a record needs an `id`"))?;
        let empty = Map::new();
        let data = match fields.get("data") {
            Some(value) => object(value, &format!("{path}.data"))?,
            None => &empty,
        };
        if self.contains(&record_type, &id) {
            return Err(error(path, format!("a second record of type `{record_type}` with id `{id}`")));
        }
        self.read_record(&record_type, id, data, path)
    }

    /// Inserts or replaces a record from its JSON data (as the databroker stores it). Errors name
    /// the field that does not have the shape Pomerium gives it.
    pub fn upsert(&mut self, record_type: &str, id: &str, data: &Map<String, Value>) -> Result<(), InputError> {
        self.remove(record_type, id);
        self.read_record(record_type, id.to_owned(), data, &format!("{record_type}/{id}"))
    }

    /// Removes a record, if present.
    pub fn remove(&mut self, record_type: &str, id: &str) {
        match canonical_type(record_type) {
            "session" => drop(self.sessions.remove(id)),
            "user" => drop(self.users.remove(id)),
            "service_account" => drop(self.service_accounts.remove(id)),
            "directory_user" => drop(self.directory_users.remove(id)),
            "directory_group" => {}
            "device_credential" => drop(self.device_credentials.remove(id)),
            "device_enrollment" => drop(self.device_enrollments.remove(id)),
            other => {
                if let Some(of_type) = self.external.get_mut(other) {
                    of_type.remove(id);
                }
            }
        }
    }

    fn contains(&self, record_type: &str, id: &str) -> bool {
        match canonical_type(record_type) {
            "session" => self.sessions.contains_key(id),
            "user" => self.users.contains_key(id),
            "service_account" => self.service_accounts.contains_key(id),
            "directory_user" => self.directory_users.contains_key(id),
            "directory_group" => false,
            "device_credential" => self.device_credentials.contains_key(id),
            "device_enrollment" => self.device_enrollments.contains_key(id),
            other => self.external.get(other).is_some_and(|of_type| of_type.contains_key(id)),
        }
    }

    /// Reads one record's data into the map of its type (replacing any with the same id).
    fn read_record(
        &mut self,
        record_type: &str,
        id: String,
        data: &Map<String, Value>,
        path: &str,
    ) -> Result<(), InputError> {
        let at = |field: &str| format!("{path}.data.{field}");
        let text = |field: &str| string(data.get(field), &at(field)).map(|s| s.filter(|s| !s.is_empty()));
        let expires_at = match text("expires_at")? {
            Some(value) => Some(timestamp(&value, &at("expires_at"))?),
            None => None,
        };
        match canonical_type(record_type) {
            "session" => {
                let session = Session {
                    id: id.clone(),
                    user_id: text("user_id")?,
                    claims: claims(data.get("claims"), &at("claims"))?,
                    impersonate_session_id: text("impersonate_session_id")?,
                    device_credentials: device_credentials(data.get("device_credentials"), &at("device_credentials"))?,
                    expires_at,
                    id_token: nested_text(data, "id_token", "raw"),
                    access_token: nested_text(data, "oauth_token", "access_token"),
                    revision: super::records::next_revision(),
                };
                self.sessions.insert(id, session);
            }
            "user" => {
                let user = User {
                    id: id.clone(),
                    email: text("email")?,
                    claims: claims(data.get("claims"), &at("claims"))?,
                    revision: super::records::next_revision(),
                };
                self.users.insert(id, user);
            }
            "service_account" => {
                self.service_accounts.insert(id.clone(), ServiceAccount { id, user_id: text("user_id")?, expires_at });
            }
            "directory_user" => {
                let group_ids = match data.get("group_ids") {
                    None | Some(Value::Null) => None,
                    Some(Value::Array(items)) => Some(items.clone()),
                    Some(_) => return Err(error(&at("group_ids"), "expected a list of group ids")),
                };
                self.directory_users.insert(id.clone(), DirectoryUser { id, email: text("email")?, group_ids });
            }
            "directory_group" => {}
            "device_credential" => {
                let credential = DeviceCredential {
                    id: id.clone(),
                    type_id: text("type_id")?,
                    enrollment_id: text("enrollment_id")?,
                };
                self.device_credentials.insert(id, credential);
            }
            "device_enrollment" => {
                self.device_enrollments.insert(id.clone(), DeviceEnrollment { id, approved_by: text("approved_by")? });
            }
            other => {
                self.external.entry(other.to_owned()).or_default().insert(id, Value::Object(data.clone()));
            }
        }
        Ok(())
    }
}

/// `data.outer.inner` when it is non-empty text; other shapes are ignored (only templates read
/// these).
fn nested_text(data: &Map<String, Value>, outer: &str, inner: &str) -> Option<crate::records::Token> {
    data.get(outer)?.get(inner)?.as_str().filter(|s| !s.is_empty()).map(|s| crate::records::Token(s.to_owned()))
}

/// The contract's short name for a record type, from either spelling.
fn canonical_type(record_type: &str) -> &str {
    match record_type {
        "type.googleapis.com/session.Session" => "session",
        "type.googleapis.com/user.User" => "user",
        "type.googleapis.com/user.ServiceAccount" => "service_account",
        "pomerium.io/DirectoryUser" => "directory_user",
        "pomerium.io/DirectoryGroup" => "directory_group",
        "type.googleapis.com/pomerium.device.Credential" => "device_credential",
        "type.googleapis.com/pomerium.device.Enrollment" => "device_enrollment",
        other => other,
    }
}

/// Claims: name to a list of values; a single value is read as a list of one.
fn claims(value: Option<&Value>, path: &str) -> Result<Map<String, Value>, InputError> {
    let Some(value) = value else {
        return Ok(Map::new());
    };
    let mut claims = Map::new();
    for (name, values) in object(value, path)? {
        let list = match values {
            Value::Array(_) => values.clone(),
            other => Value::Array(vec![other.clone()]),
        };
        claims.insert(name.clone(), list);
    }
    Ok(claims)
}

fn device_credentials(value: Option<&Value>, path: &str) -> Result<Vec<SessionDeviceCredential>, InputError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(error(path, "expected a list"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("{path}[{i}]");
            let fields = object(item, &path)?;
            // The contract's `id`, or Pomerium's `Credential.Id`.
            let pomerium_id = fields.get("Credential").and_then(|c| c.get("Id"));
            let id = match pomerium_id {
                Some(id) => string(Some(id), &format!("{path}.Credential.Id"))?,
                None => string(fields.get("id"), &format!("{path}.id"))?,
            };
            Ok(SessionDeviceCredential { type_id: string(fields.get("type_id"), &format!("{path}.type_id"))?, id })
        })
        .collect()
}

fn object<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>, InputError> {
    value.as_object().ok_or_else(|| error(path, format!("expected an object, found {}", kind(value))))
}

fn string(value: Option<&Value>, path: &str) -> Result<Option<String>, InputError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(error(path, format!("expected a string, found {}", kind(other)))),
    }
}

fn boolean(value: Option<&Value>, path: &str) -> Result<Option<bool>, InputError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(error(path, format!("expected true or false, found {}", kind(other)))),
    }
}

fn timestamp(text: &str, path: &str) -> Result<jiff::Timestamp, InputError> {
    text.parse().map_err(|_| InputError {
        path: path.to_owned(),
        message: format!("`{text}` is not a date-time"),
        help: Some("write it in RFC 3339, such as `2026-11-22T10:00:00Z`".to_owned()),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Refuses keys the contract does not have, suggesting the one probably meant.
fn known(fields: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), InputError> {
    for key in fields.keys() {
        if !allowed.contains(&key.as_str()) {
            let at = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            return Err(InputError {
                path: at,
                message: "is not a field of the input document".to_owned(),
                help: Some(ppl::suggest::help(key, allowed, "fields here")),
            });
        }
    }
    Ok(())
}

/// The output document, in the contract's field order.
pub fn render(decision: &Decision<'_>, verdict: Verdict) -> String {
    format!(
        "{{\n  \"allow\": {},\n  \"deny\": {},\n  \"outcome\": {{\"action\": \"{}\", \"status\": {}}}\n}}\n",
        render_result(&decision.allow),
        render_result(&decision.deny),
        verdict.action(),
        verdict.status()
    )
}

fn render_result(result: &RuleResult<'_>) -> String {
    let reasons: Vec<String> = result.reasons.names().iter().map(|r| format!("\"{r}\"")).collect();
    let mut out = format!("{{\"value\": {}, \"reasons\": [{}]", result.value, reasons.join(", "));
    if let Some(device_type) = result.device_type {
        out.push_str(&format!(", \"additional_data\": {{\"device_type\": {}}}", Value::from(device_type)));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_path_host_and_hostname() {
        let input = OwnedInput::parse(r#"{"http": {"url": "https://App.example.com:8443/a%20b/c?x=1"}}"#).unwrap();
        assert_eq!(input.path.as_deref(), Some("/a b/c"));
        assert_eq!(input.host.as_deref(), Some("App.example.com:8443"));
        assert_eq!(input.hostname.as_deref(), Some("app.example.com"));
    }

    #[test]
    fn typos_and_wrong_types_are_errors_with_their_path() {
        let typo = OwnedInput::parse(r#"{"sesion": {"id": "s1"}}"#).unwrap_err();
        assert_eq!(typo.to_string(), "`sesion`: is not a field of the input document (did you mean `session`?)");
        let wrong = OwnedInput::parse(r#"{"http": {"method": 5}}"#).unwrap_err();
        assert_eq!(wrong.to_string(), "`http.method`: expected a string, found a number");
        let record =
            OwnedInput::parse(r#"{"records": [{"type": "session", "id": "s1", "data": {"expires_at": "soon"}}]}"#);
        assert_eq!(record.unwrap_err().path, "records[0].data.expires_at");
    }

    #[test]
    fn records_accept_both_type_spellings_and_normalise_claims() {
        let input = OwnedInput::parse(
            r#"{"records": [
                {"type": "type.googleapis.com/session.Session", "id": "s1", "data": {"user_id": "u1", "claims": {"groups": "eng"}}},
                {"type": "user", "id": "u1", "data": {"email": ""}},
                {"type": "example.com/hr", "id": "u1", "data": {"department": "eng"}}
            ]}"#,
        )
        .unwrap();
        let session = &input.records.sessions["s1"];
        assert_eq!(session.claims["groups"], serde_json::json!(["eng"]));
        assert_eq!(input.records.users["u1"].email, None, "an empty field is an absent one");
        assert!(input.records.external["example.com/hr"].contains_key("u1"));
    }
}
