//! The Rego module Pomerium would generate for a policy, evaluated by regorus.
//!
//! [`RegorusPeer`] loads the module [`policy::rego::emit`] produces and evaluates
//! `data.pomerium.policy.allow` and `.deny` against Pomerium's input document, which
//! [`PomeriumInput::from_contract`] builds from the input document of our evaluation contract
//! (`shared/spec/eval-contract.md`). What OPA gives Pomerium and regorus lacks is supplied as
//! extensions:
//!
//! - `get_databroker_record(type, id)`: Pomerium's record look-up, serving the input's `records`
//!   (converted to Rego values once per input, as our engine reads records parsed once)
//!   (short type names mapped to Pomerium's type URLs); a record whose `expires_at` is before the
//!   clock is absent (`null`), as in Pomerium's store. Records reach Rego as Pomerium's store
//!   makes them: with an `id`, empty-string fields removed, claims as lists, and a session's device
//!   credentials spelled `{"type_id": ..., "Credential": {"Id": ...}}` (the protobuf oneof as Go's
//!   `encoding/json` writes it).
//! - `ssh_verify_user_cert(principal, key, cas)`: [`policy::crypto::verify_ssh_user_certificate`].
//! - `net.cidr_contains`: OPA's reads an IPv4-mapped IPv6 address as IPv4, as Go does; regorus's
//!   does not (and its `net` feature needs `arc` to compile), so this one replaces it.
//! - `crypto.x509.parse_certificates` and `crypto.sha256`: OPA built-ins regorus does not have.
//!   The certificate objects carry the fields Pomerium's Rego reads, named as OPA (Go's
//!   `x509.Certificate`) names them: `Raw`, `RawSubjectPublicKeyInfo` (base64 of the DER), and
//!   `EmailAddresses`, `DNSNames`, `URIStrings`.
//! - `base64.decode`, `base64.encode`, `hex.decode`: OPA's strings are byte strings, regorus's are
//!   UTF-8, and Pomerium hashes decoded DER (`crypto.sha256(base64.decode(cert.Raw))`). These three
//!   replace regorus's (which decode lossily) and carry bytes that are not UTF-8 as a string of
//!   private-use characters U+F700 + byte, which `crypto.sha256` and `base64.encode` read back as
//!   bytes. A text string is never changed.
//!
//! Built-in errors make the expression undefined (regorus's non-strict mode, as OPA runs for
//! Pomerium), and so do the extensions on bad arguments.

use base64::Engine as _;
use jiff::Timestamp;
use regorus::Value as RegoValue;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

/// The record types of the contract's short names (eval-contract.md).
pub const RECORD_TYPES: &[(&str, &str)] = &[
    ("session", "type.googleapis.com/session.Session"),
    ("user", "type.googleapis.com/user.User"),
    ("service_account", "type.googleapis.com/user.ServiceAccount"),
    ("directory_user", "pomerium.io/DirectoryUser"),
    ("directory_group", "pomerium.io/DirectoryGroup"),
    ("device_credential", "type.googleapis.com/pomerium.device.Credential"),
    ("device_enrollment", "type.googleapis.com/pomerium.device.Enrollment"),
];

const SESSION_TYPE: &str = "type.googleapis.com/session.Session";
const USER_TYPE: &str = "type.googleapis.com/user.User";

/// Something went wrong outside the policy: the module does not load, the input is malformed,
/// or regorus failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerError(pub String);

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PeerError {}

fn error(context: &str, e: impl fmt::Display) -> PeerError {
    PeerError(format!("{context}: {e}"))
}

/// One action's result as the evaluation contract prints it.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionResult {
    pub value: bool,
    /// Sorted, without duplicates.
    pub reasons: Vec<String>,
    /// Present only when non-empty.
    pub additional_data: Option<Map<String, Json>>,
}

impl ActionResult {
    /// `{"value": ..., "reasons": [...]}`, with `additional_data` when there is some.
    pub fn to_json(&self) -> Json {
        let mut object = Map::new();
        object.insert("value".to_owned(), Json::Bool(self.value));
        object.insert("reasons".to_owned(), Json::Array(self.reasons.iter().cloned().map(Json::String).collect()));
        if let Some(data) = &self.additional_data {
            object.insert("additional_data".to_owned(), Json::Object(data.clone()));
        }
        Json::Object(object)
    }

