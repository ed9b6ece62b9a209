//! What a decision is about: the request, the session handle, the SSH and MCP context, the clock.
//!
//! Every field borrows from the caller and every field is optional: absent means absent, as in
//! Pomerium's input document, and it matters (`not_in` holds for an absent value, `is` does not).
//! Building an [`Input`] allocates nothing; the proxy fills one per request from what it already
//! holds.

use crate::crypto::CertificateFacts;
use std::net::IpAddr;

/// The evaluation input (ppl.md §4.2, shared/spec/eval-contract.md).
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub http: Http<'a>,
    /// Computed outside the policy against the configured client CA, CRL and constraints.
    pub is_valid_client_certificate: Option<bool>,
    /// `session.id`: the session handle from the cookie or authorization header.
    pub session_id: Option<&'a str>,
    pub ssh: Ssh<'a>,
    pub mcp: Mcp<'a>,
    /// The evaluation clock: record expiry and the time criteria read it.
    pub now: jiff::Timestamp,
}

impl Input<'_> {
    /// An input with nothing in it, at time `now`.
    pub fn empty(now: jiff::Timestamp) -> Input<'static> {
        Input {
            http: Http::default(),
            is_valid_client_certificate: None,
            session_id: None,
            ssh: Ssh::default(),
            mcp: Mcp::default(),
            now,
        }
    }
}

/// Request headers, looked up by name case-insensitively (the proxy implements this on its
/// header map; the command line on a list).
pub trait Headers: std::fmt::Debug + Sync {
    fn get(&self, name: &str) -> Option<&str>;
}

/// No headers at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHeaders;

impl Headers for NoHeaders {
    fn get(&self, _: &str) -> Option<&str> {
        None
    }
}

impl Headers for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

impl<const N: usize> Headers for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| *value)
    }
}

/// The HTTP request.
#[derive(Clone, Copy, Debug)]
pub struct Http<'a> {
    pub method: Option<&'a str>,
    pub host: Option<&'a str>,
    pub hostname: Option<&'a str>,
    /// Percent-decoded, without the query.
    pub path: Option<&'a str>,
    pub url: Option<&'a str>,
    pub headers: &'a dyn Headers,
    /// The downstream address; `None` when absent or not an address.
    pub ip: Option<IpAddr>,
    pub client_certificate: ClientCertificate<'a>,
}

impl<'a> Http<'a> {
    /// The value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name)
    }
}

impl Default for Http<'_> {
    fn default() -> Self {
        Http {
            method: None,
            host: None,
            hostname: None,
            path: None,
            url: None,
            headers: &NoHeaders,
            ip: None,
            client_certificate: ClientCertificate::default(),
        }
    }
}

/// The client certificate as presented (its validity is [`Input::is_valid_client_certificate`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientCertificate<'a> {
    pub presented: Option<bool>,
    /// What the policy reads of the leaf certificate; `None` when absent or unparseable.
    pub leaf: Option<&'a CertificateFacts>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Ssh<'a> {
    pub username: Option<&'a str>,
    /// The client's public key (or certificate) in the SSH wire format.
    pub publickey: Option<&'a [u8]>,
}

/// The MCP JSON-RPC request on MCP server routes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mcp<'a> {
    pub method: Option<&'a str>,
    pub tool_name: Option<&'a str>,
}