    /// Reads `[value, reasons, additional_data?]` (or a bare boolean), as Pomerium's
    /// `getRuleResult` does; anything else is `false` with no reasons.
    pub fn from_rule_result(result: &Json) -> ActionResult {
        let (value, reasons, data) = match result {
            Json::Bool(b) => (*b, None, None),
            Json::Array(items) => (
                items.first().and_then(Json::as_bool).unwrap_or(false),
                items.get(1).and_then(Json::as_array),
                items.get(2).and_then(Json::as_object),
            ),
            _ => (false, None, None),
        };
        let mut reasons: Vec<String> =
            reasons.map(|r| r.iter().filter_map(Json::as_str).map(str::to_owned).collect()).unwrap_or_default();
        reasons.sort();
        reasons.dedup();
        ActionResult { value, reasons, additional_data: data.filter(|d| !d.is_empty()).cloned() }
    }
}

/// `allow` and `deny`.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerDecision {
    pub allow: ActionResult,
    pub deny: ActionResult,
}

impl PeerDecision {
    pub fn to_json(&self) -> Json {
        let mut object = Map::new();
        object.insert("allow".to_owned(), self.allow.to_json());
        object.insert("deny".to_owned(), self.deny.to_json());
        Json::Object(object)
    }
}

/// Pomerium's input document, the records its look-up serves, and the clock.
#[derive(Clone, Debug, PartialEq)]
pub struct PomeriumInput {
    /// `http`, `session`, `is_valid_client_certificate`, `ssh`, `mcp`, `now`.
    pub input: Json,
    /// By (type URL, id), live at `now`, as Pomerium's store hands them to Rego.
    pub records: HashMap<RecordKey, Json>,
    pub now: Timestamp,
}

impl PomeriumInput {
    /// Builds Pomerium's input from the contract's input document; `default_now` is the clock
    /// when the document has no `now`.
    pub fn from_contract(doc: &Json, default_now: Timestamp) -> Result<PomeriumInput, PeerError> {
        let doc = doc.as_object().ok_or_else(|| PeerError("the input document is not an object".to_owned()))?;
        let now = match doc.get("now") {
            Some(Json::String(text)) => {
                text.parse::<Timestamp>().map_err(|e| error("`now` is not an RFC 3339 time", e))?
            }
            Some(_) => return Err(PeerError("`now` is not a string".to_owned())),
            None => default_now,
        };
        let mut input = Map::new();
        if let Some(http) = doc.get("http") {
            input.insert("http".to_owned(), http_input(http)?);
        }
        for key in ["is_valid_client_certificate", "ssh", "mcp"] {
            if let Some(value) = doc.get(key) {
                input.insert(key.to_owned(), value.clone());
            }
        }
        // Pomerium's input always has `session.id` (a Go string field without `omitempty`),
        // empty when the request has no session.
        let mut session = doc.get("session").and_then(Json::as_object).cloned().unwrap_or_default();
        session.entry("id".to_owned()).or_insert_with(|| Json::String(String::new()));
        input.insert("session".to_owned(), Json::Object(session));
        input.insert("now".to_owned(), Json::String(now.to_string()));
        let mut records = HashMap::new();
        if let Some(list) = doc.get("records") {
            let list = list.as_array().ok_or_else(|| PeerError("`records` is not a list".to_owned()))?;
            for record in list {
                if let Some((key, data)) = store_record(record, now)? {
                    records.insert(key, data);
                }
            }
        }
        Ok(PomeriumInput { input: Json::Object(input), records, now })
    }
}

/// `http` with header names canonicalised (Go's `CanonicalMIMEHeaderKey`, as Pomerium's
/// `checkrequest.GetHeaders`) and `path`, `host`, `hostname` derived from `url` when absent.
fn http_input(http: &Json) -> Result<Json, PeerError> {
    let mut http = http.as_object().cloned().ok_or_else(|| PeerError("`http` is not an object".to_owned()))?;
    if let Some(Json::Object(headers)) = http.get("headers") {
        let canonical: Map<String, Json> =
            headers.iter().map(|(name, value)| (canonical_header(name), value.clone())).collect();
        http.insert("headers".to_owned(), Json::Object(canonical));
    }
    if let Some(url) = http.get("url").and_then(Json::as_str).map(str::to_owned) {
        let (host, path) = split_url(&url);
        let hostname = host.rsplit_once(':').map_or(host, |(name, _)| name);
        let derived = [("host", host), ("hostname", hostname), ("path", path)];
        for (key, value) in derived {
            if !http.contains_key(key) {
                http.insert(key.to_owned(), Json::String(percent_decode(value)));
            }
        }
    }
    Ok(Json::Object(http))
}

/// `scheme://host/path?query` → (`host`, `/path`).
fn split_url(url: &str) -> (&str, &str) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `access-control-request-method` → `Access-Control-Request-Method`.
fn canonical_header(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
        upper = c == '-';
    }
    out
}

/// A record's type URL and id.
type RecordKey = (String, String);

/// One contract record as Pomerium's store serves it: `None` when expired at `now`.
fn store_record(record: &Json, now: Timestamp) -> Result<Option<(RecordKey, Json)>, PeerError> {
    let field = |key: &str| {
        record
            .get(key)
            .and_then(Json::as_str)
            .ok_or_else(|| PeerError(format!("a record without a string `{key}`: {record}")))
    };
    let short = field("type")?;
    let id = field("id")?;
    let record_type = RECORD_TYPES.iter().find(|(name, _)| *name == short).map_or(short, |(_, url)| url);
    let mut data = match record.get("data") {
        Some(Json::Object(data)) => data.clone(),
        None => Map::new(),
        Some(other) => return Err(PeerError(format!("record data is not an object: {other}"))),
    };
    if let Some(expires_at) = data.get("expires_at").and_then(Json::as_str) {
        let expires_at =
            expires_at.parse::<Timestamp>().map_err(|e| error("a record's `expires_at` is not an RFC 3339 time", e))?;
        if expires_at < now {
            return Ok(None);
        }
    }
    data.entry("id".to_owned()).or_insert_with(|| Json::String(id.to_owned()));
    if record_type == SESSION_TYPE
        && let Some(Json::Array(credentials)) = data.get_mut("device_credentials")
    {
        credentials.iter_mut().for_each(oneof_credential);
    }
    if (record_type == SESSION_TYPE || record_type == USER_TYPE)
        && let Some(Json::Object(claims)) = data.get_mut("claims")
    {
        for value in claims.values_mut().filter(|v| !v.is_array()) {
            *value = Json::Array(vec![value.take()]);
        }
    }
    let mut data = Json::Object(data);
    remove_empty_strings(&mut data);
    Ok(Some(((record_type.to_owned(), id.to_owned()), data)))
}

/// `{"type_id": t, "id": c}` → `{"type_id": t, "Credential": {"Id": c}}`.
fn oneof_credential(credential: &mut Json) {
    if let Json::Object(object) = credential
        && !object.contains_key("Credential")
        && let Some(id) = object.remove("id")
    {
        let mut inner = Map::new();
        inner.insert("Id".to_owned(), id);
        object.insert("Credential".to_owned(), Json::Object(inner));
    }
}

/// Drops every empty-string field of every object (protobuf JSON omits empty fields).
fn remove_empty_strings(value: &mut Json) {
    match value {
        Json::Object(object) => {
            object.retain(|_, v| v.as_str() != Some(""));
            object.values_mut().for_each(remove_empty_strings);
        }
        Json::Array(items) => items.iter_mut().for_each(remove_empty_strings),
        _ => {}
    }
}

/// What the extensions read: the records and the clock.
#[derive(Debug)]
pub(crate) struct State {
    /// By type URL, then id, converted to Rego values.
    pub(crate) records: HashMap<String, HashMap<String, RegoValue>>,
    pub(crate) now: Timestamp,
}

impl State {
    pub(crate) fn new() -> State {
        State { records: HashMap::new(), now: Timestamp::UNIX_EPOCH }
    }

    /// Takes `input`'s records and clock.
    pub(crate) fn load(&mut self, input: &PomeriumInput) {
        self.records.clear();
        for ((record_type, id), data) in &input.records {
            self.records.entry(record_type.clone()).or_default().insert(id.clone(), RegoValue::from(data.clone()));
        }
        self.now = input.now;
    }
}

/// A loaded module, ready to evaluate inputs.
pub struct RegorusPeer {
    engine: regorus::Engine,
    state: Arc<RwLock<State>>,
}

impl fmt::Debug for RegorusPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegorusPeer").finish_non_exhaustive()
    }
}

impl RegorusPeer {
    /// Loads a Rego module (package `pomerium.policy`) with Pomerium's built-ins.
    pub fn new(module: &str) -> Result<RegorusPeer, PeerError> {
        let state = Arc::new(RwLock::new(State::new()));
        let mut engine = new_engine();
        add_extensions(&mut engine, &state)?;
        engine
            .add_policy("pomerium.rego".to_owned(), module.to_owned())
            .map_err(|e| error("regorus does not load the module", e))?;
        Ok(RegorusPeer { engine, state })
    }

    /// Evaluates `allow` and `deny`.
    pub fn evaluate(&mut self, input: &PomeriumInput) -> Result<PeerDecision, PeerError> {
        let prepared = self.prepare(input);
        let (allow, deny) = self.evaluate_prepared(&prepared)?;
        Ok(PeerDecision { allow: action_result(&allow)?, deny: action_result(&deny)? })
    }

    /// Hands `input`'s records and clock to the extensions, and returns its input document as a
    /// Rego value, for [`RegorusPeer::evaluate_prepared`].
    pub fn prepare(&mut self, input: &PomeriumInput) -> RegoValue {
        self.state.write().unwrap_or_else(PoisonError::into_inner).load(input);
        RegoValue::from(input.input.clone())
    }

    /// `allow` and `deny` for a prepared input, as regorus returns them: what benchmark B1 times
    /// (setting the input and evaluating both rules).
    pub fn evaluate_prepared(&mut self, input: &RegoValue) -> Result<(RegoValue, RegoValue), PeerError> {
        self.engine.set_input(input.clone());
        Ok((self.rule(ALLOW)?, self.rule(DENY)?))
    }

    fn rule(&mut self, path: &str) -> Result<RegoValue, PeerError> {
        self.engine.eval_rule(path.to_owned()).map_err(|e| error(&format!("regorus fails to evaluate `{path}`"), e))
    }
}

/// The rules Pomerium evaluates.
pub(crate) const ALLOW: &str = "data.pomerium.policy.allow";
pub(crate) const DENY: &str = "data.pomerium.policy.deny";

/// A rule's value read as Pomerium's `getRuleResult` reads it.
pub fn action_result(value: &RegoValue) -> Result<ActionResult, PeerError> {
    let json = value.to_json_str().map_err(|e| error("the result is not JSON", e))?;
    let json: Json = serde_json::from_str(&json).map_err(|e| error("the result is not JSON", e))?;
    Ok(ActionResult::from_rule_result(&json))
}

/// An engine in non-strict mode (built-in errors are undefined, as OPA runs for Pomerium) that
/// takes generated modules: regorus refuses lines longer than 1,024 columns and files longer than
/// 20,000 lines by default, and a module of a 100-value list has longer lines.
pub(crate) fn new_engine() -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(false);
    engine.set_policy_length_config(regorus::PolicyLengthConfig {
        max_col: std::num::NonZeroU32::MAX,
        max_file_bytes: std::num::NonZeroUsize::MAX,
        max_lines: std::num::NonZeroUsize::MAX,
    });
    engine
}

pub(crate) type Extension = fn(&State, &[RegoValue]) -> Option<RegoValue>;

/// The extensions, with their arity.
pub(crate) const EXTENSIONS: [(&str, u8, Extension); 8] = [
    ("get_databroker_record", 2, get_databroker_record),
    ("ssh_verify_user_cert", 3, ssh_verify_user_cert),
    ("crypto.x509.parse_certificates", 1, parse_certificates),
    ("crypto.sha256", 1, sha256),
    ("base64.decode", 1, base64_decode),
    ("base64.encode", 1, base64_encode),
    ("hex.decode", 1, hex_decode),
    ("net.cidr_contains", 2, cidr_contains),
];

fn add_extensions(engine: &mut regorus::Engine, state: &Arc<RwLock<State>>) -> Result<(), PeerError> {
    for (name, arity, function) in EXTENSIONS {
        let state = Arc::clone(state);
        let extension = move |args: Vec<RegoValue>| -> anyhow::Result<RegoValue> {
            let state = state.read().unwrap_or_else(PoisonError::into_inner);
            Ok(function(&state, &args).unwrap_or(RegoValue::Undefined))
        };
        engine
            .add_extension(name.to_owned(), arity, Box::new(extension))
            .map_err(|e| error(&format!("regorus refuses the extension `{name}`"), e))?;
    }
    Ok(())
}

fn string_arg(args: &[RegoValue], index: usize) -> Option<&str> {
    match args.get(index)? {
        RegoValue::String(s) => Some(s),
        _ => None,
    }
}

fn to_json(value: &RegoValue) -> Option<Json> {
    serde_json::from_str(&value.to_json_str().ok()?).ok()
}

pub(crate) fn get_databroker_record(state: &State, args: &[RegoValue]) -> Option<RegoValue> {
    let record_type = string_arg(args, 0)?;
    let Some(id) = string_arg(args, 1) else {
        return Some(RegoValue::Null);
    };
    Some(state.records.get(record_type).and_then(|records| records.get(id)).cloned().unwrap_or(RegoValue::Null))
}

fn ssh_verify_user_cert(state: &State, args: &[RegoValue]) -> Option<RegoValue> {
    let principal = string_arg(args, 0)?;
    let key = base64::engine::general_purpose::STANDARD.decode(string_arg(args, 1)?).ok()?;
    let cas = to_json(args.get(2)?)?;
    let mut trusted = Vec::new();
    for ca in cas.as_array()? {
        let blob = base64::engine::general_purpose::STANDARD.decode(ca.as_str()?).ok()?;
        trusted.push(ppl::model::SshKey { algorithm: wire_algorithm(&blob)?, blob });
    }
    Some(RegoValue::from(policy::crypto::verify_ssh_user_certificate(&key, principal, &trusted, state.now)))
}

/// The first string of an SSH wire-format key: its algorithm.
fn wire_algorithm(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?);
    let name = blob.get(4..4 + usize::try_from(len).ok()?)?;
    String::from_utf8(name.to_vec()).ok()
}

/// OPA's `crypto.x509.parse_certificates`: PEM text, or base64 of DER or of PEM.
fn parse_certificates(_: &State, args: &[RegoValue]) -> Option<RegoValue> {
    let text = string_arg(args, 0)?;
    let ders = certificate_ders(text)?;
    let mut certs = Vec::with_capacity(ders.len());
    for der in &ders {
        certs.push(certificate_object(der)?);
    }
    Some(RegoValue::from(Json::Array(certs)))
}

fn certificate_ders(text: &str) -> Option<Vec<Vec<u8>>> {
    if text.contains("-----BEGIN") {
        let mut ders = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
            let pem = pem.ok()?;
            if pem.label == "CERTIFICATE" {
                ders.push(pem.contents);
            }
        }
        return (!ders.is_empty()).then_some(ders);
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
    match std::str::from_utf8(&decoded) {
        Ok(pem) if pem.contains("-----BEGIN") => certificate_ders(pem),
        _ => Some(vec![decoded]),
    }
}

/// The fields of Go's `x509.Certificate` that Pomerium's Rego reads; a nil slice is `null`.
fn certificate_object(der: &[u8]) -> Option<Json> {
    use x509_parser::extensions::GeneralName;
    let (rest, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let (mut emails, mut dns, mut uris) = (Vec::new(), Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::RFC822Name(s) => emails.push(Json::String((*s).to_owned())),
                GeneralName::DNSName(s) => dns.push(Json::String((*s).to_owned())),
                GeneralName::URI(s) => uris.push(Json::String((*s).to_owned())),
                _ => {}
            }
        }
    }
    let list = |items: Vec<Json>| {
        if items.is_empty() { Json::Null } else { Json::Array(items) }
    };
    let b64 = |bytes: &[u8]| Json::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    let mut object = Map::new();
    object.insert("Raw".to_owned(), b64(der));
    object.insert("RawSubjectPublicKeyInfo".to_owned(), b64(cert.tbs_certificate.subject_pki.raw));
    object.insert("EmailAddresses".to_owned(), list(emails));
    object.insert("DNSNames".to_owned(), list(dns));
    object.insert("URIStrings".to_owned(), list(uris));
    Some(Json::Object(object))
}

/// OPA's `net.cidr_contains(cidr, ip)` for an address, with Go's reading of IPv4-mapped IPv6
/// addresses as IPv4 (`::ffff:10.1.2.3` is in `10.0.0.0/8`), which regorus's lacks.
fn cidr_contains(_: &State, args: &[RegoValue]) -> Option<RegoValue> {
    let (network, prefix) = string_arg(args, 0)?.split_once('/')?;
    let (network, prefix) = unmap(network.parse().ok()?, prefix.parse().ok()?)?;
    let (address, _) = unmap(string_arg(args, 1)?.parse().ok()?, 128)?;
    let bits = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => (u128::from(v4.to_bits()), 32u32),
        IpAddr::V6(v6) => (v6.to_bits(), 128),
    };
    let ((network, width), (address, address_width)) = (bits(network), bits(address));
    if width != address_width || prefix > width {
        return Some(RegoValue::from(false));
    }
    let shift = width - prefix;
    let same = network.checked_shr(shift).unwrap_or(0) == address.checked_shr(shift).unwrap_or(0);
    Some(RegoValue::from(same))
}

/// An IPv4-mapped IPv6 address (and prefix) as IPv4, as Go's `To4` reads it.
fn unmap(ip: IpAddr, prefix: u32) -> Option<(IpAddr, u32)> {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if prefix >= 96 => Some((IpAddr::V4(v4), prefix - 96)),
            _ => (prefix <= 128).then_some((ip, prefix)),
        },
        IpAddr::V4(_) => (prefix <= 32 || prefix == 128).then_some((ip, prefix.min(32))),
    }
}

/// The first private-use character of the byte-string encoding: byte `b` is U+F700 + `b`.
const BYTE_BASE: u32 = 0xF700;

/// Bytes as a Rego string: the text when they are UTF-8, else one private-use character a byte.
fn bytes_to_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| {
        e.into_bytes().into_iter().filter_map(|b| char::from_u32(BYTE_BASE + u32::from(b))).collect()
    })
}

/// The bytes a Rego string stands for (the inverse of [`bytes_to_string`]).
fn string_to_bytes(text: &str) -> Vec<u8> {
    let byte = |c: char| u32::from(c).checked_sub(BYTE_BASE).and_then(|b| u8::try_from(b).ok());
    if !text.is_empty() && text.chars().all(|c| byte(c).is_some()) {
        text.chars().filter_map(byte).collect()
    } else {
        text.as_bytes().to_vec()
    }
}

fn sha256(_: &State, args: &[RegoValue]) -> Option<RegoValue> {
    let bytes = string_to_bytes(string_arg(args, 0)?);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Some(RegoValue::from(hex))
}

fn base64_decode(_: &State, args: &[RegoValue]) -> Option<RegoValue> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(string_arg(args, 0)?).ok()?;
    Some(RegoValue::from(bytes_to_string(bytes)))
}

fn base64_encode(_: &State, args: &[RegoValue]) -> Option<RegoValue> {
    let bytes = string_to_bytes(string_arg(args, 0)?);
    Some(RegoValue::from(base64::engine::general_purpose::STANDARD.encode(bytes)))
}

fn hex_decode(_: &State, args: &[RegoValue]) -> Option<RegoValue> {
    let text = string_arg(args, 0)?;
    let mut bytes = Vec::with_capacity(text.len() / 2);
    let mut chars = text.chars();
    while let Some(high) = chars.next() {
        let (high, low) = (high.to_digit(16)?, chars.next()?.to_digit(16)?);
        bytes.push(u8::try_from(high * 16 + low).ok()?);
    }
    Some(RegoValue::from(bytes_to_string(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_strings_round_trip() {
        let binary = vec![0x30, 0x82, 0xff, 0x00, b'a'];
        assert_eq!(string_to_bytes(&bytes_to_string(binary.clone())), binary);
        assert_eq!(bytes_to_string(b"text".to_vec()), "text");
        assert_eq!(string_to_bytes("text"), b"text");
    }

    #[test]
    fn cidr_contains_reads_mapped_addresses_as_ipv4() {
        let state = State::new();
        let contains = |cidr: &str, ip: &str| {
            cidr_contains(&state, &[RegoValue::from(cidr), RegoValue::from(ip)]).and_then(|v| v.as_bool().ok().copied())
        };
        assert_eq!(contains("10.0.0.0/8", "10.1.2.3"), Some(true));
        assert_eq!(contains("10.0.0.0/8", "::ffff:10.1.2.3"), Some(true));
        assert_eq!(contains("192.168.1.0/24", "192.168.2.1"), Some(false));
        assert_eq!(contains("1.2.3.4/32", "1.2.3.4"), Some(true));
        assert_eq!(contains("0.0.0.0/0", "8.8.8.8"), Some(true));
        assert_eq!(contains("2001:db8::/32", "2001:db8::1"), Some(true));
        assert_eq!(contains("2001:db8::/32", "10.1.2.3"), Some(false));
        assert_eq!(contains("::/0", "::1"), Some(true));
        assert_eq!(contains("10.0.0.0/8", "not an ip"), None);
    }

    #[test]
    fn headers_are_canonical() {
        assert_eq!(canonical_header("access-control-request-METHOD"), "Access-Control-Request-Method");
        assert_eq!(canonical_header("Origin"), "Origin");
    }

    #[test]
    fn urls_give_host_and_path() {
        assert_eq!(split_url("https://app.example.com:8443/a%20b?x=1"), ("app.example.com:8443", "/a%20b"));
        assert_eq!(percent_decode("/a%20b"), "/a b");
        assert_eq!(split_url("https://h"), ("h", "/"));
    }
}
